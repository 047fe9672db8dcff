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
wins, and the other sees it. Recurring messages are not offered.
"""

from __future__ import annotations

import time
from datetime import datetime

from firebase_functions import logger
from google.cloud.firestore import Client, WriteBatch
from google.cloud.firestore_v1.base_query import FieldFilter
from pydantic import ValidationError

from .. import clock, constants, paths, store
from ..errors import Aborted, EngineError, FailedPrecondition, NotFound, Unavailable
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
from . import sending

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

    attempts: list[str] = []

    def mark_delivered(batch: WriteBatch, message_id: str) -> None:
        # The first attempt goes on the document as the due query read it; a later one, after a
        # conflict (a cancel, another processor), reads it again.
        current = store.read(db, [doc.ref])[doc.ref.path] if attempts else doc
        attempts.append(message_id)
        if not current.exists or current.data.get("status") != ScheduledStatus.SCHEDULED.value:
            raise NoLongerScheduled(doc.ref.id)
        store.update_if_unchanged(db, batch, doc.ref, current.time, {
            "status": ScheduledStatus.DELIVERED.value, "messageId": message_id, "updatedAt": now})

    try:
        admitted = sending.AdmittedEarlier(priority=scheduled.priority, add_writes=mark_delivered)
        sending.send_message(db, scheduled.sender_id, request, now=now, admitted=admitted)
        return "delivered"
    except NoLongerScheduled:
        return "skipped"
    except (Aborted, Unavailable) as err:  # a busy chat, a failing hook: the next run tries again
        logger.warn(f"scheduled message {doc.ref.id} not sent this run: {err.message}", scheduledId=doc.ref.id)
        return "skipped"
    except EngineError as err:  # the sender left the chat, is blocked, lost 18+, the chat is gone: nobody gets it
        logger.warn(f"scheduled message {doc.ref.id} cannot be sent: {err.message}", scheduledId=doc.ref.id)
        batch = db.batch()
        store.update_if_unchanged(db, batch, doc.ref, doc.time, {
            "status": ScheduledStatus.FAILED.value, "reason": (err.details or {}).get("reason") or err.code,
            "updatedAt": now})
        return "failed" if store.commit_if_unchanged(batch) else "skipped"
    except Exception as err:  # noqa: BLE001 - Firestore trouble, a bug: the others due go on, this one next run
        logger.error(f"scheduled message {doc.ref.id} not sent this run: {err!r}", scheduledId=doc.ref.id)
        return "skipped"


def cancel(db: Client, uid: str, request: CancelScheduledMessageRequest, *,
           now: datetime | None = None) -> CancelScheduledMessageResult:
    """`pack427_cancelScheduledMessage`: the caller's scheduled message will never be delivered.

    Idempotent: cancelling a cancelled message succeeds again.

    Raises:
        NotFound: the caller has no scheduled message of that id.
        FailedPrecondition: it was delivered already (reason already_delivered), or failed.
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
        if status is ScheduledStatus.SCHEDULED:
            batch = db.batch()
            store.update_if_unchanged(db, batch, ref, doc.time, {
                "status": ScheduledStatus.CANCELLED.value, "updatedAt": now or clock.now()})
            store.commit(batch)  # a delivery that committed first makes this a Conflict: read again
        elif status is not ScheduledStatus.CANCELLED:
            reason = ALREADY_DELIVERED if status is ScheduledStatus.DELIVERED else status.value.lower()
            raise FailedPrecondition(f"scheduled message {request.scheduledId} is {status.value.lower()}",
                                     {"reason": reason, "messageId": doc.data.get("messageId")})
        return CancelScheduledMessageResult(success=True, status=ScheduledStatus.CANCELLED.value)

    return store.retry_on_conflict(attempt, attempts=10,
                                   give_up=lambda: FailedPrecondition("the scheduled message kept changing"))


def list_scheduled(db: Client, uid: str) -> ListScheduledMessagesResult:
    """`pack427_listScheduledMessages`: the caller's messages still scheduled, soonest first
    (the MAX_LISTED_SCHEDULED soonest; `hasMore` if there are more)."""
    query = (paths.scheduled_messages(db)
             .where(filter=FieldFilter("senderId", "==", uid))
             .where(filter=FieldFilter("status", "==", ScheduledStatus.SCHEDULED.value))
             .order_by("deliverAt")
             .limit(constants.MAX_LISTED_SCHEDULED + 1))
    items = []
    for snapshot in query.stream():
        try:
            scheduled = ScheduledMessage.model_validate(snapshot.to_dict())
        except ValidationError:
            continue  # unusable as stored: the processor fails it at its time, with an alert
        items.append(ScheduledMessageItem(
            scheduledId=scheduled.client_message_id, chatId=scheduled.chat_id, text=scheduled.text,
            contentRef=scheduled.content_ref, deliverAt=clock.to_millis(scheduled.deliver_at),
            createdAt=clock.to_millis(scheduled.created_at)))
    more = len(items) > constants.MAX_LISTED_SCHEDULED
    return ListScheduledMessagesResult(messages=items[:constants.MAX_LISTED_SCHEDULED], hasMore=more)


def _fail_unusable(db: Client, doc: store.Read, err: ValidationError, *, now: datetime) -> str:
    problem = problems(err)[:500]
    logger.error(f"scheduled message {doc.ref.id} is unusable and fails: {problem}",
                 alert="SCHEDULED_MESSAGE_UNUSABLE", scheduledId=doc.ref.id, problem=problem)
    batch = db.batch()
    store.update_if_unchanged(db, batch, doc.ref, doc.time, {
        "status": ScheduledStatus.FAILED.value, "reason": f"unusable: {problem}", "updatedAt": now})
    return "failed" if store.commit_if_unchanged(batch) else "skipped"
