"""Chat-core mode: the chat core creates each message itself; a trigger takes it into delivery.

The seed's engine "uses existing chat collections and message creation
logic". In this mode (`PACK427_MESSAGE_SOURCE=chatCore` in `functions/.env`,
which deploys `pack427_onChatCoreMessage`, see README) the chat core writes
`chats/{chatId}/messages/{messageId}` with at least `senderId` and `text`
and/or `contentRef` (optionally `senderName`, `createdAt`), and the trigger
accepts it for delivery: it adds the engine's message fields (ChatMessage:
`id`, `chatId`, `createdAt`, `intake: "chatCore"`, the chat's `billingState`
unless the core set one...) and creates its fan-out job (fan_out),
conditional on the message and the chat as read, in one commit.
Delivery, unread counts, sync and pushes are then those of any message.

- Exactly once under duplicated events: a message with an `intake` is never
  taken again (the engine's own sends carry `intake: "send"`), and the mark
  and the job are one conditional commit.
- Per-chat order follows the chat core's message ids, which must sort in the
  chat's order (ULIDs, as `send_plan.next_message_id` makes), messages of a
  chat being created one after another. A trigger that runs before an older
  message's own takes that one first: the messages of the chat newer than
  the last one taken (`lastMessage`) and older than its own, oldest first,
  up to CATCH_UP of them. One created later with an older id (or beyond
  CATCH_UP such) is delivered late, after the newer ones, never lost.
  Each commit is sized by its writes and bytes (store.fitting: a message of
  a 10,000-member group takes its job and parts, about 5 MB with long ids):
  the oldest messages that fit are taken first, in one commit, and the
  rest, its own message last, in the commits that follow.
- Blocks and 18+: a sender who is not a participant or not verified 18+, and
  a document that is not a message (no senderId, no content), is refused:
  the message is marked `intake: "refused"` with `intakeRefusal` and
  nothing is delivered; a blocked recipient gets nothing (fan_out).
- Billing: the chat core's message document stays the message's one billing
  request; the engine writes none.
- Nothing depends on one trigger run: a message whose trigger failed (aborted,
  a transient error, a crash) is taken by the next message's trigger, or by
  the processor's sweep (`sweep`, every run): the chat core's messages older
  than SWEEP_LAG_SECONDS and not taken yet, by `createdAt`, in chat order
  (`take`), each pass bounded, exactly once like any take.
Rate limits and the spam and admission hooks are the chat core's business in
this mode: it decided to create the message before the engine saw it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from firebase_functions import logger
from google.cloud.firestore import Client, WriteBatch
from google.cloud.firestore_v1 import DocumentSnapshot
from google.cloud.firestore_v1.base_query import FieldFilter
from pydantic import ValidationError

from .. import audit, chat_core, clock, constants, paths, routing, store
from ..delivering import fan_out
from ..errors import Aborted, EngineError
from ..guarding import admission, policy
from ..models import Chat, ChatMessage, SendRejection, UserProfile, is_document_id
from . import send_plan

INTAKE = "chatCore"
REFUSED = "refused"
CATCH_UP = 50
"""Older messages not yet taken that one trigger takes before its own."""

SWEEP_FIELD_OVERRIDES: list[dict] = [{
    "collectionGroup": "messages", "fieldPath": "createdAt", "indexes": [
        {"order": "ASCENDING", "queryScope": "COLLECTION"},  # a chat's own, as Firestore makes by default
        {"order": "DESCENDING", "queryScope": "COLLECTION"},
        {"arrayConfig": "CONTAINS", "queryScope": "COLLECTION"},
        {"order": "ASCENDING", "queryScope": "COLLECTION_GROUP"},  # the sweep's, across every chat
    ],
}]
"""The index the sweep needs, deployed only in chat-core mode (scripts/deploy adds it to
firestore.indexes.json when the functions have pack427_onChatCoreMessage). Its collection-group
entries are the messages' creation times across every chat: a sequential index that caps message
creation at about 500 a second for the whole database (docs/CAPACITY.md), which engine mode
does not pay."""

SWEEP_LAG_SECONDS = 60
"""A message younger than this is left to its own trigger by the sweep."""
SWEEP_BATCH = 200
"""Messages one sweep query reads (it reads only their `intake` and `createdAt`)."""
SWEEP_START_HOURS = 24
"""How far back the first sweep of a project starts."""
SWEEP_BUDGET_SECONDS = 10
"""Of a processor run, the time the sweep may take before the queues' drain."""


