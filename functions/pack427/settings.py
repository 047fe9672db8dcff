"""Runtime settings: the rollback switch, changed without a redeploy.

`config/engine` holds `mode`: `queue` (normal; also when the document is
missing) or `direct` (rollback: the queue trigger stands still and
pack427_sendMessage delivers what it queues in the request, while the
processor drains what was queued before), and `maxMessagesPerMinute`, the per-user send
limit (default MAX_MESSAGES_PER_MINUTE). Each instance caches the document for
SETTINGS_CACHE_SECONDS, so a switch reaches every instance within that time
at the cost of one read per instance per period.
"""

from __future__ import annotations

import time
from datetime import datetime

from google.cloud.firestore import Client

from . import clock, paths
from .models import EngineMode, EngineSettings

SETTINGS_CACHE_SECONDS = 5
"""How long an instance trusts the settings it read: the switch's delay."""

_cache: dict[str, tuple[float, EngineSettings]] = {}
"""Per project: (monotonic time read, settings)."""


def current(db: Client, *, max_age_s: float = SETTINGS_CACHE_SECONDS) -> EngineSettings:
    """The engine settings, from this instance's cache if younger than `max_age_s` (default 5 s)."""
    cached = _cache.get(db.project)
    if cached is not None and time.monotonic() - cached[0] < max_age_s:
        return cached[1]
    snapshot = paths.engine_settings(db).get()
    settings = EngineSettings.model_validate(snapshot.to_dict()) if snapshot.exists else EngineSettings()
    _cache[db.project] = (time.monotonic(), settings)
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
    stored = current(db, max_age_s=0)
    stamp = {"updated_at": now or clock.now(), "updated_by": actor, "reason": reason}
    settings = EngineSettings.model_validate(stored.model_dump(by_alias=False) | changes | stamp)
    paths.engine_settings(db).set(settings.to_firestore())
    _cache[db.project] = (time.monotonic(), settings)
    return settings


def forget() -> None:
    """Drop this instance's cache (tests; the next read goes to Firestore)."""
    _cache.clear()
