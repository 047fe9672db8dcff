"""Benchmarks on the emulator suite (run by scripts/bench).

1. Send-to-inbox latency through the real path: HTTP POST to the
   `pack427_sendMessage` callable, `pack427_onMessageEnqueued` trigger, inbox
   entry seen by a real-time listener. Same region (EU to EU) and cross region
   (EU to US), p50/p95/p99.
2. Backlog drain: one worker (`delivery.drain`) empties a queue of queued
   messages; messages per minute, next to the rate at which the same emulator
   accepts plain batched writes (the ratio travels across machines).
3. Offline catch-up: a device that missed 1,000 messages (in 10 chats) syncs
   them page by page (`sync.sync_messages`, the callable's service, in
   process: the HTTP hop adds one round trip per page of 100).

Numbers from a shared, noisy machine: compare ratios, not absolute figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "functions"))

from google.cloud import firestore  # noqa: E402
from pack427 import clock, delivery, paths, queue, sync  # noqa: E402
from pack427.models import QueuedMessage, Region, SyncMessagesRequest, TransportMetadata  # noqa: E402
from pack427.notifier import EmulatorNotifier  # noqa: E402
from pack427_client import CallableClient, sign_up  # noqa: E402
from ulid import ULID  # noqa: E402

SEED_P95_SAME_REGION_S = 2.0
SEED_P95_CROSS_REGION_S = 5.0
SEED_DRAIN_PER_MINUTE = 200
SEED_SYNC_1000_S = 10.0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class InboxClock:
    """Arrival times of inbox entries, from a real-time listener on one inbox."""

    def __init__(self, db: firestore.Client, uid: str):
        self.arrivals: dict[str, float] = {}
        self.changed = threading.Condition()
        self._watch = paths.inbox(db, uid).on_snapshot(self._on_change)

    def _on_change(self, _snapshots, changes, _read_time) -> None:
        now = time.perf_counter()
        with self.changed:
            for change in changes:
                self.arrivals.setdefault(change.document.id, now)
            self.changed.notify_all()

    def wait(self, message_id: str, timeout_s: float) -> float:
        with self.changed:
            if not self.changed.wait_for(lambda: message_id in self.arrivals, timeout_s):
                raise SystemExit(f"message {message_id} not delivered within {timeout_s} s")
            return self.arrivals[message_id]

    def close(self) -> None:
        self._watch.unsubscribe()


SENDS_PER_SENDER = 50
"""Each sender sends at most this many messages of a series: under the
60-a-minute rate limit, which would otherwise refuse a fast series."""


def latency(db: firestore.Client, messages: int) -> dict:
    auth, functions = os.environ["FIREBASE_AUTH_EMULATOR_HOST"], os.environ["PACK427_FUNCTIONS_URL"]
    results = {}
    for label, region in (("same_region", "EU"), ("cross_region", "US")):
        recipient = sign_up(auth, f"bench-{label}-{ULID()}@example.com")
        paths.user(db, recipient.uid).set({"region": region, "online": True})
        inbox = InboxClock(db, recipient.uid)
        samples = []
        try:
            for n in range(messages + 3):  # the first sends warm the function workers up
                if n % SENDS_PER_SENDER == 0:
                    sender = sign_up(auth, f"bench-sender-{ULID()}@example.com")
                    paths.user(db, sender.uid).set({"region": "EU", "online": True, "ageVerified18Plus": True})
                    chat_id = f"bench-{label}-{ULID()}"
                    paths.chat(db, chat_id).set({"participants": [sender.uid, recipient.uid]})
                    client = CallableClient(functions, sender.id_token)
                started = time.perf_counter()
                result = client.call(
                    "pack427_sendMessage", {"chatId": chat_id, "clientMessageId": str(ULID()), "text": f"m{n}"}
                )
                arrived = inbox.wait(result["messageId"], 120)
                if n >= 3:
                    samples.append(arrived - started)
        finally:
            inbox.close()
        results[label] = {
            "messages": len(samples),
            "p50_ms": percentile(samples, 50) * 1000,
            "p95_ms": percentile(samples, 95) * 1000,
            "p99_ms": percentile(samples, 99) * 1000,
            "mean_ms": statistics.mean(samples) * 1000,
        }
    return results


def backlog_entries(count: int) -> list[QueuedMessage]:
    now = clock.now() - timedelta(seconds=1)
    entries = []
    for n in range(count):
        message_id = str(ULID.from_datetime(now + timedelta(microseconds=n)))
        recipient = f"user{n % 100}"
        entries.append(
            QueuedMessage(
                id=QueuedMessage.entry_id(message_id, recipient), message_id=message_id, chat_id=f"chat{n % 50}",
                sender_id="sender", recipient_id=recipient, region=Region.EU, target_region=Region.EU,
                content_ref=f"chats/chat{n % 50}/messages/{message_id}", text=f"backlog {n}",
                next_attempt_at=now, transport_metadata=TransportMetadata(), created_at=now, updated_at=now,
            )
        )
    return entries


def drain(count: int) -> dict:
    # A project of its own: the suite's triggers do not fire there, so the
    # one worker below is the only thing delivering.
    project = f"demo-bench-{str(ULID()).lower()}"
    db = firestore.Client(project=project)
    entries = backlog_entries(count)

    started = time.perf_counter()
    for start in range(0, count, 250):
        queue.enqueue(db, entries[start:start + 250], actor="bench")
    enqueue_s = time.perf_counter() - started
    raw_writes_per_s = 2 * count / enqueue_s  # each entry is two documents (entry, audit event)

    started = time.perf_counter()
    report = delivery.drain(db, EmulatorNotifier(), regions=(Region.EU,), actor="bench", time_budget_s=3600)
    drain_s = time.perf_counter() - started
    delivered = report["EU"]["delivered"]
    if delivered != count or queue.stats(db, Region.EU).depth:
        raise SystemExit(f"drain delivered {delivered} of {count}")
    per_minute = delivered / drain_s * 60
    # A delivery writes three documents (inbox entry, queue entry, audit event).
    return {
        "messages": delivered,
        "seconds": drain_s,
        "messages_per_minute": per_minute,
        "raw_batched_writes_per_s": raw_writes_per_s,
        "delivery_writes_per_s": 3 * delivered / drain_s,
        "ratio_delivery_writes_to_raw_writes": (3 * delivered / drain_s) / raw_writes_per_s,
    }


def catch_up(count: int) -> dict:
    """Deliver `count` messages to one offline user, then time one device syncing them all."""
    db = firestore.Client(project=f"demo-bench-{str(ULID()).lower()}")
    now = clock.now() - timedelta(seconds=1)
    entries = []
    for n in range(count):
        message_id = str(ULID.from_datetime(now + timedelta(microseconds=n)))
        entries.append(
            QueuedMessage(
                id=QueuedMessage.entry_id(message_id, "away"), message_id=message_id, chat_id=f"chat{n % 10}",
                sender_id="sender", recipient_id="away", region=Region.EU, target_region=Region.EU,
                content_ref=f"chats/chat{n % 10}/messages/{message_id}", text=f"missed {n}",
                next_attempt_at=now, created_at=now, updated_at=now,
            )
        )
    for start in range(0, count, 250):
        queue.enqueue(db, entries[start:start + 250], actor="bench")
    delivery.drain(db, EmulatorNotifier(), regions=(Region.EU,), actor="bench", time_budget_s=3600)

    started = time.perf_counter()
    received, pages, cursor = [], 0, None
    while True:
        page = sync.sync_messages(db, "away", SyncMessagesRequest(deviceId="phone", cursor=cursor))
        received += [m.messageId for m in page.messages]
        pages += 1
        cursor = page.cursor
        if not page.hasMore:
            break
    seconds = time.perf_counter() - started
    if sorted(received) != sorted(e.message_id for e in entries) or len(set(received)) != count:
        raise SystemExit(f"sync returned {len(set(received))} distinct of {count} messages")
    return {"messages": count, "pages": pages, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100, help="messages per latency series (default 100)")
    parser.add_argument("--backlog", type=int, default=2000, help="queued messages the worker drains (default 2000)")
    parser.add_argument("--missed", type=int, default=1000, help="messages a device catches up on (default 1000)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()

    db = firestore.Client(project=os.environ["PACK427_PROJECT"])
    results = {"latency": latency(db, args.messages), "drain": drain(args.backlog), "sync": catch_up(args.missed)}

    print("\nSend-to-inbox latency (callable -> trigger -> inbox listener), emulator suite:")
    for label, seed in (("same_region", SEED_P95_SAME_REGION_S), ("cross_region", SEED_P95_CROSS_REGION_S)):
        r = results["latency"][label]
        print(
            f"  {label:<13} n={r['messages']:<4} p50 {r['p50_ms']:7.1f} ms  p95 {r['p95_ms']:7.1f} ms  "
            f"p99 {r['p99_ms']:7.1f} ms   seed p95 target {seed * 1000:.0f} ms: "
            f"{seed * 1000 / r['p95_ms']:.1f}x better"
        )
    d = results["drain"]
    print("\nBacklog drain, one worker:")
    print(f"  {d['messages']} messages in {d['seconds']:.1f} s = {d['messages_per_minute']:,.0f} messages/minute "
          f"({d['messages_per_minute'] / SEED_DRAIN_PER_MINUTE:.0f}x the seed's {SEED_DRAIN_PER_MINUTE}/minute)")
    print(f"  emulator's plain batched writes: {d['raw_batched_writes_per_s']:,.0f} documents/s; "
          f"delivery writes {d['delivery_writes_per_s']:,.0f} documents/s "
          f"(ratio {d['ratio_delivery_writes_to_raw_writes']:.2f})")
    c = results["sync"]
    print("\nOffline catch-up, one device:")
    print(f"  {c['messages']} missed messages in {c['pages']} pages: {c['seconds']:.2f} s "
          f"(seed target {SEED_SYNC_1000_S:.0f} s for 1,000: {SEED_SYNC_1000_S / c['seconds']:.0f}x better)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
