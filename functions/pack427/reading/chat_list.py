"""The caller's chat list: newest activity first, with unread counts and receipts.

A chat appears once it has a message (its `lastMessage`, written by each
send). For a chat whose last message is the caller's, every other
participant's receipt status for it is reported: pending, sent (in their
inbox), delivered (a device acknowledged it, or a later entry of their
inbox), read, or failed. One batched read for the whole page (each
recipient's inbox entry, acknowledged position and read receipt), and a query of the
queues only for messages some recipient does not have yet.

What one call reads is bounded whatever the groups' sizes: member by member
only for chats of at most RECEIPT_DETAIL_MAX_RECIPIENTS recipients, and at
most RECEIPT_DETAIL_BUDGET recipients a page; any other chat's last message
gets a ReceiptSummary, two count aggregations (inbox entries of the message,
read receipts at or past it), which Firestore charges one read per 1,000
index entries they match. An item carries CHAT_LIST_PARTICIPANTS ids at most.
"""

from __future__ import annotations

from datetime import datetime

from google.cloud.firestore import Client, Query
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath

from .. import chat_core, constants, inbox, paths, store
from ..delivering import queue
from ..errors import InvalidArgument
from ..models import (
    Chat,
    ChatListItem,
    ChatListLastMessage,
    GetChatListRequest,
    GetChatListResult,
    LastMessage,
    QueuedMessage,
    QueueStatus,
    ReceiptStatus,
    ReceiptSummary,
)
from . import cursors, unread

CHAT_LIST_CURSOR = "chats"


def get_chat_list(db: Client, uid: str, request: GetChatListRequest) -> GetChatListResult:
    """`pack427_getChatList`: one page of the caller's chats, most recent message first."""
    query = (
        paths.chats(db)
        .where(filter=FieldFilter("participants", "array_contains", uid))
        .order_by("lastMessage.createdAt", direction=Query.DESCENDING)
        .order_by(FieldPath.document_id(), direction=Query.DESCENDING)
    )
    if request.cursor is not None:
        at, chat_id = _position(uid, request.cursor)
        query = query.start_after({"lastMessage.createdAt": at, FieldPath.document_id(): paths.chat(db, chat_id)})
    snapshots = list(query.limit(request.limit + 1).stream())
    has_more = len(snapshots) > request.limit
    chats = {s.id: chat_core.parse_chat(s.id, s.to_dict() or {}) for s in snapshots[: request.limit]}

    counts = unread.counts_of(db, uid, list(chats))
    own = {chat_id: chat for chat_id, chat in chats.items() if _last(chat).sender_id == uid and _last(chat).message_id}
    detailed = detailed_chats({chat_id: len(_recipients(chat)) for chat_id, chat in own.items()})
    statuses = _receipts(db, {chat_id: own[chat_id] for chat_id in detailed})
    summaries = {chat_id: _summary(db, chat_id, chat) for chat_id, chat in own.items() if chat_id not in detailed}
    items = [
        ChatListItem(
            chatId=chat_id,
            participants=chat.participants[:constants.CHAT_LIST_PARTICIPANTS],
            participantCount=len(chat.participants),
            lastMessage=ChatListLastMessage(
                messageId=_last(chat).message_id,
                senderId=_last(chat).sender_id,
                text=_last(chat).text,
                hasContent=_last(chat).has_content,
                createdAt=round(_last(chat).created_at.timestamp() * 1000),
            ),
            unreadCount=counts.unreadCounts.get(chat_id, 0),
            lastMessageStatus=statuses.get(chat_id),
            lastMessageReceipts=summaries.get(chat_id),
        )
        for chat_id, chat in chats.items()
    ]
    cursor = None
    if items:
        cursor = cursors.encode(CHAT_LIST_CURSOR, uid, _position_of(snapshots[len(items) - 1]))
    return GetChatListResult(chats=items, totalUnread=counts.totalUnread, hasMore=has_more, cursor=cursor)


def _last(chat: Chat) -> LastMessage:
    """The chat's last message; the chat list lists only chats that have one (its query orders by it)."""
    if chat.last_message is None:
        raise ValueError("a listed chat without lastMessage")
    return chat.last_message


def _position_of(snapshot) -> dict:
    """The listing's position at a chat: the value it is ordered by as stored (a time the engine
    wrote, or whatever a chat core left there, which Firestore orders by its type) and its id."""
    at = snapshot.get("lastMessage.createdAt")
    if isinstance(at, datetime):
        return {"at": at.isoformat(), "chatId": snapshot.id}
    return {"at": at if isinstance(at, str | int | float | bool) else str(at), "timed": False, "chatId": snapshot.id}


def _position(uid: str, cursor: str) -> tuple[object, str]:
    position = cursors.decode(CHAT_LIST_CURSOR, uid, cursor)
    try:
        at = datetime.fromisoformat(position["at"]) if position.get("timed", True) else position["at"]
        return at, str(position["chatId"])
    except (KeyError, TypeError, ValueError):
        raise InvalidArgument("cursor is not a cursor this service returned") from None


