"""The caller's chat list: newest activity first, with unread counts and receipts.

A chat appears once it has a message (its `lastMessage`, written by each
send). For a chat whose last message is the caller's, every other
participant's receipt status for it is reported: pending, sent (in their
inbox), delivered (a device acknowledged it), read, or failed.
"""

from __future__ import annotations

from datetime import datetime

from google.cloud.firestore import Client, Query
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath

from . import cursors, paths, unread
from .errors import InvalidArgument
from .models import (
    Chat,
    ChatListItem,
    ChatListLastMessage,
    GetChatListRequest,
    GetChatListResult,
    QueuedMessage,
    QueueStatus,
    ReadReceipt,
    ReceiptStatus,
)

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
    chats = {s.id: Chat.model_validate(s.to_dict()) for s in snapshots[: request.limit]}

    counts = unread.unread_counts(db, uid)
    items = [
        ChatListItem(
            chatId=chat_id,
            participants=chat.participants,
            lastMessage=ChatListLastMessage(
                messageId=chat.last_message.message_id,
                senderId=chat.last_message.sender_id,
                text=chat.last_message.text,
                hasContent=chat.last_message.has_content,
                createdAt=round(chat.last_message.created_at.timestamp() * 1000),
            ),
            unreadCount=counts.unreadCounts.get(chat_id, 0),
            lastMessageStatus=_receipts(db, chat_id, chat) if chat.last_message.sender_id == uid else None,
        )
        for chat_id, chat in chats.items()
    ]
    cursor = None
    if items:
        last_id, last = next(reversed(chats.items()))
        cursor = cursors.encode(
            CHAT_LIST_CURSOR, uid, {"at": last.last_message.created_at.isoformat(), "chatId": last_id}
        )
    return GetChatListResult(chats=items, totalUnread=counts.totalUnread, hasMore=has_more, cursor=cursor)


def _position(uid: str, cursor: str) -> tuple[datetime, str]:
    position = cursors.decode(CHAT_LIST_CURSOR, uid, cursor)
    try:
        return datetime.fromisoformat(position["at"]), str(position["chatId"])
    except (KeyError, TypeError, ValueError):
        raise InvalidArgument("cursor is not a cursor this service returned") from None


def _receipts(db: Client, chat_id: str, chat: Chat) -> dict[str, ReceiptStatus]:
    """Each other participant's status for the chat's last message (one query, one batched read)."""
    message_id = chat.last_message.message_id
    recipients = [uid for uid in dict.fromkeys(chat.participants) if uid != chat.last_message.sender_id]
    entries = {
        e.recipient_id: e
        for e in (
            QueuedMessage.model_validate(s.to_dict())
            for s in db.collection_group("messageQueue")
            .where(filter=FieldFilter("messageId", "==", message_id))
            .stream()
        )
    }
    receipts = db.get_all([paths.read_receipt(db, chat_id, uid) for uid in recipients])
    read_up_to = {
        s.id: ReadReceipt.model_validate(s.to_dict()).read_up_to_message_id for s in receipts if s.exists
    }
    # A message dropped because its push kept failing is in the inbox all the same.
    dropped = [paths.inbox_entry(db, e.recipient_id, message_id) for e in entries.values() if e.status is QueueStatus.DROPPED]
    placed = {s.reference.parent.parent.id for s in db.get_all(dropped) if s.exists} if dropped else set()
    return {uid: _status(entries.get(uid), uid in placed, read_up_to.get(uid), message_id) for uid in recipients}


def _status(entry: QueuedMessage | None, placed: bool, read_up_to: str | None, message_id: str) -> ReceiptStatus:
    if read_up_to is not None and read_up_to >= message_id:
        return ReceiptStatus.READ
    if entry is None:
        # Delivered entries are removed after DELIVERED_RETENTION_DAYS; only those go missing.
        return ReceiptStatus.SENT
    if entry.acked_at is not None:
        return ReceiptStatus.DELIVERED
    if entry.status is QueueStatus.DROPPED:
        return ReceiptStatus.SENT if placed else ReceiptStatus.FAILED
    return ReceiptStatus.PENDING if entry.awaiting_inbox else ReceiptStatus.SENT