def enabled() -> bool:
    """Whether this deployment is in chat-core mode (`PACK427_MESSAGE_SOURCE=chatCore`, see main)."""
    return os.environ.get("PACK427_MESSAGE_SOURCE") == INTAKE


@dataclass(frozen=True)
class Taken:
    """What one intake did: the ids it accepted for delivery and the ids it refused (with reasons)."""

    accepted: list[str]
    refused: dict[str, str]


def on_created(db: Client, snapshot: DocumentSnapshot | None) -> Taken:
    """The trigger of a new chat message (chat-core mode)."""
    if snapshot is None or not snapshot.exists:
        return Taken([], {})
    return take(db, snapshot.reference.parent.parent.id, snapshot.id)


def take(db: Client, chat_id: str, message_id: str, *, now: datetime | None = None) -> Taken:
    """Accept for delivery the chat core's message `message_id`, and the older ones of its chat not yet taken.

    Idempotent: a message already taken (or refused, or sent by the engine) is left alone.

    Args:
        now: the intake's time (default: the clock).

    Raises:
        Aborted: the chat kept changing for SEND_CONFLICT_RETRIES attempts
            (the trigger's retry, or the next message's, takes it).
    """
    chat_ref, message_ref = paths.chat(db, chat_id), paths.chat_message(db, chat_id, message_id)

    def attempt(_: int) -> tuple[Taken, bool]:
        """What one commit took, and whether the own message is done (taken, refused, or not to take)."""
        found = store.read(db, [chat_ref, message_ref])
        own = found[message_ref.path]
        if not own.exists or own.data.get("intake"):
            return Taken([], {}), True
        try:
            loaded = chat_core.chat_of(chat_id, found[chat_ref.path])
        except EngineError as err:
            logger.error(f"chat-core message {message_ref.path} has no usable chat: {err}")
            return Taken([], {}), True
        chat = loaded.chat
        last = chat.last_message.message_id if chat.last_message else None
        docs = [*_older_not_taken(db, chat_id, after=last, before=message_id), own]
        sender_ids = [d.data["senderId"] for d in docs if is_document_id(d.data.get("senderId"))]
        senders = chat_core.load_users(db, sender_ids)
        costs = [_take_cost(db, doc, chat, senders) for doc in docs]
        docs = docs[:store.fitting(costs, reserve=store.Cost.of_write(chat_ref.path, CHAT_UPDATE_ALLOWANCE))]
        batch = db.batch()
        taken, newest = _add_takes(db, batch, docs, chat, senders)
        fields: dict = {"fanOutPending": True, "deliveryQueued": True} if taken.accepted else {}
        if newest is not None and (last is None or newest.id > last):
            fields["lastMessage"] = send_plan.last_message(newest).to_firestore()
        if fields:
            store.update_if_unchanged(db, batch, chat_ref, loaded.update_time, fields)
        store.commit(batch)
        for doc in docs:
            if doc.ref.id in taken.refused:
                _audit_refusal(db, chat_id, doc, taken.refused[doc.ref.id], now or clock.now())
        return taken, docs[-1].ref.id == message_id

    result = Taken([], {})
    while True:  # one commit, or more when the messages' jobs take more than one commit holds
        taken, done = store.retry_on_conflict(
            attempt, attempts=constants.SEND_CONFLICT_RETRIES, pause_s=constants.SEND_CONFLICT_BACKOFF_SECONDS,
            pause_cap_s=constants.SEND_CONFLICT_BACKOFF_CAP_SECONDS,
            give_up=lambda: Aborted(f"chat {chat_id!r} kept changing while its message {message_id} was taken"),
        )
        result.accepted.extend(taken.accepted)
        result.refused.update(taken.refused)
        if done:
            return result


