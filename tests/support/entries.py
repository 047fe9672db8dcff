"""Queue entries made directly, for tests of the queue and its processors."""

from __future__ import annotations

from datetime import UTC, datetime

from google.cloud import firestore
from ulid import ULID

from pack427.delivering import queue
from pack427.delivering.queue import LoadedEntry
from pack427.models import QueuedMessage, QueueStatus, Region, TransportMetadata

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def make_entry(recipient: str = "bob", *, tokens: list[str] | None = None, region: Region = Region.US,
               created: datetime = T0, status: QueueStatus = QueueStatus.PENDING,
               next_attempt_at: datetime | None = None, chat: str = "c1") -> QueuedMessage:
    message_id = str(ULID.from_datetime(created))
    return QueuedMessage(
        id=QueuedMessage.entry_id(message_id, recipient),
        message_id=message_id,
        chat_id=chat,
        sender_id="alice",
        recipient_id=recipient,
        region=Region.EU,
        target_region=region,
        content_ref=f"chats/{chat}/messages/{message_id}",
        text="hello",
        status=status,
        next_attempt_at=next_attempt_at or created,
        transport_metadata=TransportMetadata(push_tokens=tokens or []),
        created_at=created,
        updated_at=created,
    )


def enqueue(db: firestore.Client, *entries: QueuedMessage) -> None:
    for start in range(0, len(entries), 250):
        queue.enqueue(db, list(entries[start:start + 250]), actor="test")


def load(db, entry: QueuedMessage) -> LoadedEntry:
    return queue.load(db, entry.target_region, entry.id)
