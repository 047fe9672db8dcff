"""Delivery: put a queued message in the recipient's inbox, exactly once in effect.

The inbox entry's id is the message id and it is written with `create`, so a
redelivery, a duplicated trigger event or two racing workers can never make
a second one, nor rewrite the first (its `deliveredAt` is what sync reads).
The queue entry's change to DELIVERED is conditional on it being unchanged
since it was read: of two racing workers exactly one reports the delivery.
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from firebase_functions import logger
from google.api_core import exceptions as gexc
from google.cloud.firestore import Client
from google.cloud.firestore_v1 import DocumentSnapshot

from . import clock, constants, paths, queue
from .models import InboxEntry, QueueStatus, Region
from .notifier import Notifier
from .queue import LoadedEntry

PARALLEL_DELIVERIES = 32
"""Deliveries one worker keeps in flight: each is a network round trip."""


class Outcome(StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"
    DROPPED = "dropped"
    SKIPPED = "skipped"
    """Not due any more, or another worker changed it first."""


@dataclass
class ProcessReport:
    """What one processor run did, by outcome."""

    outcomes: Counter = field(default_factory=Counter)
    batches: int = 0

    def add(self, outcome: Outcome) -> None:
        self.outcomes[outcome.value] += 1

    @property
    def attempted(self) -> int:
        return sum(self.outcomes.values())

    def as_dict(self) -> dict[str, int]:
        return {"batches": self.batches, **{o.value: self.outcomes[o.value] for o in Outcome}}


def deliver(
    db: Client, loaded: LoadedEntry, notifier: Notifier, *, actor: str, now: datetime | None = None
) -> Outcome:
    """Attempt one delivery of a due entry; a failure is recorded, never raised.

    Args:
        loaded: the entry as read; the change is conditional on it.
        notifier: pushes to offline recipients (entries with push tokens).
        actor: recorded in the audit trail (`trigger`, `scheduler`, ...).
        now: the attempt's time (default: the clock).
    """
    entry = loaded.entry
    if entry.status not in (QueueStatus.PENDING, QueueStatus.FAILED):
        return Outcome.SKIPPED
    now = now or clock.now()
    try:
        if entry.transport_metadata.push_tokens:
            _create_inbox_entry(db, loaded, now)
            notifier.notify(entry)
            return Outcome.DELIVERED if queue.mark_delivered(db, loaded, actor=actor, now=now) else Outcome.SKIPPED
        return _deliver_in_one_commit(db, loaded, actor=actor, now=now)
    except Exception as err:  # noqa: BLE001 - any failure is a failed attempt, retried later
        logger.warn(f"delivery of {entry.id} failed: {err!r}", entryId=entry.id, actor=actor)
        status = queue.mark_failed(db, loaded, f"{type(err).__name__}: {err}", actor=actor, now=now)
        if status is None:
            return Outcome.SKIPPED
        return Outcome.DROPPED if status is QueueStatus.DROPPED else Outcome.FAILED


def _inbox_entry(loaded: LoadedEntry, now: datetime) -> InboxEntry:
    entry = loaded.entry
    return InboxEntry(
        message_id=entry.message_id,
        chat_id=entry.chat_id,
        sender_id=entry.sender_id,
        text=entry.text,
        content_ref=entry.content_ref,
        region=entry.target_region,
        created_at=entry.created_at,
        delivered_at=now,
    )


def _create_inbox_entry(db: Client, loaded: LoadedEntry, now: datetime) -> None:
    """Create the inbox entry unless an earlier attempt already did."""
    ref = paths.inbox_entry(db, loaded.entry.recipient_id, loaded.entry.message_id)
    try:
        ref.create(_inbox_entry(loaded, now).to_firestore())
    except gexc.AlreadyExists:
        pass


def _deliver_in_one_commit(db: Client, loaded: LoadedEntry, *, actor: str, now: datetime) -> Outcome:
    """Inbox entry and DELIVERED in one atomic commit (the common, online case)."""
    entry = loaded.entry
    batch = db.batch()
    batch.create(paths.inbox_entry(db, entry.recipient_id, entry.message_id), _inbox_entry(loaded, now).to_firestore())
    queue.add_delivered(db, batch, loaded, actor=actor, now=now)
    try:
        delivered = queue.commit_if_unchanged(batch)
    except gexc.AlreadyExists:
        # An earlier attempt placed the message; only the status is left to record.
        delivered = queue.mark_delivered(db, loaded, actor=actor, now=now)
    return Outcome.DELIVERED if delivered else Outcome.SKIPPED


def on_enqueued(db: Client, snapshot: DocumentSnapshot | None, notifier: Notifier) -> Outcome:
    """The first attempt, made by the trigger the moment an entry is created.

    Uses the event's snapshot (no read): if a worker got there first, the
    update-time precondition makes this a no-op.
    """
    if snapshot is None or not snapshot.exists:
        return Outcome.SKIPPED
    loaded = LoadedEntry.from_snapshot(snapshot)
    outcome = deliver(db, loaded, notifier, actor="trigger")
    logger.debug(f"trigger attempt of {loaded.entry.id}: {outcome}", entryId=loaded.entry.id, outcome=outcome.value)
    return outcome


def process_batch(
    db: Client,
    region: Region,
    notifier: Notifier,
    *,
    actor: str = "scheduler",
    now: datetime | None = None,
    limit: int = constants.BATCH_SIZE,
) -> ProcessReport:
    """Attempt every entry of `region` that is due at `now`, at most `limit`.

    Safe to run in several workers at once: each entry is delivered once.
    """
    now = now or clock.now()
    report = ProcessReport(batches=1)
    entries = queue.due_entries(db, region, now=now, limit=limit)
    with ThreadPoolExecutor(max_workers=PARALLEL_DELIVERIES) as pool:
        for outcome in pool.map(lambda e: deliver(db, e, notifier, actor=actor, now=now), entries):
            report.add(outcome)
    return report


def drain(
    db: Client,
    notifier: Notifier,
    *,
    regions: tuple[Region, ...] = tuple(Region),
    actor: str = "scheduler",
    time_budget_s: float = constants.PROCESSOR_TIME_BUDGET_SECONDS,
) -> dict[str, dict[str, int]]:
    """Process batches until nothing is due or the time budget is spent.

    Regions take turns, one batch each, so a backlog in one region does not
    starve the others.

    Args:
        regions: the regions whose queues to drain (default: all).
        actor: recorded in the audit trail.
        time_budget_s: no new batch starts after this many seconds.

    Returns:
        Per region, the counts by outcome and the number of batches.
    """
    deadline = time.monotonic() + time_budget_s
    reports = {region: ProcessReport() for region in regions}
    busy = list(regions)
    while busy and time.monotonic() < deadline:
        for region in list(busy):
            batch = process_batch(db, region, notifier, actor=actor)
            reports[region].batches += 1
            reports[region].outcomes.update(batch.outcomes)
            if batch.attempted < constants.BATCH_SIZE:
                busy.remove(region)
    summary = {region.value: report.as_dict() for region, report in reports.items()}
    if any(report.attempted for report in reports.values()):
        logger.info(f"{actor} processed the queues", actor=actor, regions=summary)
    return summary