CHAT_UPDATE_ALLOWANCE = {"lastMessage": "x" * 20_000, "fanOutPending": True, "deliveryQueued": True}
"""What a take's update of the chat may write, at most (its lastMessage holds the text): for its size."""


def _take_cost(db: Client, doc: store.Read, chat: Chat, senders: dict[str, UserProfile]) -> store.Cost:
    """What `_add_takes` writes for `doc` (store.fitting): its mark, and if accepted its fan-out job."""
    found = _message_of(doc, chat.participants, senders)
    if isinstance(found, str):
        return store.Cost.of_write(doc.ref.path, {"intake": REFUSED, "intakeRefusal": found})
    recipients = [uid for uid in dict.fromkeys(chat.participants) if uid != found.sender_id]
    origin = routing.home_region(found.sender_id, senders[found.sender_id])
    return (store.Cost.of_write(doc.ref.path, found.to_firestore())
            + fan_out.job_cost(db, found, recipients, origin=origin))


def _add_takes(
    db: Client, batch: WriteBatch, docs: list[store.Read], chat: Chat, senders: dict[str, UserProfile]
) -> tuple[Taken, ChatMessage | None]:
    """Add to `batch`, for each of `docs` (oldest first), its mark (conditional on the
    document as read) and, if accepted, its fan-out job.

    Args:
        senders: the profiles of the documents' senders.

    Returns:
        What was taken, and the newest message accepted (None if none was).
    """
    taken = Taken([], {})
    newest: ChatMessage | None = None
    for doc in docs:
        found = _message_of(doc, chat.participants, senders)
        if isinstance(found, str):
            taken.refused[doc.ref.id] = found
            store.update_if_unchanged(db, batch, doc.ref, doc.time, {"intake": REFUSED, "intakeRefusal": found})
            continue
        message = found.model_copy(update={"billing_state": doc.data.get("billingState") or chat.billing,
                                           "priority": admission.billing_priority(chat.billing)})
        # The engine's message fields (the same values where the core set them): resync and ops read it as any.
        store.update_if_unchanged(db, batch, doc.ref, doc.time, message.to_firestore())
        recipients = [uid for uid in dict.fromkeys(chat.participants) if uid != message.sender_id]
        fan_out.add_job(db, batch, message, recipients,
                        origin=routing.home_region(message.sender_id, senders[message.sender_id]))
        taken.accepted.append(message.id)
        newest = message if newest is None or message.id > newest.id else newest
    return taken, newest


def _older_not_taken(db: Client, chat_id: str, *, after: str | None, before: str) -> list[store.Read]:
    """Messages of the chat with ids between `after` and `before` (both excluded) that have no intake, oldest first."""
    query = paths.chat_messages(db, chat_id).where(
        filter=FieldFilter("__name__", "<", paths.chat_message(db, chat_id, before)))
    if after is not None:
        query = query.where(filter=FieldFilter("__name__", ">", paths.chat_message(db, chat_id, after)))
    found = [store.Read.of(s) for s in query.order_by("__name__").limit(CATCH_UP).stream()]
    return [doc for doc in found if not doc.data.get("intake")]


