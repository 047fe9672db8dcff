"""The queue and its processors: delivery, retries with back-off, dead letters, races."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

from google.cloud import firestore
from support.chatcore import inbox as inbox_entries
from support.chatcore import queue_entries
from support.entries import T0, enqueue, load, make_entry

from pack427 import audit, constants, inbox, paths
from pack427.delivering import backlog, delivery, queue
from pack427.delivering.notifier import EmulatorNotifier
from pack427.models import QueueStatus, Region
from pack427.operating import ops
from pack427.workers import processor


def test_backoff_doubles_from_one_second_and_caps_at_one_hour():
    assert [queue.backoff(n).total_seconds() for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 8, 16]
    assert queue.backoff(12).total_seconds() == 2048
    assert queue.backoff(13).total_seconds() == 3600
    assert queue.backoff(40).total_seconds() == 3600


def test_enqueue_is_idempotent(db):
    first, second = make_entry("a"), make_entry("b")
    assert queue.enqueue(db, [first], actor="test") == 1
    # A replay of the first together with a new one: only the new one is added.
    assert queue.enqueue(db, [first, second], actor="test") == 1
    assert queue.enqueue(db, [first, second], actor="test") == 0
    stored = sorted(queue_entries(db), key=lambda e: e["recipientId"])
    assert [e["recipientId"] for e in stored] == ["a", "b"]
    assert [[h["action"] for h in e["history"]] for e in stored] == [["ENQUEUED"], ["ENQUEUED"]]


def test_delivery_puts_the_message_in_the_inbox_once(db):
    entry = make_entry()
    enqueue(db, entry)
    loaded = load(db, entry)

    assert delivery.deliver(db, loaded, EmulatorNotifier(), actor="test", now=T0) == "delivered"
    # The same (stale) read again, and a fresh read: neither delivers twice.
    assert delivery.deliver(db, loaded, EmulatorNotifier(), actor="test", now=T0) == "skipped"
    assert delivery.deliver(db, load(db, entry), EmulatorNotifier(), actor="test", now=T0) == "skipped"
    assert queue.mark_delivered(db, load(db, entry), actor="test") is False

    [received] = inbox_entries(db, "bob")
    assert received["messageId"] == entry.message_id and received["text"] == "hello"
    stored = load(db, entry).entry
    assert stored.status == "DELIVERED" and stored.attempts == 1 and stored.delivered_at == T0
    assert [e.action for e in audit.history(db, entry.chat_id, entry.message_id)] == ["ENQUEUED", "DELIVERED"]


def test_failing_delivery_backs_off_then_drops_with_an_alert(db, capfd):
    entry = make_entry(tokens=["fail-always"])
    enqueue(db, entry)
    now = T0
    attempt_times = []
    for _ in range(5):
        # Not due a moment before its time: nothing is attempted.
        assert processor.process_batch(db, Region.US, EmulatorNotifier(), now=now - timedelta(milliseconds=1)).attempted == 0
        report = processor.process_batch(db, Region.US, EmulatorNotifier(), now=now)
        assert report.attempted == 1
        attempt_times.append(now)
        now = load(db, entry).entry.next_attempt_at

    stored = load(db, entry).entry
    assert stored.status == "DROPPED" and stored.attempts == 5
    assert "fail-always" in stored.last_error
    gaps = [(b - a).total_seconds() for a, b in zip(attempt_times, attempt_times[1:], strict=False)]
    assert gaps == [1, 2, 4, 8]
    history = audit.history(db, entry.chat_id, entry.message_id)
    assert [e.action for e in history] == ["ENQUEUED", "FAILED", "FAILED", "FAILED", "FAILED", "DROPPED"]
    # Dead letters are never attempted again.
    assert processor.process_batch(db, Region.US, EmulatorNotifier(), now=now + timedelta(days=1)).attempted == 0
    alerts = [json.loads(line) for line in capfd.readouterr().err.splitlines() if '"alert"' in line]
    assert [(a["alert"], a["severity"], a["messageId"]) for a in alerts] == [("MESSAGE_DROPPED", "ERROR", entry.message_id)]
    # The push failed, the message did not get lost: it is in the inbox.
    assert [m["messageId"] for m in inbox_entries(db, "bob")] == [entry.message_id]


def test_delivery_that_fails_twice_succeeds_on_the_third_attempt(db):
    entry = make_entry(tokens=["fail-first-2"])
    enqueue(db, entry)
    now = T0
    outcomes = []
    for _ in range(3):
        report = processor.process_batch(db, Region.US, EmulatorNotifier(), now=now)
        outcomes.extend(o for o, n in report.outcomes.items() for _ in range(n))
        now = load(db, entry).entry.next_attempt_at
    assert outcomes == ["failed", "failed", "delivered"]
    stored = load(db, entry).entry
    assert stored.status == "DELIVERED" and stored.attempts == 3 and stored.last_error is None
    assert len(inbox_entries(db, "bob")) == 1


def test_a_delivery_that_loses_every_race_for_the_head_is_not_a_failed_attempt(db, monkeypatch):
    entry = make_entry()
    enqueue(db, entry)
    monkeypatch.setattr(constants, "INBOX_HEAD_RETRIES", 3)
    read_heads = inbox.heads
    moves = []

    def moving(db_, uids):
        found = read_heads(db_, uids)
        # Between the delivery's read of the head and its commit, another writer moves it.
        paths.inbox_head(db, "bob").set({"updatedAt": T0 + timedelta(milliseconds=len(moves))}, merge=True)
        moves.append(True)
        return found

    monkeypatch.setattr(inbox, "heads", moving)
    snapshot = paths.queue_entry(db, entry.target_region, entry.id).get()
    assert delivery.on_enqueued(db, snapshot, EmulatorNotifier(), now=T0) == "busy"
    assert len(moves) == 3
    stored = load(db, entry).entry
    # Nothing failed: no attempt counted, no back-off, still due now for the next worker.
    assert (stored.status, stored.attempts, stored.next_attempt_at, stored.last_error) == (
        "PENDING", 0, entry.next_attempt_at, None)
    assert inbox_entries(db, "bob") == []

    monkeypatch.setattr(inbox, "heads", read_heads)
    assert processor.process_batch(db, Region.US, EmulatorNotifier(), now=T0).outcomes["delivered"] == 1
    assert [e["messageId"] for e in inbox_entries(db, "bob")] == [entry.message_id]
    assert load(db, entry).entry.attempts == 1


def test_a_batch_takes_at_most_batch_size_and_only_due_entries(db):
    due = [make_entry(f"u{i % 7}", created=T0 + timedelta(milliseconds=i)) for i in range(230)]
    later = [make_entry("v", created=T0, status=QueueStatus.FAILED, next_attempt_at=T0 + timedelta(minutes=5)) for _ in range(5)]
    enqueue(db, *due, *later)
    now = T0 + timedelta(seconds=1)

    first = processor.process_batch(db, Region.US, EmulatorNotifier(), now=now)
    second = processor.process_batch(db, Region.US, EmulatorNotifier(), now=now)

    assert (first.outcomes["delivered"], second.outcomes["delivered"]) == (200, 30)
    statuses = {e.id: s for e, s in ((e, load(db, e).entry.status) for e in later)}
    assert set(statuses.values()) == {QueueStatus.FAILED}
    assert processor.process_batch(db, Region.US, EmulatorNotifier(), now=now).attempted == 0


def test_two_processors_draining_one_backlog_deliver_each_message_once(db, firestore_emulator):
    entries = [make_entry(f"user{i % 20}", created=T0 + timedelta(milliseconds=i)) for i in range(1000)]
    enqueue(db, *entries)
    reports = []
    start = threading.Barrier(2)

    def worker(name: str) -> None:
        client = firestore.Client(project=db.project)
        start.wait()
        reports.append(processor.drain(client, EmulatorNotifier(), regions=(Region.US,), actor=name, time_budget_s=600))

    threads = [threading.Thread(target=worker, args=(f"worker-{n}",)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    delivered_by_worker = [r["US"]["delivered"] for r in reports]
    assert sum(delivered_by_worker) == 1000
    stored = queue_entries(db)
    assert len(stored) == 1000
    assert {(e["status"], e["attempts"]) for e in stored} == {("DELIVERED", 1)}
    inbox_total = sum(len(inbox_entries(db, f"user{u}")) for u in range(20))
    assert inbox_total == 1000
    assert all([h["action"] for h in e["history"]] == ["ENQUEUED", "DELIVERED"] for e in stored)


def test_delivered_entries_carry_their_ttl_and_dead_letters_none(db):
    """Firestore's TTL policy on messageQueue.expiresAt (firestore.indexes.json) deletes what
    the daily cleanup used to: DELIVERED entries, DELIVERED_RETENTION_DAYS after delivery.
    The emulator does not run TTL, so what is checked is the field each state leaves."""
    delivered_entry = make_entry("a", created=T0)
    dropped = make_entry("c", created=T0, tokens=["fail-always"])
    waiting = make_entry("d", created=T0, tokens=["fail-always"])
    enqueue(db, delivered_entry, dropped, waiting)
    delivered_at = T0 + timedelta(days=6)
    delivery.deliver(db, load(db, delivered_entry), EmulatorNotifier(), actor="test", now=delivered_at)
    for n in range(5):
        delivery.deliver(db, load(db, dropped), EmulatorNotifier(), actor="test", now=T0 + timedelta(hours=n))
    delivery.deliver(db, load(db, waiting), EmulatorNotifier(), actor="test", now=T0)

    stored = {e["recipientId"]: e for e in queue_entries(db)}
    assert {uid: e["status"] for uid, e in stored.items()} == {"a": "DELIVERED", "c": "DROPPED", "d": "FAILED"}
    assert stored["a"]["expiresAt"] == delivered_at + timedelta(days=constants.DELIVERED_RETENTION_DAYS)
    # A dead letter stays until an operator acts; a retried entry is still on its way.
    assert stored["c"].get("expiresAt") is None and stored["d"].get("expiresAt") is None

    # Requeued by an operator after its message had reached the inbox: DELIVERED, with its TTL.
    with_inbox = make_entry("e", created=T0, tokens=["fail-always"])
    enqueue(db, with_inbox)
    for n in range(5):
        delivery.deliver(db, load(db, with_inbox), EmulatorNotifier(), actor="test", now=T0 + timedelta(hours=n))
    requeued_at = T0 + timedelta(days=1)
    ops.requeue_dropped(db, regions=(Region.US,), now=requeued_at)
    again = load(db, with_inbox).entry
    assert again.status == "DELIVERED" and again.expires_at is not None
    assert again.expires_at == again.delivered_at + timedelta(days=constants.DELIVERED_RETENTION_DAYS)


def test_stats_count_entries_by_status(db):
    entries = [make_entry(f"s{i}", created=T0 + timedelta(milliseconds=i)) for i in range(4)]
    failing = make_entry("f", tokens=["fail-always"])
    enqueue(db, *entries, failing)
    delivery.deliver(db, load(db, entries[0]), EmulatorNotifier(), actor="test")
    delivery.deliver(db, load(db, failing), EmulatorNotifier(), actor="test")

    stats = backlog.stats(db, Region.US)
    assert (stats.pending, stats.failed, stats.delivered, stats.dropped, stats.depth) == (3, 1, 1, 0, 4)
    assert backlog.stats(db, Region.EU).depth == 0


def test_duplicated_trigger_events_racing_deliver_once(db):
    entries = [make_entry(f"r{i}", created=T0 + timedelta(milliseconds=i)) for i in range(20)]
    entries += [make_entry(f"p{i}", tokens=["tok"], created=T0 + timedelta(milliseconds=50 + i)) for i in range(10)]
    enqueue(db, *entries)
    # The event carries the snapshot of the created document; at-least-once
    # delivery hands the same event to two instances at the same moment.
    events = [paths.queue_entry(db, e.target_region, e.id).get() for e in entries]
    barrier = threading.Barrier(2)
    outcomes: list[list[str]] = [[], []]

    def instance(n: int) -> None:
        barrier.wait()
        for event in events:
            outcomes[n].append(delivery.on_enqueued(db, event, EmulatorNotifier()))

    threads = [threading.Thread(target=instance, args=(n,)) for n in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    per_entry = list(zip(*outcomes, strict=False))
    assert all(sorted(pair) == ["delivered", "skipped"] for pair in per_entry), per_entry
    assert {(e["status"], e["attempts"]) for e in queue_entries(db)} == {("DELIVERED", 1)}
    assert sum(len(inbox_entries(db, e.recipient_id)) for e in entries) == 30
