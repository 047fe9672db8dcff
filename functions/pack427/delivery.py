"""Delivery: put a queued message in the recipient's inbox, exactly once in effect.

The inbox entry's id is the message id and it is written with `create`, so a
redelivery, a duplicated trigger event or two racing workers can never make
a second one, nor rewrite the first.
The queue entry's change to DELIVERED is conditional on it being unchanged
since it was read: of two racing workers exactly one reports the delivery.

Per-chat order: a message enters a recipient's inbox only after every older
message of the same chat to that recipient is there (or dropped). Whoever
delivers an entry delivers the older due ones of its chat first; a newer one
whose elder is waiting for a retry is deferred to that retry's time. Inbox
arrival order per chat is therefore message order, which is what lets sync
read the inbox by arrival without ever showing a chat out of order.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from firebase_functions import logger
from google.api_core import exceptions as gexc
from google.cloud.firestore import Client
from google.cloud.firestore_v1 import DocumentSnapshot
from google.cloud.firestore_v1.base_query import FieldFilter

from . import clock, constants, fan_out, inbox, queue, settings
from .models import DUE_STATUSES, InboxEntry, QueuedMessage, QueueStatus, Region
from .notifier import Notifier
from .queue import LoadedEntry

PARALLEL_DELIVERIES = 32
"""Deliveries one worker keeps in flight: each is a network round trip."""

DELIVERY_GROUP_SIZE = 100
"""Messages to one recipient delivered in one commit: two writes each
(inbox entry, queue entry) plus the inbox head, under Firestore's 500
writes per commit."""


class Outcome(StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"
    DROPPED = "dropped"
    SKIPPED = "skipped"
    """Not due any more, or another worker changed it first."""
    DEFERRED = "deferred"
    """Waits for an older message of its chat that is waiting for a retry."""


@dataclass
class ProcessReport:
    """What one processor run did, by outcome."""

    outcomes: Counter = field(default_factory=Counter)
    batches: int = 0
    found: int = 0
    """Due entries the batch query returned (a full batch means more may be due)."""

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
        actor: recorded in the entry's history (`trigger`, `scheduler`, ...).
        now: the attempt's time (default: the clock).
    """
    entry = loaded.entry
    if entry.status not in (QueueStatus.PENDING, QueueStatus.FAILED):
        return Outcome.SKIPPED
    now = now or clock.now()
    try:
        if not entry.transport_metadata.push_tokens:
            return _deliver_in_one_commit(db, loaded, actor=actor, now=now)
        # Offline recipient: the message goes to the inbox first, then the push.
        if entry.awaiting_inbox:
            in_inbox = _place_in_inbox(db, loaded, now)
            if in_inbox is None:
                return Outcome.SKIPPED
            loaded = in_inbox
        elif entry.attempts and _acknowledged(db, loaded.entry):
            # A push being retried for a message a device already has: nothing left to tell.
            delivered = queue.mark_delivered(db, loaded, actor=actor, now=now, details={"acknowledged": True})
            return Outcome.DELIVERED if delivered else Outcome.SKIPPED
        notifier.notify(entry)
        return Outcome.DELIVERED if queue.mark_delivered(db, loaded, actor=actor, now=now) else Outcome.SKIPPED
    except Exception as err:  # noqa: BLE001 - any failure is a failed attempt, retried later
        logger.warn(f"delivery of {entry.id} failed: {err!r}", entryId=entry.id, actor=actor)
        status = queue.mark_failed(db, loaded, f"{type(err).__name__}: {err}", actor=actor, now=now)
        if status is None:
            return Outcome.SKIPPED
        return Outcome.DROPPED if status is QueueStatus.DROPPED else Outcome.FAILED


def _acknowledged(db: Client, entry: QueuedMessage) -> bool:
    """Whether a device of the recipient acknowledged the entry's inbox position (ackMessages)."""
    if entry.inbox_seq is None:
        return False
    return inbox.heads(db, [entry.recipient_id])[entry.recipient_id].state.acked_seq >= entry.inbox_seq


