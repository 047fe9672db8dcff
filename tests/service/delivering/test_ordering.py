"""Per-chat order: no message enters an inbox before an older one of its chat."""

from __future__ import annotations

import random
import threading
from datetime import timedelta

from google.cloud import firestore
from support.chatcore import inbox, queue_entries
from support.entries import T0, enqueue, load, make_entry

from pack427 import paths
from pack427.delivering import delivery, queue
from pack427.delivering.notifier import EmulatorNotifier
from pack427.models import QueueStatus, Region
from pack427.workers import processor


def arrival_order(db: firestore.Client, uid: str) -> list[str]:
    """Message ids of `uid`'s inbox in the order Firestore committed them."""
    snapshots = list(paths.inbox(db, uid).stream())
    return [s.id for s in sorted(snapshots, key=lambda s: (s.create_time, s.id))]


def event(db, entry):
    return paths.queue_entry(db, entry.target_region, entry.id).get()


def test_a_message_waiting_for_a_retry_holds_back_newer_ones_of_its_chat(db):
    retry_at = T0 + timedelta(seconds=30)
    older = make_entry("bob", created=T0, status=QueueStatus.FAILED, next_attempt_at=retry_at)
    newer = make_entry("bob", created=T0 + timedelta(seconds=1))
    other_chat = make_entry("bob", created=T0 + timedelta(seconds=2), chat="c2")
    enqueue(db, older, newer, other_chat)
    now = T0 + timedelta(seconds=2)

    # The newer message's trigger: it must not overtake; another chat is not held.
    assert delivery.on_enqueued(db, event(db, newer), EmulatorNotifier(), now=now) == "deferred"
    assert delivery.on_enqueued(db, event(db, other_chat), EmulatorNotifier(), now=now) == "delivered"
    assert arrival_order(db, "bob") == [other_chat.message_id]
    assert load(db, newer).entry.next_attempt_at == retry_at
    # Before the retry time, the scheduler finds nothing due in that chat.
    assert processor.process_batch(db, Region.US, EmulatorNotifier(), now=now).attempted == 0

    report = processor.process_batch(db, Region.US, EmulatorNotifier(), now=retry_at)
    assert report.outcomes["delivered"] == 2
    assert arrival_order(db, "bob") == [other_chat.message_id, older.message_id, newer.message_id]


def test_the_trigger_of_a_newer_message_delivers_older_pending_ones_first(db):
    older = make_entry("bob", created=T0)
    newer = make_entry("bob", created=T0 + timedelta(milliseconds=5))
    enqueue(db, older, newer)

    assert delivery.on_enqueued(db, event(db, newer), EmulatorNotifier()) == "delivered"
    assert arrival_order(db, "bob") == [older.message_id, newer.message_id]
    # The older message's own (late) trigger finds nothing left to do.
    assert delivery.on_enqueued(db, event(db, older), EmulatorNotifier()) == "skipped"


def test_a_failed_push_does_not_hold_the_chat_back(db):
    older = make_entry("bob", created=T0, tokens=["fail-always"])
    newer = make_entry("bob", created=T0 + timedelta(seconds=1))
    enqueue(db, older, newer)

    assert delivery.on_enqueued(db, event(db, older), EmulatorNotifier()) == "failed"
    assert delivery.on_enqueued(db, event(db, newer), EmulatorNotifier()) == "delivered"
    # The older message is in the inbox (placed before its push) and first.
    assert arrival_order(db, "bob") == [older.message_id, newer.message_id]
    stored = load(db, older).entry
    assert (stored.status, stored.awaiting_inbox) == ("FAILED", False)


def test_a_dropped_message_releases_the_newer_ones(db):
    retry_at = T0 + timedelta(seconds=30)
    doomed = make_entry("bob", created=T0, status=QueueStatus.FAILED, next_attempt_at=retry_at)
    doomed = doomed.model_copy(update={"attempts": 4})
    newer = make_entry("bob", created=T0 + timedelta(seconds=1))
    enqueue(db, doomed, newer)
    assert processor.process_batch(db, Region.US, EmulatorNotifier(), now=T0 + timedelta(seconds=2)).outcomes["deferred"] == 1

    # Its fifth attempt fails too: a dead letter holds nothing back.
    assert queue.mark_failed(db, load(db, doomed), "inbox write refused", actor="test", now=retry_at) == "DROPPED"
    report = processor.process_batch(db, Region.US, EmulatorNotifier(), now=retry_at)

    assert report.outcomes["delivered"] == 1
    assert arrival_order(db, "bob") == [newer.message_id]


