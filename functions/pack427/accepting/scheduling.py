"""Scheduled messages: accepted now, delivered at their time, cancellable until then.

`pack427_sendMessage` with `deliverAt` (Unix ms, at most MAX_SCHEDULE_DAYS
ahead) accepts the message at once: the usual checks (participation, 18+,
blocks, the rate limit, the spam and admission hooks), its idempotency
record and a ScheduledMessage (`scheduledMessages/{senderId}_{clientMessageId}`),
in one commit (sending). Nothing of the chat changes: a scheduled message
holds nothing back.

The sender may have at most the rate limit's worth falling due in one UTC minute
(`scheduleSlots`, checked at acceptance: sending, send_plan.check_schedule_minute), so one
user cannot make a recipient receive more at one instant than live sends could.

At its time the processor (`deliver_due_batch`, a batch a round, taking turns with the
queues' batches: processor.drain) sends it as a send of
that moment, through sending with the `admitted` hook: it takes the next id
of its chat then, so it takes its place in the chat's order when it is
delivered, and every ordering, sync and unread guarantee is a send's. What
may have changed since is checked again (the sender still a participant,
18+, blocks); what was counted at acceptance is not (rate limit, hooks).
Exactly once: the delivery is sent with the scheduled message's own
`deliveryKey` as its clientMessageId, and its commit moves the scheduled
message to DELIVERED conditional on it being as read; of two processors one
sends it, the other gets the first result.

Cancel (`cancel`, pack427_cancelScheduledMessage) moves it to CANCELLED,
conditional on it being as read: of a racing cancel and delivery exactly one
wins, and the other sees it.

Recurring series (`recurrence`, see recurrence for the rule): one ScheduledMessage holds the whole
series, its occurrences computed at acceptance, `deliverAt` the one due next. An occurrence is
delivered exactly as a one-off scheduled message (the same path, the same checks), with its own
`deliveryKey`, and the same commit moves the series on to its next occurrence with a fresh key
(or to DELIVERED after the last): a crash before that commit leaves the occurrence due, with
nothing sent; after it, the occurrence is sent and the next one armed. Two processors, or a
replay, that read the same occurrence send it once: the loser's commit is conditional on the
series as read, and on a retry it finds the key moved on (NoLongerScheduled), or the message's
idempotency record. Each occurrence counts against the sender's rate limit when it is delivered
(a full window leaves it due for the next run). A sender who can no longer send there stops the
series: STOPPED with the reason, listed until cancelled. Cancel takes the whole series, or with
`occurrenceAt` one occurrence (`cancelled_occurrences`; the one due next re-arms the series at
the following one), each conditional on the series as read.
"""

from __future__ import annotations

import time
from datetime import datetime

from firebase_functions import logger
from google.cloud.firestore import Client, WriteBatch
from google.cloud.firestore_v1.base_query import FieldFilter
from pydantic import ValidationError
from ulid import ULID

from .. import clock, constants, paths, store
from ..errors import Aborted, EngineError, FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted, Unavailable
from ..models import (
    CancelScheduledMessageRequest,
    CancelScheduledMessageResult,
    ListScheduledMessagesResult,
    ScheduledMessage,
    ScheduledMessageItem,
    ScheduledStatus,
    SendMessageRequest,
    problems,
)
from . import recurrence, sending

ALREADY_DELIVERED = "already_delivered"


class NoLongerScheduled(Exception):
    """The scheduled message was cancelled (or delivered) before this delivery's commit."""


def deliver_due(db: Client, *, now: datetime | None = None) -> dict[str, int]:
    """Deliver every scheduled message whose time has come (batch after batch, until none is left;
    the processor takes one batch a round instead, see processor.drain).

    Returns:
        How many were delivered, failed (the sender could no longer send there), or lost a race.
    """
    now = now or clock.now()
    counts = {"delivered": 0, "failed": 0, "skipped": 0}
    while True:
        batch, more = deliver_due_batch(db, now=now)
        counts = {outcome: counts[outcome] + batch[outcome] for outcome in counts}
        if not more:
            return counts


