"""Scheduled messages: accepted now, delivered at their time and not before, cancellable until then."""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from google.cloud.firestore_v1.base_query import FieldFilter
from support.chatcore import all_documents, head, inbox, make_chat, make_user
from support.entries import enqueue, make_entry
from ulid import ULID

from pack427 import clock, constants, locks, settings
from pack427.accepting import scheduling, sending
from pack427.delivering.notifier import EmulatorNotifier
from pack427.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from pack427.models import (
    CancelScheduledMessageRequest,
    QueueStatus,
    Region,
    ResyncChatRequest,
    SendMessageRequest,
    SyncMessagesRequest,
)
from pack427.reading import sync
from pack427.workers import processor


@pytest.fixture
def chat(db):
    for uid in ("alice", "bob"):
        make_user(db, uid)
    make_chat(db, "c1", ["alice", "bob"])
    return db


def send(db, text: str, *, at=None, deliver_in: timedelta | None = None, sender: str = "alice", client_id=None):
    now = at or clock.now()
    deliver_at = None if deliver_in is None else clock.to_millis(now + deliver_in)
    request = SendMessageRequest(chatId="c1", clientMessageId=client_id or str(ULID()), text=text, deliverAt=deliver_at)
    return sending.send_message(db, sender, request, now=now)


def whole_ms_now():
    """Now, to the millisecond: deliverAt is in Unix ms, and a test asks for exactly that instant."""
    return clock.from_millis(clock.to_millis(clock.now()))


def ids(db, uid: str) -> list[str]:
    return [e["messageId"] for e in inbox(db, uid)]


def test_a_scheduled_message_is_accepted_now_and_delivered_at_its_time_not_before(chat):
    db, t0 = chat, whole_ms_now()
    scheduled = send(db, "later", at=t0, deliver_in=timedelta(minutes=10))
    assert (scheduled.status, scheduled.duplicate) == ("SCHEDULED", False)
    assert ids(db, "bob") == [] and list(db.collection("chats/c1/messages").stream()) == []
    retried = send(db, "later", at=t0, deliver_in=timedelta(minutes=10), client_id=scheduled.messageId)
    assert (retried.messageId, retried.status, retried.duplicate) == (scheduled.messageId, "SCHEDULED", True)
    listing = scheduling.list_scheduled(db, "alice")
    assert listing.hasMore is False
    [listed] = listing.messages
    assert (listed.scheduledId, listed.text, listed.deliverAt) == (
        scheduled.messageId, "later", clock.to_millis(t0 + timedelta(minutes=10)))

    # A message sent meanwhile is not held back by it.
    meanwhile = send(db, "now", at=t0 + timedelta(minutes=1))
    assert ids(db, "bob") == [meanwhile.messageId]

    assert scheduling.deliver_due(db, now=t0 + timedelta(minutes=9, seconds=59))["delivered"] == 0
    assert ids(db, "bob") == [meanwhile.messageId]
    assert scheduling.deliver_due(db, now=t0 + timedelta(minutes=10))["delivered"] == 1

    # It takes its place in the chat's order when it is delivered: after the one sent meanwhile.
    delivered = db.document(f"scheduledMessages/alice_{scheduled.messageId}").get().to_dict()
    assert delivered["status"] == "DELIVERED" and delivered["messageId"] > meanwhile.messageId
    assert ids(db, "bob") == [meanwhile.messageId, delivered["messageId"]]
    assert head(db, "bob")["chats"]["c1"]["unread"] == 2
    page = sync.sync_messages(db, "bob", SyncMessagesRequest(deviceId="phone"))
    assert [(m.messageId, m.text) for m in page.messages] == [(meanwhile.messageId, "now"),
                                                              (delivered["messageId"], "later")]
    history = sync.resync_chat(db, "alice", ResyncChatRequest(chatId="c1"))
    assert [m.messageId for m in history.messages] == [meanwhile.messageId, delivered["messageId"]]
    assert scheduling.list_scheduled(db, "alice").messages == []
    assert scheduling.deliver_due(db, now=t0 + timedelta(hours=1)) == {"delivered": 0, "failed": 0, "skipped": 0}


def test_the_processor_delivers_it_within_its_run(chat):
    db = chat
    scheduled = send(db, "soon", at=clock.now() - timedelta(minutes=2), deliver_in=timedelta(minutes=1))
    processor.drain(db, EmulatorNotifier(), time_budget_s=30)
    message_id = db.document(f"scheduledMessages/alice_{scheduled.messageId}").get().get("messageId")
    assert ids(db, "bob") == [message_id]


