"""Accepting messages: what a send stores, and what a retried send does not."""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

import pytest
from support.chatcore import all_documents, billing_requests, count, head, inbox, make_chat, make_user, queue_entries
from support.emulator import ROOT
from ulid import ULID

from pack427 import chat_core, clock, constants, locks, paths, settings
from pack427.accepting import sending
from pack427.delivering import backlog, delivery, fan_out
from pack427.delivering.notifier import EmulatorNotifier
from pack427.errors import InvalidArgument, NotFound, PermissionDenied
from pack427.models import EngineSettings, MarkAsReadRequest, Region, SendMessageRequest
from pack427.reading import unread
from pack427.workers import processor

sys.path.insert(0, str(ROOT / "scripts"))
from benchmarks import opcount  # noqa: E402  the bench's counter of Firestore RPCs


def request(chat_id: str = "c1", text: str = "hello", client_id: str | None = None) -> SendMessageRequest:
    return SendMessageRequest(chatId=chat_id, clientMessageId=client_id or str(ULID()), text=text)


@pytest.fixture
def group(db):
    make_user(db, "alice", region="EU", name="Alice")
    make_user(db, "bob", region="US")
    make_user(db, "carol", region="APAC", online=False, tokens=["tok-carol"])
    make_chat(db, "c1", ["alice", "bob", "carol"], billing={"mode": "paid", "price": 3})
    return db


def test_send_places_the_message_in_every_inbox_in_its_own_commit(group):
    db = group
    result = sending.send_message(db, "alice", request(text="hi all"))

    assert result.duplicate is False and result.status == "QUEUED"
    message = db.document(f"chats/c1/messages/{result.messageId}").get().to_dict()
    assert message["senderId"] == "alice" and message["text"] == "hi all"
    # The message is its own billing request: the chat's billing state, once, with the message.
    assert message["billingState"] == {"mode": "paid", "price": 3}
    assert "placedBySend" not in message  # members read it: it must not tell who received it
    [send] = [s.to_dict() for s in db.collection("idempotencyKeys").stream()]
    assert sorted(send["placedBySend"]) == ["bob", "carol"]
    for uid, region in (("bob", "US"), ("carol", "APAC")):
        [entry] = inbox(db, uid)
        assert entry["messageId"] == result.messageId and entry["seq"] == 1
        assert (entry["region"], entry["via"], entry["text"]) == (region, "send", "hi all")
        assert entry["deliveredAt"] == entry["createdAt"]
        assert head(db, uid)["seq"] == 1
        assert head(db, uid)["chats"]["c1"] == {"unread": 1, "readUpTo": None, "last": result.messageId}
    # Only the offline recipient has a queue entry: it carries the push, the message is in the inbox.
    [push] = queue_entries(db)
    assert push["_path"] == f"regions/APAC/messageQueue/{result.messageId}_carol"
    assert (push["status"], push["awaitingInbox"], push["inboxSeq"], push["attempts"]) == ("PENDING", False, 1, 0)
    assert push["placedBySend"] is True
    assert push["transportMetadata"] == {"pushTokens": ["tok-carol"], "senderName": "Alice"}
    assert push["billingState"] == {"mode": "paid", "price": 3}
    assert [e["action"] for e in push["history"]] == ["ENQUEUED"]
    assert db.document("chats/c1").get().get("deliveryQueued") is False
    assert count(db, "auditLog") == 0


def test_same_client_message_id_five_times_gives_one_message(group):
    db = group
    client_id = str(ULID())
    first = sending.send_message(db, "alice", request(client_id=client_id))
    again = [sending.send_message(db, "alice", request(client_id=client_id)) for _ in range(4)]

    assert all(r.duplicate and r.messageId == first.messageId for r in again)
    assert len(list(db.collection("chats/c1/messages").stream())) == 1
    assert [len(inbox(db, uid)) for uid in ("bob", "carol")] == [1, 1]
    assert len(queue_entries(db)) == 1
    assert billing_requests(db) == [first.messageId]


