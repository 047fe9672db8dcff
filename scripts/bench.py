"""Benchmarks on the emulator suite (run by scripts/bench).

1. Send-to-inbox latency through the real path: HTTP POST to the
   `pack427_sendMessage` callable, the inbox entry seen by a real-time
   listener. Same region (EU to EU) and cross region (EU to US),
   p50/p95/p99, interleaved with the platform's floor: a callable that writes
   one document and a trigger on it that writes the inbox document
   (benchmarks/floor), watched by the same listener.
2. Backlog drain: one worker (`processor.drain`) empties a queue of queued
   messages; messages per minute, next to the rate at which a plain writer
   gets batched writes (500 a commit, no engine code) into the same emulator
   (the ratio travels across machines).
3. Offline catch-up: a device that missed 1,000 messages (in 10 chats) syncs
   them page by page (`sync.sync_messages`, the callable's service, in
   process: the HTTP hop adds one round trip per page of 100).
4. Firestore operations and trigger invocations per message over its whole
   life (send, deliver, sync, ack, read), and a group message's send and
   delivery, counted by instrumenting the client (benchmarks/opcount.py,
   benchmarks/lifecycle.py).
5. Load: 10,000 simulated users with registered devices, a fifth offline, in
   direct chats and groups, with a realistic mix of operations arriving as a
   Poisson process at rising rates, through the real callables and triggers
   (mode suite) and through the engine's services in process (mode engine);
   the highest rate held (p95 under 1 s, nothing undelivered, no error) and
   checks that nothing was lost, duplicated, reordered or miscounted
   (benchmarks/load.py); then the load run with faults at the highest rate
   the engine mode held: a step without faults and one with, the faults
   injected in the engine's Firestore client (benchmarks/faults.py), the same
   checks. With --faults (mode engine only): that fault run alone, at one
   rate (--rates, default 10/s).
6. Cold start: import time of functions/main.py next to the bare SDKs (benchmarks/coldstart.py).
8. Priority lanes: with a normal backlog (2,000 quick, 10,000 full), how long
   a priority message waits next to a normal one queued at the same moment
   (benchmarks/lanes.py).
7. Large groups: the time until the last of 1,000 and of 10,000 members has a
   message (the send, then its fan-out in chunks), next to a plain writer
   putting two documents a member into the same emulator (benchmarks/fanout.py).
9. The TypeScript client (client-ts/): from `sendMessage` in one client to
   `onMessagesReceived` in another, p50/p95, beside the engine's own
   send-to-inbox listener series interleaved with it; the core's size
   minified and gzipped without firebase (benchmarks/tsclient.py).
10. The web chat (examples/web-chat) in Debian's headless Chromium: the first
   render of the chat list after sign-in, and send to render on the other
   page, p50/p95 (benchmarks/webchat.py; it clears the suite's project, so
   it runs last).

Each section runs beside a stall probe (benchmarks/stalls.py): how long a
ready process waited for a CPU meanwhile, the floor under its time figures.

Results go to bench-results/<time>.json; docs/BENCHMARKS.md and
docs/bench-latency.png are rendered from them (benchmarks/report.py), into
the folder --docs names (made if missing).
Sections 2, 3, 4 and 6 need only a Firestore emulator (FIRESTORE_EMULATOR_HOST);
1 and 5 need the suite (scripts/bench starts one on free ports).

Numbers from a shared, noisy machine: compare ratios, not absolute figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "functions"))
sys.path.insert(0, str(ROOT / "scripts"))
# This checkout's client, not whichever one the shared virtualenv installed in editable mode.
sys.path.insert(0, str(ROOT / "client"))

from benchmarks import (  # noqa: E402
    coldstart,
    compare,
    contention,
    fanout,
    lanes,
    lifecycle,
    opcount,
    report,
    tsclient,
    webchat,
)
from benchmarks import load as load_run  # noqa: E402
from benchmarks.load import percentile  # noqa: E402
from benchmarks.speed import Speed  # noqa: E402
from benchmarks.stalls import StallProbe  # noqa: E402
from firebase_functions import logger as functions_logger  # noqa: E402
from google.cloud import firestore  # noqa: E402
from ulid import ULID  # noqa: E402

from pack427 import clock, constants, inbox, paths  # noqa: E402
from pack427.delivering import backlog, queue  # noqa: E402
from pack427.delivering.notifier import EmulatorNotifier  # noqa: E402
from pack427.models import QueuedMessage, Region, SyncMessagesRequest, TransportMetadata  # noqa: E402
from pack427.reading import sync  # noqa: E402
from pack427.workers import processor  # noqa: E402
from pack427_client import CallableClient, ClientError, PasswordAuth  # noqa: E402

# In-process service calls log a debug line per delivery: thousands of lines that would bury the figures.
functions_logger.debug = lambda *args, **kwargs: None

SEED_P95_SAME_REGION_S = 2.0
SEED_P95_CROSS_REGION_S = 5.0
SEED_DRAIN_PER_MINUTE = 200
SEED_SYNC_1000_S = 10.0


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


FLOOR = "floor"
"""The platform's floor series (scripts/benchmarks/floor): a callable writing one document,
a trigger on it writing the inbox document, no engine code."""


def latency(db: firestore.Client, messages: int) -> dict:
    """Send-to-inbox latency of the engine (same and cross region) and of the platform's floor,
    interleaved message by message so that all three meet the same machine."""
    auth, functions = os.environ["FIREBASE_AUTH_EMULATOR_HOST"], os.environ["PACK427_FUNCTIONS_URL"]
    inboxes = {}
    for label, region in (("same_region", "EU"), ("cross_region", "US")):
        recipient = PasswordAuth.sign_up(f"bench-{label}-{ULID()}@example.com", "password123", emulator_host=auth)
        paths.user(db, recipient.uid).set({"region": region, "online": True})
        inboxes[label] = (recipient.uid, InboxClock(db, recipient.uid))
    inboxes[FLOOR] = inboxes["same_region"]  # the same listener on the same inbox
    samples: dict[str, list[float]] = {label: [] for label in inboxes}
    answers: dict[str, list[float]] = {label: [] for label in inboxes}
    clients: dict[str, tuple[CallableClient, str]] = {}
    try:
        for n in range(messages + 3):  # the first sends warm the function workers up
            for label, (recipient, inbox) in inboxes.items():
                if label != FLOOR and n % SENDS_PER_SENDER == 0:
                    sender = PasswordAuth.sign_up(f"bench-sender-{ULID()}@example.com", "password123",
                                                  emulator_host=auth)
                    paths.user(db, sender.uid).set({"region": "EU", "online": True, "ageVerified18Plus": True})
                    chat_id = f"bench-{label}-{ULID()}"
                    paths.chat(db, chat_id).set({"participants": [sender.uid, recipient]})
                    clients[label] = (CallableClient(functions, sender), chat_id)
                client, chat_id = clients["same_region" if label == FLOOR else label]
                started = time.perf_counter()
                if label == FLOOR:
                    delivered_id = client.call("bench_floorSend", {"id": str(ULID()), "to": recipient})["id"]
                else:
                    delivered_id = send_with_retries(
                        client, {"chatId": chat_id, "clientMessageId": str(ULID()), "text": f"m{n}"})["messageId"]
                answered = time.perf_counter()
                arrived = inbox.wait(delivered_id, 120)
                if n >= 3:
                    samples[label].append(max(arrived - started, 0.0))
                    answers[label].append(answered - started)
    finally:
        for inbox in {id(i): i for _, i in inboxes.values()}.values():
            inbox.close()
    results = {
        label: {
            "messages": len(values),
            "samples_ms": [x * 1000 for x in values],
            "p50_ms": percentile(values, 50) * 1000,
            "p95_ms": percentile(values, 95) * 1000,
            "p99_ms": percentile(values, 99) * 1000,
            "mean_ms": statistics.mean(values) * 1000,
            # Where the time goes: the callable's answer, then (for the floor, the queue) a trigger.
            "answer_p50_ms": percentile(answers[label], 50) * 1000,
            "answer_p95_ms": percentile(answers[label], 95) * 1000,
        }
        for label, values in samples.items()
    }
    results["ratio_same_region_p95_to_floor_p95"] = results["same_region"]["p95_ms"] / results[FLOOR]["p95_ms"]
    return results


def send_with_retries(client: CallableClient, data: dict, attempts: int = 3) -> dict:
    """Send as an app does: a failed or empty answer is retried with the same clientMessageId
    (idempotent); the latency still counts from the first attempt."""
    for attempt in range(attempts):
        try:
            result = client.call("pack427_sendMessage", data)
            if result and "messageId" in result:
                return result
        except ClientError as err:  # refused, or no answer
            if attempt == attempts - 1:
                raise
            print(f"  send failed ({err}); retrying with the same clientMessageId", flush=True)
        time.sleep(0.5)
    raise SystemExit(f"send of {data['clientMessageId']} got no result in {attempts} attempts")


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


RAW_BATCH = 500
"""Documents per commit of the plain writer (Firestore's limit)."""


def raw_write_rate(db: firestore.Client, documents: list[dict]) -> float:
    """Documents per second a plain writer gets into this emulator: `set` in batches of RAW_BATCH,
    no engine code. The reference the drain's rate is divided by."""
    started = time.perf_counter()
    for start in range(0, len(documents), RAW_BATCH):
        batch = db.batch()
        for n, document in enumerate(documents[start:start + RAW_BATCH], start):
            batch.set(db.collection("rawWrites").document(f"d{n}"), document)
        batch.commit()
    return len(documents) / (time.perf_counter() - started)


def drain(count: int) -> dict:
    # A project of its own: the suite's triggers do not fire there, so the
    # one worker below is the only thing delivering.
    project = f"demo-bench-{str(ULID()).lower()}"
    db = firestore.Client(project=project)
    entries = backlog_entries(count)
    raw_writes_per_s = raw_write_rate(db, [e.to_firestore() for e in entries])
    for start in range(0, count, 500):
        queue.enqueue(db, entries[start:start + 500], actor="bench")

    counter = opcount.install()
    before = counter.snapshot()
    started = time.perf_counter()
    outcome = processor.drain(db, EmulatorNotifier(), regions=(Region.EU,), actor="bench", time_budget_s=3600)
    drain_s = time.perf_counter() - started
    spent = counter.snapshot() - before
    delivered = outcome["EU"]["delivered"]
    if delivered != count or backlog.stats(db, Region.EU).depth:
        raise SystemExit(f"drain delivered {delivered} of {count}")
    per_minute = delivered / drain_s * 60
    writes_per_message = spent["writes"] / delivered
    return {
        "messages": delivered,
        "seconds": drain_s,
        "messages_per_minute": per_minute,
        "raw_batched_writes_per_s": raw_writes_per_s,
        "delivery_writes_per_s": writes_per_message * delivered / drain_s,
        "ratio_delivery_writes_to_raw_writes": (writes_per_message * delivered / drain_s) / raw_writes_per_s,
        "ratio_messages_to_raw_writes": (delivered / drain_s) / raw_writes_per_s,
        "ops_per_message": {k: v / delivered for k, v in spent.as_dict().items()},
        "load": load(),
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
    for start in range(0, count, 500):
        queue.enqueue(db, entries[start:start + 500], actor="bench")
    processor.drain(db, EmulatorNotifier(), regions=(Region.EU,), actor="bench", time_budget_s=3600)

    counter = opcount.install()
    before = counter.snapshot()
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
    spent = counter.snapshot() - before
    if sorted(received) != sorted(e.message_id for e in entries) or len(set(received)) != count:
        raise SystemExit(f"sync returned {len(set(received))} distinct of {count} messages")
    # The floor on this emulator: only the page queries any sync must make, back to back.
    started, seq = time.perf_counter(), 0
    while page_entries := inbox.after(db, "away", seq, limit=constants.SYNC_BATCH_SIZE):
        seq = page_entries[-1].seq
    floor_s = time.perf_counter() - started
    return {"messages": count, "pages": pages, "seconds": seconds, "ops": spent.as_dict(),
            "page_queries_alone_s": floor_s, "ratio_to_page_queries": seconds / floor_s, "load": load()}


def stall_line(stalls: dict) -> str:
    """One line: the share of the section's time a ready process waited for a CPU (benchmarks/stalls.py)."""
    if not stalls.get("samples"):
        return "no stall samples"
    return (f"wake-ups late {stalls['lost_share']:.0%} of the time, p99 {stalls['p99_ms']:.0f} ms, "
            f"max {stalls['max_ms']:.0f} ms, {stalls['over_100ms_per_minute']:.0f} stalls over 100 ms a minute")


def load() -> str:
    """The load average now (1, 5, 15 min): other work shares these machines."""
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


MODES = {
    # quick: CI-sized, about ten minutes with the suite's start on a loaded 2-core machine
    "quick": {"messages": 30, "backlog": 2000, "missed": 1000, "lives": 5, "users": 400, "offline_share": 0.2,
              "rates": [2, 5, 10], "step_seconds": 10, "cold_repeats": 3, "group_sizes": [1000],
              "sign_ins": 10},
    "full": {"messages": 200, "backlog": 10000, "missed": 1000, "lives": 20, "users": 10000, "offline_share": 0.2,
             "rates": [2, 5, 10, 20, 40, 80, 160, 320], "step_seconds": 30, "cold_repeats": 5,
             "group_sizes": [1000, 10000], "sign_ins": 20},
}
SECTIONS = report.SECTIONS
NEEDS_SUITE = {"latency", "load", "ts_client", "web_chat"}
LOAD_MODES = ("engine", "suite")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CI-sized run (default: the full run)")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run (default all: {','.join(SECTIONS)})")
    parser.add_argument("--messages", type=int, help="messages per latency series (quick 30, full 200)")
    parser.add_argument("--backlog", type=int, help="queued messages the worker drains (quick 2000, full 10000)")
    parser.add_argument("--missed", type=int, help="messages a device catches up on (default 1000)")
    parser.add_argument("--users", type=int, help="simulated users of the load run (quick 400, full 10000)")
    parser.add_argument("--rates", help="comma-separated message rates of the load run's steps, messages/s")
    parser.add_argument("--step-seconds", type=float, help="seconds per load-run step (quick 10, full 30)")
    parser.add_argument("--modes", help="load-run modes (default engine,suite; engine with --faults)")
    parser.add_argument("--faults", action="store_true",
                        help="the load run with faults instead of its ladder (mode engine only): a step without"
                             f" faults, then one with, at one rate (default {load_run.FAULT_RATE:g}/s);"
                             " no hot chat or busy recipient")
    parser.add_argument("--json", type=Path, help="results file (default bench-results/<time>.json)")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs",
                        help="where BENCHMARKS.md and bench-latency.png go (default docs/; 'none' to skip)")
    args = parser.parse_args()
    mode = "quick" if args.quick else "full"
    cfg = dict(MODES[mode])
    for name in ("messages", "backlog", "missed", "users", "step_seconds"):
        if getattr(args, name) is not None:
            cfg[name] = getattr(args, name)
    if args.rates:
        cfg["rates"] = [float(r) for r in args.rates.split(",")]
    if args.faults:
        if args.modes not in (None, "engine"):
            parser.error("--faults: mode engine only (the faults are injected in the engine's process)")
        if args.rates and len(cfg["rates"]) != 1:
            parser.error("--faults takes one rate: both steps run at it")
        if not args.rates:
            cfg["rates"] = [load_run.FAULT_RATE]
    args.modes = args.modes or ("engine" if args.faults else ",".join(LOAD_MODES))
    cfg["faults"] = args.faults
    sections = [s for s in args.only.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    needs_suite = set(sections) & NEEDS_SUITE - ({"load"} if "suite" not in args.modes.split(",") else set())
    if needs_suite and not os.environ.get("PACK427_FUNCTIONS_URL"):
        parser.error("latency, load, ts_client and web_chat need the emulator suite: run scripts/bench,"
                     " or --only ops,drain,sync,cold_start")

    started_at = datetime.now(UTC)
    json_path = args.json or ROOT / "bench-results" / f"{started_at:%Y%m%dT%H%M%SZ}-{mode}.json"
    results: dict = {"meta": {
        "mode": mode, "config": cfg, "sections": sections, "started": f"{started_at:%Y-%m-%d %H:%M} UTC",
        "machine": f"{os.cpu_count()} CPUs, {platform.system()} {platform.machine()}, Python {platform.python_version()}",
        "json": str(json_path.relative_to(ROOT) if json_path.is_relative_to(ROOT) else json_path),
        "load_at_start": load(), "commit": compare.commit(ROOT), "yardstick_ms_at_start": Speed().ms,
    }}
    t0 = time.perf_counter()
    project = os.environ.get("PACK427_PROJECT", "demo-pack427")

    def own_project() -> firestore.Client:
        # A project of its own: the suite's triggers fire only for demo-pack427.
        return firestore.Client(project=f"demo-bench-{str(ULID()).lower()}")

    for section in sections:
        print(f"bench: {section} ... (load {load()})", flush=True)
        with StallProbe() as stalls:
            if section == "latency":
                results["latency"] = latency(firestore.Client(project=project), cfg["messages"])
                results["latency"]["load"] = load()
            elif section == "ops":
                results["ops"] = lifecycle.measure(own_project(), lives=cfg["lives"]) | {"load": load()}
            elif section == "drain":
                results["drain"] = drain(cfg["backlog"])
            elif section == "sync":
                results["sync"] = catch_up(cfg["missed"])
            elif section == "lanes":
                results["lanes"] = lanes.measure(f"demo-bench-{str(ULID()).lower()}", cfg["backlog"]) | {"load": load()}
            elif section == "fanout":
                project_id = f"demo-bench-{str(ULID()).lower()}"
                url = os.environ.get("PACK427_FUNCTIONS_URL")
                results["fanout"] = fanout.measure(project_id, cfg["group_sizes"],
                                                   suite=(url, project) if url else None) | {
                    "load": load(), "chunk": constants.FAN_OUT_CHUNK}
            elif section == "load" and args.faults:
                results["load"] = {"load": load(), "faults": load_run.run_faults(
                    own_project(), users=cfg["users"], offline_share=cfg["offline_share"], rate=cfg["rates"][0],
                    step_seconds=cfg["step_seconds"]) | {"load": load()}}
            elif section == "load":
                results["load"] = {"load": load()}
                for mode in [m for m in args.modes.split(",") if m]:
                    if mode == "suite":
                        db = firestore.Client(project=project)
                        backend = lambda _world: load_run.SuiteBackend(os.environ["PACK427_FUNCTIONS_URL"], project)  # noqa: E731
                    else:  # a project of its own: the suite's triggers stay out of it
                        db = own_project()
                        backend = lambda world, db=db: load_run.EngineBackend(db, world)  # noqa: E731
                    results["load"][mode] = load_run.run(
                        db, backend, users=cfg["users"], offline_share=cfg["offline_share"], rates=cfg["rates"],
                        step_seconds=cfg["step_seconds"]) | {"load": load()}
                results["load"]["hot_chat"] = contention.hot_chat(own_project(), senders=[1, 2, 5, 10, 20])
                results["load"]["busy_recipient"] = contention.busy_recipient(own_project())
                held = (results["load"].get("engine") or {}).get("highest_rate_held")
                if held:  # the rate: the highest the engine mode just held without faults
                    results["load"]["faults"] = load_run.run_faults(
                        own_project(), users=cfg["users"], offline_share=cfg["offline_share"], rate=held,
                        step_seconds=cfg["step_seconds"]) | {"load": load()}
            elif section == "cold_start":
                results["cold_start"] = coldstart.measure(ROOT / "functions", cfg["cold_repeats"]) | {"load": load()}
            elif section == "ts_client":
                results["ts_client"] = tsclient.measure(ROOT, cfg["messages"]) | {"load": load()}
            elif section == "web_chat":  # clears the suite's project: the last section
                results["web_chat"] = webchat.measure(ROOT, cfg["sign_ins"], min(cfg["messages"], 50)) | {"load": load()}
        results[section]["stalls"] = stalls.summary()
        print(f"  {section}: {stall_line(stalls.summary())}", flush=True)
    results["meta"]["seconds"] = time.perf_counter() - t0
    results["meta"]["load_at_end"] = load()
    results["meta"]["yardstick_ms_at_end"] = Speed().ms

    print_summary(results)
    results["meta"]["compared"] = compare.summary(compare.previous(ROOT / "docs"), results)
    print("\n" + "\n".join(results["meta"]["compared"]))
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2))
    print(f"\nresults: {json_path}")
    if str(args.docs) != "none":
        args.docs.mkdir(parents=True, exist_ok=True)
        report.render(results, args.docs)
        print(f"rendered: {args.docs / 'BENCHMARKS.md'}")


