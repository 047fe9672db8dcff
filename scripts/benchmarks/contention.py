"""Contention: many writers on one document, measured against a plain writer doing the same on the same emulator.

- `hot_chat`: N members of one chat send at once. Every send writes the chat
  conditionally (its lastMessage orders the ids), so concurrent sends to one
  chat serialise on it. The floor of any design that orders a chat on one
  document is a plain writer doing the same conditional update of one
  document from N writers (`plain_conditional_writes`), measured beside it.
- `busy_recipient`: one recipient receives from several chats at once while
  two of their devices sync and ack: every delivery, ack and read moves that
  recipient's inbox head, on which each send's placement is conditional.
  Compared with the same recipient receiving from one chat alone.

Engine in process (no functions emulator), each sender on a thread of its own
(an instance of its own: the local turn-taking of one instance's sends,
locks.held, is switched off, as it would hide the races).
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from unittest import mock

from google.api_core import exceptions as gexc
from google.cloud import firestore
from ulid import ULID

from pack427 import locks, paths, settings
from pack427.accepting import sending
from pack427.delivering import delivery, fan_out
from pack427.delivering.notifier import EmulatorNotifier
from pack427.models import (
    AckMessagesRequest,
    QueuedMessage,
    Region,
    RegisterDeviceRequest,
    SendMessageRequest,
    SyncMessagesRequest,
)
from pack427.reading import sync
from pack427.workers import processor

from . import opcount
from .load import percentile


def plain_conditional_writes(db: firestore.Client, *, writers: int, writes_each: int) -> dict:
    """`writers` threads each make `writes_each` conditional updates of one document (read it, update
    it on the condition that it is unchanged, again on a lost race): the rate one document takes."""
    ref = db.collection("plainWriter").document(str(ULID()))
    ref.set({"n": 0})
    lost = 0
    lock = threading.Lock()

    counter = opcount.install()

    def writer(_: int) -> None:
        with counter.paused():  # not the engine's (paused per thread)
            write(writes_each)

    def write(times: int) -> None:
        nonlocal lost
        for _ in range(times):
            while True:
                snapshot = ref.get()
                try:
                    ref.update({"n": snapshot.get("n") + 1}, option=db.write_option(last_update_time=snapshot.update_time))
                    break
                except (gexc.FailedPrecondition, gexc.Aborted):
                    with lock:
                        lost += 1
                    time.sleep(random.uniform(0, 0.01))

    started = time.perf_counter()
    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(writer, range(writers)))
    seconds = time.perf_counter() - started
    writes = writers * writes_each
    assert ref.get().get("n") == writes
    return {"writers": writers, "writes": writes, "writes_per_s": writes / seconds, "lost_races_per_write": lost / writes}


def hot_chat(db: firestore.Client, *, senders: list[int], messages_each: int = 10, log=print) -> list[dict]:
    """For each N in `senders`: N members of one chat send `messages_each` messages each, as fast as they go,
    then a plain writer makes as many conditional updates of one document from N writers."""
    counter = opcount.install()
    results = []
    for n in senders:
        prefix = f"hot{n}-{str(ULID())[-6:].lower()}-"
        members = [f"{prefix}{k:03d}" for k in range(n)]
        for uid in members:
            paths.user(db, uid).set({"region": "EU", "online": True, "ageVerified18Plus": True})
        chat_id = f"{prefix}chat"
        paths.chat(db, chat_id).set({"participants": members})
        before = counter.snapshot()
        started = time.perf_counter()

        def sender(uid: str, chat_id: str = chat_id) -> None:
            for _ in range(messages_each):
                request = SendMessageRequest(chatId=chat_id, clientMessageId=str(ULID()), text="hot")
                sending.send_message(db, uid, request)

        with ThreadPoolExecutor(n) as pool, mock.patch.object(locks, "held", lambda *keys: nullcontext()):
            list(pool.map(sender, members))
        seconds = time.perf_counter() - started
        spent = counter.snapshot() - before
        sent = n * messages_each
        with counter.paused():  # what the sends left to their triggers, delivered as those would
            undelivered = deliver_the_rest(db, chat_id, members, messages_each)
        delivered_s = time.perf_counter() - started
        with counter.paused():
            plain = plain_conditional_writes(db, writers=n, writes_each=messages_each)
        rate = sent / seconds
        results.append({"senders": n, "messages": sent, "seconds": seconds, "messages_per_s": rate,
                        "all_delivered_s": delivered_s, "undelivered": undelivered,
                        "failed_commits_per_message": spent["failed_commits"] / sent,
                        "round_trips_per_message": spent["round_trips"] / sent,
                        "plain_writer": plain, "ratio_to_plain_writer": rate / plain["writes_per_s"]})
        log(f"  hot chat, {n} senders: {rate:.1f} messages/s, {spent['failed_commits'] / sent:.2f} lost races a"
            f" message; a plain writer's conditional updates of one document from {n} writers:"
            f" {plain['writes_per_s']:.1f}/s, {plain['lost_races_per_write']:.2f} lost races a write;"
            f" ratio {rate / plain['writes_per_s']:.2f}; every message in every inbox {delivered_s:.1f} s after the"
            f" first send, {undelivered} undelivered")
    return results


def deliver_the_rest(db: firestore.Client, chat_id: str, members: list[str], messages_each: int) -> int:
    """Run the chat's fan-out jobs (oldest first, as their triggers would) and drain the queues, then
    count the deliveries still missing: each member must hold every other member's messages."""
    for job in sorted(db.collection(f"chats/{chat_id}/fanOuts").stream(), key=lambda j: j.id):
        fan_out.on_created(db, job)
    processor.drain(db, EmulatorNotifier(), actor="scheduler", time_budget_s=60)
    expected = (len(members) - 1) * messages_each
    return sum(max(0, expected - paths.inbox(db, uid).count().get()[0][0].value) for uid in members)