def test_concurrent_retries_of_one_send_give_one_message(group):
    db = group
    client_id = str(ULID())
    with ThreadPoolExecutor(5) as pool:
        results = list(pool.map(lambda _: sending.send_message(db, "alice", request(client_id=client_id)), range(5)))

    assert len({r.messageId for r in results}) == 1
    assert sorted(r.duplicate for r in results) == [False, True, True, True, True]
    assert len(list(db.collection("chats/c1/messages").stream())) == 1
    assert [len(inbox(db, uid)) for uid in ("bob", "carol")] == [1, 1]
    assert [head(db, uid)["chats"]["c1"]["unread"] for uid in ("bob", "carol")] == [1, 1]
    assert len(queue_entries(db)) == 1
    assert billing_requests(db) == [results[0].messageId]


def test_client_message_id_reused_for_other_content_is_rejected(group):
    db = group
    client_id = str(ULID())
    sending.send_message(db, "alice", request(client_id=client_id, text="one"))
    before = all_documents(db)

    with pytest.raises(InvalidArgument, match="already used"):
        sending.send_message(db, "alice", request(client_id=client_id, text="two"))
    assert all_documents(db) == before


def test_same_client_message_id_from_two_senders_is_two_messages(group):
    db = group
    client_id = str(ULID())
    a = sending.send_message(db, "alice", request(client_id=client_id))
    b = sending.send_message(db, "bob", request(client_id=client_id))
    assert a.messageId != b.messageId and not b.duplicate


def test_sender_outside_the_chat_or_unknown_chat_writes_nothing(group):
    db = group
    make_user(db, "mallory")
    before = all_documents(db)

    with pytest.raises(PermissionDenied, match="not a participant"):
        sending.send_message(db, "mallory", request())
    with pytest.raises(NotFound, match="does not exist"):
        sending.send_message(db, "alice", request(chat_id="nope"))
    assert all_documents(db) == before


def test_cross_region_message_lands_in_the_recipients_inbox_at_once(db):
    make_user(db, "eve", region="EU")
    make_user(db, "uma", region="US")
    make_chat(db, "eu-us", ["eve", "uma"])
    result = sending.send_message(db, "eve", request(chat_id="eu-us", text="hello from Paris"))

    [received] = inbox(db, "uma")
    assert received["messageId"] == result.messageId
    assert (received["region"], received["via"], received["text"]) == ("US", "send", "hello from Paris")
    assert queue_entries(db) == []  # online: nothing left to do, no trigger runs
    assert processor.process_batch(db, Region.US, EmulatorNotifier()).attempted == 0


def test_user_without_document_or_with_unknown_region_uses_the_default_region(db, monkeypatch):
    monkeypatch.setenv("PACK427_DEFAULT_REGION", "APAC")
    make_user(db, "kim", region="MARS")
    make_chat(db, "c2", ["kim", "ghost"])
    sending.send_message(db, "kim", request(chat_id="c2"))

    [entry] = inbox(db, "ghost")
    assert entry["region"] == "APAC"


def round_trips(work) -> int:
    """Firestore RPCs `work` makes (batch gets, queries, commits), counted at the client's generated methods."""
    counter = opcount.install()
    before = counter.snapshot()
    work()
    return (counter.snapshot() - before)["round_trips"]