def print_summary(results: dict) -> None:
    """Every figure, with its ratio where one is named, on stdout."""
    t = report.TARGETS
    if "latency" in results:
        lat = results["latency"]
        print(f"\nSend-to-inbox latency (callable ... inbox listener), load {lat['load']}:")
        for label in ("same_region", "cross_region", FLOOR):
            r = lat[label]
            print(f"  {label:<13} n={r['messages']:<4} p50 {r['p50_ms']:7.1f} ms  p95 {r['p95_ms']:7.1f} ms  "
                  f"p99 {r['p99_ms']:7.1f} ms   answer p50 {r['answer_p50_ms']:7.1f} ms  p95 {r['answer_p95_ms']:7.1f} ms")
        print(f"  same-region p95 / the platform floor's p95: {lat['ratio_same_region_p95_to_floor_p95']:.2f} "
              f"(target at most {t['latency_p95_to_floor']}); seed p95 targets {SEED_P95_SAME_REGION_S * 1000:.0f} ms "
              f"same region, {SEED_P95_CROSS_REGION_S * 1000:.0f} ms cross region")
    if "drain" in results:
        d = results["drain"]
        print(f"\nBacklog drain, one worker, load {d['load']}:")
        print(f"  {d['messages']} messages in {d['seconds']:.1f} s = {d['messages_per_minute']:,.0f} messages/minute "
              f"({d['messages_per_minute'] / SEED_DRAIN_PER_MINUTE:.0f}x the seed's {SEED_DRAIN_PER_MINUTE}/minute; "
              f"target {t['drain_per_minute']:,})")
        print(f"  a plain writer's batched writes ({RAW_BATCH} a commit): {d['raw_batched_writes_per_s']:,.0f} documents/s; "
              f"messages/s over that: {d['ratio_messages_to_raw_writes']:.3f} (target at least {t['drain_to_raw']}); "
              f"delivery's writes/s over it {d['ratio_delivery_writes_to_raw_writes']:.2f}")
        o = d["ops_per_message"]
        print(f"  per drained message: {o['reads']:.2f} reads, {o['writes']:.2f} writes, "
              f"{o['transactions']:.0f} transactions, {o['round_trips']:.2f} round trips")
    if "ops" in results:
        ops = results["ops"]
        print(f"\nFirestore operations per message (one online recipient, mean of {ops['lives']}), load {ops['load']}:")
        for stage in lifecycle.STAGES:
            c = ops["stages"][stage]["counts"]
            print(f"  {stage:<8} reads {c['reads']:5.1f}  writes {c['writes']:5.1f}  transactions {c['transactions']:3.0f}"
                  f"  round trips {c['round_trips']:5.1f}")
        w = ops["per_message"]
        print(f"  {'total':<8} reads {w['reads']:5.1f}  writes {w['writes']:5.1f}  transactions {w['transactions']:3.0f}"
              f"  round trips {w['round_trips']:5.1f}  trigger invocations {ops['triggers_per_message']:.1f}")
        print(f"  budget: writes <= {t['writes']}, reads <= {t['reads']}, round trips <= {t['round_trips']}, "
              f"trigger invocations <= {t['triggers']} per recipient")
        g = ops["group"]
        per_recipient = report.group_writes_per_extra_recipient(ops)
        print(f"  group of {g['members']} (all online), send and delivery: {g['send_and_deliver']['counts']['writes']:.1f} writes,"
              f" {g['send_and_deliver']['counts']['reads']:.1f} reads, {g['triggers_per_message']:.1f} trigger invocations;"
              f" each further recipient adds {per_recipient:.1f} writes (budget {t['group_writes_per_recipient']})")
        print(f"  queue writes per message {ops['queue_writes_per_message']:.1f} (seed ~2); inbox-head writes "
              f"(seq, unread counts, read and ack positions) {ops['unread_writes_per_message']:.1f} (seed: 1 unread-counter write)")
    if "lanes" in results:
        la = results["lanes"]
        print(f"\nPriority lanes, behind {la['backlog']:,} queued normal messages, load {la['load']}:")
        print(f"  priority message delivered after {la['priority_wait']['seconds']:.2f} s (round {la['priority_wait']['rounds']}),"
              f" normal one after {la['normal_wait']['seconds']:.2f} s (round {la['normal_wait']['rounds']});"
              f" ratio {la['ratio_priority_to_normal_wait']:.3f}; the drain took {la['drain_seconds']:.1f} s,"
              f" {la['rounds']} rounds")
    if "fanout" in results:
        print(f"\nLarge groups (fan-out), load {results['fanout']['load']}:")
        for g in results["fanout"]["groups"]:
            print(f"  {g['members']:>6} members: send accepted in {g['send_accepted_s'] * 1000:.0f} ms, last member has it"
                  f" after {g['last_member_s']:.2f} s ({g['members_per_s']:,.0f} members/s); a plain writer's 2 documents"
                  f" a member {g['plain_writer_s']:.2f} s (ratio {g['ratio_to_plain_writer']:.2f}); per member"
                  f" {g['ops_per_member']['reads']:.2f} reads, {g['ops_per_member']['writes']:.2f} writes")
        for g in results["fanout"].get("through_suite", []):
            print(f"  {g['members']:>6} members through the suite (callable, real trigger): accepted in"
                  f" {g['send_accepted_s'] * 1000:.0f} ms, last member has it after {g['last_member_s']:.2f} s")
    if "sync" in results:
        c = results["sync"]
        print(f"\nOffline catch-up, one device, load {c['load']}:")
        print(f"  {c['messages']} missed messages in {c['pages']} pages: {c['seconds']:.2f} s "
              f"(target under {t['sync_1000_s']} s where the machine is quiet; seed {SEED_SYNC_1000_S:.0f} s); "
              f"{c['ops']['reads']} reads, {c['ops']['writes']} writes")
        print(f"  the same pages' inbox queries alone, back to back: {c['page_queries_alone_s']:.2f} s "
              f"(ratio sync / queries alone {c['ratio_to_page_queries']:.2f}, target at most {t['sync_to_queries']})")
    if "load" in results:
        for mode in LOAD_MODES:
            run = results["load"].get(mode)
            if not run:
                continue
            st, v = run["setup"], run["verification"]
            print(f"\nLoad run, mode {mode}: {st['users']} users ({st['offline']} offline), {st['groups']} groups, "
                  f"load {run['load']}:")
            for step in run["steps"]:
                nan = float("nan")
                print(f"  {step['target_rate']}/s: {step['messages']} messages at {step['achieved_rate']:.1f}/s, "
                      f"{step['deliveries']} deliveries, p50 {step.get('p50_ms', nan):.0f} ms, "
                      f"p95 {step.get('p95_ms', nan):.0f} ms, p99 {step.get('p99_ms', nan):.0f} ms, "
                      f"p99.9 {step.get('p999_ms', nan):.0f} ms, mean {step.get('mean_ms', nan):.0f} ms, "
                      f"undelivered {step['undelivered_after_wait']}, errors {step['errors']}, "
                      f"lost races {step.get('lost_races_per_message', nan):.2f} a message, held {step['held']}; "
                      f"{stall_line(step['stalls'])}")
                plain = step.get("plain_writer")
                if plain:
                    print(f"    a plain writer of the same documents at the same rate: p99 {plain['p99_ms']:.0f} ms,"
                          f" mean {plain['mean_ms']:.0f} ms; engine over it: p99 {step['p99_ms'] / plain['p99_ms']:.2f},"
                          f" mean {step['mean_ms'] / plain['mean_ms']:.2f}")
            print(f"  highest rate held: {run['highest_rate_held']}")
            if run.get("paths"):
                print("  deliveries by path: " + ", ".join(
                    f"{p} {r['share']:.1%} (p99 {r['p99_ms']:.0f} ms)" for p, r in run["paths"].items()))
                o = run["ops_per_delivery"]
                if o:  # mode engine: the engine's calls are this process's
                    print(f"  per delivered message over the whole mix: {o['reads']:.2f} reads, {o['writes']:.2f}"
                          f" writes, {o['round_trips']:.2f} round trips, {o['failed_commits']:.2f} lost races")
            print("  checks (all must be 0): " + ", ".join(f"{k} {v[k]}" for k in load_run.ZERO_CHECKS)
                  + f" -> {'all zero' if run['all_checks_zero'] else 'NOT ALL ZERO'}")
            print(f"  {v['accepted_messages']} messages, {v['inbox_entries']} inbox entries, "
                  f"{v['unread_counts_checked']} unread counts checked, {v['offline_devices']} offline devices synced, "
                  f"{v['duplicate_sends']} duplicate sends; call errors {v['call_errors'] or 'none'}")
        if results["load"].get("faults"):
            print_faults(results["load"]["faults"])
        for hot in results["load"].get("hot_chat", []):
            plain = hot.get("plain_writer") or {}
            print(f"  one chat, {hot['senders']} senders on instances of their own: {hot['messages_per_s']:.1f} messages/s,"
                  f" {hot['failed_commits_per_message']:.2f} lost races a message; a plain writer's conditional updates"
                  f" of one document from as many writers {plain.get('writes_per_s', float('nan')):.1f}/s"
                  f" (ratio {hot.get('ratio_to_plain_writer', float('nan')):.2f}, target at least 0.5);"
                  f" undelivered {hot.get('undelivered', '?')}")
        busy = results["load"].get("busy_recipient")
        if busy:
            print(f"  busy recipient ({busy['chats']} chats x {busy['rate_per_chat']}/s, {busy['devices']} devices"
                  f" acking): p95 {busy['busy']['p95_ms']:.0f} ms against {busy['quiet']['p95_ms']:.0f} ms from one"
                  f" chat alone (ratio {busy['ratio_p95_to_quiet']:.2f}, target at most 2);"
                  f" {busy['busy']['placed_by_send_share']:.0%} placed by their sends (target at least 80%),"
                  f" {busy['busy']['lost_races_per_message']:.2f} lost races a message")
    if "ts_client" in results:
        ts = results["ts_client"]
        lat, size = ts["latency"], ts["size"]
        print(f"\nTypeScript client (client-ts), load {ts['load']}:")
        for label, name in (("client", "sendMessage ... onMessagesReceived"), ("engine", "callable ... inbox listener")):
            r = lat[label]
            print(f"  {name:<36} n={r['messages']:<4} p50 {r['p50_ms']:7.1f} ms  p95 {r['p95_ms']:7.1f} ms")
        print(f"  ratio client / engine: p50 {lat['ratio_p50']:.2f}, p95 {lat['ratio_p95']:.2f}"
              f" (target at most {ts['targets']['ratio_p95']})")
        if "latency" in results:
            print(f"  the latency section's same-region p95 (Python client, same run):"
                  f" {results['latency']['same_region']['p95_ms']:.1f} ms")
        print(f"  core minified {size['core']['minified_bytes']:,} bytes, gzipped {size['core']['gzipped_bytes']:,} bytes"
              f" (target at most {ts['targets']['core_gzipped_bytes']:,}); with the hooks gzipped"
              f" {size['react']['gzipped_bytes']:,} bytes; firebase and react not included")
    if "web_chat" in results:
        w = results["web_chat"]
        print(f"\nThe web chat in the browser ({w['browser']}), load {w['load']}:")
        for key, name in (("first_render", "sign-in click ... chat list rendered"), ("send_to_render", "Send ... on the other page")):
            r = w[key]
            print(f"  {name:<36} n={r['n']:<4} p50 {r['p50_ms']:7.1f} ms  p95 {r['p95_ms']:7.1f} ms")
    if "cold_start" in results:
        c = results["cold_start"]
        print(f"\nCold start (median of {c['repeats']} fresh interpreters), load {c['load']}:")
        print(f"  bare SDKs {c['sdk_import_s']:.2f} s; functions/main.py {c['main_import_s']:.2f} s "
              f"(ratio {c['ratio_main_to_sdks']:.2f})")