@pytest.mark.parametrize("deliver_in", [timedelta(seconds=-1), timedelta(0), timedelta(days=30, seconds=1)])
def test_a_time_in_the_past_or_beyond_30_days_is_refused_and_writes_nothing(chat, deliver_in):
    before = all_documents(chat)
    with pytest.raises(InvalidArgument, match="deliverAt"):
        send(chat, "x", deliver_in=deliver_in)
    assert all_documents(chat) == before


def test_30_days_ahead_is_accepted(chat):
    assert send(chat, "x", deliver_in=timedelta(days=30)).status == "SCHEDULED"


def test_a_cancelled_message_never_reaches_anyone_and_cancelling_is_idempotent(chat):
    db, t0 = chat, whole_ms_now()
    scheduled = send(db, "never", at=t0, deliver_in=timedelta(minutes=5))
    cancel = CancelScheduledMessageRequest(scheduledId=scheduled.messageId)
    assert scheduling.cancel(db, "alice", cancel).status == "CANCELLED"
    assert scheduling.cancel(db, "alice", cancel).status == "CANCELLED"
    assert scheduling.deliver_due(db, now=t0 + timedelta(hours=1))["delivered"] == 0
    assert ids(db, "bob") == [] and list(db.collection("chats/c1/messages").stream()) == []
    assert scheduling.list_scheduled(db, "alice").messages == []


def test_only_the_sender_can_cancel_and_a_delivered_message_cannot_be(chat):
    db, t0 = chat, whole_ms_now()
    scheduled = send(db, "mine", at=t0, deliver_in=timedelta(minutes=5))
    cancel = CancelScheduledMessageRequest(scheduledId=scheduled.messageId)
    with pytest.raises(NotFound):
        scheduling.cancel(db, "bob", cancel)  # bob's own scheduled messages have no such id
    scheduling.deliver_due(db, now=t0 + timedelta(minutes=5))
    with pytest.raises(FailedPrecondition) as refused:
        scheduling.cancel(db, "alice", cancel)
    assert refused.value.details["reason"] == "already_delivered"