class _Harness:
    """Sends in process, and each queue entry a send created handed to the trigger's service."""

    def __init__(self, db: firestore.Client, recipient: str):
        self.db, self.recipient = db, recipient
        self.triggers = ThreadPoolExecutor(8, thread_name_prefix="trigger")
        self.sent: list[tuple[str, float]] = []
        self.lock = threading.Lock()

    def send(self, uid: str, chat_id: str) -> None:
        db, issued = self.db, time.time()
        result = sending.send_message(db, uid, SendMessageRequest(chatId=chat_id, clientMessageId=str(ULID()),
                                                                  text="busy"))
        with self.lock:
            self.sent.append((result.messageId, issued))
        entry = paths.queue_entry(db, Region.EU, QueuedMessage.entry_id(result.messageId, self.recipient)).get()
        if entry.exists:
            self.triggers.submit(delivery.on_enqueued, db, entry, EmulatorNotifier())

    def results(self) -> dict:
        self.triggers.shutdown(wait=True)
        refs = [paths.inbox_entry(self.db, self.recipient, m) for m, _ in self.sent]
        found = {s.id: s for s in self.db.get_all(refs)}
        latencies, via = [], []
        for message_id, issued in self.sent:
            snapshot = found.get(message_id)
            if snapshot is None or not snapshot.exists:
                raise SystemExit(f"busy recipient: {message_id} never reached the inbox")
            latencies.append(snapshot.create_time.timestamp() - issued)
            via.append(snapshot.get("via"))
        return {"messages": len(latencies), "p50_ms": percentile(latencies, 50) * 1000,
                "p95_ms": percentile(latencies, 95) * 1000, "p99_ms": percentile(latencies, 99) * 1000,
                "mean_ms": statistics.mean(latencies) * 1000,
                "placed_by_send_share": via.count("send") / len(via)}


def busy_recipient(db: firestore.Client, *, chats: int = 5, rate_per_chat: float = 2.0, seconds: float = 30,
                   devices: int = 2, log=print) -> dict:
    """One recipient, messages from `chats` chats at `rate_per_chat` a second each (Poisson) while `devices`
    devices sync and ack in a loop; before it, the same recipient receiving from one chat alone."""
    counter = opcount.install()
    # 2 a second from one sender is 120 a minute, past the default limit of 60 (Poisson bursts reach
    # it within the 30 s): the limit is not what this measures, and a refused send would end its chat.
    settings.set_rate_limit(db, 1000, actor="bench", reason="busy recipient: senders at 2 messages/s")
    prefix = f"busy-{str(ULID())[-6:].lower()}-"
    recipient = f"{prefix}r"
    senders = [f"{prefix}s{k}" for k in range(chats + 1)]  # the last one: the quiet run's (rate limits)
    for uid in [recipient, *senders]:
        paths.user(db, uid).set({"region": "EU", "online": True, "ageVerified18Plus": True})
    for k, uid in enumerate(senders):
        paths.chat(db, f"{prefix}c{k}").set({"participants": [uid, recipient]})
    for device in range(devices):
        sync.register_device(db, recipient, RegisterDeviceRequest(deviceId=f"d{device}", platform="android", appVersion="1.0"))

    def run(active: list[int], with_devices: bool) -> dict:
        harness = _Harness(db, recipient)
        stop = threading.Event()

        def chat_sender(k: int) -> None:
            rng = random.Random(k)
            deadline = time.monotonic() + seconds
            while True:
                time.sleep(rng.expovariate(rate_per_chat))
                if time.monotonic() >= deadline:
                    return
                harness.send(senders[k], f"{prefix}c{k}")

        def device(k: int) -> None:
            cursor = None
            while not stop.is_set():
                page = sync.sync_messages(db, recipient, SyncMessagesRequest(deviceId=f"d{k}", cursor=cursor))
                if page.messages:
                    sync.ack_messages(db, recipient, AckMessagesRequest(
                        messageIds=[m.messageId for m in page.messages], deviceId=f"d{k}"))
                cursor = page.cursor
                time.sleep(0.2)

        before = counter.snapshot()
        threads = [threading.Thread(target=chat_sender, args=(k,)) for k in active]
        threads += [threading.Thread(target=device, args=(k,)) for k in range(devices if with_devices else 0)]
        with mock.patch.object(locks, "held", lambda *keys: nullcontext()):
            for t in threads:
                t.start()
            for t in threads[:len(active)]:
                t.join()
            stop.set()
            for t in threads[len(active):]:
                t.join()
        out = harness.results()
        spent = counter.snapshot() - before
        return out | {"lost_races_per_message": spent["failed_commits"] / max(out["messages"], 1)}

    quiet = run([chats], with_devices=False)
    busy = run(list(range(chats)), with_devices=True)
    ratio = busy["p95_ms"] / quiet["p95_ms"]
    log(f"  busy recipient: {chats} chats x {rate_per_chat}/s with {devices} devices acking: p95 {busy['p95_ms']:.0f} ms"
        f" against {quiet['p95_ms']:.0f} ms from one chat alone (ratio {ratio:.2f}), {busy['placed_by_send_share']:.0%}"
        f" placed by their sends, {busy['lost_races_per_message']:.2f} lost races a message")
    return {"chats": chats, "rate_per_chat": rate_per_chat, "seconds": seconds, "devices": devices,
            "quiet": quiet, "busy": busy, "ratio_p95_to_quiet": ratio}