def _message_of(doc: store.Read, participants: list[str], senders: dict[str, UserProfile]) -> ChatMessage | str:
    """The chat core's message as the engine delivers it, or the reason it is refused."""
    data = doc.data
    sender_id = data.get("senderId")
    if not is_document_id(sender_id) or sender_id not in participants:
        return "sender_not_participant"
    try:
        policy.require_adult(senders[sender_id])
    except EngineError:
        return policy.AGE_VERIFICATION_REQUIRED
    text, content_ref = data.get("text"), data.get("contentRef")
    stated = data.get("createdAt")
    created_at = stated if isinstance(stated, datetime) else doc.time
    try:
        message = ChatMessage(
            id=doc.ref.id, chat_id=doc.ref.parent.parent.id, sender_id=sender_id, client_message_id=doc.ref.id,
            sender_name=data.get("senderName") if isinstance(data.get("senderName"), str) else None,
            text=text, content_ref=content_ref, intake=INTAKE, created_at=created_at,
        )
    except ValidationError:
        return "invalid_message"
    has_text = isinstance(text, str) and 0 < len(text) <= constants.MAX_TEXT_LENGTH
    has_content = isinstance(content_ref, str) and 0 < len(content_ref) <= constants.MAX_CONTENT_REF_LENGTH
    if (text is not None and not has_text) or (content_ref is not None and not has_content) or not (
            has_text or has_content):
        return "invalid_message"
    return message


def _audit_refusal(db: Client, chat_id: str, doc: store.Read, reason: str, now: datetime) -> None:
    stated = doc.data.get("senderId")
    sender_id = stated if isinstance(stated, str) and is_document_id(stated) else "unknown"
    audit.record_rejection(db, SendRejection(
        actor=INTAKE, sender_id=sender_id, chat_id=chat_id, client_message_id=doc.ref.id, reason=reason,
        rule=INTAKE, at=now))
    logger.warn(f"chat-core message {doc.ref.path} refused: {reason}", event="SEND_REJECTED", chatId=chat_id,
                reason=reason, rule=INTAKE)


def sweep(db: Client, *, now: datetime | None = None, budget_s: float = SWEEP_BUDGET_SECONDS) -> int:
    """Take the chat core's messages whose trigger did not (chat-core mode; nothing otherwise).

    Reads the messages created since the last sweep (`config/intakeSweep`) and up to
    SWEEP_LAG_SECONDS ago, SWEEP_BATCH at a time by `createdAt`, and `take`s each not yet taken
    (with the older ones of its chat: chat order). The position moves past a message only once it
    is taken; one that fails again stops the pass there (logged), for the next run. A message
    without `createdAt` is invisible to the sweep: the chat core should set it (a server timestamp).

    Returns:
        Messages taken (accepted or refused).
    """
    if not enabled():
        return 0
    now = now or clock.now()
    state_ref = paths.intake_sweep(db)
    state = store.Read.of(state_ref.get())
    through = state.data.get("through")
    if not isinstance(through, datetime):
        through = now - timedelta(hours=SWEEP_START_HOURS)
    until, deadline, handled = now - timedelta(seconds=SWEEP_LAG_SECONDS), time.monotonic() + budget_s, 0
    after_path = state.data.get("throughPath") if isinstance(state.data.get("throughPath"), str) else None
    while time.monotonic() < deadline:
        query = (db.collection_group("messages").where(filter=FieldFilter("createdAt", ">=", through))
                 .where(filter=FieldFilter("createdAt", "<=", until)).order_by("createdAt").order_by("__name__"))
        if after_path is not None:
            query = query.start_after({"createdAt": through, "__name__": db.document(after_path)})
        page = list(query.select(["intake", "createdAt"]).limit(SWEEP_BATCH).stream())
        for snapshot in page:
            if not (snapshot.to_dict() or {}).get("intake"):
                try:
                    taken = take(db, snapshot.reference.parent.parent.id, snapshot.id)
                except Exception as err:  # noqa: BLE001 - the next run goes on from here
                    logger.error(f"sweep: chat-core message {snapshot.reference.path} could not be taken: {err!r}")
                    _record(db, state_ref, through, after_path)
                    return handled
                handled += len(taken.accepted) + len(taken.refused)
            through, after_path = snapshot.get("createdAt"), snapshot.reference.path
        if len(page) < SWEEP_BATCH:
            break
    _record(db, state_ref, through, after_path)
    if handled:
        logger.warn(f"sweep took {handled} chat-core messages that their triggers had not", taken=handled)
    return handled


def _record(db: Client, state_ref, through: datetime, after_path: str | None) -> None:
    state_ref.set({"through": through, "throughPath": after_path, "updatedAt": clock.now()})