def inbox_entries(entries: list[QueuedMessage], now: datetime) -> list[InboxEntry]:
    """The inbox entries of `entries` delivered at `now` (numbered by inbox.placed)."""
    return [
        InboxEntry(
            seq=0,
            message_id=entry.message_id,
            chat_id=entry.chat_id,
            sender_id=entry.sender_id,
            sender_name=entry.transport_metadata.sender_name,
            text=entry.text,
            content_ref=entry.content_ref,
            region=entry.target_region,
            system_nudge=entry.system_nudge,
            created_at=entry.created_at,
            delivered_at=now,
        )
        for entry in entries
    ]


def _place_in_inbox(db: Client, loaded: LoadedEntry, now: datetime) -> LoadedEntry | None:
    """Create the inbox entry and clear `awaitingInbox` atomically; the status stays.

    Returns:
        The entry as now stored, or None if another worker changed it first.
    """
    entry = loaded.entry
    placed: list[InboxEntry] = []

    def add_writes(batch, numbered: list[InboxEntry]) -> None:
        placed[:] = numbered
        queue.add_placed(db, batch, loaded, inbox_seq=numbered[0].seq, now=now)

    try:
        written = inbox.place(db, entry.recipient_id, inbox_entries([entry], now), add_writes, now=now)
    except gexc.AlreadyExists:
        return None
    if written is None:
        return None
    update = {"awaiting_inbox": False, "inbox_seq": placed[0].seq}
    return LoadedEntry(entry.model_copy(update=update), written[0].update_time)


def _deliver_in_one_commit(db: Client, loaded: LoadedEntry, *, actor: str, now: datetime) -> Outcome:
    """Inbox entry and DELIVERED in one atomic commit (the common, online case)."""
    entry = loaded.entry

    def add_writes(batch, numbered: list[InboxEntry]) -> None:
        queue.add_delivered(db, batch, loaded, actor=actor, now=now, inbox_seq=numbered[0].seq)

    try:
        delivered = inbox.place(db, entry.recipient_id, inbox_entries([entry], now), add_writes, now=now) is not None
    except gexc.AlreadyExists:
        # An earlier attempt placed the message; only the status is left to record.
        delivered = queue.mark_delivered(db, loaded, actor=actor, now=now)
    return Outcome.DELIVERED if delivered else Outcome.SKIPPED


def deliver_in_order(
    db: Client,
    chat_id: str,
    recipient_id: str,
    notifier: Notifier,
    *,
    actor: str,
    now: datetime | None = None,
    up_to: str | None = None,
    awaiting: list[LoadedEntry] | None = None,
) -> dict[str, Outcome]:
    """Attempt the entries of one (chat, recipient) not yet in the inbox, oldest message first.

    The first one that is not due (it waits for a retry) holds back the newer
    ones: they are deferred to its retry time, so that none overtakes it.

    Args:
        up_to: stop at this message id (the trigger's own message); default: all.
        now: the attempt's time (default: the clock).
        awaiting: the pair's entries not in the inbox up to `up_to`, as just
            read (`queue.awaiting_inbox_of_pairs`); default: read them here.

    Returns:
        The outcome for each entry id that was attempted or deferred.
    """
    now = now or clock.now()
    outcomes: dict[str, Outcome] = {}
    blocker: QueuedMessage | None = None
    if awaiting is None:
        awaiting = queue.awaiting_inbox(db, chat_id, recipient_id, up_to=up_to)
    i = 0
    while i < len(awaiting):
        loaded = awaiting[i]
        entry = loaded.entry
        if blocker is None and entry.next_attempt_at > now:
            blocker = entry
        if blocker is not None:
            if blocker is not entry and queue.defer(db, loaded, until=blocker.next_attempt_at, now=now):
                outcomes[entry.id] = Outcome.DEFERRED
            i += 1
            continue
        run = _online_run(awaiting[i:], now)
        if len(run) > 1 and _deliver_together(db, run, actor=actor, now=now):
            outcomes.update((e.entry.id, Outcome.DELIVERED) for e in run)
            i += len(run)
            continue
        outcomes[entry.id] = deliver(db, loaded, notifier, actor=actor, now=now)
        if outcomes[entry.id] is not Outcome.DELIVERED:
            # Failed, dropped or handled by another worker: is it in the inbox now?
            fresh = queue.load(db, entry.target_region, entry.id)
            if fresh is not None and fresh.entry.awaiting_inbox:
                blocker = fresh.entry
        i += 1
    return outcomes


