"""The queue processor: batches of due entries, a region's backlog drained under back-pressure.

`process_batch` takes one batch of a region's due entries and delivers them
(many recipients to a commit where it can, see `_deliver_in_bulk`); `drain`
runs batches region by region until nothing is due or its time is up, as the
scheduled `pack427_processMessageQueue` does, scaling up under a backlog
(`back_pressure`). Delivery of each entry, its order and its exactly-once
guarantee are delivery's.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from firebase_functions import logger
from google.cloud.firestore import Client

from .. import clock, constants, inbox, store
from ..accepting import chat_core_intake, scheduling
from ..delivering import backlog, fan_out, queue
from ..delivering.delivery import (
    DELIVERY_GROUP_SIZE,
    PARALLEL_DELIVERIES,
    Outcome,
    deliver,
    deliver_in_order,
    due_and_online,
    inbox_entries,
)
from ..delivering.notifier import Notifier
from ..delivering.queue import LoadedEntry
from ..models import InboxEntry, Region


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


def process_batch(
    db: Client,
    region: Region,
    notifier: Notifier,
    *,
    actor: str = "scheduler",
    now: datetime | None = None,
    limit: int = constants.BATCH_SIZE,
    shard: int | None = None,
    priority_only: bool = False,
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
        priority_only: only the priority lane (default: every due entry, oldest first).
    """
    now = now or clock.now()
    report = ProcessReport(batches=1)
    entries = backlog.due_entries(db, region, now=now, limit=limit, shard=shard, priority_only=priority_only)
    report.found = len(entries)
    push_retries = [e for e in entries if not e.entry.awaiting_inbox]
    # Per (chat, recipient): the newest message of it in this batch; older ones go first.
    newest: dict[tuple[str, str], str] = {}
    for e in entries:
        if e.entry.awaiting_inbox:
            key = (e.entry.chat_id, e.entry.recipient_id)
            newest[key] = max(newest.get(key, ""), e.entry.message_id)
    awaiting = backlog.awaiting_inbox_of_pairs(db, newest, limit=2 * limit)
    together = {pair: run for pair, run in awaiting.items() if run and all(due_and_online(e, now) for e in run)}

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

DRAIN_ROUND_FAILURES = 2
"""Failed rounds (a read or commit Firestore refused) after which a drain leaves a region to the next run."""