def deliver_due_batch(
    db: Client, *, now: datetime | None = None, deadline: float | None = None
) -> tuple[dict[str, int], bool]:
    """Deliver one batch of due scheduled messages: the SCHEDULED_BATCH whose deliverAt is oldest,
    one after the other, until `deadline`.

    Args:
        now: the time they are due by, and are sent at (default: the clock).
        deadline: a `time.monotonic()` after which no further message of the batch is sent (default: none).

    Returns:
        How many were delivered, failed or skipped (left for the next run), and whether more may be
        due: the batch was full or cut by the deadline, and not all of it was left for the next run (a
        batch that made no progress would only come back at once).
    """
    now = now or clock.now()
    counts = {"delivered": 0, "failed": 0, "skipped": 0}
    query = (paths.scheduled_messages(db)
             .where(filter=FieldFilter("status", "==", ScheduledStatus.SCHEDULED.value))
             .where(filter=FieldFilter("deliverAt", "<=", now))
             .order_by("deliverAt").limit(constants.SCHEDULED_BATCH))
    due = [store.Read.of(s) for s in query.stream()]
    for n, doc in enumerate(due):
        if deadline is not None and n and time.monotonic() >= deadline:
            return counts, True  # the first is always sent, so a run always moves on
        counts[deliver(db, doc, now=now)] += 1
    return counts, len(due) == constants.SCHEDULED_BATCH and counts["skipped"] < len(due)


def deliver(db: Client, doc: store.Read, *, now: datetime) -> str:
    """Send one due scheduled message (as read); `delivered`, `failed` or `skipped`.

    One that is unusable as stored (a hand edit) is marked FAILED with the problem (alert
    SCHEDULED_MESSAGE_UNUSABLE), so that it neither stops the run nor comes back every run."""
    try:
        scheduled = ScheduledMessage.model_validate(doc.data)
    except ValidationError as err:
        return _fail_unusable(db, doc, err, now=now)
    request = SendMessageRequest(chatId=scheduled.chat_id, clientMessageId=scheduled.delivery_key,
                                 text=scheduled.text, contentRef=scheduled.content_ref)
    series = scheduled.rrule is not None

    attempts: list[str] = []

    def mark_delivered(batch: WriteBatch, message_id: str) -> None:
        # The first attempt goes on the document as the due query read it; a later one, after a
        # conflict (a cancel, another processor), reads it again.
        current = store.read(db, [doc.ref])[doc.ref.path] if attempts else doc
        attempts.append(message_id)
        if (not current.exists or current.data.get("status") != ScheduledStatus.SCHEDULED.value
                or current.data.get("deliveryKey") != scheduled.delivery_key):
            raise NoLongerScheduled(doc.ref.id)  # cancelled, delivered, or (a series) moved on to another occurrence
        fields: dict = {"status": ScheduledStatus.DELIVERED.value, "messageId": message_id, "updatedAt": now}
        if series:
            now_stored = ScheduledMessage.model_validate(current.data)
            following = recurrence.next_occurrence(now_stored.occurrences, now_stored.cancelled_occurrences,
                                                   now_stored.deliver_at)
            fields["deliveredCount"] = now_stored.delivered_count + 1
            if following is not None:  # the next occurrence, armed in the commit that sends this one
                fields.update(status=ScheduledStatus.SCHEDULED.value, deliverAt=following, deliveryKey=str(ULID()))
        store.update_if_unchanged(db, batch, doc.ref, current.time, fields)

    try:
        admitted = sending.AdmittedEarlier(priority=scheduled.priority, add_writes=mark_delivered,
                                           rate_limited=series)
        sending.send_message(db, scheduled.sender_id, request, now=now, admitted=admitted)
        return "delivered"
    except NoLongerScheduled:
        return "skipped"
    except (Aborted, Unavailable, ResourceExhausted) as err:
        # A busy chat, a failing hook, a series' sender at the rate limit: the next run tries again.
        logger.warn(f"scheduled message {doc.ref.id} not sent this run: {err.message}", scheduledId=doc.ref.id)
        return "skipped"
    except EngineError as err:  # the sender left the chat, is blocked, lost 18+, the chat is gone: nobody gets it
        logger.warn(f"scheduled message {doc.ref.id} cannot be sent: {err.message}", scheduledId=doc.ref.id)
        batch = db.batch()
        store.update_if_unchanged(db, batch, doc.ref, doc.time, {
            "status": (ScheduledStatus.STOPPED if series else ScheduledStatus.FAILED).value,
            "reason": (err.details or {}).get("reason") or err.code, "updatedAt": now})
        return "failed" if store.commit_if_unchanged(batch) else "skipped"
    except Exception as err:  # noqa: BLE001 - Firestore trouble, a bug: the others due go on, this one next run
        logger.error(f"scheduled message {doc.ref.id} not sent this run: {err!r}", scheduledId=doc.ref.id)
        return "skipped"