def _due_and_online(loaded: LoadedEntry, now: datetime) -> bool:
    """Due at `now` and needs no push: it can go to the inbox with others in one commit."""
    entry = loaded.entry
    return not entry.transport_metadata.push_tokens and entry.next_attempt_at <= now and entry.status in DUE_STATUSES


def _online_run(awaiting: list[LoadedEntry], now: datetime) -> list[LoadedEntry]:
    """The leading entries that are due and need no push, at most DELIVERY_GROUP_SIZE."""
    run = []
    for loaded in awaiting[:DELIVERY_GROUP_SIZE]:
        if not _due_and_online(loaded, now):
            break
        run.append(loaded)
    return run


def _deliver_together(db: Client, run: list[LoadedEntry], *, actor: str, now: datetime) -> bool:
    """Deliver consecutive messages of one (chat, recipient) in one commit.

    A backlog then costs one head move per group instead of one per message.
    False if nothing was written (an entry changed, or any error): the caller
    then attempts them one by one, which records failures properly.
    """

    def add_writes(batch, numbered: list[InboxEntry]) -> None:
        for loaded, placed in zip(run, numbered, strict=True):
            queue.add_delivered(db, batch, loaded, actor=actor, now=now, inbox_seq=placed.seq)

    try:
        placing = inbox_entries([loaded.entry for loaded in run], now)
        return inbox.place(db, run[0].entry.recipient_id, placing, add_writes, now=now) is not None
    except Exception as err:  # noqa: BLE001 - the one-by-one path retries and records it
        logger.debug(f"group delivery fell back to one by one: {err!r}")
        return False


def on_enqueued(
    db: Client, snapshot: DocumentSnapshot | None, notifier: Notifier, *, now: datetime | None = None
) -> Outcome:
    """The first attempt, made by the trigger the moment an entry is created.

    An entry whose message the send placed in the inbox itself carries the
    push to an offline recipient: it is attempted as the event gives it. An
    entry awaiting the inbox is delivered after the older due messages of
    its chat (normally none). If a worker got there first, the update-time
    precondition makes this a no-op.

    Returns:
        The outcome for the event's own entry.
    """
    if snapshot is None or not snapshot.exists or settings.direct_delivery(db):
        return Outcome.SKIPPED  # mode direct: the send delivers it, the drain retries what fails
    loaded = LoadedEntry.from_snapshot(snapshot)
    entry = loaded.entry
    if not entry.awaiting_inbox:
        outcome = deliver(db, loaded, notifier, actor="trigger", now=now)
    else:
        outcomes = deliver_in_order(
            db, entry.chat_id, entry.recipient_id, notifier, actor="trigger", now=now, up_to=entry.message_id
        )
        outcome = outcomes.get(entry.id, Outcome.SKIPPED)
    logger.debug(f"trigger attempt of {entry.id}: {outcome}", entryId=entry.id, outcome=outcome.value)
    return outcome


