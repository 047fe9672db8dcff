"""Queue entries and their history: a message on its way to one recipient.
"""

from __future__ import annotations

import zlib
from datetime import datetime
from typing import Any

from pydantic import (
    Field,
    computed_field,
)

from .. import constants
from .base import Document, QueueStatus, Region


class TransportMetadata(Document):
    """How to reach the recipient, fixed when the entry is enqueued.

    Attributes:
        push_tokens: FCM tokens to notify; empty when the recipient was online.
        sender_name: display name shown in the push notification.
    """

    push_tokens: list[str] = Field(default_factory=list)
    sender_name: str | None = None


class QueueEvent(Document):
    """One state change of a queue entry, kept in the entry's `history` (the
    seed's PACK 296 audit integration): written in the same write as the change.

    Attributes:
        actor: who made the change: `user:{uid}`, `trigger`, `scheduler`, `ops`...
        action: ENQUEUED, DELIVERED, FAILED, DROPPED or REQUEUED.
        from_status: status before the change (None when enqueued).
        to_status: status after it.
        attempts: the entry's attempts after the change.
        details: error text, back-off, as the action needs.
    """

    actor: str
    action: str
    from_status: QueueStatus | None = None
    to_status: QueueStatus
    attempts: int
    at: datetime
    details: dict[str, Any] = Field(default_factory=dict)


class QueuedMessage(Document):
    """`regions/{targetRegion}/messageQueue/{messageId}_{recipientId}`.

    One entry per (message, recipient): the id makes a second one impossible.
    `region` is where the message was sent from (the sender's home region),
    `target_region` the recipient's home region, whose queue holds the entry.
    `awaiting_inbox` is true until the message is in the recipient's inbox (or
    dropped): while it is, newer messages of the same chat wait behind it.
    An entry whose message the send placed in the inbox itself only carries
    the push to an offline recipient (`awaiting_inbox` false from the start).
    """

    id: str
    message_id: str
    chat_id: str
    sender_id: str
    recipient_id: str
    region: Region
    target_region: Region
    content_ref: str
    text: str | None = None
    status: QueueStatus = QueueStatus.PENDING
    awaiting_inbox: bool = True
    attempts: int = 0
    next_attempt_at: datetime
    last_error: str | None = None
    billing_state: dict[str, Any] = Field(default_factory=dict)
    transport_metadata: TransportMetadata = Field(default_factory=TransportMetadata)
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None = None
    expires_at: datetime | None = None
    """Set when DELIVERED: deliveredAt + DELIVERED_RETENTION_DAYS, Firestore's TTL field
    (the entry and its history are deleted within a day after). Never set on other states."""
    inbox_seq: int | None = None
    """The message's seq in the recipient's inbox, once placed."""
    last_failed_at: datetime | None = None
    """The time of the latest failed attempt (metrics count failures by it)."""
    placed_by_send: bool = False
    """The writer that made this entry (the send, or a fan-out chunk) placed the
    message in the inbox itself: the entry carries only the push."""
    system_nudge: bool = False
    """A nudge of the engine's own (see nudges): marked so in the inbox."""
    priority: bool = False
    """In the processor's priority lane (see processor.drain): the message's priority."""
    behind_queue: bool = True
    """An older message of the chat may still await an inbox in a queue: the first attempt
    delivers the recipient's older ones first (delivery.deliver_in_order). False when the
    send found none waiting (the chat's `deliveryQueued` clear): the trigger places the
    message at once, without asking the queue."""
    requeues: int = 0
    """Times an operator put the entry back on the queue after it was dropped
    (`attempts` starts again at 0 each time)."""
    history: list[QueueEvent] = Field(default_factory=list)
    """Every state change of the entry, oldest first (see QueueEvent)."""

    @staticmethod
    def entry_id(message_id: str, recipient_id: str) -> str:
        return f"{message_id}_{recipient_id}"

    @computed_field  # type: ignore[prop-decorator]  # pydantic's documented pattern; mypy does not follow it
    @property
    def shard(self) -> int:
        """Slice of the queue a fanned-out processor worker takes (see processor.drain):
        a hash of (chat, recipient), so each of their entries is in one slice."""
        return zlib.crc32(f"{self.chat_id}\0{self.recipient_id}".encode()) % constants.QUEUE_SHARDS


class AuditEvent(QueueEvent):
    """A QueueEvent with the entry it belongs to, as `ops history` lists a message's events."""

    entry_id: str
    message_id: str
    region: Region


class RegionQueueStats(Document):
    """Counts of one region's queue, by status, at `at`."""

    region: Region
    at: datetime
    pending: int
    failed: int
    delivered: int
    dropped: int
    quarantined: int = 0

    @property
    def depth(self) -> int:
        """Entries still waiting for delivery."""
        return self.pending + self.failed
