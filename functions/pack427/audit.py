"""The audit trail (the seed's PACK 296): every queue state change, and every refused send.

A queue entry carries its own trail: each change appends a QueueEvent to the
entry's `history` in the same conditional write as the change, so the trail
never claims a change that did not happen, nor misses one that did, and
costs no write of its own. A message the send placed in an inbox itself
never had a queue state to change: the send's idempotency record lists those
recipients (`placedBySend`), and `history` reports them as delivered by the
send; a large group's members placed by its fan-out are read from their
inbox entries (`via: "fanOut"`), by id. A send a policy refused is one `auditLog/rejected_...` document.
"""

from __future__ import annotations

from typing import Any

from google.api_core import exceptions as gexc
from google.cloud.firestore import Client
from google.cloud.firestore_v1.base_query import FieldFilter
from pydantic import ValidationError

from . import constants, inbox, paths, routing
from .models import (
    AuditEvent,
    IdempotencyRecord,
    QueuedMessage,
    QueueEvent,
    QueueStatus,
    SendRejection,
    is_document_id,
)

ENQUEUED = "ENQUEUED"
REQUEUED = "REQUEUED"
RELEASED = "RELEASED"
"""An operator put a quarantined entry back on its queue (ops.release)."""


def appended(entry: QueuedMessage, event: QueueEvent) -> list[dict[str, Any]]:
    """`entry`'s history with `event` appended, as stored."""
    return [e.to_firestore() for e in (*entry.history, event)]


def record_rejection(db: Client, rejection: SendRejection) -> None:
    """Record a send a policy refused (`auditLog/rejected_{senderId}_{clientMessageId}`).

    Written on its own (the refused send commits nothing); a retry of the
    same refused send finds the event and adds no second one.
    """
    ref = paths.audit_log(db).document(f"rejected_{rejection.sender_id}_{rejection.client_message_id}")
    try:
        ref.create(rejection.to_firestore())
    except gexc.AlreadyExists:
        pass


def history(db: Client, chat_id: str, message_id: str) -> list[AuditEvent]:
    """Every recorded change of every recipient's delivery of message `message_id` of chat
    `chat_id`, oldest first.

    Nothing here needs an index on a sequential field across the database (docs/CAPACITY.md):
    the send's record is read by its id, from the message's sender and clientMessageId; the
    members a fan-out placed, from their inbox entries, read by id (one read per participant).
    The queue entries come from the messageQueue collection-group index on messageId.
    """
    events = []
    query = db.collection_group("messageQueue").where(filter=FieldFilter("messageId", "==", message_id))
    queued: set[str] = set()
    for snapshot in query.stream():
        try:
            entry = QueuedMessage.model_validate(snapshot.to_dict())
        except ValidationError:
            continue  # quarantined at its next read by a worker (queue.usable); `ops quarantined` shows it
        if not entry.placed_by_send:
            queued.add(entry.recipient_id)
        events += [
            AuditEvent(entry_id=entry.id, message_id=message_id, region=entry.target_region,
                       **e.model_dump(by_alias=False))
            for e in entry.history
        ]
    message = paths.chat_message(db, chat_id, message_id).get().to_dict() or {}
    sender, client_message_id = message.get("senderId"), message.get("clientMessageId")
    record = (paths.idempotency_key(db, sender, client_message_id).get()
              if isinstance(sender, str) and isinstance(client_message_id, str) else None)
    by_send: set[str] = set()
    if record is not None and record.exists:
        send = IdempotencyRecord.model_validate(record.to_dict())
        by_send = set(send.placed_by_send)
        for recipient in send.placed_by_send:
            placed = inbox.entries(db, recipient, [message_id])
            events.append(AuditEvent(
                entry_id=QueuedMessage.entry_id(message_id, recipient),
                message_id=message_id,
                region=placed[0].region if placed else routing.default_region(),  # unless deleted by hand
                actor=f"user:{send.sender_id}",
                action=QueueStatus.DELIVERED.value,
                to_status=QueueStatus.DELIVERED,
                attempts=1,
                at=send.created_at,
                details={"placedBySend": True, **({"seq": placed[0].seq} if placed else {})},
            ))
    # A large group's members placed by its fan-out (see fan_out): their inbox entries say so.
    chat = paths.chat(db, chat_id).get().to_dict() or {}
    participants = [uid for uid in chat.get("participants") or [] if is_document_id(uid)]
    others = [uid for uid in participants if uid != sender and uid not in by_send | queued]
    for start in range(0, len(others), constants.HISTORY_READ_CHUNK):
        chunk = others[start:start + constants.HISTORY_READ_CHUNK]
        for uid, by_fan_out in inbox.entries_of_users(db, chunk, message_id):
            if by_fan_out.via != "fanOut":
                continue
            events.append(AuditEvent(
                entry_id=QueuedMessage.entry_id(message_id, uid),
                message_id=message_id,
                region=by_fan_out.region,
                actor="fanOut",
                action=QueueStatus.DELIVERED.value,
                to_status=QueueStatus.DELIVERED,
                attempts=1,
                at=by_fan_out.delivered_at,
                details={"placedByFanOut": True, "seq": by_fan_out.seq},
            ))
    return sorted(events, key=lambda e: (e.at, e.entry_id))