def test_a_second_send_to_a_chat_reads_it_with_its_participants_in_one_round_trip(db, monkeypatch):
    # config/engine is read once every few seconds per instance: not what this counts.
    monkeypatch.setattr(settings, "current", lambda db_, **_: EngineSettings())
    make_user(db, "alice")
    make_user(db, "bob")
    make_chat(db, "one-trip", ["alice", "bob"])
    sent = []
    first = round_trips(lambda: sent.append(sending.send_message(db, "alice", request("one-trip", "one")).messageId))
    second = round_trips(lambda: sent.append(sending.send_message(db, "bob", request("one-trip", "two")).messageId))
    third = round_trips(lambda: sent.append(sending.send_message(db, "alice", request("one-trip", "three")).messageId))
    # The chat, then profiles and heads, then the commit; after that the instance knows the chat.
    assert (first, second, third) == (3, 2, 2)
    assert [e["messageId"] for e in inbox(db, "bob")] == [sent[0], sent[2]]
    assert [e["messageId"] for e in inbox(db, "alice")] == [sent[1]]
    assert head(db, "bob")["chats"]["one-trip"]["unread"] == 2


def test_members_added_or_removed_since_the_instance_last_read_the_chat_count_at_the_next_send(db):
    for uid in ("alice", "bob", "carol"):
        make_user(db, uid)
    make_chat(db, "c1", ["alice", "bob"])
    one = sending.send_message(db, "alice", request(text="one")).messageId  # the instance now knows [alice, bob]
    db.document("chats/c1").update({"participants": ["alice", "bob", "carol"]})  # the chat core adds carol
    two = sending.send_message(db, "alice", request(text="two")).messageId
    assert [e["messageId"] for e in inbox(db, "carol")] == [two]
    db.document("chats/c1").update({"participants": ["alice", "carol"]})  # and removes bob
    three = sending.send_message(db, "alice", request(text="three")).messageId
    assert [e["messageId"] for e in inbox(db, "bob")] == [one, two]
    assert [e["messageId"] for e in inbox(db, "carol")] == [two, three]
    db.document("chats/c1").update({"participants": ["bob", "carol"]})  # alice is out
    with pytest.raises(PermissionDenied):
        sending.send_message(db, "alice", request(text="four"))
    assert count(db, "chats/c1/messages") == 3 and [e["messageId"] for e in inbox(db, "carol")] == [two, three]
    assert db.document("chats/c1").get().get("lastMessage")["messageId"] == three


def test_a_message_queued_with_nothing_ahead_is_placed_by_its_trigger_without_asking_the_queue(db, monkeypatch):
    monkeypatch.setattr(constants, "INLINE_ATTEMPTS", 0)  # every send through the queue
    make_user(db, "alice")
    make_user(db, "bob")
    make_chat(db, "c1", ["alice", "bob"])
    first = sending.send_message(db, "alice", request(text="one")).messageId
    second = sending.send_message(db, "alice", request(text="two")).messageId  # queued behind the first
    entries = {e["messageId"]: e for e in queue_entries(db)}
    assert (entries[first]["behindQueue"], entries[second]["behindQueue"]) == (False, True)
    asked = []
    awaiting_inbox = backlog.awaiting_inbox
    monkeypatch.setattr(backlog, "awaiting_inbox", lambda *a, **k: asked.append(a[1:]) or awaiting_inbox(*a, **k))

    def trigger(message_id):
        snapshot = db.document(f"regions/EU/messageQueue/{message_id}_bob").get()
        return delivery.on_enqueued(db, snapshot, EmulatorNotifier())

    # The second's trigger fires first: it asks the queue and delivers the first before itself.
    assert trigger(second) == "delivered"
    assert [e["messageId"] for e in inbox(db, "bob")] == [first, second]
    assert asked == [("c1", "bob")]
    # The first's own trigger, late: nothing to do, and no query for it.
    assert trigger(first) == "skipped"
    assert asked == [("c1", "bob")]
    # Nothing waits any more: the next send that may place finds the queue empty, clears the flag,
    # and a message queued after it (a lost race) has nothing ahead again.
    monkeypatch.setattr(constants, "INLINE_ATTEMPTS", 1)
    third = sending.send_message(db, "alice", request(text="three")).messageId
    assert db.document("chats/c1").get().get("deliveryQueued") is False
    monkeypatch.setattr(constants, "INLINE_ATTEMPTS", 0)
    fourth = sending.send_message(db, "alice", request(text="four")).messageId
    assert trigger(fourth) == "delivered"
    assert [e["messageId"] for e in inbox(db, "bob")] == [first, second, third, fourth]
    assert len(asked) == 1 and head(db, "bob")["chats"]["c1"]["unread"] == 4