def cancel(db: Client, uid: str, request: CancelScheduledMessageRequest, *,
           now: datetime | None = None) -> CancelScheduledMessageResult:
    """`pack427_cancelScheduledMessage`: the caller's scheduled message, or whole recurring series, will
    never be delivered; with `request.occurrenceAt`, only that occurrence of a series.

    Idempotent: cancelling a cancelled message, series or occurrence succeeds again. Cancelling a
    STOPPED series (its sender could no longer send there) removes it from the list.

    Args:
        uid: the caller (the sender).
        request: the scheduled id, and optionally one occurrence (Unix ms).
        now: the time of the cancel (default: the clock).

    Raises:
        NotFound: the caller has no scheduled message of that id.
        InvalidArgument: occurrenceAt of a message that does not recur, or that is not one of the
            series' occurrences.
        FailedPrecondition: it was delivered already (reason already_delivered: the message, the
            whole series, or that occurrence), or failed.
    """
    ref = paths.scheduled_message(db, uid, request.scheduledId)

    def attempt(_: int) -> CancelScheduledMessageResult:
        doc = store.read(db, [ref])[ref.path]
        if not doc.exists:
            raise NotFound(f"no scheduled message {request.scheduledId}")
        try:
            status = ScheduledStatus(str(doc.data.get("status")))
        except ValueError:
            raise FailedPrecondition(f"scheduled message {request.scheduledId} has a damaged status; an operator"
                                     " must look at it", {"reason": "scheduled_message_damaged"}) from None
        if request.occurrenceAt is not None and status is not ScheduledStatus.CANCELLED:
            return _cancel_occurrence(db, doc, request, status, now=now or clock.now())
        if status in (ScheduledStatus.SCHEDULED, ScheduledStatus.STOPPED):
            batch = db.batch()
            store.update_if_unchanged(db, batch, ref, doc.time, {
                "status": ScheduledStatus.CANCELLED.value, "updatedAt": now or clock.now()})
            store.commit(batch)  # a delivery that committed first makes this a Conflict: read again
        elif status is not ScheduledStatus.CANCELLED:
            raise _not_cancellable(request.scheduledId, status, doc.data.get("messageId"))
        return CancelScheduledMessageResult(success=True, status=ScheduledStatus.CANCELLED.value)

    return store.retry_on_conflict(attempt, attempts=10,
                                   give_up=lambda: FailedPrecondition("the scheduled message kept changing"))


def _not_cancellable(scheduled_id: str, status: ScheduledStatus, message_id: object,
                     what: str = "scheduled message") -> FailedPrecondition:
    reason = ALREADY_DELIVERED if status is ScheduledStatus.DELIVERED else status.value.lower()
    return FailedPrecondition(f"{what} {scheduled_id} is {status.value.lower()}",
                              {"reason": reason, "messageId": message_id})


def _cancel_occurrence(db: Client, doc: store.Read, request: CancelScheduledMessageRequest,
                       status: ScheduledStatus, *, now: datetime) -> CancelScheduledMessageResult:
    """Cancel one occurrence of a series (`request.occurrenceAt`), conditional on the series as read
    (a Conflict makes `cancel` read it again). The occurrence due next re-arms the series at the
    following one, with a fresh delivery key (a processor that read the old one sends nothing); the
    last one left ends the series (DELIVERED if any occurrence was, else CANCELLED)."""
    try:
        scheduled = ScheduledMessage.model_validate(doc.data)
    except ValidationError:
        raise FailedPrecondition(f"scheduled message {request.scheduledId} is damaged; an operator must look at"
                                 " it", {"reason": "scheduled_message_damaged"}) from None
    if scheduled.rrule is None:
        raise InvalidArgument(f"occurrenceAt: scheduled message {request.scheduledId} does not recur; cancel it"
                              " without occurrenceAt")
    at = clock.from_millis(request.occurrenceAt or 0)
    if at not in scheduled.occurrences:
        raise InvalidArgument(f"occurrenceAt: {request.occurrenceAt} is not an occurrence of series"
                              f" {request.scheduledId} (see its upcoming occurrences in pack427_listScheduledMessages)")
    if at in scheduled.cancelled_occurrences:
        following = scheduled.deliver_at if status is ScheduledStatus.SCHEDULED else None
        return CancelScheduledMessageResult(success=True, status=ScheduledStatus.CANCELLED.value,
                                            nextOccurrenceAt=clock.to_millis(following) if following else None)
    if status is not ScheduledStatus.SCHEDULED:
        raise _not_cancellable(request.scheduledId, status, scheduled.message_id, "series")
    if at < scheduled.deliver_at:
        raise FailedPrecondition(f"occurrence {request.occurrenceAt} of series {request.scheduledId} was delivered"
                                 " already", {"reason": ALREADY_DELIVERED, "messageId": scheduled.message_id})
    fields: dict = {"cancelledOccurrences": [*scheduled.cancelled_occurrences, at], "updatedAt": now}
    following = scheduled.deliver_at
    if at == scheduled.deliver_at:  # the one due next: the series moves on to the following one
        next_at = recurrence.next_occurrence(scheduled.occurrences, scheduled.cancelled_occurrences, at)
        if next_at is None:
            done = ScheduledStatus.DELIVERED if scheduled.delivered_count else ScheduledStatus.CANCELLED
            fields["status"] = done.value
        else:
            fields.update(deliverAt=next_at, deliveryKey=str(ULID()))
        following = next_at
    batch = db.batch()
    store.update_if_unchanged(db, batch, doc.ref, doc.time, fields)
    store.commit(batch)  # a delivery that committed first makes this a Conflict: read again
    return CancelScheduledMessageResult(success=True, status=ScheduledStatus.CANCELLED.value,
                                        nextOccurrenceAt=clock.to_millis(following) if following else None)