def test_racing_triggers_and_processors_keep_every_chat_in_order(db):
    rng = random.Random(427)
    entries = []
    for n in range(120):
        recipient, chat = rng.choice(["bob", "eve"]), rng.choice(["c1", "c2", "c3"])
        entries.append(make_entry(recipient, created=T0 + timedelta(milliseconds=n), chat=chat))
    enqueue(db, *entries)
    events = [event(db, e) for e in entries]
    rng.shuffle(events)  # triggers fire in any order
    barrier = threading.Barrier(3)

    def triggers(part):
        barrier.wait()
        for snapshot in part:
            delivery.on_enqueued(db, snapshot, EmulatorNotifier())

    def scheduler():
        barrier.wait()
        processor.drain(db, EmulatorNotifier(), regions=(Region.US,), actor="scheduler", time_budget_s=600)

    threads = [threading.Thread(target=triggers, args=(events[::2],)),
               threading.Thread(target=triggers, args=(events[1::2],)),
               threading.Thread(target=scheduler)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert {e["status"] for e in queue_entries(db)} == {"DELIVERED"}
    chat_of = {e.message_id: e.chat_id for e in entries}
    for uid in ("bob", "eve"):
        arrived = arrival_order(db, uid)
        assert len(arrived) == len(set(arrived)) == sum(e.recipient_id == uid for e in entries)
        for chat in ("c1", "c2", "c3"):
            in_chat = [m for m in arrived if chat_of[m] == chat]
            assert in_chat == sorted(in_chat), f"{uid}/{chat} out of order"


def test_a_batch_delivers_an_older_message_waiting_in_another_regions_queue_first(db):
    # Bob moved from EU to US: his older message of c1 still waits in the EU queue.
    older = make_entry("bob", created=T0, region=Region.EU)
    newer = [make_entry("bob", created=T0 + timedelta(seconds=n)) for n in (1, 2)]
    eve = make_entry("eve", created=T0 + timedelta(seconds=1))
    enqueue(db, older, *newer, eve)

    report = processor.process_batch(db, Region.US, EmulatorNotifier(), now=T0 + timedelta(seconds=3))

    assert report.outcomes["delivered"] == 4
    assert arrival_order(db, "bob") == [older.message_id, newer[0].message_id, newer[1].message_id]
    assert [e["seq"] for e in sorted(inbox(db, "bob"), key=lambda e: e["seq"])] == [1, 2, 3]
    assert arrival_order(db, "eve") == [eve.message_id]


def test_a_batch_that_loses_the_race_for_an_inbox_to_a_trigger_delivers_the_rest_once(db, monkeypatch):
    backlog = [make_entry(uid, created=T0 + timedelta(milliseconds=n), chat=f"c{n % 3}")
               for n in range(60) for uid in ("bob", "eve", "dan")]
    enqueue(db, *backlog)
    # Between the batch reading the inbox heads and its commit, a trigger
    # delivers a new message of another chat to bob: his head moves.
    racer = make_entry("bob", created=T0 + timedelta(seconds=1), chat="c9")
    read_heads = delivery.inbox.heads

    def heads_then_trigger(db_, uids):
        read = read_heads(db_, uids)
        if load(db, racer) is None:
            enqueue(db, racer)
            assert delivery.on_enqueued(db, event(db, racer), EmulatorNotifier(), now=racer.created_at) == "delivered"
        return read

    monkeypatch.setattr(delivery.inbox, "heads", heads_then_trigger)
    report = processor.process_batch(db, Region.US, EmulatorNotifier(), now=T0 + timedelta(seconds=2))

    assert report.outcomes["delivered"] == len(backlog)
    assert {e["status"] for e in queue_entries(db)} == {"DELIVERED"}
    chat_of = {e.message_id: e.chat_id for e in [*backlog, racer]}
    for uid in ("bob", "eve", "dan"):
        entries = sorted(inbox(db, uid), key=lambda e: e["seq"])
        assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
        assert len(entries) == 60 + (uid == "bob")
        for chat in ("c0", "c1", "c2"):
            in_chat = [m for m in arrival_order(db, uid) if chat_of[m] == chat]
            assert in_chat == sorted(in_chat), f"{uid}/{chat} out of order"
