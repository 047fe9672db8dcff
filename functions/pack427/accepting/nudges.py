"""System nudges (the seed's PACK 301/301B retention): the engine's own messages to a user.

Backend code of the same project (a win-back campaign, a retention job) calls

    nudges.send_nudge(db, uid, key="winback-2026-11-user123", text="We miss you!")

and the message goes to the user through the same queue and delivery as
any other: a queue entry awaiting the inbox, delivered by the trigger (or the
processor), pushed if the user is offline, counted unread, returned by sync.
It lives in the user's own nudge chat (`chats/nudges_{uid}`, the user its
only participant, created on the first nudge), so it has the per-chat order
and unread count of any chat, and marks itself everywhere an app looks:
`systemNudge` on the message, the inbox entry and what sync returns.

What makes it different from a user's message:
- idempotent by the `key` the caller gives (`idempotencyKeys/system_{key}`):
  the same key again returns the first message (`duplicate: true`), the same
  key with other content is InvalidArgument;
- not rate-limited, not screened by the spam or admission hooks (the engine
  itself is the sender), and never billed: its `billingState` is empty and
  `systemNudge` tells the billing system to skip it;
- no client can send one: there is no callable for it, and
  pack427_sendMessage refuses a `systemNudge` field (invalid-argument, as
  any unknown field).

An operator sends one with `scripts/ops nudge USER KEY TEXT`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from google.api_core import exceptions as gexc
from google.cloud.firestore import Client

from .. import chat_core, clock, constants, paths, routing, store
from ..delivering import placing, queue
from ..errors import Aborted, InvalidArgument
from ..models import (
    Chat,
    ChatMessage,
    DocumentIdError,
    IdempotencyRecord,
    SendMessageResult,
    check_document_id,
)
from . import send_plan, sending

SENDER = "system"
"""The sender id of every nudge; never a user id (the idempotency records of users are `{uid}_{ULID}`)."""
SENDER_NAME = "System"


def chat_id_for(uid: str) -> str:
    """The user's nudge chat."""
    return f"nudges_{uid}"


def send_nudge(
    db: Client,
    uid: str,
    *,
    key: str,
    text: str,
    content_ref: str | None = None,
    now: datetime | None = None,
) -> SendMessageResult:
    """Send the user a nudge through the queue; idempotent by `key`.

    Args:
        uid: the user.
        key: the caller's idempotency key (a valid document id, at most 128 characters).
        text: what the nudge says (1 to MAX_TEXT_LENGTH characters).
        content_ref: a reference to content stored elsewhere (optional).
        now: the acceptance time (default: the clock).

    Raises:
        InvalidArgument: a bad key or text, or the key was used for another nudge.
        Aborted: the nudge chat kept changing (a flood of nudges to one user); retry with the same key.
    """
    _check(uid, key, text)
    now = now or clock.now()
    payload = hashlib.sha256(json.dumps({"uid": uid, "text": text, "contentRef": content_ref},
                                        sort_keys=True).encode()).hexdigest()
    record_ref = paths.idempotency_key(db, SENDER, key)
    chat_ref = paths.chat(db, chat_id_for(uid))

    def attempt(_: int) -> SendMessageResult:
        found = store.read(db, [record_ref, chat_ref, paths.user(db, uid)])
        first = found[record_ref.path]
        if first.exists:
            return _first_result(IdempotencyRecord.model_validate(first.data), payload, key)
        chat_doc = found[chat_ref.path]
        chat = chat_core.parse_chat(chat_ref.id, chat_doc.data) if chat_doc.exists else Chat(participants=[uid])
        profile = chat_core.profile_of(found[paths.user(db, uid).path])
        message_id = send_plan.next_message_id(chat, now)
        message = ChatMessage(id=message_id, chat_id=chat_ref.id, sender_id=SENDER, sender_name=SENDER_NAME,
                              client_message_id=key, text=text, content_ref=content_ref, system_nudge=True,
                              intake="nudge", created_at=now)
        # A nudge starts where it ends: the engine has no home region of its own.
        entry = placing.queue_entry(db, message, uid, profile, origin=routing.home_region(uid, profile))
        batch = db.batch()
        batch.create(record_ref, IdempotencyRecord(message_id=message_id, chat_id=chat_ref.id, sender_id=SENDER,
                                                   payload_hash=payload, created_at=now).to_firestore())
        batch.create(paths.chat_message(db, chat_ref.id, message_id), message.to_firestore())
        chat_fields = {"lastMessage": send_plan.last_message(message).to_firestore(), "deliveryQueued": True}
        if chat_doc.exists:
            store.update_if_unchanged(db, batch, chat_ref, chat_doc.time, chat_fields)
        else:
            batch.create(chat_ref, {"participants": [uid], "system": True, **chat_fields})
        queue.add_enqueue(db, batch, entry, actor=SENDER)
        try:
            batch.commit()
        except gexc.AlreadyExists:
            raise store.Conflict("a concurrent nudge created the record, the chat or the message first") from None
        except (gexc.FailedPrecondition, gexc.Aborted):
            raise store.Conflict("the nudge chat changed") from None
        return SendMessageResult(messageId=message_id, status=sending.ACCEPTED, duplicate=False)

    return store.retry_on_conflict(
        attempt, attempts=constants.SEND_CONFLICT_RETRIES, pause_s=constants.SEND_CONFLICT_BACKOFF_SECONDS,
        pause_cap_s=constants.SEND_CONFLICT_BACKOFF_CAP_SECONDS,
        give_up=lambda: Aborted(f"the nudges of {uid!r} are changing too fast; retry with the same key"),
    )


def _check(uid: str, key: str, text: str) -> None:
    for name, value in (("uid", uid), ("key", key)):
        try:
            check_document_id(value)
        except DocumentIdError as err:
            raise InvalidArgument(f"{name}: {err}") from None
    if not isinstance(text, str) or not text.strip() or len(text) > constants.MAX_TEXT_LENGTH:
        raise InvalidArgument(f"text: must be 1 to {constants.MAX_TEXT_LENGTH} characters, not blank")


def _first_result(record: IdempotencyRecord, payload: str, key: str) -> SendMessageResult:
    if record.payload_hash != payload:
        raise InvalidArgument(f"key {key!r} was already used for a different nudge")
    return SendMessageResult(messageId=record.message_id, status=sending.ACCEPTED, duplicate=True)
