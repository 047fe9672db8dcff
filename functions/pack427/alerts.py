"""Structured log lines for the conditions operators must hear about.

Cloud Functions sends JSON written to stdout/stderr to Cloud Logging; the
`alert` field names the condition so that a log-based metric or alerting
policy can match on it.
"""

from __future__ import annotations

from firebase_functions import logger

from .models import QueuedMessage


def message_dropped(entry: QueuedMessage, *, attempts: int, error: str) -> None:
    """A queue entry became a dead letter: never silent."""
    logger.error(
        f"message {entry.message_id} to {entry.recipient_id} DROPPED after {attempts} attempts: {error}",
        alert="MESSAGE_DROPPED",
        entryId=entry.id,
        messageId=entry.message_id,
        chatId=entry.chat_id,
        recipientId=entry.recipient_id,
        region=entry.target_region.value,
        attempts=attempts,
        error=error,
    )


def entry_quarantined(region: str, entry_id: str, problem: str) -> None:
    """A stored queue entry was unusable and is set aside until an operator repairs it."""
    logger.error(
        f"queue entry {region}/{entry_id} QUARANTINED: {problem} (scripts/ops quarantined; scripts/ops release)",
        alert="QUEUE_ENTRY_QUARANTINED",
        region=region,
        entryId=entry_id,
        problem=problem,
    )
