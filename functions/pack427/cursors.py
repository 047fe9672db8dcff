"""Opaque paging cursors, bound to the caller and checked on return.

A cursor is `base64url(json position).base64url(mac)`, the MAC (HMAC-SHA256,
truncated to 128 bits) taken over the cursor's kind, the caller's uid and the
position. Another user's cursor, one made for another kind of listing, or an
edited one fails the check and is refused as invalid-argument.

A cursor only positions a listing within data the caller may read anyway, so
it grants nothing; the MAC is what lets clients treat cursors as opaque and
lets us change their contents. Deployments set PACK427_CURSOR_KEY; without it
a fixed development key is used.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from typing import Any

from .errors import InvalidArgument

_DEVELOPMENT_KEY = b"pack427-development-cursor-key"


def _key() -> bytes:
    configured = os.environ.get("PACK427_CURSOR_KEY")
    return configured.encode() if configured else _DEVELOPMENT_KEY


def _mac(kind: str, uid: str, body: bytes) -> bytes:
    message = b"\0".join([kind.encode(), uid.encode(), body])
    return hmac.new(_key(), message, hashlib.sha256).digest()[:16]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode(kind: str, uid: str, position: dict[str, Any]) -> str:
    """A cursor for `position` in listing `kind` of user `uid`."""
    body = json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
    return f"{_b64(body)}.{_b64(_mac(kind, uid, body))}"


def decode(kind: str, uid: str, cursor: str) -> dict[str, Any]:
    """The position in `cursor`, or InvalidArgument if it is not a cursor we gave `uid` for `kind`."""
    try:
        body_text, mac_text = cursor.split(".")
        body, mac = _unb64(body_text), _unb64(mac_text)
    except (ValueError, binascii.Error):
        raise InvalidArgument("cursor is not a cursor this service returned") from None
    if not hmac.compare_digest(mac, _mac(kind, uid, body)):
        raise InvalidArgument("cursor was not issued to you for this listing, or was altered")
    position = json.loads(body)
    if not isinstance(position, dict):
        raise InvalidArgument("cursor is not a cursor this service returned")
    return position
