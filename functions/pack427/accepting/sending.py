"""Accepting a message: the creation seam that stands in for the chat core.

One accepted message is, in a single atomic commit: the chat message (which
is also its one billing request), its idempotency record, the chat's
`lastMessage`, the sender's rate window, and its delivery to every
recipient. A retried send with the same clientMessageId finds the
idempotency record and gets the first result back, marked duplicate.

Delivery in the same commit. When the chat has at most
INLINE_MAX_RECIPIENTS recipients and none of its messages still waits in a
queue, the commit creates each recipient's inbox entry itself, conditional
on the recipient's inbox head (see inbox): the message is in every inbox the
moment the send returns, and no trigger runs for it. An offline recipient
also gets a queue entry that carries only the push (its trigger sends it;
retries and back-off as for any entry). Otherwise, or when that commit lost
INLINE_ATTEMPTS races (a recipient's head, or the chat, moved first), the
send goes again with one queue entry per recipient awaiting the inbox,
delivered by the trigger and the processor (see delivery). A chat of more
than INLINE_MAX_RECIPIENTS recipients, or one whose fan-out is under way
(`fanOutPending`), is accepted with a fan-out job instead (see fan_out), and
the send reads only the sender's profile. The pure decisions (the id, what
the chat keeps, the plan) are send_plan's. The chat's `deliveryQueued` says that one of its messages may
still wait in a queue; while it may, no send places a message of the chat
directly, which would overtake it. A send that finds the flag set asks the
queue once (`backlog.chat_awaits_inbox`) and clears it when nothing waits.
Per-chat order in every inbox follows: a chat's messages reach an inbox
either in their own send's commit, after every older one, or through the
queue, which keeps their order (delivery.deliver_in_order).

Message order: the commit is conditional on the chat being unchanged since it
was read, and the new id is greater than the chat's last one. Of two
concurrent sends to a chat, the second to commit therefore read the first's
id and took a greater one: within a chat, message ids increase in the order
sends were accepted, whatever the senders' clocks. Delivery and sync rely on it.

A send of a chat this instance read before reads the chat, the profiles, the
idempotency record, the rate window and the heads in one round trip (the
participants it remembers, chat_core.known_participants, checked against the
chat as read; what a wrong guess missed is read after): two round trips to
the inbox instead of three.

Before anything is written, a send passes, in this order: participation,
age verification and blocks (policy), the per-user rate limit (rate_limit:
its window document is written in the same commit, which is what makes the
limit exact under concurrency), the spam/fraud hook (fraud) and the
paid-chat admission hook (admission). A refused
send writes nothing of the message and bills nothing; a retry of a send
that was already accepted still gets its first result back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from firebase_functions import logger
from google.api_core import exceptions as gexc
from google.cloud.firestore import Client, DocumentReference, WriteBatch
from google.cloud.firestore_v1 import DocumentSnapshot
from pydantic import ValidationError
from ulid import ULID

from .. import chat_core, clock, constants, inbox, locks, paths, routing, settings, store
from ..delivering import backlog, fan_out, notifier, placing, queue, rollback
from ..errors import Aborted, EngineError, FailedPrecondition, InvalidArgument
from ..guarding import admission, fraud, policy, rate_limit
from ..models import (
    Chat,
    ChatMessage,
    IdempotencyRecord,
    Region,
    ScheduledMessage,
    ScheduleSlot,
    SendMessageRequest,
    SendMessageResult,
    SendRecord,
    UserProfile,
)
from . import recurrence, send_plan

ACCEPTED = "QUEUED"
"""`status` of an accepted message: its queue entries are on their way."""
SCHEDULED = "SCHEDULED"
"""`status` of a message accepted for later delivery (see scheduling)."""


def send_message(
    db: Client,
    sender_id: str,
    request: SendMessageRequest,
    *,
    now: datetime | None = None,
    fraud_checker: fraud.FraudChecker | None = None,
    admitted: AdmittedEarlier | None = None,
) -> SendMessageResult:
    """Accept a message from `sender_id` and deliver it, or queue it for delivery;
    with `request.deliverAt`, accept it now for delivery then (see scheduling).

    Args:
        sender_id: the authenticated caller.
        request: the validated request.
        now: the acceptance time (default: the clock).
        fraud_checker: reviews the send (default: the installed one, see fraud).
        admitted: the send was admitted earlier (a scheduled message at its time):
            no rate limit, spam or admission check again; it adds the caller's own
            conditional writes to the send's commit (default: none, a send of now).

    Raises:
        NotFound: the chat does not exist.
        PermissionDenied: the sender is not a participant.
        FailedPrecondition: the sender is not age-verified 18+, a block
            stands between sender and recipient in a direct chat, the fraud
            hook or the admission hook refused the send (details.reason says
            which, e.g. insufficient_tokens), or the chat has more than
            MAX_RECIPIENTS recipients.
        Unavailable: the admission hook failed; the send may be repeated.
        ResourceExhausted: the sender sent MAX_MESSAGES_PER_MINUTE messages
            in the last minute (details.retryAfterMs).
        InvalidArgument: the clientMessageId was already used for another message,
            or deliverAt is not in the next MAX_SCHEDULE_DAYS.
        FailedPrecondition (reason client_message_id_expired): no record of the
            clientMessageId, which was made more than CLIENT_MESSAGE_ID_MAX_AGE_DAYS ago.
        Aborted: the chat or the sender's rate window kept changing for
            SEND_CONFLICT_RETRIES attempts.
    """
    now = now or clock.now()
    screened: dict[str, bool] = {}  # the hooks' verdict, asked once however many attempts it takes

    def attempt(n: int) -> SendMessageResult:
        try:
            # Sends of this instance to the chat, or by this sender, take turns (see locks).
            with locks.held(f"chat:{request.chatId}", f"user:{sender_id}"):
                try:
                    # Placing in inboxes is tried INLINE_ATTEMPTS times; then a group's send goes as a
                    # fan-out job, a direct chat's through the queue (see _by_job).
                    place = n < constants.INLINE_ATTEMPTS
                    lost_races = n > 0 and not place  # lost every attempt it may place in
                    loaded, prefetched = _read_chat(db, sender_id, request, place=place, lost_races=lost_races)
                    return _commit_send(db, sender_id, request, loaded, now, fraud_checker, place=place,
                                        admitted=admitted, screened=screened, prefetched=prefetched,
                                        lost_races=lost_races)
                except EngineError:
                    # A retry of a send accepted before gets its first result, whatever changed since
                    # (the sender left, deliverAt passed, the window filled): never a refusal.
                    if (first := _recorded_result(db, sender_id, request)) is not None:
                        return first
                    raise
        except gexc.AlreadyExists:
            if (first := _recorded_result(db, sender_id, request)) is not None:
                return first
            # A concurrent send took the same next id (same chat, same instant), or created a head or the window.
            raise store.Conflict("a concurrent send created a document first") from None
        except (gexc.FailedPrecondition, gexc.Aborted):
            # Another send to this chat, or by this sender, or a delivery to a recipient, committed first.
            raise store.Conflict("a concurrent change") from None

    result = store.retry_on_conflict(
        attempt,
        attempts=constants.SEND_CONFLICT_RETRIES,
        pause_s=constants.SEND_CONFLICT_BACKOFF_SECONDS,
        pause_cap_s=constants.SEND_CONFLICT_BACKOFF_CAP_SECONDS,
        give_up=lambda: Aborted(f"chat {request.chatId!r} is too busy right now; retry with the same clientMessageId"),
    )
    if settings.direct_delivery(db) and result.status == ACCEPTED:
        # Rollback switch: what was queued is delivered in this request (a duplicate too:
        # the first request may have died before it did), a large group's fan-out first.
        fan_out.run_chat(db, request.chatId, now=now)
        rollback.deliver_now(db, request.chatId, result.messageId, notifier.default_notifier(), now=now)
    return result


@dataclass(frozen=True)
class AdmittedEarlier:
    """A send admitted earlier (a scheduled message at its time).

    Attributes:
        priority: its lane, decided when it was admitted.
        add_writes: adds, given the new message's id, the writes of whoever admitted it
            to the send's commit (conditional ones included; called at each attempt).
        rate_limited: the send counts against the sender's rate limit now (an occurrence of a
            recurring series): ResourceExhausted when the window is full, else the send is
            recorded in the window in the same commit (default: no, a one-off scheduled message
            counted when it was accepted).
    """

    priority: bool
    add_writes: Callable[[WriteBatch, str], None]
    rate_limited: bool = False

_QUEUE_CHECKS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="send-queue-check")
"""Asks the queue about a chat while the send reads the profiles (one round trip less)."""


@dataclass(frozen=True)
class _Prefetched:
    """What a send read beside the chat, in the same round trip: profiles by uid, other documents by path."""

    users: dict[str, UserProfile]
    others: dict[str, DocumentSnapshot]


@dataclass(frozen=True)
class _SendRefs:
    """What a send reads besides profiles: its idempotency record, the sender's rate window, the
    recipients' inbox heads if it may place the message itself, and for a scheduled message the
    slot of its minute."""

    record: DocumentReference
    window: DocumentReference
    heads: dict[str, DocumentReference]
    slot: DocumentReference | None

    @classmethod
    def of(cls, db: Client, sender_id: str, request: SendMessageRequest, recipients: list[str], *,
           place: bool) -> _SendRefs:
        # A recurring series' occurrences count against the rate limit when each is delivered, not in slots.
        slot = (paths.schedule_slot(db, sender_id, send_plan.schedule_minute(request.deliverAt))
                if request.deliverAt is not None and request.recurrence is None else None)
        return cls(paths.idempotency_key(db, sender_id, request.clientMessageId), paths.rate_window(db, sender_id),
                   {uid: paths.inbox_head(db, uid) for uid in recipients} if place else {}, slot)

    def all(self) -> list[DocumentReference]:
        return [self.record, self.window, *self.heads.values(), *([self.slot] if self.slot else [])]


def _read_chat(
    db: Client, sender_id: str, request: SendMessageRequest, *, place: bool, lost_races: bool
) -> tuple[chat_core.LoadedChat, _Prefetched | None]:
    """The chat (the sender a participant) and, when this instance knows its participants from an
    earlier read (chat_core.known_participants), in the same round trip what the send will read of
    them: profiles, the idempotency record, the rate window, the heads (none of the recipients' for a
    send that goes by job, see _by_job). The guess is checked against
    the chat as read: `_commit_send` reads again whatever the chat's real participants need that the
    guess did not read. Otherwise the chat alone, nothing prefetched.

    Raises:
        NotFound, PermissionDenied, FailedPrecondition: as policy.participant_chat.
    """
    known = chat_core.known_participants(db, request.chatId)
    if known is None or sender_id not in known:
        return chat_core.remember(db, policy.participant_chat(db, request.chatId, sender_id), request.chatId), None
    recipients = [uid for uid in dict.fromkeys(known) if uid != sender_id]
    by_job = _by_job(request, recipients, lost_races=lost_races,
                     fan_out_pending=chat_core.known_fanning_out(db, request.chatId))
    may_place = (place and not by_job and request.deliverAt is None
                 and len(recipients) <= constants.INLINE_MAX_RECIPIENTS)
    refs = _SendRefs.of(db, sender_id, request, recipients, place=may_place)
    chat_ref = paths.chat(db, request.chatId)
    readers = [] if by_job else recipients
    users, others = chat_core.load_users_with(db, [sender_id, *readers], [chat_ref, *refs.all()])
    loaded = chat_core.chat_of(request.chatId, store.Read.of(others[chat_ref.path]))
    return chat_core.remember(db, policy.require_participant(loaded, request.chatId, sender_id),
                              request.chatId), _Prefetched(users, others)


def _by_job(request: SendMessageRequest, recipients: list[str], *, lost_races: bool, fan_out_pending: bool) -> bool:
    """Whether a send of now to a group goes as one fan-out job that leaves the recipients' profiles
    and blocks to the fan-out: because it lost the races of every attempt it could place in
    (INLINE_ATTEMPTS), or because its chat has a message in fan-out (it must follow it anyway). Its
    commits hold the chat, the message, the sender's record and window and the job, none of the
    recipients' heads, so a hot chat's sends race only for the chat, each as short as the chat's
    own update. A direct chat's send keeps its recipient's checks (a block refuses it) and goes
    through the queue, as does every send when INLINE_ATTEMPTS is 0 (each recipient through the
    queue)."""
    return request.deliverAt is None and len(recipients) > 1 and (lost_races or fan_out_pending)


def _commit_send(
    db: Client,
    sender_id: str,
    request: SendMessageRequest,
    loaded: chat_core.LoadedChat,
    now: datetime,
    fraud_checker: fraud.FraudChecker | None,
    *,
    place: bool,
    admitted: AdmittedEarlier | None,
    screened: dict[str, bool],
    prefetched: _Prefetched | None = None,
    lost_races: bool,
) -> SendMessageResult:
    chat = loaded.chat
    recipients = [uid for uid in dict.fromkeys(chat.participants) if uid != sender_id]
    if len(recipients) > constants.MAX_RECIPIENTS:
        raise FailedPrecondition(f"chat {request.chatId!r} has more than {constants.MAX_RECIPIENTS} recipients")
    small = len(recipients) <= constants.INLINE_MAX_RECIPIENTS
    by_job = _by_job(request, recipients, lost_races=lost_races, fan_out_pending=chat.fan_out_pending)
    fanning_out = chat.fan_out_pending or not small or by_job
    # Profiles and blocks of the recipients are the send's own only while it may place them; a job's
    # fan-out reads them chunk by chunk and applies the blocks.
    checked_here = small and not by_job
    # A scheduled message is only recorded now: nothing to place, no head or queue to ask.
    place = place and not fanning_out and request.deliverAt is None
    checking = (_QUEUE_CHECKS.submit(backlog.chat_awaits_inbox, db, request.chatId)
                if place and chat.delivery_queued else None)
    # The idempotency record, the rate window and the heads come in the same round trip as the
    # profiles (or as the chat: _read_chat). A large group's profiles are read by its fan-out,
    # chunk by chunk, blocks included.
    refs = _SendRefs.of(db, sender_id, request, recipients, place=place)
    record_ref, window_ref, head_refs = refs.record, refs.window, refs.heads
    uids, also = [sender_id, *(recipients if checked_here else [])], refs.all()
    if prefetched is not None and set(uids) <= prefetched.users.keys() and all(
            ref.path in prefetched.others for ref in also):
        users, others = prefetched.users, prefetched.others
    else:
        users, others = chat_core.load_users_with(db, uids, also)
    if others[record_ref.path].exists:  # a retry: the first result, before any check or hook
        return _first_result(others[record_ref.path].to_dict() or {}, request)
    if admitted is None:  # a scheduled message's delivery key is the engine's own: never too old
        send_plan.check_client_message_id_age(request.clientMessageId, now)
    series: list[datetime] | None = None
    if request.deliverAt is not None and admitted is None:
        send_plan.check_deliver_at(request.deliverAt, now)
        if request.recurrence is not None:
            series = recurrence.occurrences(request.recurrence.rrule, request.recurrence.timeZone,
                                            clock.from_millis(request.deliverAt))
    window = rate_limit.from_snapshot(db, sender_id, others[window_ref.path], now=now)
    record: SendRecord | None = None
    if admitted is not None:  # only what may have changed since: 18+ and blocks
        policy.require_adult(users[sender_id])
        recipients = policy.deliverable_recipients(sender_id, recipients, users) if checked_here else recipients
        priority = admitted.priority
        if admitted.rate_limited:  # an occurrence of a series: counted now, as a send of now
            rate_limit.check(window, now=now)
            record = SendRecord(at=now, chat_id=request.chatId,
                                content_hash=rate_limit.content_hash(request.text, request.contentRef))
    else:
        recipients, record, priority = _admit(db, sender_id, request, chat, recipients, users, window, now,
                                              fraud_checker, blocks=checked_here, screened=screened)

    if request.deliverAt is not None and admitted is None and record is not None:  # scheduled now (deliverAt)
        slot = store.Read.of(others[refs.slot.path]) if refs.slot is not None else None
        return _commit_schedule(db, sender_id, request, window, record, slot, now, priority=priority,
                                series=series)
    message = ChatMessage(
        id=send_plan.next_message_id(chat, now), chat_id=request.chatId, sender_id=sender_id,
        sender_name=users[sender_id].display_name, client_message_id=request.clientMessageId,
        text=request.text, content_ref=request.contentRef, billing_state=chat.billing, priority=priority,
        created_at=now,
    )
    heads = {uid: inbox.Head.of(uid, store.Read.of(others[ref.path])) for uid, ref in head_refs.items()}
    # A damaged head (see inbox.Head), a pruned chat's position or a chat the head may have parked:
    # that recipient goes through the queue (whose delivery looks the chat up, inbox.look_up).
    unknown = {uid for uid in recipients if uid in heads and (
        not heads[uid].usable or inbox.needs_lookup(heads[uid].state, [message.chat_id]))}
    unknown |= _past_commit_bytes(message, [uid for uid in recipients if uid in heads and uid not in unknown], heads)
    plan = send_plan.plan_delivery(chat, recipients, place=place, needs_read_position=unknown,
                         queue_checked_empty=checking is not None and not checking.result())
    batch = db.batch()
    _add_message(db, batch, request, message, placed=plan.placed)
    chat_fields = {"lastMessage": send_plan.last_message(message).to_firestore(), "deliveryQueued": plan.chat_queued}
    origin = routing.home_region(sender_id, users[sender_id])
    if fanning_out:
        chat_fields.update(deliveryQueued=True, fanOutPending=True)
        fan_out.add_job(db, batch, message, recipients, origin=origin)
    else:
        _add_delivery(db, batch, plan, message, users, heads, origin=origin)
    store.update_if_unchanged(db, batch, paths.chat(db, request.chatId), loaded.update_time, chat_fields)
    if record is not None:
        rate_limit.add_send(db, batch, window, record)
    if admitted is not None:
        admitted.add_writes(batch, message.id)
    batch.commit()
    if fanning_out:
        chat_core.note_fanning_out(db, request.chatId)
    return SendMessageResult(messageId=message.id, status=ACCEPTED, duplicate=False)


def _past_commit_bytes(message: ChatMessage, placeable: list[str], heads: dict[str, inbox.Head]) -> set[str]:
    """Of the recipients the send may place, those its commit cannot hold (store.fitting: writes
    and COMMIT_MAX_BYTES): each placement rewrites the recipient's head, up to INBOX_HEAD_MAX_BYTES
    each. They go through the queue. Each is reckoned at its head as read, the message three times
    (entry, push entry, the head's growth) and room for the chats its head may park."""
    if not placeable:
        return set()
    size = store.value_size(message.to_firestore())
    costs = [store.Cost(3, store.document_size(heads[uid].doc.ref.path, heads[uid].doc.data)
                        + 3 * size + SEND_PLACEMENT_ROOM) for uid in placeable]
    fitting = store.fitting(costs, reserve=store.Cost(6, 4 * size + SEND_PLACEMENT_ROOM))
    return set(placeable[fitting:])


SEND_PLACEMENT_ROOM = 4096
"""What a placement by the send is reckoned to add beside the head as read and the message (the
head's chat entry, parked chats' documents, each write's allowance), and the send's own writes'."""


def _commit_schedule(
    db: Client,
    sender_id: str,
    request: SendMessageRequest,
    window: rate_limit.LoadedWindow,
    record: SendRecord,
    slot: store.Read | None,
    now: datetime,
    *,
    priority: bool,
    series: list[datetime] | None = None,
) -> SendMessageResult:
    """Accept a scheduled message: its ScheduledMessage, its idempotency record, the sender's rate
    window and the slot of its minute, in one commit conditional on the window and the slot as read;
    nothing of the chat changes until its time (see scheduling).

    The slot bounds what one sender can make fall due at one instant to the rate limit in force
    (`window.limit`): FailedPrecondition (reason schedule_minute_full) past it, nothing written.

    Args:
        slot: the slot of its minute as read (None for a recurring series: each occurrence counts
            against the rate limit when it is delivered instead).
        series: a recurring series' occurrences (recurrence.occurrences; default: a one-off message).
    """
    minute = send_plan.schedule_minute(request.deliverAt or 0)
    taken = 0
    if slot is not None:
        try:
            taken = ScheduleSlot.model_validate(slot.data).scheduled if slot.exists else 0
        except ValidationError:
            taken = 0  # a damaged slot (a hand edit) is rewritten, as a damaged rate window is
        send_plan.check_schedule_minute(taken, window.limit, minute)
    first = series[0] if series else clock.from_millis(request.deliverAt or 0)
    scheduled = ScheduledMessage(
        sender_id=sender_id, chat_id=request.chatId, client_message_id=request.clientMessageId,
        text=request.text, content_ref=request.contentRef, deliver_at=first,
        delivery_key=str(ULID()), priority=priority, created_at=now, updated_at=now,
        rrule=request.recurrence.rrule if series and request.recurrence else None,
        time_zone=request.recurrence.timeZone if series and request.recurrence else None,
        occurrences=series or [],
    )
    batch = db.batch()
    record_doc = IdempotencyRecord(message_id=request.clientMessageId, chat_id=request.chatId, sender_id=sender_id,
                                   payload_hash=_payload_hash(request), scheduled=True, created_at=now,
                                   expires_at=send_plan.record_expiry(now, scheduled.deliver_at))
    batch.create(paths.idempotency_key(db, sender_id, request.clientMessageId), record_doc.to_firestore())
    stored = scheduled.to_firestore() if series else scheduled.model_dump(exclude=SERIES_FIELDS)
    batch.create(paths.scheduled_message(db, sender_id, request.clientMessageId), stored)
    rate_limit.add_send(db, batch, window, record)
    if slot is not None:
        store.write_if_unchanged(db, batch, slot, ScheduleSlot(
            sender_id=sender_id, minute=minute, scheduled=taken + 1, updated_at=now,
            expires_at=minute + timedelta(minutes=1)).to_firestore())
    batch.commit()
    return SendMessageResult(messageId=request.clientMessageId, status=SCHEDULED, duplicate=False)


SERIES_FIELDS = {"rrule", "time_zone", "occurrences", "cancelled_occurrences", "delivered_count"}
"""A recurring series' fields of ScheduledMessage: a one-off message's document is stored without them."""


def _add_message(db: Client, batch: WriteBatch, request: SendMessageRequest, message: ChatMessage, *,
                 placed: list[str]) -> None:
    """Add the message and its idempotency record (with the recipients the send `placed`) to `batch`."""
    record = IdempotencyRecord(message_id=message.id, chat_id=message.chat_id, sender_id=message.sender_id,
                               payload_hash=_payload_hash(request), placed_by_send=placed,
                               created_at=message.created_at, expires_at=send_plan.record_expiry(message.created_at))
    batch.create(paths.idempotency_key(db, message.sender_id, request.clientMessageId), record.to_firestore())
    batch.create(paths.chat_message(db, message.chat_id, message.id), message.to_firestore())


def _add_delivery(
    db: Client,
    batch: WriteBatch,
    plan: send_plan.DeliveryPlan,
    message: ChatMessage,
    users: dict[str, UserProfile],
    heads: dict[str, inbox.Head],
    *,
    origin: Region,
) -> None:
    """Add to the send's batch what `plan` says: inbox entries and head moves for the
    recipients placed (with a push-only queue entry for an offline one), queue entries
    awaiting the inbox for the others."""
    actor = f"user:{message.sender_id}"
    for uid in plan.placed:
        placing.add_placed(db, batch, message, heads[uid], users[uid], origin=origin, via="send", actor=actor,
                           now=message.created_at)
    for uid in plan.queued:
        entry = placing.queue_entry(db, message, uid, users[uid], origin=origin, behind_queue=not plan.queue_clear)
        queue.add_enqueue(db, batch, entry, actor=actor)


def _admit(
    db: Client,
    sender_id: str,
    request: SendMessageRequest,
    chat: Chat,
    recipients: list[str],
    users: dict[str, UserProfile],
    window: rate_limit.LoadedWindow,
    now: datetime,
    fraud_checker: fraud.FraudChecker | None,
    *,
    blocks: bool,
    screened: dict[str, bool],
) -> tuple[list[str], SendRecord, bool]:
    """The policy checks of a send, in order: 18+, blocks (if `blocks`: else the fan-out
    applies them), the rate limit, the spam hook, the paid-chat admission hook. The
    recipients after blocks, the send's record for the sender's rate window, and its
    priority (admission.priority_of). Raises EngineError.

    The hooks are asked once per send: their verdict is kept in `screened` for the send's
    further attempts after a conflict (a duplicate never reaches them: see _commit_send)."""
    policy.require_adult(users[sender_id])
    if blocks:
        recipients = policy.deliverable_recipients(sender_id, recipients, users)
    rate_limit.check(window, now=now)
    record = SendRecord(
        at=now, chat_id=request.chatId, content_hash=rate_limit.content_hash(request.text, request.contentRef)
    )
    attempt = fraud.SendAttempt(
        sender_id=sender_id,
        chat_id=request.chatId,
        client_message_id=request.clientMessageId,
        text=request.text,
        content_ref=request.contentRef,
        content_hash=record.content_hash,
        recipients=recipients,
        recent=window.recent,
        now=now,
    )
    if "priority" not in screened:
        fraud.screen(db, attempt, fraud_checker)
        admission.screen(db, attempt, chat.billing)
        screened["priority"] = admission.priority_of(attempt, chat.billing)
    return recipients, record, screened["priority"]


def _payload_hash(request: SendMessageRequest) -> str:
    payload: dict = {"chatId": request.chatId, "text": request.text, "contentRef": request.contentRef}
    if request.deliverAt is not None:
        payload["deliverAt"] = request.deliverAt
    if request.recurrence is not None:
        payload["recurrence"] = request.recurrence.model_dump()
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _recorded_result(db: Client, sender_id: str, request: SendMessageRequest) -> SendMessageResult | None:
    """The first result of this clientMessageId if a send of it was accepted (one read), else None."""
    first = paths.idempotency_key(db, sender_id, request.clientMessageId).get()
    return _first_result(first.to_dict() or {}, request) if first.exists else None


def _first_result(stored: dict, request: SendMessageRequest) -> SendMessageResult:
    """The result of the send that first used this clientMessageId (its idempotency record as stored).

    Raises:
        InvalidArgument: the clientMessageId was used for a different message.
    """
    try:
        record = IdempotencyRecord.model_validate(stored)
    except ValidationError:
        logger.error(f"the idempotency record of {request.clientMessageId} is unusable", alert="SEND_RECORD_UNUSABLE",
                     clientMessageId=request.clientMessageId)
        raise FailedPrecondition(f"clientMessageId {request.clientMessageId} was accepted before, but its record is"
                                 " damaged; an operator must look at it", {"reason": "send_record_damaged"}) from None
    if record.payload_hash != _payload_hash(request):
        raise InvalidArgument(
            f"clientMessageId {request.clientMessageId} was already used for a different message"
        )
    return SendMessageResult(messageId=record.message_id, status=SCHEDULED if record.scheduled else ACCEPTED,
                             duplicate=True)
