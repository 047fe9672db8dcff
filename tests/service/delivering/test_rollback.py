"""The rollback switch (config/engine mode) and back-pressure, on the emulator."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from support.chatcore import make_chat, make_user, queue_entries
from support.entries import T0, enqueue, make_entry
from ulid import ULID

from pack427 import constants, inbox, paths, settings
from pack427.accepting import sending
from pack427.delivering import backlog, delivery, queue
from pack427.delivering.notifier import EmulatorNotifier
from pack427.models import EngineMode, QueueStatus, Region, SendMessageRequest
from pack427.workers import processor


@pytest.fixture
def chat(db):
    make_user(db, "alice", region="EU")
    make_user(db, "bob", region="US")
    make_user(db, "carol", region="APAC")
    make_chat(db, "c1", ["alice", "bob", "carol"])
    return db


def send(db, sender, text, at, client_id=None):
    request = SendMessageRequest(chatId="c1", clientMessageId=client_id or str(ULID.from_datetime(at)), text=text)
    return sending.send_message(db, sender, request, now=at).messageId


def inbox_ids(db, uid):
    return [e.message_id for e in inbox.after(db, uid, 0, limit=1000)]


def trigger(db, entry_path):
    return delivery.on_enqueued(db, db.document(entry_path).get(), EmulatorNotifier())


def test_direct_mode_delivers_in_the_request_the_trigger_stands_still_and_the_processor_retries(chat, monkeypatch):
    db = chat
    # The queue's side of the switch: every send queues (as a large chat's, or one that lost a race, do).
    monkeypatch.setattr(constants, "INLINE_ATTEMPTS", 0)
    settings.set_mode(db, EngineMode.DIRECT, actor="test", reason="queue incident")
    first = send(db, "alice", "one", T0)

    # Delivered by the send itself; the entries are there, DELIVERED, for metrics and history.
    assert inbox_ids(db, "bob") == [first] and inbox_ids(db, "carol") == [first]
    entries = queue_entries(db)
    assert {e["status"] for e in entries} == {"DELIVERED"} and len(entries) == 2
    # The trigger stands still.
    assert {trigger(db, e["_path"]) for e in entries} == {delivery.Outcome.SKIPPED}

    # A failure during direct delivery is recorded, and the processor retries it (it is not paused).
    def broken(*args, **kwargs):
        raise RuntimeError("injected: inbox unavailable")

    with monkeypatch.context() as m:
        m.setattr(inbox, "place", broken)
        second = send(db, "alice", "two", T0 + timedelta(seconds=1))
    assert queue.load(db, Region.US, f"{second}_bob").entry.status is QueueStatus.FAILED
    # The next send of the chat delivers the older message first: order holds.
    third = send(db, "bob", "three", T0 + timedelta(seconds=2))
    assert inbox_ids(db, "carol") == [first, second, third]
    assert inbox_ids(db, "bob") == [first]  # second's entry to bob waits for its retry

    summary = processor.drain(db, EmulatorNotifier(), time_budget_s=600)
    assert summary["US"]["delivered"] == 1
    assert inbox_ids(db, "bob") == [first, second]
    for uid in ("bob", "carol", "alice"):  # every message once, in order, per reader
        ids = inbox_ids(db, uid)
        assert len(ids) == len(set(ids)) and ids == sorted(ids)
    assert inbox_ids(db, "alice") == [third]


def test_switching_to_direct_in_the_middle_of_a_backlog_strands_nothing(db, monkeypatch):
    monkeypatch.setattr(constants, "INLINE_ATTEMPTS", 0)  # everything queues, as under an incident
    for uid, region in (("alice", "EU"), ("bob", "US"), ("carol", "APAC"), ("dave", "US")):
        make_user(db, uid, region=region)
    chats = {"c1": ["alice", "bob"], "c2": ["alice", "bob", "carol"], "c3": ["carol", "dave"]}
    for chat_id, members in chats.items():
        make_chat(db, chat_id, members)
    sent: dict[str, list[str]] = {chat_id: [] for chat_id in chats}

    def send_to(chat_id, sender, n):
        request = SendMessageRequest(chatId=chat_id, clientMessageId=str(ULID()), text=f"{chat_id} {n}")
        sent[chat_id].append(sending.send_message(db, sender, request, now=T0 + timedelta(seconds=n)).messageId)

    # A backlog: 24 messages queued, nobody delivering (the trigger is what stalled).
    for n in range(24):
        chat_id = ("c1", "c2", "c3")[n % 3]
        send_to(chat_id, chats[chat_id][n % 2], n)
    assert all(e["awaitingInbox"] for e in queue_entries(db))

    # The operator switches to direct mode halfway through the processor's work.
    processor.process_batch(db, Region.US, EmulatorNotifier(), limit=5)
    settings.set_mode(db, EngineMode.DIRECT, actor="test", reason="rollback")
    for n in range(24, 28):  # sends go on in c1: each delivers its own, after c1's older queued ones
        send_to("c1", chats["c1"][n % 2], n)
    # The other chats' backlog is the processor's: it drains in direct mode too.
    summary = processor.drain(db, EmulatorNotifier(), time_budget_s=600)
    assert sum(r["delivered"] for r in summary.values()) >= 8

    for chat_id, members in chats.items():
        for uid in members:
            expected = [m for m in sent[chat_id] if db.document(f"chats/{chat_id}/messages/{m}").get().get("senderId") != uid]
            got = [m for m in inbox_ids(db, uid) if m in sent[chat_id]]
            assert got == expected, (chat_id, uid)  # every message, once, in chat order
    entries = queue_entries(db)
    assert {e["status"] for e in entries} == {"DELIVERED"}
    assert all([h["action"] for h in e["history"]].count("DELIVERED") == 1 for e in entries)


def test_queue_mode_does_not_deliver_what_it_queued_in_the_request_and_a_retried_send_in_direct_mode_does_once(
    chat, monkeypatch
):
    db = chat
    monkeypatch.setattr(constants, "INLINE_ATTEMPTS", 0)
    client_id = str(ULID.from_datetime(T0))
    first = send(db, "alice", "one", T0, client_id)
    assert inbox_ids(db, "bob") == []  # queue mode: the trigger's job

    settings.set_mode(db, EngineMode.DIRECT, actor="test")
    assert send(db, "alice", "one", T0, client_id) == first  # the duplicate send delivers what waited
    assert send(db, "alice", "one", T0, client_id) == first
    assert inbox_ids(db, "bob") == [first] and inbox_ids(db, "carol") == [first]
    assert Counter(e["status"] for e in queue_entries(db)) == {"DELIVERED": 2}


def test_a_send_that_places_its_message_needs_neither_the_queue_nor_the_switch(chat):
    db = chat
    first = send(db, "alice", "one", T0)
    settings.set_mode(db, EngineMode.DIRECT, actor="test")
    second = send(db, "bob", "two", T0 + timedelta(seconds=1))
    assert inbox_ids(db, "carol") == [first, second] and inbox_ids(db, "alice") == [second]
    assert queue_entries(db) == []


def test_the_switch_is_cached_per_instance_for_a_few_seconds(db):
    assert settings.current(db).mode is EngineMode.QUEUE
    paths.engine_settings(db).set({"mode": "direct"})  # another instance flips it
    assert settings.current(db).mode is EngineMode.QUEUE  # cached
    assert settings.current(db, max_age_s=0).mode is EngineMode.DIRECT


def queue_backlog(db, chats: int, per_chat: int):
    """`chats` chats of `per_chat` messages each to bob, created in a shuffled order of chats."""
    entries = [make_entry("bob", chat=f"c{c}", created=T0 + timedelta(milliseconds=10 * i + c))
               for i in range(per_chat) for c in range(chats)]
    enqueue(db, *entries)
    return entries


def test_back_pressure_takes_larger_batches_then_fans_out_over_disjoint_slices(db, monkeypatch):
    # The mechanics on a small queue (thresholds 20 and 40, batches of 10 and 25): the seed's
    # 5,000 and 10,000 are held by tests/unit/test_policies.py on processor.back_pressure.
    monkeypatch.setattr(constants, "LARGE_BATCH_SIZE", 25)
    monkeypatch.setattr(constants, "BATCH_SIZE", 10)
    entries = queue_backlog(db, chats=8, per_chat=10)
    seen_shards = Counter()
    real = backlog.due_entries

    def watched(*args, shard=None, **kwargs):
        found = real(*args, shard=shard, **kwargs)
        seen_shards.update((shard, e.entry.shard) for e in found)
        return found

    monkeypatch.setattr(backlog, "due_entries", watched)
    rounds = []

    summary = processor.drain(db, EmulatorNotifier(), regions=(Region.US,), time_budget_s=600,
                             scale_up_depth=20, fan_out_depth=40, progress=lambda r, t: rounds.append(dict(t)))

    modes = [r["mode"] for r in rounds]
    # 80 waiting: fan-out (4 slices x 25), then as the depth falls, larger batches, then normal ones.
    assert modes[0] == "fan-out" and modes[-1] == "normal" and modes == sorted(modes, key=["fan-out", "large", "normal"].index)
    assert all(s == e for (s, e) in seen_shards if s is not None)  # a worker sees its slice only
    assert summary["US"]["delivered"] == len(entries)
    ids = inbox_ids(db, "bob")
    assert sorted(ids) == sorted(e.message_id for e in entries) and len(set(ids)) == len(ids)
    by_chat = {}
    for e in inbox.after(db, "bob", 0, limit=1000):
        by_chat.setdefault(e.chat_id, []).append(e.message_id)
    assert all(messages == sorted(messages) for messages in by_chat.values())  # per-chat order


def test_two_fanned_out_processors_racing_deliver_each_message_once(db):
    entries = queue_backlog(db, chats=6, per_chat=8)

    def run(name):
        return processor.drain(db, EmulatorNotifier(), regions=(Region.US,), actor=name, time_budget_s=600,
                              scale_up_depth=5, fan_out_depth=10)

    with ThreadPoolExecutor(2) as pool:
        summaries = list(pool.map(run, ["w1", "w2"]))

    assert sum(s["US"]["delivered"] for s in summaries) == len(entries)
    ids = inbox_ids(db, "bob")
    assert len(ids) == len(entries) == len(set(ids))
    assert backlog.depth(db, Region.US) == 0