def print_faults(run: dict) -> None:
    """The load run with faults: both steps side by side, the faults by kind, what the engine saw, the checks."""
    st, v, f, seen = run["setup"], run["verification"], run["faults"], run["seen"]
    print(f"\nLoad run with faults, mode engine: {st['users']} users ({st['offline']} offline), {st['groups']} groups,"
          f" {run['rate']:g}/s, {run['step_seconds']:g} s a step, processor every {run['processor_every_s']:g} s,"
          f" load {run['load']}:")
    nan = float("nan")
    for label in ("fault_free", "faulty"):
        step = run.get(label)
        if step:
            print(f"  {'without faults' if label == 'fault_free' else 'with faults':<14} {step['messages']} messages at"
                  f" {step['achieved_rate']:.1f}/s, {step['deliveries']} deliveries, p50 {step.get('p50_ms', nan):.0f} ms,"
                  f" p95 {step.get('p95_ms', nan):.0f} ms, p99 {step.get('p99_ms', nan):.0f} ms,"
                  f" max {step.get('max_ms', nan):.0f} ms, undelivered {step['undelivered_after_wait']},"
                  f" errors after retries {step['errors']}, app retries {step['client_retries']}, held {step['held']};"
                  f" {stall_line(step['stalls'])}")
            big = step["large_group"]
            print(f"  {'':<14} beside the mix, the large group ({run['large_group']['members']} members, fan-out):"
                  f" {big['messages']} messages, {big['deliveries']} deliveries, p95 {big.get('p95_ms', nan):.0f} ms,"
                  f" p99 {big.get('p99_ms', nan):.0f} ms, max {big.get('max_ms', nan):.0f} ms")
    calls = f["calls"]
    print("  faults injected: " + ", ".join(f"{k} {n}" for k, n in f["injected"].items())
          + f"; {f['faulty_commit_share']:.1%} of {calls.get('commits', 0)} commits faulty,"
            f" {f['refused_read_share']:.1%} of {calls.get('reads', 0)} reads refused,"
            f" {f['duplicated_event_share']:.1%} of {calls.get('events', 0)} trigger events duplicated")
    print(f"  what the engine and the app saw: app retries {seen['client_retries'] or 'none'};"
          f" trigger runs {seen['trigger_runs']} ({seen['trigger_outcomes']}); processor runs {seen['processor_runs']}"
          f" ({seen['processor_outcomes']}); INTERNAL answers {sum(seen['internal'].values())}")
    print(f"  engine log lines: {seen['engine_log']}")
    print("  checks (all must be 0): " + ", ".join(f"{k} {v[k]}" for k in run["checks"])
          + f" -> {'all zero' if run['all_checks_zero'] else 'NOT ALL ZERO'}")
    print(f"  {v['accepted_messages']} messages, {v['inbox_entries']} inbox entries, {v['unread_counts_checked']} unread"
          f" counts checked, {v['offline_devices']} offline devices synced, {v['duplicate_sends']} duplicate sends;"
          f" call errors {v['call_errors'] or 'none'}")


if __name__ == "__main__":
    main()