def process_batch(
    db: Client,
    region: Region,
    notifier: Notifier,
    *,
    actor: str = "scheduler",
    now: datetime | None = None,
    limit: int = constants.BATCH_SIZE,
    shard: int | None = None,
) -> ProcessReport:
    """Attempt the entries of `region` that are due at `now` (at most `limit` found).

    Entries awaiting the inbox are taken chat by chat (per (chat, recipient),
    up to the newest of the batch, in message order). The pairs whose entries
    are all due and need no push (the usual backlog) are delivered together,
    many recipients to a commit (`_deliver_in_bulk`); the others, and any pair
    a bulk commit could not deliver, through `deliver_in_order`. Entries
    already in the inbox (a push to retry) are attempted one by one. Safe to
    run in several workers at once: each entry is delivered once.

    Args:
        actor: recorded in the audit trail (default `scheduler`).
        now: the attempts' time (default: the clock).
        limit: due entries to take (default BATCH_SIZE).
        shard: only this slice of the queue (default: all of it).
    """
    now = now or clock.now()
    report = ProcessReport(batches=1)
    entries = queue.due_entries(db, region, now=now, limit=limit, shard=shard)
    report.found = len(entries)
    push_retries = [e for e in entries if not e.entry.awaiting_inbox]
    # Per (chat, recipient): the newest message of it in this batch; older ones go first.
    newest: dict[tuple[str, str], str] = {}
    for e in entries:
        if e.entry.awaiting_inbox:
            key = (e.entry.chat_id, e.entry.recipient_id)
            newest[key] = max(newest.get(key, ""), e.entry.message_id)
    awaiting = queue.awaiting_inbox_of_pairs(db, newest, limit=2 * limit)
    together = {pair: run for pair, run in awaiting.items() if run and all(_due_and_online(e, now) for e in run)}

    def isolated(work, *args) -> list[Outcome]:
        # One entry's or chat's trouble (Firestore unavailable, a bug) must not stop the batch.
        try:
            return work(*args)
        except Exception as err:  # noqa: BLE001
            logger.error(f"queue processing step failed: {err!r}", step=work.__name__, args=repr(args)[:300])
            return []

    def attempt_push(loaded: LoadedEntry) -> list[Outcome]:
        return [deliver(db, loaded, notifier, actor=actor, now=now)]

    def attempt_chat(chat: tuple[str, str], known: list[LoadedEntry] | None) -> list[Outcome]:
        return list(deliver_in_order(
            db, *chat, notifier, actor=actor, now=now, up_to=newest[chat], awaiting=known).values())

    with ThreadPoolExecutor(max_workers=PARALLEL_DELIVERIES) as pool:
        delivered, left = _deliver_in_bulk(db, pool, together, actor=actor, now=now)
        report.outcomes[Outcome.DELIVERED.value] += delivered
        one_by_one = [(pair, awaiting.get(pair)) for pair in newest if pair not in together]
        one_by_one += [(pair, None) for pair in left]  # read again: the bulk commit lost a race
        started = [
            pool.map(lambda e: isolated(attempt_push, e), push_retries),
            pool.map(lambda work: isolated(attempt_chat, *work), one_by_one),
        ]
        for results in started:
            for outcomes in results:
                for outcome in outcomes:
                    report.add(outcome)
    return report


DEPTH_RECOUNT_ROUNDS = 10
"""Rounds of a drain between two counts of a region's depth (see drain)."""

MAX_WRITES_PER_COMMIT = 500
"""Firestore's limit on the writes of one commit."""


