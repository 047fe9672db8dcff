"""Accepting a message: the creation seam that stands in for the chat core.

One accepted message is, in a single atomic batch: the chat message, its
idempotency record, one queue entry per recipient (with audit events), one
billing request and the chat's `lastMessage`. A retried send with the same
clientMessageId finds the idempotency record and gets the first result back,
marked duplicate.

Message order: the batch is conditional on the chat being unchanged since it
was read, and the new id is greater than the chat's last one. Of two
concurrent sends to a chat, the second to commit therefore read the first's
id and took a greater one: within a chat, message ids increase in the order
sends were accepted, whatever the senders' clocks. Delivery and sync rely on it.

Before anything is written, a send passes, in this order: participation,
age verification and blocks (policy), the per-user rate limit (rate_limit:
its window document is written in the same batch, which is what makes the
limit exact under concurrency) and the spam/fraud hook (fraud). A refused
send writes nothing of the message and bills nothing; a retry of a send
that was already accepted still gets its first result back.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from datetime import datetime

from google.api_core import exceptions as gexc
from google.cloud.firestore import Client
from ulid import ULID

from . import billing, chat_core, clock, constants, delivery, fraud, locks, notifier, paths, policy, queue, rate_limit, settings
from .errors import Aborted, EngineError, FailedPrecondition, InvalidArgument
from .models import (
    Chat,
    ChatMessage,
    IdempotencyRecord,
    LastMessage,
    QueuedMessage,
    SendMessageRequest,
    SendMessageResult,
    SendRecord,
    TransportMetadata,
    UserProfile,
)

ACCEPTED = "QUEUED"
"""`status` of an accepted message: its queue entries are on their way."""


def send_message(
    db: Client,
    sender_id: str,
    request: SendMessageRequest,
    *,
    now: datetime | None = None,
    fraud_checker: fraud.FraudChecker | None = None,
) -> SendMessageResult:
    """Accept a message from `sender_id` into the chat's delivery queues.

    Args:
        sender_id: the authenticated caller.
        request: the validated request.
        now: the acceptance time (default: the clock).
        fraud_checker: reviews the send (default: the installed one, see fraud).

    Raises:
        NotFound: the chat does not exist.
        PermissionDenied: the sender is not a participant.
        FailedPrecondition: the sender is not age-verified 18+, a block
            stands between sender and recipient in a direct chat, the fraud
            hook refused the send (details.reason says which), or the chat
            has more than MAX_RECIPIENTS recipients.
        ResourceExhausted: the sender sent MAX_MESSAGES_PER_MINUTE messages
            in the last minute (details.retryAfterMs).
        InvalidArgument: the clientMessageId was already used for another message.
        Aborted: the chat or the sender's rate window kept changing for
            SEND_CONFLICT_RETRIES attempts.
    """
    now = now or clock.now()
    for attempt in range(constants.SEND_CONFLICT_RETRIES):
        try:
            # Sends of this instance to the chat, or by this sender, take turns (see locks).
            with locks.held(f"chat:{request.chatId}", f"user:{sender_id}"):
                loaded = policy.participant_chat(db, request.chatId, sender_id)
                result = _commit_send(db, sender_id, request, loaded, now, fraud_checker)
            return _deliver_if_direct(db, sender_id, request, result, now)
        except gexc.AlreadyExists:
            if paths.idempotency_key(db, sender_id, request.clientMessageId).get().exists:
                return _deliver_if_direct(db, sender_id, request, _first_result(db, sender_id, request), now)
            # A concurrent send took the same next id (same chat, same instant) or created the window.
        except (gexc.FailedPrecondition, gexc.Aborted):
            pass  # another send to this chat, or by this sender, committed first
        # Read again, with the winner's changes, after a random pause that grows with each conflict.
        cap = min(constants.SEND_CONFLICT_BACKOFF_CAP_SECONDS, constants.SEND_CONFLICT_BACKOFF_SECONDS * 2**attempt)
        time.sleep(random.uniform(0, cap))
    raise Aborted(f"chat {request.chatId!r} is too busy right now; retry with the same clientMessageId")


def _commit_send(
    db: Client,
    sender_id: str,
    request: SendMessageRequest,
    loaded: chat_core.LoadedChat,
    now: datetime,
    fraud_checker: fraud.FraudChecker | None,
) -> SendMessageResult:
    chat = loaded.chat
    recipients = [uid for uid in dict.fromkeys(chat.participants) if uid != sender_id]
    if len(recipients) > constants.MAX_RECIPIENTS:
        raise FailedPrecondition(f"chat {request.chatId!r} has more than {constants.MAX_RECIPIENTS} recipients")
    # The sender's rate window comes in the same round trip as the profiles: one fewer on the request path.
    window_ref = paths.rate_window(db, sender_id)
    users, others = chat_core.load_users_with(db, [sender_id, *recipients], [window_ref])
    window = rate_limit.from_snapshot(db, sender_id, others[window_ref.path], now=now)
    try:
        recipients, record = _admit(db, sender_id, request, recipients, users, window, now, fraud_checker)
    except EngineError:
        # A retry of a send that was accepted before (then allowed) gets its result, not the refusal.
        if paths.idempotency_key(db, sender_id, request.clientMessageId).get().exists:
            return _first_result(db, sender_id, request)
        raise

    message_id = next_message_id(chat, now)
    message = ChatMessage(
        id=message_id,
        chat_id=request.chatId,
        sender_id=sender_id,
        sender_name=users[sender_id].display_name,
        client_message_id=request.clientMessageId,
        text=request.text,
        content_ref=request.contentRef,
        created_at=now,
    )
    batch = db.batch()
    batch.create(
        paths.idempotency_key(db, sender_id, request.clientMessageId),
        IdempotencyRecord(
            message_id=message_id,
            chat_id=request.chatId,
            sender_id=sender_id,
            payload_hash=_payload_hash(request),
            created_at=now,
        ).to_firestore(),
    )
    batch.create(paths.chat_message(db, request.chatId, message_id), message.to_firestore())
    batch.update(
        paths.chat(db, request.chatId),
        {"lastMessage": _last_message(message).to_firestore()},
        option=db.write_option(last_update_time=loaded.update_time),
    )
    billing.add_billing_request(db, batch, message, chat.billing)
    for recipient_id in recipients:
        entry = _queue_entry(db, message, chat, users[sender_id], recipient_id, users[recipient_id], now)
        queue.add_enqueue(db, batch, entry, actor=f"user:{sender_id}")
    rate_limit.add_send(db, batch, window, record)
    batch.commit()
    return SendMessageResult(messageId=message_id, status=ACCEPTED, duplicate=False)


def _admit(
    db: Client,
    sender_id: str,
    request: SendMessageRequest,
    recipients: list[str],
    users: dict[str, UserProfile],
    window: rate_limit.LoadedWindow,
    now: datetime,
    fraud_checker: fraud.FraudChecker | None,
) -> tuple[list[str], SendRecord]:
    """The policy checks of a send, in order; the recipients after blocks and
    the send's record for the sender's rate window. Raises EngineError."""
    policy.require_adult(users[sender_id])
    recipients = policy.deliverable_recipients(sender_id, recipients, users)
    rate_limit.check(window, now=now)
    record = SendRecord(
        at=now, chat_id=request.chatId, content_hash=rate_limit.content_hash(request.text, request.contentRef)
    )
    fraud.screen(
        db,
        fraud.SendAttempt(
            sender_id=sender_id,
            chat_id=request.chatId,
            client_message_id=request.clientMessageId,
            text=request.text,
            content_ref=request.contentRef,
            content_hash=record.content_hash,
            recipients=recipients,
            recent=window.recent,
            now=now,
        ),
        fraud_checker,
    )
    return recipients, record


def next_message_id(chat: Chat, now: datetime) -> str:
    """A ULID of `now`, or the successor of the chat's last id if that is not greater."""
    candidate = ULID.from_datetime(now)
    if chat.last_message is not None:
        last = ULID.from_str(chat.last_message.message_id)
        if int(candidate) <= int(last):
            candidate = ULID.from_int(int(last) + 1)
    return str(candidate)


def content_ref(db: Client, message: ChatMessage) -> str:
    """The message's contentRef, or the chat message's own path for a text message."""
    return message.content_ref or paths.chat_message(db, message.chat_id, message.id).path


def _last_message(message: ChatMessage) -> LastMessage:
    text = message.text[: constants.LAST_MESSAGE_PREVIEW_LENGTH] if message.text is not None else None
    return LastMessage(
        message_id=message.id,
        sender_id=message.sender_id,
        text=text,
        has_content=message.content_ref is not None,
        created_at=message.created_at,
    )


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
        content_ref=content_ref(db, message),
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


def _deliver_if_direct(
    db: Client, sender_id: str, request: SendMessageRequest, result: SendMessageResult, now: datetime
) -> SendMessageResult:
    """Under the rollback switch (mode direct), deliver the accepted message in this request.

    The queue entries were written as always, so nothing is lost and metrics
    count them; delivery goes through the trigger's own code. A retried send
    (duplicate) delivers too: the first request may have died before it did.
    """
    if settings.direct_delivery(db):
        delivery.deliver_now(db, request.chatId, result.messageId, sender_id, notifier.default_notifier(), now=now)
    return result
