"""Time, in one place, so that tests can inject it."""

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""The time of a document field nobody recorded (a chat core's lastMessage without a time)."""


def now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def millis(ms: int) -> timedelta:
    return timedelta(milliseconds=ms)


def from_millis(ms: int) -> datetime:
    """The instant `ms` Unix milliseconds, timezone-aware UTC."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def to_millis(at: datetime) -> int:
    """`at` in Unix milliseconds."""
    return round(at.timestamp() * 1000)
