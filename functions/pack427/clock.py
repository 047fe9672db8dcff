"""Time, in one place, so that tests can inject it."""

from datetime import UTC, datetime, timedelta


def now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def millis(ms: int) -> timedelta:
    return timedelta(milliseconds=ms)