def _deliver_in_bulk(
    db: Client,
    pool: ThreadPoolExecutor,
    runs: dict[tuple[str, str], list[LoadedEntry]],
    *,
    actor: str,
    now: datetime,
) -> tuple[int, list[tuple[str, str]]]:
    """Deliver whole runs of many (chat, recipient) pairs, many recipients to a commit.

    Each recipient's messages (its chats' runs one after the other, each in
    message order) go in groups of DELIVERY_GROUP_SIZE; round k commits every recipient's k-th
    group, packed into commits of at most MAX_WRITES_PER_COMMIT writes, each
    conditional on every entry and every head in it. A commit whose
    precondition fails (a trigger or another worker got there first) writes
    nothing; its recipients are left to the one-by-one path, which reads
    again. Commits of a round run in parallel on `pool`.

    Returns:
        How many entries were delivered, and the pairs left to the one-by-one path.
    """
    # A recipient's runs one after the other (each chat keeps its order), cut into groups:
    # one head move per group, whatever the number of chats.
    by_recipient: dict[str, list[LoadedEntry]] = {}
    for (_, recipient), run in runs.items():
        by_recipient.setdefault(recipient, []).extend(run)
    groups = {
        recipient: [entries[start:start + DELIVERY_GROUP_SIZE] for start in range(0, len(entries), DELIVERY_GROUP_SIZE)]
        for recipient, entries in by_recipient.items()
    }
    delivered, lost = 0, set[str]()

    def commit(part: list[tuple[inbox.Head, list[LoadedEntry]]]) -> tuple[int, list[str]]:
        """(entries delivered, recipients left to the one-by-one path)"""
        try:
            batch = db.batch()
            for head, group in part:
                placing = inbox_entries([e.entry for e in group], now)
                moved, numbered = inbox.placed(head.state, head.uid, placing, now=now)
                for loaded, placed in zip(group, numbered, strict=True):
                    queue.add_delivered(db, batch, loaded, actor=actor, now=now, inbox_seq=placed.seq)
                inbox.add_placement(db, batch, head, moved, numbered)
            batch.commit()
        except Exception as err:  # noqa: BLE001 - the one-by-one path retries and records it
            logger.debug(f"bulk delivery to {len(part)} inboxes fell back to one by one: {err!r}")
            return 0, [head.uid for head, _ in part]
        return sum(len(group) for _, group in part), []

    while groups:
        try:
            heads = inbox.heads(db, list(groups))
        except Exception as err:  # noqa: BLE001 - as a failed commit: the one-by-one path goes again
            logger.warn(f"bulk delivery could not read {len(groups)} inbox heads: {err!r}")
            lost.update(groups)
            break
        commits: list[list[tuple[inbox.Head, list[LoadedEntry]]]] = [[]]
        writes = 0
        for recipient, queued in groups.items():
            group = queued.pop(0)
            if inbox.unknown_read_positions(heads[recipient].state, (e.entry.chat_id for e in group)):
                lost.add(recipient)  # a pruned chat's late message: the one-by-one path reads its position
                continue
            size = 2 * len(group) + 1  # queue entry and inbox entry each; the head
            if writes + size > MAX_WRITES_PER_COMMIT:
                commits.append([])
                writes = 0
            commits[-1].append((heads[recipient], group))
            writes += size
        for count, failed in pool.map(commit, commits):
            delivered += count
            lost.update(failed)
        groups = {recipient: queued for recipient, queued in groups.items() if queued and recipient not in lost}
    return delivered, [pair for pair in runs if pair[1] in lost]


@dataclass(frozen=True)
class RoundPlan:
    """How one drain round takes a region's queue: entries per batch, slices in parallel, the mode's name."""

    limit: int
    shards: list[int | None]
    mode: str


def back_pressure(
    depth: int, *, scale_up_depth: int = constants.SCALE_UP_DEPTH, fan_out_depth: int = constants.FAN_OUT_DEPTH
) -> RoundPlan:
    """The seed's scale-up strategy for a region `depth` entries deep.

    Over `scale_up_depth` (5,000) a round takes LARGE_BATCH_SIZE (1,000) entries instead of
    BATCH_SIZE (200); over `fan_out_depth` (10,000) it runs QUEUE_SHARDS (4) workers, one per
    slice of the queue.
    """
    limit = constants.LARGE_BATCH_SIZE if depth > scale_up_depth else constants.BATCH_SIZE
    if depth > fan_out_depth:
        return RoundPlan(limit, list(range(constants.QUEUE_SHARDS)), "fan-out")
    return RoundPlan(limit, [None], "large" if depth > scale_up_depth else "normal")