def fan_out_jobs(db, chat_id: str = "c1") -> list:
    return list(db.collection(f"chats/{chat_id}/fanOuts").stream())


def test_a_group_send_that_loses_its_races_goes_as_one_fan_out_job_and_the_chat_keeps_its_order(db, monkeypatch):
    make_user(db, "alice")
    make_user(db, "bob")
    make_user(db, "carol", blocked=["alice"])  # carol blocked alice: the fan-out must apply it too
    make_user(db, "dan", online=False, tokens=["tok-dan"])
    make_chat(db, "c1", ["alice", "bob", "carol", "dan"])
    first = sending.send_message(db, "alice", request(text="one"))
    load_users_with = chat_core.load_users_with
    raced: list[list[str]] = []

    def racing(db_, uids, also):
        found = load_users_with(db_, uids, also)
        raced.append(list(uids))
        if len(raced) <= constants.INLINE_ATTEMPTS:  # each attempt that may place: bob's head moves first
            paths.inbox_head(db, "bob").set({"updatedAt": clock.now()}, merge=True)
        return found

    monkeypatch.setattr(chat_core, "load_users_with", racing)
    second = sending.send_message(db, "alice", request(text="two"))
    monkeypatch.setattr(chat_core, "load_users_with", load_users_with)

    # The attempt after the lost races read no recipient (their profiles are the fan-out's) and
    # committed one job: no queue entry, no inbox entry, nothing of the heads.
    assert raced[-1] == ["alice"] and len(raced) == constants.INLINE_ATTEMPTS + 1
    assert queue_entries(db) == [e for e in queue_entries(db) if e["messageId"] == first.messageId]
    [job] = fan_out_jobs(db)
    assert job.id == second.messageId and sorted(job.get("recipients")) == ["bob", "carol", "dan"]
    assert db.document("chats/c1").get().get("fanOutPending") is True
    assert [e["messageId"] for e in inbox(db, "bob")] == [first.messageId]
    # The next send must not overtake it: it follows through fan-out, in a job of its own, and
    # (its instance saw the chat fanning out) reads no recipient either, even on its first attempt.
    monkeypatch.setattr(chat_core, "load_users_with", racing)
    third = sending.send_message(db, "alice", request(text="three"))
    monkeypatch.setattr(chat_core, "load_users_with", load_users_with)
    assert raced[-1] == ["alice"] and len(raced) == constants.INLINE_ATTEMPTS + 2
    assert sorted(j.id for j in fan_out_jobs(db)) == [second.messageId, third.messageId]

    for job in sorted(fan_out_jobs(db), key=lambda j: j.id, reverse=True):  # the later job's event first
        fan_out.on_created(db, job)
    in_order = [first.messageId, second.messageId, third.messageId]
    assert [e["messageId"] for e in inbox(db, "bob")] == in_order
    assert [e["messageId"] for e in inbox(db, "dan")] == in_order
    assert inbox(db, "carol") == []  # blocked, by the send and by the fan-out alike
    assert head(db, "bob")["chats"]["c1"]["unread"] == 3 and head(db, "dan")["seq"] == 3
    assert fan_out_jobs(db) == [] and db.document("chats/c1").get().get("fanOutPending") is False
    # Nothing in fan-out any more: the next send places the message itself again.
    fourth = sending.send_message(db, "alice", request(text="four"))
    assert inbox(db, "bob")[-1]["messageId"] == fourth.messageId and inbox(db, "bob")[-1]["via"] == "send"


