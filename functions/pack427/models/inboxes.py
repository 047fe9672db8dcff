"""Each user's inbox: its entries, its head (seq, unread counts, positions), read receipts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    ConfigDict,
    Field,
    field_validator,
)

from .base import Document, Region


class InboxEntry(Document):
    """`users/{uid}/inbox/{messageId}`: a delivered message, ready to render.

    Attributes:
        seq: the entry's place in the user's inbox: 1, 2, 3 ... in the order
            entries became visible (see InboxHead). Sync cursors are seqs.
        region: the recipient's home region when the message was sent (its
            queue, had it needed one); metrics count deliveries by it.
        via: `send` if the send's own commit created the entry, `fanOut` if
            a fan-out chunk did (see fan_out), `queue` if a delivery from the
            queue did.
        delivered_at: when the entry was created; equal to created_at when
            the send placed it.
    """

    seq: int
    message_id: str
    chat_id: str
    sender_id: str
    sender_name: str | None = None
    text: str | None = None
    content_ref: str
    region: Region
    via: str = "queue"
    system_nudge: bool = False
    created_at: datetime
    delivered_at: datetime


class ChatInbox(Document):
    """What a user's inbox head knows of one chat.

    Attributes:
        unread: the user's inbox entries of the chat newer than `read_up_to`
            (none is the user's own: senders are never their own recipients).
        read_up_to: the user's read position in the chat (None: nothing read).
        last: the newest message of the chat in the inbox (None: none yet).
    """

    unread: Annotated[int, Field(ge=0)] = 0
    read_up_to: str | None = None
    last: str | None = None

    @field_validator("unread", mode="before")
    @classmethod
    def _never_negative(cls, value: Any) -> Any:
        # A damaged count reads as 0 (recalculation repairs it); it must not block the inbox.
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


class InboxHead(Document):
    """`users/{uid}/inboxHead/current`: the state of the user's inbox, in one document.

    Every inbox entry is created in the same commit as the head moves to its
    seq, conditional on the head being unchanged since it was read. Seq n+1
    is therefore only ever assigned after seq n is visible, and a reader that
    has seen n+1 has seen every entry before it. The same commit counts the
    entry as unread in its chat; markAsRead moves a chat's read position and
    recounts in a commit conditional on the head too. So every change to the
    inbox and to the read positions is serialised on this document, and the
    unread counts are exact at every moment (see inbox).

    Attributes:
        seq: the seq of the newest entry (0: none yet).
        message_id: the newest entry's message.
        chats: per chat with entries in the inbox, its unread count, read
            position and newest message; fully read chats beyond
            MAX_TRACKED_CHATS are pruned, oldest first.
            Bounded to MAX_TRACKED_CHATS chats and INBOX_HEAD_MAX_BYTES
            (inbox.bounded): past either, fully read chats are pruned, then
            the least recently active chats with unread messages are parked.
        pruned: chats were pruned: a chat not tracked may have a read
            position, in its read receipt.
        parked_unread: the unread messages of the parked chats, together: the
            user's total unread is the sum of `chats`' and this, exact at
            every moment (a parked chat's count moves only in a commit
            conditional on this head, which moves this sum with it).
        parked_chats: how many chats are parked (`users/{uid}/inboxChats/{chatId}`,
            ParkedChat); a chat the head does not hold may be one of them
            when this is not 0 (and only then is that collection read).

    The devices' acknowledged position is not here but in InboxAcks: an ack then
    never moves the head that every placement's commit is conditional on.
    """

    model_config = ConfigDict(extra="ignore")

    seq: int = 0
    message_id: str | None = None
    chats: dict[str, ChatInbox] = Field(default_factory=dict)
    pruned: bool = False
    parked_unread: Annotated[int, Field(ge=0)] = 0
    parked_chats: Annotated[int, Field(ge=0)] = 0
    updated_at: datetime | None = None


class ParkedChat(ChatInbox):
    """`users/{uid}/inboxChats/{chatId}`: a chat's ChatInbox parked out of the user's inbox head
    (InboxHead.parked_chats), so that the head stays bounded whatever the number of chats with
    unread messages. Created, changed and deleted only in commits conditional on the head, which
    keep `parkedUnread` the sum of these documents' `unread`. The user may read their own.

    Attributes:
        chat_id: the chat (the document's id).
        parked_at: when it was last moved out of the head.
    """

    model_config = ConfigDict(extra="ignore")

    chat_id: str
    parked_at: datetime | None = None

    def state(self) -> ChatInbox:
        """What the head holds of the chat once it is back."""
        return ChatInbox(unread=self.unread, read_up_to=self.read_up_to, last=self.last)


class InboxAcks(Document):
    """`users/{uid}/inboxHead/acks`: the furthest inbox position a device of the user
    acknowledged (ackMessages, a Firestore maximum: it never moves back, and racing acks
    need no retry); the delivery receipt of every entry up to it. Kept apart from the
    head so that acks never race deliveries for it (a busy recipient's sends stay placed
    by their own commit while their devices ack)."""

    model_config = ConfigDict(extra="ignore")

    acked_seq: Annotated[int, Field(ge=0)] = 0

    @field_validator("acked_seq", mode="before")
    @classmethod
    def _a_position(cls, value: Any) -> Any:
        # A damaged position reads as none acknowledged: receipts show sent, pushes may repeat.
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


class ReadReceipt(Document):
    """`chats/{chatId}/readReceipts/{userId}`: how far the user has read the chat.

    Attributes:
        read_up_to_message_id: the newest message read; only ever moves forward.
        read_up_to_timestamp: that message's time (from its ULID).
        read_at: when it last moved.
    """

    model_config = ConfigDict(extra="ignore")

    chat_id: str
    user_id: str
    read_up_to_message_id: str
    read_up_to_timestamp: datetime
    read_at: datetime