def drain(
    db: Client,
    notifier: Notifier,
    *,
    regions: tuple[Region, ...] = tuple(Region),
    actor: str = "scheduler",
    time_budget_s: float = constants.PROCESSOR_TIME_BUDGET_SECONDS,
    scale_up_depth: int = constants.SCALE_UP_DEPTH,
    fan_out_depth: int = constants.FAN_OUT_DEPTH,
    progress: Callable[[Region, dict[str, int | str]], None] | None = None,
) -> dict[str, dict[str, int | str]]:
    """Resume stalled fan-outs (fan_out.resume_stalled), then process batches until
    nothing is due or the time budget is spent.

    Under the rollback switch (mode direct) too: the sends deliver what they
    queue in their own requests, and the processor still drains what was
    queued before the switch, and retries, so nothing waits for the switch
    back; per-chat order holds across both (deliver_in_order).

    Regions take turns, one round each, so a backlog in one region does not
    starve the others. Back-pressure (the seed's scale-up strategy), decided
    each round from the region's depth: counted (one count aggregation, which
    reads every waiting entry's index entry) every DEPTH_RECOUNT_ROUNDS rounds,
    less what the rounds in between attempted. Over
    `scale_up_depth` a round takes LARGE_BATCH_SIZE entries; over
    `fan_out_depth` it runs QUEUE_SHARDS workers at once, each on its own
    slice of the queue (QueuedMessage.shard, a hash of chat and recipient), so
    no two workers ever handle the same chat for the same recipient. Entries
    written before slices existed have no shard: they wait for a round below
    `fan_out_depth`. A message is delivered once whatever the overlap, by the
    update-time preconditions.

    Args:
        regions: the regions whose queues to drain (default: all).
        actor: recorded in the audit trail (default `scheduler`).
        time_budget_s: no new round starts after this many seconds (default 50).
        scale_up_depth: depth over which batches grow (default SCALE_UP_DEPTH).
        fan_out_depth: depth over which workers fan out (default FAN_OUT_DEPTH).
        progress: called after each round with the region and its totals so far
            (default none).

    Returns:
        Per region, the counts by outcome, the number of batches, and the
        last round's `mode` (`normal`, `large` or `fan-out`).
    """
    deadline = time.monotonic() + time_budget_s
    try:
        fan_out.resume_stalled(db)
    except Exception as err:  # noqa: BLE001 - a stuck fan-out must not stop the queues' drain
        logger.error(f"resuming stalled fan-outs failed: {err!r}")
    reports = {region: ProcessReport() for region in regions}
    modes = {region: "normal" for region in regions}
    depths: dict[Region, int] = {}
    busy = list(regions)
    while busy and time.monotonic() < deadline:
        for region in list(busy):
            if reports[region].batches % DEPTH_RECOUNT_ROUNDS == 0:
                depths[region] = queue.depth(db, region)
            depth = depths[region]
            plan = back_pressure(depth, scale_up_depth=scale_up_depth, fan_out_depth=fan_out_depth)
            modes[region] = plan.mode
            with ThreadPoolExecutor(max_workers=len(plan.shards)) as workers:
                rounds = list(workers.map(
                    lambda shard, region=region, limit=plan.limit: process_batch(
                        db, region, notifier, actor=actor, limit=limit, shard=shard),
                    plan.shards))
            for batch in rounds:
                reports[region].batches += 1
                reports[region].outcomes.update(batch.outcomes)
            depths[region] = max(depth - sum(batch.attempted for batch in rounds), 0)
            if all(batch.found < plan.limit or not batch.attempted for batch in rounds):
                busy.remove(region)
            if progress is not None:
                progress(region, {**reports[region].as_dict(), "depth": depth, "mode": modes[region]})
    summary: dict[str, dict[str, int | str]] = {
        region.value: {**report.as_dict(), "mode": modes[region]} for region, report in reports.items()}
    if any(report.attempted for report in reports.values()):
        logger.info(f"{actor} processed the queues", actor=actor, regions=summary)
    return summary


def deliver_now(
    db: Client, chat_id: str, message_id: str, notifier: Notifier, *, now: datetime | None = None
) -> dict[str, Outcome]:
    """Deliver what one message left in the queues, in the caller's request (rollback: mode direct).

    Entries awaiting the inbox go through `deliver_in_order`, as the trigger
    does: the recipient's older undelivered messages of the chat go first, so
    inbox seq and per-chat order hold. Push-only entries (the send placed the
    message) are pushed. A failure is recorded on the entry, and the
    processor, which keeps draining in mode direct, retries it.

    Args:
        chat_id: the message's chat.
        now: the attempts' time (default: the clock).

    Returns:
        The outcome of each entry attempted.
    """
    query = db.collection_group("messageQueue").where(filter=FieldFilter("messageId", "==", message_id))
    entries = [LoadedEntry.from_snapshot(s) for s in query.stream()]

    def attempt(loaded: LoadedEntry) -> dict[str, Outcome]:
        entry = loaded.entry
        if entry.awaiting_inbox:
            return deliver_in_order(db, chat_id, entry.recipient_id, notifier, actor="direct", now=now,
                                    up_to=message_id)
        return {entry.id: deliver(db, loaded, notifier, actor="direct", now=now)}

    outcomes: dict[str, Outcome] = {}
    with ThreadPoolExecutor(max_workers=PARALLEL_DELIVERIES) as pool:
        for result in pool.map(attempt, entries):
            outcomes.update(result)
    return outcomes