def list_scheduled(db: Client, uid: str) -> ListScheduledMessagesResult:
    """`pack427_listScheduledMessages`: the caller's messages and series still scheduled, and series
    stopped (STOPPED, with their reason, until cancelled), soonest first (the MAX_LISTED_SCHEDULED
    soonest; `hasMore` if there are more). A series shows its rule, zone, next occurrence and the
    RECURRENCE_LISTED_UPCOMING next ones."""
    query = (paths.scheduled_messages(db)
             .where(filter=FieldFilter("senderId", "==", uid))
             .where(filter=FieldFilter("status", "in", [ScheduledStatus.SCHEDULED.value,
                                                       ScheduledStatus.STOPPED.value]))
             .order_by("deliverAt")
             .limit(constants.MAX_LISTED_SCHEDULED + 1))
    items = []
    for snapshot in query.stream():
        try:
            scheduled = ScheduledMessage.model_validate(snapshot.to_dict())
        except ValidationError:
            continue  # unusable as stored: the processor fails it at its time, with an alert
        items.append(_item(scheduled))
    more = len(items) > constants.MAX_LISTED_SCHEDULED
    return ListScheduledMessagesResult(messages=items[:constants.MAX_LISTED_SCHEDULED], hasMore=more)


def _item(scheduled: ScheduledMessage) -> ScheduledMessageItem:
    """What the list shows of one scheduled message or series."""
    item = ScheduledMessageItem(
        scheduledId=scheduled.client_message_id, chatId=scheduled.chat_id, text=scheduled.text,
        contentRef=scheduled.content_ref, deliverAt=clock.to_millis(scheduled.deliver_at),
        createdAt=clock.to_millis(scheduled.created_at), status=scheduled.status.value, reason=scheduled.reason)
    if scheduled.rrule is None:
        return item
    left = (recurrence.upcoming(scheduled.occurrences, scheduled.cancelled_occurrences, scheduled.deliver_at)
            if scheduled.status is ScheduledStatus.SCHEDULED else [])
    return item.model_copy(update={
        "rrule": scheduled.rrule, "timeZone": scheduled.time_zone,
        "nextOccurrenceAt": clock.to_millis(left[0]) if left else None,
        "upcoming": [clock.to_millis(at) for at in left[:constants.RECURRENCE_LISTED_UPCOMING]],
        "occurrencesLeft": len(left), "occurrencesDelivered": scheduled.delivered_count,
        "lastMessageId": scheduled.message_id})


def _fail_unusable(db: Client, doc: store.Read, err: ValidationError, *, now: datetime) -> str:
    problem = problems(err)[:500]
    logger.error(f"scheduled message {doc.ref.id} is unusable and fails: {problem}",
                 alert="SCHEDULED_MESSAGE_UNUSABLE", scheduledId=doc.ref.id, problem=problem)
    batch = db.batch()
    store.update_if_unchanged(db, batch, doc.ref, doc.time, {
        "status": ScheduledStatus.FAILED.value, "reason": f"unusable: {problem}", "updatedAt": now})
    return "failed" if store.commit_if_unchanged(batch) else "skipped"
