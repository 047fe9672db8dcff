"""Priority lanes under a backlog: how long a priority message waits, next to a normal one.

In a project of its own (no trigger fires there): a region's queue holds
`backlog` normal messages (100 recipients, 50 chats), then one priority
message and one normal message are queued last, to recipients of their own.
One worker drains the queue (`processor.drain`, as the scheduled processor
does); after each batch (a lane's batch returns before the round's next one
starts) the two are looked up. Their waits are timed from the drain's start,
in seconds and in rounds.
"""

from __future__ import annotations

import time
from datetime import timedelta

from google.cloud import firestore
from ulid import ULID

from pack427 import clock
from pack427.delivering import queue
from pack427.delivering.notifier import EmulatorNotifier
from pack427.models import QueuedMessage, QueueStatus, Region, TransportMetadata
from pack427.workers import processor


def _entry(n: int, recipient: str, chat: str, *, at, priority: bool = False) -> QueuedMessage:
    message_id = str(ULID.from_datetime(at + timedelta(microseconds=n)))
    return QueuedMessage(
        id=QueuedMessage.entry_id(message_id, recipient), message_id=message_id, chat_id=chat, sender_id="sender",
        recipient_id=recipient, region=Region.EU, target_region=Region.EU,
        content_ref=f"chats/{chat}/messages/{message_id}", text=f"message {n}", next_attempt_at=at,
        transport_metadata=TransportMetadata(), priority=priority, created_at=at, updated_at=at,
    )


def measure(project: str, backlog: int) -> dict:
    """The waits of a priority and a normal message queued behind `backlog` normal ones."""
    db = firestore.Client(project=project)
    at = clock.now() - timedelta(seconds=1)
    entries = [_entry(n, f"user{n % 100}", f"chat{n % 50}", at=at) for n in range(backlog)]
    paid = _entry(backlog, "paid-recipient", "paid-chat", at=at, priority=True)
    normal = _entry(backlog + 1, "normal-recipient", "normal-chat", at=at)
    for start in range(0, backlog, 500):
        queue.enqueue(db, entries[start:start + 500], actor="bench")
    queue.enqueue(db, [paid, normal], actor="bench")

    waits: dict[str, dict] = {}
    rounds = [0]
    started = time.perf_counter()

    def after_round(region, totals) -> None:
        rounds[0] += 1

    process_batch = processor.process_batch

    def watched(*args, **kwargs):  # the harness looks after every batch: a round has two lanes
        report = process_batch(*args, **kwargs)
        for name, entry in (("priority", paid), ("normal", normal)):
            if name not in waits and queue.load(db, Region.EU, entry.id).entry.status is QueueStatus.DELIVERED:
                waits[name] = {"seconds": time.perf_counter() - started, "rounds": rounds[0] + 1}
        return report

    processor.process_batch = watched
    try:
        outcome = processor.drain(db, EmulatorNotifier(), regions=(Region.EU,), actor="bench", time_budget_s=3600,
                                  progress=after_round)
    finally:
        processor.process_batch = process_batch
    drain_s = time.perf_counter() - started
    if set(waits) != {"priority", "normal"}:
        raise SystemExit(f"lanes: not delivered: {sorted({'priority', 'normal'} - set(waits))}")
    return {"backlog": backlog, "priority_wait": waits["priority"], "normal_wait": waits["normal"],
            "drain_seconds": drain_s, "rounds": rounds[0], "delivered": outcome["EU"]["delivered"],
            "ratio_priority_to_normal_wait": waits["priority"]["seconds"] / waits["normal"]["seconds"]}
