"""What delivering one accepted message to one recipient writes.

Three writers deliver without going through a queue worker: the send's own
commit (sending), a fan-out chunk (fan_out) and a nudge (nudges, which
always queues). They build the same documents here, so that a message looks
the same in an inbox and a queue whichever path it took:

- `inbox_entry`: the recipient's inbox entry, numbered later by inbox.placed;
- `add_placed`: that entry and the head's move, conditional on the head as
  read, with a queue entry carrying only the push if the recipient is offline;
- `queue_entry`: the queue entry that takes the message to the recipient's
  inbox later (awaiting the inbox), for a worker to deliver in chat order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from google.cloud.firestore import Client, WriteBatch

from .. import inbox, paths, routing, store
from ..models import ChatMessage, InboxEntry, QueuedMessage, Region, TransportMetadata, UserProfile
from . import queue


def content_ref(db: Client, message: ChatMessage) -> str:
    """The message's contentRef, or the chat message's own path for a text message."""
    return message.content_ref or paths.chat_message(db, message.chat_id, message.id).path


def push_tokens(recipient: UserProfile) -> list[str]:
    """Where to push the message: the recipient's devices if they are offline, else nowhere."""
    return [] if recipient.online else recipient.fcm_tokens


def queue_entry(
    db: Client, message: ChatMessage, recipient_id: str, recipient: UserProfile, *, origin: Region,
    behind_queue: bool = True,
) -> QueuedMessage:
    """The queue entry taking `message` to one recipient, awaiting the inbox.

    Args:
        message: the accepted message; its `createdAt` is the entry's, its
            sender name and billing state travel with the entry.
        recipient_id: whose inbox it goes to.
        recipient: their profile as read (home region, presence, push tokens).
        origin: the sender's home region.
        behind_queue: an older message of the chat may still wait in a queue
            (default: the writer does not know that none does).
    """
    return QueuedMessage(
        id=QueuedMessage.entry_id(message.id, recipient_id),
        message_id=message.id,
        chat_id=message.chat_id,
        sender_id=message.sender_id,
        recipient_id=recipient_id,
        region=origin,
        target_region=routing.home_region(recipient_id, recipient),
        content_ref=content_ref(db, message),
        text=message.text,
        next_attempt_at=message.created_at,
        billing_state=message.billing_state,
        transport_metadata=TransportMetadata(push_tokens=push_tokens(recipient), sender_name=message.sender_name),
        system_nudge=message.system_nudge,
        priority=message.priority,
        behind_queue=behind_queue,
        created_at=message.created_at,
        updated_at=message.created_at,
    )


def inbox_entry(
    db: Client, message: ChatMessage, recipient_id: str, recipient: UserProfile, *, via: str, now: datetime
) -> InboxEntry:
    """The recipient's inbox entry for `message`, delivered at `now` (numbered by inbox.placed).

    Args:
        via: which writer places it (`send`, `fanOut`), see InboxEntry.
    """
    return InboxEntry(
        seq=0,
        message_id=message.id,
        chat_id=message.chat_id,
        sender_id=message.sender_id,
        sender_name=message.sender_name,
        text=message.text,
        content_ref=content_ref(db, message),
        region=routing.home_region(recipient_id, recipient),
        via=via,
        system_nudge=message.system_nudge,
        created_at=message.created_at,
        delivered_at=now,
    )


@dataclass(frozen=True)
class Placement:
    """What placing one message in one recipient's inbox writes (`add_placement`), decided on their
    head as read: the entry numbered, the head's move (and the chats it parks), the push entry."""

    head: inbox.Head
    moved: inbox.Moved
    numbered: list[InboxEntry]
    push: QueuedMessage | None

    def cost(self, db: Client) -> store.Cost:
        """What its writes add to a commit (store.commits)."""
        cost = inbox.placement_cost(self.head.uid, self.moved, self.numbered)
        return cost + queue.entry_cost(db, self.push) if self.push is not None else cost


def placement(
    db: Client,
    message: ChatMessage,
    head: inbox.Head,
    recipient: UserProfile,
    *,
    origin: Region,
    via: str,
    now: datetime,
) -> Placement:
    """The message's placement in `head`'s owner's inbox (see add_placed for the arguments)."""
    entry = inbox_entry(db, message, head.uid, recipient, via=via, now=now)
    moved, numbered = inbox.placed(head.state, head.uid, [entry], now=now)
    push = None
    if push_tokens(recipient):
        push = queue_entry(db, message, head.uid, recipient, origin=origin)
        push = push.model_copy(update={"awaiting_inbox": False, "inbox_seq": numbered[0].seq, "placed_by_send": True})
    return Placement(head, moved, numbered, push)


def add_placement(db: Client, batch: WriteBatch, placed: Placement, *, actor: str) -> None:
    """Add `placed`'s writes to `batch` (the head's move conditional on the head as read)."""
    inbox.add_placement(db, batch, placed.head, placed.moved, placed.numbered)
    if placed.push is not None:
        queue.add_enqueue(db, batch, placed.push, actor=actor)


def add_placed(
    db: Client,
    batch: WriteBatch,
    message: ChatMessage,
    head: inbox.Head,
    recipient: UserProfile,
    *,
    origin: Region,
    via: str,
    actor: str,
    now: datetime,
) -> None:
    """Add to `batch` the message's inbox entry for `head`'s owner and the head's move
    (conditional on the head as read; with the chats it parks, inbox.bounded), and, if the
    recipient is offline with devices, a queue entry that carries only the push (its trigger
    sends it, with retries).

    Args:
        head: the recipient's inbox head as read; its chats must not need a
            lookup (inbox.needs_lookup).
        recipient: their profile as read.
        origin: the sender's home region.
        via: recorded on the inbox entry (`send`, `fanOut`).
        actor: recorded in the push entry's history.
        now: the delivery's time (the send's: the message's creation).
    """
    add_placement(db, batch, placement(db, message, head, recipient, origin=origin, via=via, now=now), actor=actor)
