"""Operator operations that repair: dead letters back to the queue, a chat resynced into an inbox.

`scripts/ops` (pack427/operating/cli.py) calls these, as any backend code may. Every
change goes through the same conditional writes as the functions: an
operation can run while the functions run, and twice, without delivering a
message twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from google.api_core import exceptions as gexc
from google.cloud.firestore import Client, CollectionReference, Query
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.transforms import DELETE_FIELD
from pydantic import ValidationError

from .. import audit, chat_core, clock, constants, inbox, paths, store
from ..accepting import nudges, send_plan
from ..delivering import delivery, queue
from ..delivering.notifier import Notifier
from ..delivering.queue import LoadedEntry
from ..models import (
    DUE_STATUSES,
    ChatRepairReport,
    InboxRepairReport,
    QueuedMessage,
    QueueEvent,
    QueueStatus,
    Region,
    RequeueReport,
    problems,
)
from ..reading import unread

REQUEUE_PAGE = 200
"""Dead letters read per query by requeue-dropped."""

CHAT_PAGE = 500
"""Chat messages read per query by resync."""

Progress = Callable[[str], None]


def requeue_dropped(
    db: Client,
    *,
    regions: tuple[Region, ...] = tuple(Region),
    actor: str = "ops",
    now: datetime | None = None,
    progress: Progress | None = None,
) -> RequeueReport:
    """Put every DROPPED entry of `regions` back on its queue. Idempotent.

    A dropped entry whose message is in the inbox already (placed, then its
    push failed MAX_ATTEMPTS times) is only marked DELIVERED; the others
    become PENDING, due now, with attempts reset and `requeues` counted.
    Each change is audited (REQUEUED, or DELIVERED with `requeued: true`)
    and conditional on the entry being unchanged since it was read.

    Args:
        regions: whose queues (default: all).
        actor: recorded in the audit trail (default `ops`).
        now: the change's time (default: the clock).
        progress: told about each page (default: silent).
    """
    now = now or clock.now()
    requeued, marked = [], []
    for region in regions:
        query = (
            paths.queue(db, region)
            .where(filter=FieldFilter("status", "==", QueueStatus.DROPPED.value))
            .order_by("__name__")
            .limit(REQUEUE_PAGE)
        )
        page = list(query.stream())
        while page:
            for loaded in queue.usable(db, page, actor=actor):
                outcome = requeue(db, loaded, actor=actor, now=now)
                if outcome is QueueStatus.PENDING:
                    requeued.append(loaded.entry.id)
                elif outcome is QueueStatus.DELIVERED:
                    marked.append(loaded.entry.id)
            if progress:
                progress(f"{region.value}: {len(requeued)} requeued, {len(marked)} already in the inbox")
            page = list(query.start_after(page[-1]).stream())
    return RequeueReport(requeued=requeued, markedDelivered=marked)


def requeue(db: Client, loaded: LoadedEntry, *, actor: str, now: datetime) -> QueueStatus | None:
    """One dead letter back to PENDING, or DELIVERED if its message is in the inbox.

    Returns:
        The new status; None if the entry is not DROPPED or changed meanwhile.
    """
    entry = loaded.entry
    if entry.status is not QueueStatus.DROPPED:
        return None
    placed = paths.inbox_entry(db, entry.recipient_id, entry.message_id).get()
    change = queue.requeued(entry, now=now, placed_seq=placed.get("seq") if placed.exists else None,
                            placed_at=placed.get("deliveredAt") if placed.exists else None)
    batch = db.batch()
    queue.add_change(db, batch, loaded, change, actor=actor, now=now)
    if not store.commit_if_unchanged(batch):
        return None
    if change.to_status is QueueStatus.PENDING:
        # It waits for its inbox again: the chat's next sends queue behind it (see sending).
        try:
            paths.chat(db, entry.chat_id).update({"deliveryQueued": True})
        except gexc.NotFound:
            pass  # the chat is gone; nothing can overtake it
    return change.to_status


def resync(
    db: Client,
    uid: str,
    chat_id: str,
    notifier: Notifier,
    *,
    actor: str = "ops",
    now: datetime | None = None,
    progress: Progress | None = None,
) -> ChatRepairReport:
    """Bring every message of `chat_id` sent by others into `uid`'s inbox (the seed's forced resync).

    Finds the chat's messages missing from the inbox; requeues their dead
    letters, makes their waiting entries due now, and delivers them in chat
    order (`delivery.deliver_in_order`). Each gets the next inbox seq, so
    every device of the user receives it on its next sync, after its cursor:
    no device cursor needs resetting. (A device that lost its local copy of
    messages it had is the app's case: it calls pack427_resyncChat.)

    Args:
        notifier: pushes to offline recipients, as a delivery would.
        actor: recorded in the audit trail (default `ops`).
        now: the attempts' time (default: the clock).
        progress: told about each page and step (default: silent).
    """
    now = now or clock.now()
    chat_core.load_chat(db, chat_id)  # NotFound for an unknown chat
    missing: list[str] = []
    checked = 0
    query = paths.chat_messages(db, chat_id).order_by("id").limit(CHAT_PAGE)
    page = list(query.stream())
    while page:
        others = [m for m in map(chat_core.message_of, page) if m is not None and m.sender_id != uid]
        present = {e.message_id for e in inbox.entries(db, uid, [m.id for m in others])}
        missing += [m.id for m in others if m.id not in present]
        checked += len(others)
        if progress:
            progress(f"checked {checked} messages of {chat_id}: {len(missing)} missing from the inbox of {uid}")
        page = list(query.start_after(page[-1]).stream())

    requeued, retried, unqueued = [], [], []
    for message_id in missing:
        refs = [paths.queue_entry(db, region, QueuedMessage.entry_id(message_id, uid)) for region in Region]
        found = queue.usable(db, (s for s in db.get_all(refs) if s.exists), actor=actor)
        if not found:
            unqueued.append(message_id)
        for loaded in found:
            if loaded.entry.status is QueueStatus.DROPPED:
                if requeue(db, loaded, actor=actor, now=now):
                    requeued.append(message_id)
            elif loaded.entry.status in DUE_STATUSES and loaded.entry.next_attempt_at > now:
                if _make_due(db, loaded, now):
                    retried.append(message_id)
    if missing:
        delivery.deliver_in_order(db, chat_id, uid, notifier, actor=actor, now=now)
    placed = {e.message_id for e in inbox.entries(db, uid, missing)} if missing else set()
    still = [message_id for message_id in missing if message_id not in placed]
    if progress and missing:
        progress(f"delivered {len(missing) - len(still)} of {len(missing)} missing messages")
    return ChatRepairReport(checked=checked, missing=len(missing), requeued=requeued, retried=retried,
                            stillMissing=still, unqueued=unqueued)


def _make_due(db: Client, loaded: LoadedEntry, now: datetime) -> bool:
    """Bring a waiting entry's next attempt forward to `now`, conditional on it being unchanged."""
    batch = db.batch()
    store.update_if_unchanged(db, batch, paths.queue_entry(db, loaded.entry.target_region, loaded.entry.id),
                              loaded.update_time, {"nextAttemptAt": now, "updatedAt": now})
    return store.commit_if_unchanged(batch)


# ---------------------------------------------------------------------- CLI


def quarantined(db: Client, *, regions: tuple[Region, ...] = tuple(Region)) -> list[dict]:
    """What is set aside as unusable: queue entries (queue.quarantine: region, id, problem, when) and
    fan-out jobs (fan_out: region `fanOut`, `chatId/messageId`)."""
    found = []
    for snapshot in db.collection_group("quarantinedFanOuts").stream():
        kept = (snapshot.to_dict() or {}).get("quarantine")
        kept = kept if isinstance(kept, dict) else {}
        found.append({"region": "fanOut", "entryId": f"{snapshot.reference.parent.parent.id}/{snapshot.id}",
                      "problem": kept.get("problem"), "status": None, "at": kept.get("at")})
    for region in regions:
        query = paths.queue(db, region).where(filter=FieldFilter("status", "==", QueueStatus.QUARANTINED.value))
        for snapshot in query.stream():
            data = snapshot.to_dict() or {}
            kept = data["quarantine"] if isinstance(data.get("quarantine"), dict) else {}
            found.append({"region": region.value, "entryId": snapshot.id, "problem": kept.get("problem"),
                          "status": kept.get("status"), "at": kept.get("at")})
    return found


def release(
    db: Client, region: Region, entry_id: str, *, actor: str = "ops", now: datetime | None = None
) -> str | None:
    """Put a quarantined entry, repaired by hand (the console), back on its queue: PENDING, due now,
    awaiting its inbox again if it was. Its delivery is then exactly once as any entry's (an inbox
    entry is created only once). Conditional on the entry as read.

    Returns:
        None if it is back on the queue; otherwise why not (still unusable: the fields to repair;
        not quarantined; changed meanwhile).
    """
    now = now or clock.now()
    snapshot = paths.queue_entry(db, region, entry_id).get()
    data = snapshot.to_dict() or {}
    if data.get("status") != QueueStatus.QUARANTINED.value:
        return f"{region.value}/{entry_id} is not quarantined"
    kept = data["quarantine"] if isinstance(data.get("quarantine"), dict) else {}
    fields = {"status": QueueStatus.PENDING.value, "awaitingInbox": kept.get("awaitingInbox") is not False,
              "nextAttemptAt": now, "updatedAt": now}
    try:
        entry = QueuedMessage.model_validate({**data, **fields})
    except ValidationError as err:
        return f"still unusable: {problems(err)}"
    event = QueueEvent(actor=actor, action=audit.RELEASED, to_status=QueueStatus.PENDING, attempts=entry.attempts,
                       at=now, details={"quarantine": {k: str(v) for k, v in kept.items()}})
    batch = db.batch()
    store.update_if_unchanged(db, batch, snapshot.reference, snapshot.update_time,
                              {**fields, "quarantine": DELETE_FIELD, "history": audit.appended(entry, event)})
    if not store.commit_if_unchanged(batch):
        return f"{region.value}/{entry_id} changed meanwhile; look again"
    if entry.awaiting_inbox:
        try:  # the chat's next sends queue behind it, as behind a requeued dead letter
            paths.chat(db, entry.chat_id).update({"deliveryQueued": True})
        except gexc.NotFound:
            pass
    return None


def repair_inbox(
    db: Client, uid: str, notifier: Notifier, *, actor: str = "ops", now: datetime | None = None
) -> InboxRepairReport:
    """Rebuild `uid`'s damaged inbox head and deliver what waited for it (INBOX_HEAD_UNUSABLE's repair).

    The head is rebuilt and recounted from the inbox (unread.recalculate); then the user's dead
    letters are requeued and their waiting entries made due now, and each of those chats is
    delivered in order (delivery.deliver_in_order). Idempotent, like every repair here.

    Args:
        notifier: pushes to offline recipients, as a delivery would.
        actor: recorded in the audit trail (default `ops`).
        now: the attempts' time (default: the clock).
    """
    now = now or clock.now()
    recount = unread.recalculate(db, uid, now=now)
    requeued, retried, chats = [], [], set()
    statuses = [s.value for s in (*DUE_STATUSES, QueueStatus.DROPPED)]
    for region in Region:
        query = (paths.queue(db, region).where(filter=FieldFilter("recipientId", "==", uid))
                 .where(filter=FieldFilter("status", "in", statuses)))
        for loaded in queue.usable(db, query.stream(), actor=actor):
            if loaded.entry.status is QueueStatus.DROPPED:
                if requeue(db, loaded, actor=actor, now=now) is QueueStatus.PENDING:
                    requeued.append(loaded.entry.id)
                    chats.add(loaded.entry.chat_id)
            elif loaded.entry.next_attempt_at > now and _make_due(db, loaded, now):
                retried.append(loaded.entry.id)  # a failed attempt, or one deferred behind it
                chats.add(loaded.entry.chat_id)
            else:
                chats.add(loaded.entry.chat_id)
    delivered = 0
    for chat_id in sorted(chats):
        outcomes = delivery.deliver_in_order(db, chat_id, uid, notifier, actor=actor, now=now)
        delivered += sum(outcome is delivery.Outcome.DELIVERED for outcome in outcomes.values())
    return InboxRepairReport(recounted=recount.changes, requeued=requeued, retried=retried, delivered=delivered)


EXPIRY_PAGE = 400
"""Documents read per query (and updated per commit) by set_expiry."""


def set_expiry(db: Client, *, now: datetime | None = None, progress: Progress | None = None) -> dict[str, int]:
    """Give the documents written before their TTL field existed their `expiresAt` (once, after upgrading
    from a deployment with the cleanup functions; see docs/RUNBOOK.md): DELIVERED queue entries
    (delivered_expiry of their deliveredAt) and idempotency records (send_plan.record_expiry of their
    createdAt, or, for a scheduled send, of the latest deliverAt it can have). Nudge records keep none.
    Idempotent: a document that has one is left alone.

    Returns:
        How many documents got one, per collection (`messageQueue`, `idempotencyKeys`).
    """
    at_now: datetime = now or clock.now()
    latest_schedule = timedelta(days=constants.MAX_SCHEDULE_DAYS)

    def time_of(data: dict, field: str) -> datetime:
        value = data.get(field)
        return value if isinstance(value, datetime) else at_now  # a hand-edited one: dated from today

    def entry_expiry(data: dict) -> datetime | None:
        return queue.delivered_expiry(time_of(data, "deliveredAt"))

    def record_expiry(data: dict) -> datetime | None:
        created = time_of(data, "createdAt")
        return send_plan.record_expiry(created, created + latest_schedule if data.get("scheduled") else None)

    counts = {"messageQueue": 0, "idempotencyKeys": 0}
    for region in Region:
        delivered = paths.queue(db, region).where(filter=FieldFilter("status", "==", QueueStatus.DELIVERED.value))
        counts["messageQueue"] += _expire_untimed(db, delivered, entry_expiry, progress)
    records = paths.idempotency_keys(db)
    counts["idempotencyKeys"] += _expire_untimed(
        db, records, lambda data: None if data.get("senderId") == nudges.SENDER else record_expiry(data), progress)
    return counts


def _expire_untimed(db: Client, query: Query | CollectionReference, expiry: Callable[[dict], datetime | None],
                    progress: Progress | None) -> int:
    """Set `expiresAt` = expiry(document) on each document of `query` that has none, a commit per page,
    each write conditional on the document as read; how many got one. A page whose commit meets a
    change is written document by document, leaving out those changed meanwhile (a run again takes them)."""
    updated, last = 0, None
    while True:
        page_query = query.order_by("__name__").limit(EXPIRY_PAGE)
        page = list((page_query.start_after(last) if last is not None else page_query).stream())
        if not page:
            return updated
        last = page[-1]
        writes = [(s, at) for s in page if (s.to_dict() or {}).get("expiresAt") is None
                  and (at := expiry(s.to_dict() or {})) is not None]
        batch = db.batch()
        for snapshot, at in writes:
            store.update_if_unchanged(db, batch, snapshot.reference, snapshot.update_time, {"expiresAt": at})
        if not writes:
            continue
        if store.commit_if_unchanged(batch):
            updated += len(writes)
        else:
            for snapshot, at in writes:
                one = db.batch()
                store.update_if_unchanged(db, one, snapshot.reference, snapshot.update_time, {"expiresAt": at})
                updated += store.commit_if_unchanged(one)
        if progress is not None:
            progress(f"expiresAt set on {updated} documents so far")
