"""Runtime settings: the rollback switch, changed without a redeploy.

`config/engine` holds `mode`: `queue` (normal; also when the document is
missing) or `direct` (rollback: the queue trigger stands still and
pack427_sendMessage delivers what it queues in the request, while the
processor drains what was queued before), and `maxMessagesPerMinute`, the per-user send
limit (default MAX_MESSAGES_PER_MINUTE). Each instance caches the document for
SETTINGS_CACHE_SECONDS, so a switch reaches every instance within that time
at the cost of one read per instance per period.

The document is written by hand too (the console). A field that is unusable
(`DIRECT` for `direct`, a limit of 0) takes its default and is logged as the
SETTINGS_UNUSABLE alert at each read, so that a typo stops nothing; the
operator commands (set_mode, set_rate_limit) rewrite the whole document, odd
fields repaired, in a write conditional on the document as they read it, so
two operators' commands never undo each other silently.
"""

from __future__ import annotations

import time
from datetime import datetime

from firebase_functions import logger
from google.cloud.firestore import Client

from . import clock, constants, paths, store
from .errors import Aborted
from .models import EngineMode, EngineSettings, salvage

SETTINGS_UNUSABLE = "SETTINGS_UNUSABLE"

SETTINGS_CACHE_SECONDS = 5
"""How long an instance trusts the settings it read: the switch's delay."""

_cache: dict[str, tuple[float, EngineSettings]] = {}
"""Per project: (monotonic time read, settings)."""


def current(db: Client, *, max_age_s: float = SETTINGS_CACHE_SECONDS) -> EngineSettings:
    """The engine settings, from this instance's cache if younger than `max_age_s` (default 5 s)."""
    cached = _cache.get(db.project)
    if cached is not None and time.monotonic() - cached[0] < max_age_s:
        return cached[1]
    settings = _stored(store.Read.of(paths.engine_settings(db).get()))
    _cache[db.project] = (time.monotonic(), settings)
    return settings


def _stored(doc: store.Read) -> EngineSettings:
    """The settings in `config/engine` as read, unusable fields at their defaults (alerted)."""
    settings, odd = salvage(EngineSettings, doc.data)
    if odd:
        logger.error(f"config/engine: unusable {', '.join(sorted(odd))}; the defaults apply until an operator"
                     " sets them (scripts/ops mode, scripts/ops rate-limit)",
                     alert=SETTINGS_UNUSABLE, fields=sorted(odd), stored={name: repr(doc.data[name]) for name in odd})
    return settings


def direct_delivery(db: Client) -> bool:
    """Whether the rollback switch is on: the trigger stands still, sends deliver in the request."""
    return current(db).mode is EngineMode.DIRECT


def set_mode(
    db: Client, mode: EngineMode, *, actor: str, reason: str | None = None, now: datetime | None = None
) -> EngineSettings:
    """Store `mode` (other instances follow within SETTINGS_CACHE_SECONDS; this one at once).

    Args:
        actor: who switched, recorded on the document.
        reason: why, recorded on the document (default none).
        now: recorded as `updatedAt` (default: the clock).
    """
    return _change(db, {"mode": mode}, actor=actor, reason=reason, now=now)


def set_rate_limit(
    db: Client, per_minute: int, *, actor: str, reason: str | None = None, now: datetime | None = None
) -> EngineSettings:
    """Store the per-user send limit (1..MAX_RATE_LIMIT); arguments as for set_mode."""
    return _change(db, {"max_messages_per_minute": per_minute}, actor=actor, reason=reason, now=now)


def _change(db: Client, changes: dict, *, actor: str, reason: str | None, now: datetime | None) -> EngineSettings:
    """Rewrite the whole document with `changes` (odd fields repaired), conditional on it as read:
    an operator's concurrent change is read again and kept, never overwritten unseen."""
    stamp = {"updated_at": now or clock.now(), "updated_by": actor, "reason": reason}

    def attempt(_: int) -> EngineSettings:
        doc = store.Read.of(paths.engine_settings(db).get())
        settings = EngineSettings.model_validate(_stored(doc).model_dump(by_alias=False) | changes | stamp)
        batch = db.batch()
        store.write_if_unchanged(db, batch, doc, settings.to_firestore())
        store.commit(batch)
        return settings

    settings = store.retry_on_conflict(attempt, attempts=constants.SETTINGS_WRITE_RETRIES,
                                       give_up=lambda: Aborted("config/engine kept changing; try again"))
    _cache[db.project] = (time.monotonic(), settings)
    return settings


def forget() -> None:
    """Drop this instance's cache (tests; the next read goes to Firestore)."""
    _cache.clear()
