"""Opaque paging cursors, bound to the caller and checked on return.

A cursor is `base64url(json position).base64url(mac)`, the MAC (HMAC-SHA256,
truncated to 128 bits) taken over the cursor's kind, the caller's uid and the
position. Another user's cursor, one made for another kind of listing, or an
edited one fails the check and is refused as invalid-argument.

A cursor only positions a listing within data the caller may read anyway, so
it grants nothing; the MAC is what lets clients treat cursors as opaque and
lets us change their contents.

The key is the deployment secret PACK427_CURSOR_KEY (Secret Manager; the
functions that sign or check cursors declare SECRET, and Cloud Functions puts
its value in the environment). Its value is the current key, optionally
followed by the previous one and the end of its period:

    CURRENT
    CURRENT previous=PREVIOUS until=2027-01-15

Cursors are always signed with the current key. During a rotation a cursor
signed with the previous key is still accepted before `until` (UTC; at most
ROTATION_DAYS ahead), so that devices offline during the rotation resume
where they were; the page they get back carries a cursor signed with the
current key. After `until` such a cursor is refused like any invalid one
(logged, `cursorRefused: previous_key_expired`) and the client syncs again
without a cursor, from the position the engine recorded for the device
(README, "Offline sync").

The development key in this file is used only on the emulators
(FUNCTIONS_EMULATOR or FIRESTORE_EMULATOR_HOST set) when no key is set. A
deployed instance without a key, or with the development key, signs nothing:
it logs the alert CURSOR_KEY_MISSING (or CURSOR_KEY_IS_DEVELOPMENT_KEY) and
answers `unavailable` to every call that needs a cursor. `scripts/deploy
--check` keeps such a deploy from happening (scripts/deploy_check.py).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from firebase_functions import logger
from firebase_functions.params import SecretParam

from .. import clock
from ..errors import InvalidArgument, Unavailable

KEY_NAME = "PACK427_CURSOR_KEY"
"""The secret's name, and the environment variable its value arrives in."""

SECRET = SecretParam(
    KEY_NAME,
    label="Cursor key",
    description="HMAC key of the paging cursors: `KEY` or `KEY previous=OLD until=YYYY-MM-DD` (docs/SECURITY.md)",
)
"""Declared (`secrets=[SECRET]`) by every deployed function that signs or checks a cursor."""

DEVELOPMENT_KEY = "pack427-development-cursor-key"
"""The key in the repository: the emulators' only, never a deployment's."""

MIN_KEY_LENGTH = 16
"""Shorter keys are refused as a misconfiguration (`openssl rand -hex 32` makes 64 characters)."""

ROTATION_DAYS = 30
"""The longest the previous key is accepted: `until` may lie at most this far ahead."""


@dataclass(frozen=True)
class Keys:
    """The parsed secret: the key to sign with, and the previous one with the end of its period."""

    current: bytes
    previous: bytes | None = None
    previous_until: datetime | None = None


def on_emulator() -> bool:
    """Running on the emulators (or the in-process tests against them), where the development key may serve."""
    return os.environ.get("FUNCTIONS_EMULATOR") == "true" or bool(os.environ.get("FIRESTORE_EMULATOR_HOST"))


def keys() -> Keys:
    """The keys of this instance.

    Raises:
        Unavailable: deployed without a usable key (an alert line at every call: nothing is cached).
    """
    return _parse(os.environ.get(KEY_NAME, "").strip(), on_emulator())


@functools.lru_cache(maxsize=8)
def _parse(value: str, emulator: bool) -> Keys:
    problem = None
    if not value:
        if emulator:
            return Keys(DEVELOPMENT_KEY.encode())
        problem = ("CURSOR_KEY_MISSING", f"no cursor key: set the secret {KEY_NAME} and redeploy")
    else:
        current, *rest = value.split()
        if current == DEVELOPMENT_KEY and not emulator:
            problem = ("CURSOR_KEY_IS_DEVELOPMENT_KEY",
                       f"the secret {KEY_NAME} is the development key from the repository: set a new one and redeploy")
        elif len(current) < MIN_KEY_LENGTH:
            problem = ("CURSOR_KEY_MALFORMED",
                       f"the secret {KEY_NAME} is shorter than {MIN_KEY_LENGTH} characters: set a new one and redeploy")
    if problem is not None:
        alert, message = problem
        logger.error(f"{message}; every call that needs a cursor answers unavailable", alert=alert)
        raise Unavailable("Paging is not possible right now; try again later.", {"reason": "cursor_key_missing"})
    return Keys(current.encode(), *_previous(rest))