def detailed_chats(recipients: dict[str, int]) -> set[str]:
    """Of the page's chats whose last message is the caller's (chat id -> recipients, newest
    first), those whose receipts are read member by member: at most RECEIPT_DETAIL_MAX_RECIPIENTS
    recipients each, RECEIPT_DETAIL_BUDGET in all; the others get a summary."""
    chosen, budget = set(), constants.RECEIPT_DETAIL_BUDGET
    for chat_id, n in recipients.items():
        if n <= constants.RECEIPT_DETAIL_MAX_RECIPIENTS and n <= budget:
            chosen.add(chat_id)
            budget -= n
    return chosen


def _recipients(chat: Chat) -> list[str]:
    return [r for r in dict.fromkeys(chat.participants) if r != _last(chat).sender_id]


def _summary(db: Client, chat_id: str, chat: Chat) -> ReceiptSummary:
    """Counted, not read: the message's inbox entries, and the chat's read receipts at or past it
    less the sender's own (one read, to know)."""
    last = _last(chat)
    reached = (db.collection_group("inbox").where(filter=FieldFilter("chatId", "==", chat_id))
               .where(filter=FieldFilter("messageId", "==", last.message_id)))
    receipts = paths.read_receipts(db, chat_id).where(
        filter=FieldFilter("readUpToMessageId", ">=", last.message_id))
    senders = store.read(db, [paths.read_receipt(db, chat_id, last.sender_id)])
    own = inbox.receipt_position(next(iter(senders.values())))
    read = int(receipts.count().get()[0][0].value) - (own is not None and own >= last.message_id)
    return ReceiptSummary(recipients=len(_recipients(chat)), reachedInbox=int(reached.count().get()[0][0].value),
                          read=max(read, 0))


QUEUE_QUERY_IDS = 30
"""Message ids one `in` query of the queues takes (Firestore's limit for `in`)."""


def _receipts(db: Client, chats: dict[str, Chat]) -> dict[str, dict[str, ReceiptStatus]]:
    """Each other participant's status for the last message of each of `chats`."""
    wanted = {chat_id: _recipients(chat) for chat_id, chat in chats.items()}
    refs = []
    for chat_id, recipients in wanted.items():
        message_id = _last(chats[chat_id]).message_id
        for r in recipients:
            refs += [paths.inbox_entry(db, r, message_id), paths.inbox_acks(db, r), paths.read_receipt(db, chat_id, r)]
    found = store.read(db, refs)
    missing = [
        _last(chats[chat_id]).message_id
        for chat_id, recipients in wanted.items()
        if any(not found[paths.inbox_entry(db, r, _last(chats[chat_id]).message_id).path].exists
               for r in recipients)
    ]
    queued = _queue_entries(db, missing)
    statuses = {}
    for chat_id, recipients in wanted.items():
        message_id = _last(chats[chat_id]).message_id
        statuses[chat_id] = {
            r: _status(
                message_id,
                found[paths.inbox_entry(db, r, message_id).path],
                found[paths.inbox_acks(db, r).path],
                found[paths.read_receipt(db, chat_id, r).path],
                queued.get((message_id, r)),
            )
            for r in recipients
        }
    return statuses


def _queue_entries(db: Client, message_ids: list[str]) -> dict[tuple[str, str], QueuedMessage]:
    """The queue entries of `message_ids`, by (message, recipient)."""
    entries = {}
    for start in range(0, len(message_ids), QUEUE_QUERY_IDS):
        chunk = message_ids[start:start + QUEUE_QUERY_IDS]
        query = db.collection_group("messageQueue").where(filter=FieldFilter("messageId", "in", chunk))
        for loaded in queue.usable(db, query.stream(), actor="chatList"):
            entries[(loaded.entry.message_id, loaded.entry.recipient_id)] = loaded.entry
    return entries


def status_of(
    message_id: str, seq: int | None, acked_seq: int, read_up_to: str | None, entry: QueuedMessage | None
) -> ReceiptStatus:
    """How far one recipient has got with a message.

    Args:
        seq: the message's seq in the recipient's inbox (None: not there).
        acked_seq: the furthest position a device of the recipient acknowledged.
        read_up_to: the recipient's read position in the chat.
        entry: the recipient's queue entry of the message, if any.
    """
    if read_up_to is not None and read_up_to >= message_id:
        return ReceiptStatus.READ
    if seq is not None:
        return ReceiptStatus.DELIVERED if acked_seq >= seq else ReceiptStatus.SENT
    if entry is None:
        # Never queued for them (blocked in a group) or cleaned up: nothing more to say.
        return ReceiptStatus.SENT
    return ReceiptStatus.FAILED if entry.status is QueueStatus.DROPPED else ReceiptStatus.PENDING


def _status(
    message_id: str, placed: store.Read, acks: store.Read, receipt: store.Read, entry: QueuedMessage | None
) -> ReceiptStatus:
    read_up_to = inbox.receipt_position(receipt)
    acked_seq = inbox.acked_seq_of(acks)
    seq = placed.data.get("seq") if placed.exists else None
    return status_of(message_id, seq, acked_seq, read_up_to, entry)