def test_racing_senders_of_a_group_without_the_local_locks_deliver_every_message_once_in_chat_order(db, monkeypatch):
    # Each sender on an instance of its own: the sends race in Firestore, lose, and go on as jobs.
    monkeypatch.setattr(locks, "held", lambda *keys: nullcontext())
    members = [f"u{k}" for k in range(8)]
    for uid in members:
        make_user(db, uid)
    make_chat(db, "c1", members)
    barrier = threading.Barrier(len(members))

    def sender(uid: str) -> list[str]:
        barrier.wait()
        return [sending.send_message(db, uid, request(text=f"{uid} {k}")).messageId for k in range(4)]

    with ThreadPoolExecutor(len(members)) as pool:
        sent = [m for ids in pool.map(sender, members) for m in ids]
    by_job = sorted(fan_out_jobs(db), key=lambda j: j.id)
    assert by_job, "no send lost its races: the test raced nothing"
    with ThreadPoolExecutor(4) as pool:  # the jobs' triggers, at once and in any order
        list(pool.map(lambda job: fan_out.on_created(db, job), by_job[::-1]))
    processor.drain(db, EmulatorNotifier(), actor="scheduler", time_budget_s=30)
    chat_order = sorted(sent)  # a chat's message ids are its order
    for uid in members:
        got = [e["messageId"] for e in inbox(db, uid)]
        assert got == [m for m in chat_order if not db.document(f"chats/c1/messages/{m}").get().get("senderId") == uid]
        assert [e["seq"] for e in inbox(db, uid)] == list(range(1, len(got) + 1))
        assert head(db, uid)["chats"]["c1"]["unread"] == len(got) == len(sent) - 4
    assert fan_out_jobs(db) == []


def test_a_send_that_loses_a_race_for_a_head_goes_through_the_queue_and_keeps_the_chat_in_order(db, monkeypatch):
    make_user(db, "alice")
    make_user(db, "bob")
    make_chat(db, "c1", ["alice", "bob"])
    first = sending.send_message(db, "alice", request(text="one"))
    # Between the send's read of bob's head and its commit, something moves the head.
    load_users_with = chat_core.load_users_with
    raced = []

    def racing(db_, uids, also):
        found = load_users_with(db_, uids, also)
        # Every attempt that may place loses its race: another delivery moves bob's head, then bob reads.
        if len(raced) < constants.INLINE_ATTEMPTS:
            moves = [lambda: paths.inbox_head(db, "bob").set({"updatedAt": clock.now()}, merge=True),
                     lambda: unread.mark_as_read(db, "bob", MarkAsReadRequest(chatId="c1", readUpToMessageId=first.messageId))]
            moves[len(raced) % 2]()
            raced.append(True)
        return found

    monkeypatch.setattr(chat_core, "load_users_with", racing)
    second = sending.send_message(db, "alice", request(text="two"))
    monkeypatch.setattr(chat_core, "load_users_with", load_users_with)

    [entry] = queue_entries(db)  # the retry queued it
    assert (entry["messageId"], entry["awaitingInbox"]) == (second.messageId, True)
    assert db.document("chats/c1").get().get("deliveryQueued") is True
    # The next send must not overtake the queued one: it is queued behind it.
    third = sending.send_message(db, "alice", request(text="three"))
    assert sorted(e["messageId"] for e in queue_entries(db)) == [second.messageId, third.messageId]
    assert [e["messageId"] for e in inbox(db, "bob")] == [first.messageId]

    processor.process_batch(db, Region.EU, EmulatorNotifier())
    in_order = [e["messageId"] for e in inbox(db, "bob")]
    assert in_order == [first.messageId, second.messageId, third.messageId]
    # Nothing waits any more: the next send asks the queue once, clears the flag and places directly.
    fourth = sending.send_message(db, "alice", request(text="four"))
    assert db.document("chats/c1").get().get("deliveryQueued") is False
    assert inbox(db, "bob")[-1]["messageId"] == fourth.messageId
    assert head(db, "bob")["chats"]["c1"]["unread"] == 3  # bob read the first one meanwhile