Unit = tuple[inbox.Head, list[LoadedEntry], inbox.Moved, list[InboxEntry]]
"""One recipient's group of a bulk delivery round: their head as read, the entries, the head's move
and the inbox entries numbered."""


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
    group, packed into commits sized by their writes and bytes (store.commits: COMMIT_MAX_WRITES,
    COMMIT_MAX_BYTES; a head with many chats or long ids takes more of a commit than a small one),
    each conditional on every entry and every head in it. A commit whose
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

    def commit(part: list[Unit]) -> tuple[int, list[str]]:
        """(entries delivered, recipients left to the one-by-one path)"""
        try:
            batch = db.batch()
            for head, group, moved, numbered in part:
                for loaded, placed in zip(group, numbered, strict=True):
                    queue.add_delivered(db, batch, loaded, actor=actor, now=now, inbox_seq=placed.seq)
                inbox.add_placement(db, batch, head, moved, numbered)
            batch.commit()
        except Exception as err:  # noqa: BLE001 - the one-by-one path retries and records it
            logger.debug(f"bulk delivery to {len(part)} inboxes fell back to one by one: {err!r}")
            return 0, [head.uid for head, *_ in part]
        return sum(len(group) for _, group, *_ in part), []

    while groups:
        try:
            heads = inbox.heads(db, list(groups))
        except Exception as err:  # noqa: BLE001 - as a failed commit: the one-by-one path goes again
            logger.warn(f"bulk delivery could not read {len(groups)} inbox heads: {err!r}")
            lost.update(groups)
            break
        units: list[Unit] = []
        for recipient, queued in groups.items():
            group = queued.pop(0)
            head = heads[recipient]
            if not head.usable or inbox.needs_lookup(head.state, (e.entry.chat_id for e in group)):
                # A pruned or parked chat's message (the one-by-one path looks it up), or a damaged
                # head (the one-by-one path records the failed attempt).
                lost.add(recipient)
                continue
            moved, numbered = inbox.placed(head.state, head.uid, inbox_entries([e.entry for e in group], now), now=now)
            units.append((head, group, moved, numbered))
        costs = [inbox.placement_cost(head.uid, moved, numbered)
                 + sum((queue.entry_cost(db, e.entry) for e in group), store.Cost())
                 for head, group, moved, numbered in units]
        commits = [[units[i] for i in part] for part in store.commits(costs)]
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
    """Resume stalled fan-outs (fan_out.resume_stalled), take chat-core messages whose trigger did
    not (chat_core_intake.sweep, chat-core mode), then take rounds until nothing is due or the time
    budget is spent: each round delivers a batch of due scheduled messages
    (scheduling.deliver_due_batch, SCHEDULED_BATCH, oldest deliverAt first), then a batch of each
    busy region's queue.

    Scheduled messages and retries take turns, so neither waits for the other to run out: at one
    instant thousands of due scheduled messages cannot take the run while retries wait. While any
    region's queue has due entries, scheduled deliveries stop for this run once they have taken
    SCHEDULED_SHARE of the budget (`scheduled_turn`); the rest go next run, a minute late.

    Under the rollback switch (mode direct) too: the sends deliver what they
    queue in their own requests, and the processor still drains what was
    queued before the switch, and retries, so nothing waits for the switch
    back; per-chat order holds across both (deliver_in_order).

    Regions take turns, one round each, so a backlog in one region does not
    starve the others; a round that failed (Firestore unavailable: nothing it did
    not commit is lost, its entries stay due) is the region's only, and after
    DRAIN_ROUND_FAILURES of them the region waits for the next run while the
    others go on. Priority lanes: each round takes a batch of the
    region's priority entries (paid and VIP messages, QueuedMessage.priority)
    first, then a batch of every due entry, oldest first. A priority message
    therefore waits at most one round under any normal backlog, and the normal
    lane is never starved: every round delivers one batch of the oldest due
    entries, priority or not, so a normal entry waits no more rounds than it
    would without lanes (its place in age order over the batch size).

    Back-pressure (the seed's scale-up strategy), decided each round from the
    region's depth: counted (one count aggregation, which reads every waiting
    entry's index entry) every DEPTH_RECOUNT_ROUNDS rounds, less what the
    rounds in between attempted. Over
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
    started = time.monotonic()
    deadline = started + time_budget_s
    for step in (fan_out.resume_stalled, chat_core_intake.sweep):
        try:
            step(db)
        except Exception as err:  # noqa: BLE001 - neither may stop the queues' drain
            logger.error(f"{step.__module__}.{step.__name__} failed: {err!r}")
    reports = {region: ProcessReport() for region in regions}
    modes = {region: "normal" for region in regions}
    depths: dict[Region, int] = {}
    busy = list(regions)
    failures: Counter = Counter()
    scheduled, scheduled_spent_s, scheduled_more = Counter[str](), 0.0, True
    while (busy or scheduled_more) and time.monotonic() < deadline:
        share = constants.SCHEDULED_SHARE
        if scheduled_turn(scheduled_more, bool(busy), scheduled_spent_s, time_budget_s, share):
            turn = time.monotonic()
            # The turn ends at the deadline, or at the end of the share while queues wait.
            until = min(deadline, turn + time_budget_s * share - scheduled_spent_s) if busy else deadline
            try:
                counts, scheduled_more = scheduling.deliver_due_batch(db, deadline=until)
                scheduled.update(counts)
            except Exception as err:  # noqa: BLE001 - it may not stop the queues' drain
                logger.error(f"scheduling.deliver_due_batch failed: {err!r}")
                scheduled_more = False
            scheduled_spent_s += time.monotonic() - turn
        for region in list(busy):
            try:
                if reports[region].batches % DEPTH_RECOUNT_ROUNDS == 0:
                    depths[region] = backlog.depth(db, region)
                depth = depths[region]
                plan = back_pressure(depth, scale_up_depth=scale_up_depth, fan_out_depth=fan_out_depth)
                modes[region] = plan.mode
                rounds: list[ProcessReport] = []
                for priority_only in (True, False):  # the priority lane first, then every due entry
                    with ThreadPoolExecutor(max_workers=len(plan.shards)) as workers:
                        rounds += workers.map(
                            lambda shard, region=region, limit=plan.limit, lane=priority_only: process_batch(
                                db, region, notifier, actor=actor, limit=limit, shard=shard, priority_only=lane),
                            plan.shards)
            except Exception as err:  # noqa: BLE001 - one region's trouble must not stop the others' drain
                # A transient error (Firestore unavailable) gets the next round; a second one, the next run.
                failures[region] += 1
                logger.error(f"a drain round of {region.value} failed: {err!r}", region=region.value,
                             failures=failures[region])
                if failures[region] >= DRAIN_ROUND_FAILURES:
                    busy.remove(region)
                continue
            for batch in rounds:
                reports[region].batches += 1
                reports[region].outcomes.update(batch.outcomes)
            depths[region] = max(depth - sum(batch.attempted for batch in rounds), 0)
            every_due = rounds[len(plan.shards):]
            if all(batch.found < plan.limit or not batch.attempted for batch in every_due):
                busy.remove(region)
            if progress is not None:
                progress(region, {**reports[region].as_dict(), "depth": depth, "mode": modes[region]})
    summary: dict[str, dict[str, int | str]] = {
        region.value: {**report.as_dict(), "mode": modes[region]} for region, report in reports.items()}
    if any(report.attempted for report in reports.values()) or scheduled:
        logger.info(f"{actor} processed the queues", actor=actor, regions=summary, scheduled=dict(scheduled))
    return summary


def scheduled_turn(more: bool, queues_busy: bool, spent_s: float, budget_s: float, share: float) -> bool:
    """Whether a drain round starts with a batch of due scheduled messages.

    Args:
        more: scheduled messages may still be due (the last batch was full and made progress).
        queues_busy: some region's queue still has due entries this run.
        spent_s: the time scheduled deliveries took so far in this run.
        budget_s: the run's time budget.
        share: the part of the budget scheduled deliveries may take while queues wait
            (SCHEDULED_SHARE); with none waiting they may take the rest.
    """
    return more and (not queues_busy or spent_s < budget_s * share)
