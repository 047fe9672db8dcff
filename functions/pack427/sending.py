"""Accepting a message: the creation seam that stands in for the chat core.

One accepted message is, in a single atomic batch: the chat message, its
idempotency record, one queue entry per recipient (with audit events) and one
billing request. A retried send with the same clientMessageId finds the
idempotency record and gets the first result back, marked duplicate.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from google.api_core import exceptions as gexc
from google.cloud.firestore import Client
from ulid import ULID

from . import billing, chat_core, clock, constants, paths, queue
from .errors import FailedPrecondition, InvalidArgument, PermissionDenied
from .models import (
    Chat,
    ChatMessage,
    IdempotencyRecord,
    QueuedMessage,
    SendMessageRequest,
    SendMessageResult,
    TransportMetadata,
    UserProfile,
)

ACCEPTED = "QUEUED"
"""`status` of an accepted message: its queue entries are on their way."""


def send_message(
    db: Client, sender_id: str, request: SendMessageRequest, *, now: datetime | None = None
) -> SendMessageResult:
    """Accept a message from `sender_id` into the chat's delivery queues.

    Args:
        sender_id: the authenticated caller.
        request: the validated request.
        now: the acceptance time (default: the clock).

    Raises:
        NotFound: the chat does not exist.
        PermissionDenied: the sender is not a participant.
        FailedPrecondition: the chat has more than MAX_RECIPIENTS recipients.
        InvalidArgument: the clientMessageId was already used for another message.
    """
    now = now or clock.now()
    chat = chat_core.load_chat(db, request.chatId)
    if sender_id not in chat.participants:
        raise PermissionDenied(f"you are not a participant of chat {request.chatId!r}")
    recipients = [uid for uid in dict.fromkeys(chat.participants) if uid != sender_id]
    if len(recipients) > constants.MAX_RECIPIENTS:
        raise FailedPrecondition(f"chat {request.chatId!r} has more than {constants.MAX_RECIPIENTS} recipients")
    users = chat_core.load_users(db, [sender_id, *recipients])

    message_id = str(ULID.from_datetime(now))
    message = ChatMessage(
        id=message_id,
        chat_id=request.chatId,
        sender_id=sender_id,
        client_message_id=request.clientMessageId,
        text=request.text,
        content_ref=request.contentRef,
        created_at=now,
    )
    key_ref = paths.idempotency_key(db, sender_id, request.clientMessageId)
    batch = db.batch()
    batch.create(
        key_ref,
        IdempotencyRecord(
            message_id=message_id,
            chat_id=request.chatId,
            sender_id=sender_id,
            payload_hash=_payload_hash(request),
            created_at=now,
        ).to_firestore(),
    )
    batch.create(paths.chat_message(db, request.chatId, message_id), message.to_firestore())
    billing.add_billing_request(db, batch, message, chat.billing)
    for recipient_id in recipients:
        entry = _queue_entry(db, message, chat, users[sender_id], recipient_id, users[recipient_id], now)
        queue.add_enqueue(db, batch, entry, actor=f"user:{sender_id}")
    try:
        batch.commit()
    except gexc.AlreadyExists:
        return _first_result(db, sender_id, request)
    return SendMessageResult(messageId=message_id, status=ACCEPTED, duplicate=False)


def _queue_entry(
    db: Client,
    message: ChatMessage,
    chat: Chat,
    sender: UserProfile,
    recipient_id: str,
    recipient: UserProfile,
    now: datetime,
) -> QueuedMessage:
    return QueuedMessage(
        id=QueuedMessage.entry_id(message.id, recipient_id),
        message_id=message.id,
        chat_id=message.chat_id,
        sender_id=message.sender_id,
        recipient_id=recipient_id,
        region=chat_core.home_region(sender),
        target_region=chat_core.home_region(recipient),
        content_ref=message.content_ref or paths.chat_message(db, message.chat_id, message.id).path,
        text=message.text,
        next_attempt_at=now,
        billing_state=chat.billing,
        transport_metadata=TransportMetadata(
            push_tokens=[] if recipient.online else recipient.fcm_tokens,
            sender_name=sender.display_name,
        ),
        created_at=now,
        updated_at=now,
    )


def _payload_hash(request: SendMessageRequest) -> str:
    payload = {"chatId": request.chatId, "text": request.text, "contentRef": request.contentRef}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _first_result(db: Client, sender_id: str, request: SendMessageRequest) -> SendMessageResult:
    """The result of the send that first used this clientMessageId."""
    snapshot = paths.idempotency_key(db, sender_id, request.clientMessageId).get()
    record = IdempotencyRecord.model_validate(snapshot.to_dict())
    if record.payload_hash != _payload_hash(request):
        raise InvalidArgument(
            f"clientMessageId {request.clientMessageId} was already used for a different message"
        )
    return SendMessageResult(messageId=record.message_id, status=ACCEPTED, duplicate=True)