def race_cancel_and_delivery(db, scheduled_id: str, due, monkeypatch, *, cancel_at_commit: bool) -> dict:
    """The processor and a cancel at once; what each of them said.

    With `cancel_at_commit`, the cancel starts when the delivery has read the scheduled
    message for its commit (the cancel is quicker than a whole delivery): the two commits race.
    """
    barrier = threading.Barrier(2)
    delivery_commits = threading.Event()
    outcome: dict = {}
    send_message = sending.send_message

    def signalling(db_, sender, request, *, now, admitted):
        def add_writes(batch, message_id):
            admitted.add_writes(batch, message_id)
            delivery_commits.set()
        return send_message(db_, sender, request, now=now,
                            admitted=sending.AdmittedEarlier(admitted.priority, add_writes))

    monkeypatch.setattr(scheduling.sending, "send_message", signalling)

    def deliver():
        barrier.wait()
        try:
            outcome["delivery"] = scheduling.deliver_due(db, now=due)
        finally:
            delivery_commits.set()  # a delivery that never got that far must not keep the cancel waiting

    def cancel():
        barrier.wait()
        if cancel_at_commit:
            assert delivery_commits.wait(timeout=30), "the delivery did not reach its commit within 30 s"
        try:
            outcome["cancel"] = scheduling.cancel(db, "alice", CancelScheduledMessageRequest(scheduledId=scheduled_id)).status
        except FailedPrecondition as err:
            outcome["cancel"] = err.details["reason"]

    threads = [threading.Thread(target=deliver), threading.Thread(target=cancel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    monkeypatch.setattr(scheduling.sending, "send_message", send_message)
    return outcome


def test_a_racing_cancel_and_delivery_leave_exactly_one_outcome(chat, monkeypatch):
    db, t0 = chat, whole_ms_now()
    seen = set()
    for round_ in range(8):
        scheduled = send(db, f"race {round_}", at=t0, deliver_in=timedelta(minutes=1))
        # Half the rounds start together (the cancel usually wins), half race the delivery's commit.
        outcome = race_cancel_and_delivery(db, scheduled.messageId, t0 + timedelta(minutes=2), monkeypatch,
                                           cancel_at_commit=round_ % 2 == 1)
        stored = db.document(f"scheduledMessages/alice_{scheduled.messageId}").get().to_dict()
        texts = [e["text"] for e in inbox(db, "bob")]
        seen.add(stored["status"])
        if stored["status"] == "CANCELLED":
            assert outcome["cancel"] == "CANCELLED" and f"race {round_}" not in texts
        else:
            assert stored["status"] == "DELIVERED" and outcome["cancel"] == "already_delivered"
            assert texts.count(f"race {round_}") == 1
    print(f"outcomes seen over 8 races: {sorted(seen)}")


def test_a_cancel_that_commits_between_the_deliverys_read_and_its_commit_wins(chat, monkeypatch):
    db, t0 = chat, whole_ms_now()
    scheduled = send(db, "raced", at=t0, deliver_in=timedelta(minutes=1))
    send_message = sending.send_message
    cancels = []

    def with_a_cancel_in_between(db_, sender, request, *, now, admitted):
        def read_then_cancel(batch, message_id):
            admitted.add_writes(batch, message_id)  # reads it SCHEDULED and adds its conditional move to DELIVERED
            if not cancels:
                cancels.append(scheduling.cancel(db, "alice", CancelScheduledMessageRequest(
                    scheduledId=scheduled.messageId)).status)
        return send_message(db_, sender, request, now=now,
                            admitted=sending.AdmittedEarlier(admitted.priority, read_then_cancel))

    monkeypatch.setattr(scheduling.sending, "send_message", with_a_cancel_in_between)
    assert scheduling.deliver_due(db, now=t0 + timedelta(minutes=1)) == {"delivered": 0, "failed": 0, "skipped": 1}
    assert cancels == ["CANCELLED"]
    assert ids(db, "bob") == [] and list(db.collection("chats/c1/messages").stream()) == []
    assert db.document(f"scheduledMessages/alice_{scheduled.messageId}").get().get("status") == "CANCELLED"


def test_two_processors_deliver_it_once(chat):
    db, t0 = chat, whole_ms_now()
    send(db, "once", at=t0, deliver_in=timedelta(minutes=1))
    barrier = threading.Barrier(3)

    def run():
        barrier.wait()
        scheduling.deliver_due(db, now=t0 + timedelta(minutes=1))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [e["text"] for e in inbox(db, "bob")] == ["once"]
    assert len(list(db.collection("chats/c1/messages").stream())) == 1


def test_a_sender_who_left_the_chat_or_was_blocked_before_its_time_sends_nothing(chat):
    db, t0 = chat, whole_ms_now()
    send(db, "blocked later", at=t0, deliver_in=timedelta(minutes=1))
    make_user(db, "bob", blocked=["alice"])
    assert scheduling.deliver_due(db, now=t0 + timedelta(minutes=1)) == {"delivered": 0, "failed": 1, "skipped": 0}
    [stored] = [s.to_dict() for s in db.collection("scheduledMessages").stream()]
    assert (stored["status"], stored["reason"]) == ("FAILED", "blocked")
    assert ids(db, "bob") == []


def test_a_scheduled_send_counts_against_the_rate_limit_when_it_is_accepted(chat):
    settings.set_rate_limit(chat, 2, actor="test")
    try:
        t0 = whole_ms_now()
        send(chat, "one", at=t0, deliver_in=timedelta(minutes=1))
        send(chat, "two", at=t0)
        with pytest.raises(ResourceExhausted):
            send(chat, "three", at=t0, deliver_in=timedelta(minutes=1))
    finally:  # the limit lives in config/engine and each instance's cache: leave neither behind
        settings.set_rate_limit(chat, 60, actor="test")
        settings.forget()


def test_a_busy_chat_at_its_time_leaves_it_scheduled_for_the_next_run(chat, monkeypatch):
    db, t0 = chat, whole_ms_now()
    scheduled = send(db, "busy", at=t0, deliver_in=timedelta(minutes=1))
    send_message = sending.send_message

    def too_busy(*args, **kwargs):
        raise Aborted("chat 'c1' is too busy right now")

    monkeypatch.setattr(scheduling.sending, "send_message", too_busy)
    assert scheduling.deliver_due(db, now=t0 + timedelta(minutes=1)) == {"delivered": 0, "failed": 0, "skipped": 1}
    assert db.document(f"scheduledMessages/alice_{scheduled.messageId}").get().get("status") == "SCHEDULED"
    monkeypatch.setattr(scheduling.sending, "send_message", send_message)
    assert scheduling.deliver_due(db, now=t0 + timedelta(minutes=2))["delivered"] == 1
    assert [e["text"] for e in inbox(db, "bob")] == ["busy"]


def test_the_list_is_the_soonest_ones_and_says_when_there_are_more(chat, monkeypatch):
    monkeypatch.setattr(scheduling.constants, "MAX_LISTED_SCHEDULED", 2)
    t0 = whole_ms_now()
    for minutes in (30, 10, 20):
        send(chat, f"in {minutes}", at=t0, deliver_in=timedelta(minutes=minutes))
    listing = scheduling.list_scheduled(chat, "alice")
    assert [m.text for m in listing.messages] == ["in 10", "in 20"] and listing.hasMore is True


def test_a_message_that_cannot_be_sent_this_run_holds_back_neither_the_others_nor_the_run(chat, monkeypatch):
    db, t0 = chat, whole_ms_now()
    first = send(db, "first", at=t0, deliver_in=timedelta(minutes=1))
    send(db, "second", at=t0, deliver_in=timedelta(minutes=2))
    send_message = sending.send_message

    def first_one_breaks(db_, sender, request, **kwargs):
        if request.text == "first":
            raise RuntimeError("Firestore is having a bad day")
        return send_message(db_, sender, request, **kwargs)

    monkeypatch.setattr(scheduling.sending, "send_message", first_one_breaks)
    monkeypatch.setattr(scheduling.constants, "SCHEDULED_BATCH", 1)  # a full batch of nothing sent: the run stops
    assert scheduling.deliver_due(db, now=t0 + timedelta(minutes=3)) == {"delivered": 0, "failed": 0, "skipped": 1}
    monkeypatch.setattr(scheduling.constants, "SCHEDULED_BATCH", 200)
    assert scheduling.deliver_due(db, now=t0 + timedelta(minutes=3)) == {"delivered": 1, "failed": 0, "skipped": 1}
    assert [e["text"] for e in inbox(db, "bob")] == ["second"]
    assert db.document(f"scheduledMessages/alice_{first.messageId}").get().get("status") == "SCHEDULED"


# ------------------------------------------------------------ the instant's bound (issue 27)


def schedule_for(db, due, *, at, sender="alice", client_id=None):
    """Schedule a message of `sender` for the instant `due`, sent at `at`."""
    request = SendMessageRequest(chatId="c1", clientMessageId=client_id or str(ULID()), text=f"at {due}",
                                 deliverAt=clock.to_millis(due))
    return sending.send_message(db, sender, request, now=at)


def test_one_sender_makes_at_most_the_rate_limit_fall_due_in_one_minute(chat):
    db, t0 = chat, whole_ms_now()
    due = clock.from_millis(clock.to_millis(t0 + timedelta(days=2)) // 60_000 * 60_000)  # a minute's start
    limit = settings.current(db).max_messages_per_minute
    # The limit's worth, all for the same instant (sent over a minute: each send is rate-limited now too).
    for i in range(limit):
        assert schedule_for(db, due, at=t0 + timedelta(milliseconds=900 * i)).status == "SCHEDULED"
    later = t0 + timedelta(minutes=2)  # the rate window is empty again
    before = all_documents(db)

    with pytest.raises(FailedPrecondition) as full:
        schedule_for(db, due + timedelta(seconds=59), at=later)  # the same minute, another instant
    assert f"{limit} messages scheduled for" in full.value.message and "choose another minute" in full.value.message
    assert full.value.details == {"reason": "schedule_minute_full", "limit": limit, "minute": clock.to_millis(due)}
    assert all_documents(db) == before  # refused: nothing written, not even to the rate window

    # The next minute, and another sender's same minute, are free; a retry of an accepted one is answered.
    assert schedule_for(db, due + timedelta(minutes=1), at=later).status == "SCHEDULED"
    assert schedule_for(db, due, at=later, sender="bob").status == "SCHEDULED"
    first = db.collection("scheduledMessages").where(filter=FieldFilter("senderId", "==", "alice")).limit(1).get()[0].get("clientMessageId")
    assert schedule_for(db, due, at=later, client_id=first).duplicate is True
    slot = db.document(f"scheduleSlots/alice_{due:%Y%m%dT%H%M}").get().to_dict()
    assert (slot["scheduled"], slot["expiresAt"]) == (limit, due + timedelta(minutes=1))

    # At that instant bob receives the limit's worth from alice, and no more (alice gets bob's one).
    assert scheduling.deliver_due(db, now=due + timedelta(seconds=30))["delivered"] == limit + 1
    assert len(inbox(db, "bob")) == limit and len(inbox(db, "alice")) == 1


def test_racing_schedules_for_a_nearly_full_minute_take_its_last_place_once(chat, monkeypatch):
    db, t0 = chat, whole_ms_now()
    # Without this instance's locks: the conditional write of the minute's slot alone decides, as between instances.
    monkeypatch.setattr(locks, "held", lambda *keys: contextlib.nullcontext())
    settings.set_rate_limit(db, 3, actor="test")
    try:
        due = t0 + timedelta(hours=1)
        for i in range(2):
            schedule_for(db, due, at=t0 + timedelta(seconds=i))
        barrier = threading.Barrier(3)

        def one():
            barrier.wait()
            try:
                return schedule_for(db, due, at=t0 + timedelta(minutes=2)).status
            except FailedPrecondition as err:
                return err.details["reason"]

        with ThreadPoolExecutor(3) as pool:
            outcomes = sorted(pool.map(lambda _: one(), range(3)))
        assert outcomes == ["SCHEDULED", "schedule_minute_full", "schedule_minute_full"]
        assert db.document(f"scheduleSlots/alice_{due:%Y%m%dT%H%M}").get().get("scheduled") == 3
    finally:  # as above: leave neither the limit nor the cache behind
        settings.set_rate_limit(db, 60, actor="test")
        settings.forget()


# ------------------------------------------------------------ scheduled deliveries share the run (issue 27)


def due_now_and_a_retry(db, scheduled: int) -> str:
    """`scheduled` messages of alice's to bob due now, and carol's failed delivery in another chat due
    for its retry; carol's queue entry id."""
    make_user(db, "carol")
    make_chat(db, "c2", ["alice", "carol"])
    t0 = whole_ms_now()
    for i in range(scheduled):
        send(db, f"due {i}", at=t0 - timedelta(minutes=2), deliver_in=timedelta(minutes=1))
    retry = make_entry("carol", region=Region.EU, chat="c2", created=t0 - timedelta(minutes=5),
                       status=QueueStatus.FAILED, next_attempt_at=t0 - timedelta(seconds=1))
    enqueue(db, retry)
    return retry.id


def drain_watching_round_one(db) -> dict:
    """Drain EU; what was delivered when its first round ended: scheduled messages, and whether the retry."""
    seen: dict = {}

    def progress(region, totals):
        if not seen:
            seen["scheduled"] = sum(1 for s in db.collection("scheduledMessages").stream()
                                    if s.get("status") == "DELIVERED")
            seen["retried"] = [e.get("status") for e in db.collection("regions/EU/messageQueue").stream()]
    processor.drain(db, EmulatorNotifier(), regions=(Region.EU,), time_budget_s=30, progress=progress)
    return seen


@pytest.mark.parametrize("extra", [0, 1], ids=["at the bound", "past the bound"])
def test_a_round_takes_one_batch_of_scheduled_messages_then_the_retries(chat, monkeypatch, extra):
    monkeypatch.setattr(constants, "SCHEDULED_BATCH", 3)
    due_now_and_a_retry(chat, 3 + extra)

    seen = drain_watching_round_one(chat)

    # Round 1: one batch of scheduled messages (all of them at the bound), then the retry.
    assert seen == {"scheduled": 3, "retried": ["DELIVERED"]}
    # Past the bound the rest went in the next round: every one is in bob's inbox once, in order.
    assert [e["text"] for e in inbox(chat, "bob")] == [f"due {i}" for i in range(3 + extra)]
    assert [e["text"] for e in inbox(chat, "carol")] == ["hello"]


def test_past_their_share_of_the_run_scheduled_messages_wait_for_the_queues(chat, monkeypatch):
    monkeypatch.setattr(constants, "SCHEDULED_SHARE", 0.0)  # the share spent before the run starts
    due_now_and_a_retry(chat, 2)

    seen = drain_watching_round_one(chat)

    assert seen == {"scheduled": 0, "retried": ["DELIVERED"]}
    # The queues drained, the scheduled messages take the rest of the run.
    assert [e["text"] for e in inbox(chat, "bob")] == ["due 0", "due 1"]