def _previous(tokens: list[str]) -> tuple[bytes | None, datetime | None]:
    """The previous key and the end of its period from `previous=... until=...`; none (logged) if malformed."""
    if not tokens:
        return None, None
    fields = dict(token.split("=", 1) for token in tokens if "=" in token)
    previous, until_text = fields.get("previous"), fields.get("until")
    try:
        if len(fields) != len(tokens) or set(fields) != {"previous", "until"} or not previous or not until_text:
            raise ValueError("expected `KEY previous=OLD until=YYYY-MM-DD`")
        until = datetime.fromisoformat(until_text)
    except ValueError as err:
        logger.error(f"the secret {KEY_NAME} has an unusable rotation part ({err}): cursors signed with the "
                     "previous key are refused; cursors are signed with the current key",
                     alert="CURSOR_KEY_MALFORMED")
        return None, None
    return previous.encode(), until if until.tzinfo else until.replace(tzinfo=UTC)


def _mac(key: bytes, kind: str, uid: str, body: bytes) -> bytes:
    message = b"\0".join([kind.encode(), uid.encode(), body])
    return hmac.new(key, message, hashlib.sha256).digest()[:16]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode(kind: str, uid: str, position: dict[str, Any]) -> str:
    """A cursor for `position` in listing `kind` of user `uid`, signed with the current key."""
    body = json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
    return f"{_b64(body)}.{_b64(_mac(keys().current, kind, uid, body))}"


def decode(kind: str, uid: str, cursor: str) -> dict[str, Any]:
    """The position in `cursor`, or InvalidArgument if it is not a cursor we gave `uid` for `kind`."""
    try:
        body_text, mac_text = cursor.split(".")
        body, mac = _unb64(body_text), _unb64(mac_text)
    except (ValueError, binascii.Error):
        raise InvalidArgument("cursor is not a cursor this service returned") from None
    if not _verifies(keys(), kind, uid, body, mac):
        raise InvalidArgument("cursor was not issued to you for this listing, or was altered")
    try:
        position = json.loads(body)
    except ValueError:
        position = None
    if not isinstance(position, dict):
        raise InvalidArgument("cursor is not a cursor this service returned")
    return position


def _verifies(keys: Keys, kind: str, uid: str, body: bytes, mac: bytes) -> bool:
    """Whether `mac` is the current key's, or the previous key's within its period; a refused
    cursor signed with the previous or the development key is logged (what an operator rotating wants to see)."""
    if hmac.compare_digest(mac, _mac(keys.current, kind, uid, body)):
        return True
    if keys.previous is not None and hmac.compare_digest(mac, _mac(keys.previous, kind, uid, body)):
        now = clock.now()
        until = keys.previous_until or now
        if now < until <= now + timedelta(days=ROTATION_DAYS):
            logger.info("cursor signed with the previous key accepted; the answer carries one signed with the "
                        "current key", cursorKey="previous", kind=kind, uid=uid, until=until.isoformat())
            return True
        reason = "previous_key_expired" if until <= now else "previous_key_period_too_long"
        logger.warn(f"cursor signed with the previous key refused ({reason}, until {until.isoformat()}): "
                       "the client starts again without it", cursorRefused=reason,
                       kind=kind, uid=uid)
        return False
    if keys.current != DEVELOPMENT_KEY.encode() and hmac.compare_digest(
            mac, _mac(DEVELOPMENT_KEY.encode(), kind, uid, body)):
        logger.warn("cursor signed with the development key refused (made by an emulator, or by a deployment "
                       "without the secret): the client starts again without it",
                       cursorRefused="development_key", kind=kind, uid=uid)
    return False
