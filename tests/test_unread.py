"""Read receipts and unread counters: exact under duplicated events, racing
triggers and reads from several devices; drift is repaired by recalculation."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from chatcore import make_chat, make_user
from google.cloud import firestore
from pack427 import delivery, sending, unread
from pack427.errors import InvalidArgument, NotFound, PermissionDenied
from pack427.models import MarkAsReadRequest, Region, SendMessageRequest
from pack427.notifier import EmulatorNotifier
from signals import T0, Chat, counter, receipt, truth
from ulid import ULID


def read(db, uid: str, chat: Chat | str, message_id: str, now=T0):
    chat_id = chat if isinstance(chat, str) else chat.id
    return unread.mark_as_read(db, uid, MarkAsReadRequest(chatId=chat_id, readUpToMessageId=message_id), now=now)


def race(*calls):
    """Run the calls at the same moment, one thread each; their results in order."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


@pytest.fixture
def pair(db) -> Chat:
    return Chat(db, "c1", ["alice", "bob"])


# ------------------------------------------------------------ the trigger


def test_a_duplicated_trigger_event_counts_the_message_once(db, pair):
    _, [first] = pair.send("alice")
    assert unread.on_new_message(db, first).after == 1
    _, [second] = pair.send("alice")
    assert unread.on_new_message(db, second).after == 2
    # Cloud Functions delivers the first event again, twice.
    assert unread.on_new_message(db, first).after == 2
    assert unread.on_new_message(db, first).after == 2

    stored = counter(db, "bob", "c1")
    assert stored["count"] == 2 and stored["chatId"] == "c1" and stored["userId"] == "bob"
    assert stored["readUpToMessageId"] is None and stored["updatedAt"] is not None
    assert counter(db, "alice", "c1") is None


def test_racing_duplicate_events_count_each_message_once(db, pair):
    snapshots = [pair.send("alice")[1][0] for _ in range(3)]

    # Every event delivered twice, all six invocations at once.
    results = race(*[lambda s=s: unread.on_new_message(db, s) for s in snapshots * 2])

    assert counter(db, "bob", "c1")["count"] == 3 == truth(db, "bob", "c1")
    assert max(r.after for r in results) == 3
    assert all(r.written for r in results)


def test_events_in_any_order_give_the_same_count(db, pair):
    snapshots = [pair.send("alice")[1][0] for _ in range(4)]
    for snapshot in reversed(snapshots):
        unread.on_new_message(db, snapshot)
    assert counter(db, "bob", "c1")["count"] == 4


def test_a_message_read_before_its_event_arrives_is_not_counted(db, pair):
    first, [first_snapshot] = pair.send("alice")
    _, [second_snapshot] = pair.send("alice")
    # Bob reads up to the first message on another device before its trigger runs.
    assert read(db, "bob", pair, first).unreadCount == 1

    assert unread.on_new_message(db, first_snapshot) is None
    assert unread.on_new_message(db, second_snapshot).after == 1
    assert counter(db, "bob", "c1")["count"] == 1


def test_a_late_event_for_an_entry_that_is_gone_creates_no_counter(db, pair):
    _, [snapshot] = pair.send("alice")
    snapshot.reference.delete()  # e.g. the data was cleared before the event ran

    result = unread.on_new_message(db, snapshot)

    assert (result.after, result.written) == (0, False)
    assert counter(db, "bob", "c1") is None


def test_own_messages_are_never_counted_through_send_and_delivery(db):
    make_user(db, "alice", region="EU")
    make_user(db, "bob", region="US")
    make_chat(db, "c1", ["alice", "bob"])
    for n in range(3):
        sending.send_message(db, "alice", SendMessageRequest(chatId="c1", clientMessageId=str(ULID()), text=f"a{n}"),
                             now=T0 + timedelta(seconds=n))
    sending.send_message(db, "bob", SendMessageRequest(chatId="c1", clientMessageId=str(ULID()), text="b"),
                         now=T0 + timedelta(seconds=5))
    for region in (Region.US, Region.EU):
        delivery.process_batch(db, region, EmulatorNotifier(), now=T0 + timedelta(minutes=1))

    for snapshot in db.collection_group("inbox").stream():
        unread.on_new_message(db, snapshot)

    assert counter(db, "bob", "c1")["count"] == 3
    assert counter(db, "alice", "c1")["count"] == 1


def test_an_own_message_in_the_inbox_would_still_not_count(db, pair):
    # Not something delivery does; the counter must not rely on it.
    message_id = pair.message("bob")
    own = pair.deliver(message_id, "bob", "bob")
    _, [other] = pair.send("alice")

    assert unread.on_new_message(db, own) is None
    assert unread.on_new_message(db, other).after == 1
    assert unread.recalculate(db, "bob").recalculated == 0
    assert counter(db, "bob", "c1")["count"] == 1


# ------------------------------------------------------------ read receipts


def test_mark_as_read_moves_the_receipt_and_returns_the_new_count(db, pair):
    ids = []
    for _ in range(4):
        message_id, [snapshot] = pair.send("alice")
        unread.on_new_message(db, snapshot)
        ids.append(message_id)

    result = read(db, "bob", pair, ids[1], now=T0 + timedelta(minutes=1))

    assert (result.success, result.unreadCount) == (True, 2)
    stored = receipt(db, "bob", "c1")
    assert stored["readUpToMessageId"] == ids[1] and stored["chatId"] == "c1" and stored["userId"] == "bob"
    assert stored["readAt"] == T0 + timedelta(minutes=1)
    assert stored["readUpToTimestamp"] == ULID.from_str(ids[1]).datetime
    assert counter(db, "bob", "c1")["count"] == 2
    assert counter(db, "bob", "c1")["readUpToMessageId"] == ids[1]
    assert read(db, "bob", pair, ids[3]).unreadCount == 0
    assert counter(db, "bob", "c1")["count"] == 0


def test_an_older_position_is_accepted_and_ignored(db, pair):
    ids = []
    for _ in range(3):
        message_id, [snapshot] = pair.send("alice")
        unread.on_new_message(db, snapshot)
        ids.append(message_id)
    read(db, "bob", pair, ids[1])
    receipt_before = db.document("chats/c1/readReceipts/bob").get().update_time
    counter_before = db.document("users/bob/unreadCounters/c1").get().update_time

    assert read(db, "bob", pair, ids[0]).unreadCount == 1
    assert receipt(db, "bob", "c1")["readUpToMessageId"] == ids[1]
    # Nothing rewritten.
    assert db.document("chats/c1/readReceipts/bob").get().update_time == receipt_before
    assert db.document("users/bob/unreadCounters/c1").get().update_time == counter_before


@pytest.mark.parametrize("round_", range(3))
def test_two_devices_marking_different_positions_at_once_end_at_the_furthest(db, pair, round_):
    ids = []
    for _ in range(6):
        message_id, [snapshot] = pair.send("alice")
        unread.on_new_message(db, snapshot)
        ids.append(message_id)
    near, far = (ids[1], ids[4]) if round_ % 2 else (ids[4], ids[1])

    results = race(lambda: read(db, "bob", pair, near), lambda: read(db, "bob", pair, far))

    furthest = max(near, far)
    assert receipt(db, "bob", "c1")["readUpToMessageId"] == furthest
    assert counter(db, "bob", "c1")["count"] == 1 == truth(db, "bob", "c1")
    assert counter(db, "bob", "c1")["readUpToMessageId"] == furthest
    # The device that read further is told so; the other saw one of the two states.
    assert results[[near, far].index(furthest)].unreadCount == 1
    assert {r.unreadCount for r in results} <= {1, 4}


def test_reads_racing_new_messages_leave_the_counter_exact(db, pair):
    first, [snapshot] = pair.send("alice")
    unread.on_new_message(db, snapshot)
    newer = [pair.send("alice")[1][0] for _ in range(3)]

    race(
        lambda: read(db, "bob", pair, first),
        *[lambda s=s: unread.on_new_message(db, s) for s in newer],
        lambda: read(db, "bob", pair, first),
    )

    assert counter(db, "bob", "c1")["count"] == 3 == truth(db, "bob", "c1")


def test_mark_as_read_refuses_a_message_of_another_chat_and_writes_nothing(db, pair):
    other = Chat(db, "c2", ["alice", "bob"])
    foreign = other.message("alice")
    with pytest.raises(InvalidArgument, match="readUpToMessageId"):
        read(db, "bob", pair, foreign)
    with pytest.raises(InvalidArgument, match="readUpToMessageId"):
        read(db, "bob", pair, str(ULID()))
    theirs = Chat(db, "c3", ["alice", "carol"])
    with pytest.raises(PermissionDenied):
        read(db, "bob", theirs, theirs.message("alice"))
    with pytest.raises(NotFound):
        read(db, "bob", "nope", foreign)
    for chat_id in ("c1", "c2", "c3"):
        assert receipt(db, "bob", chat_id) is None and counter(db, "bob", chat_id) is None


def test_a_message_known_only_from_the_readers_inbox_is_a_valid_position(db, pair):
    other = Chat(db, "c2", ["alice", "bob"])
    # Inbox entries whose chat messages are kept elsewhere by the chat core.
    mine, theirs = str(ULID.from_datetime(T0)), str(ULID.from_datetime(T0))
    pair.deliver(mine, "alice", "bob")
    other.deliver(theirs, "alice", "bob")

    assert read(db, "bob", pair, mine).unreadCount == 0
    assert receipt(db, "bob", "c1")["readUpToMessageId"] == mine
    with pytest.raises(InvalidArgument, match="readUpToMessageId"):
        read(db, "bob", pair, theirs)


# ------------------------------------------------------------ counts and recalculation


def test_unread_counts_per_chat_and_total(db, pair):
    group = Chat(db, "g1", ["alice", "bob", "carol"])
    for _ in range(2):
        unread.on_new_message(db, pair.send("alice")[1][0])
    for snapshot in group.send("carol")[1] + group.send("alice")[1]:
        unread.on_new_message(db, snapshot)

    assert unread.unread_counts(db, "bob").model_dump() == {"unreadCounts": {"c1": 2, "g1": 2}, "totalUnread": 4}
    assert unread.unread_counts(db, "alice").model_dump() == {"unreadCounts": {"g1": 1}, "totalUnread": 1}
    only = unread.unread_counts(db, "bob", chat_ids=["g1", "none"])
    assert only.model_dump() == {"unreadCounts": {"g1": 2, "none": 0}, "totalUnread": 2}


def test_recalculation_repairs_injected_drift_and_reports_it(db, pair):
    group = Chat(db, "g1", ["alice", "bob", "carol"])
    quiet = Chat(db, "q1", ["bob", "carol"])
    quiet.message("carol")  # a message whose inbox entry never came: nothing unread
    for _ in range(3):
        unread.on_new_message(db, pair.send("alice")[1][0])
    for snapshot in group.send("alice")[1]:
        unread.on_new_message(db, snapshot)
    lost = group.send("carol")[1]  # their triggers never ran: drift the repair must find
    assert [counter(db, "bob", c)["count"] for c in ("c1", "g1")] == [3, 1]

    db.document("users/bob/unreadCounters/c1").update({"count": -4})
    db.document("users/bob/unreadCounters/gone").set({"chatId": "gone", "count": 7})
    db.document("users/bob/unreadCounters/q1").set({"chatId": "q1", "count": "many"})

    report = unread.recalculate(db, "bob", now=T0 + timedelta(hours=1))

    changes = {c.chatId: (c.before, c.after) for c in report.changes}
    assert changes == {"c1": (None, 3), "g1": (1, 2), "gone": (None, 0), "q1": (None, 0)}
    assert (report.success, report.recalculated, report.checked) == (True, 4, 4)
    for chat_id in ("c1", "g1", "gone", "q1"):
        assert counter(db, "bob", chat_id)["count"] == truth(db, "bob", chat_id)
    assert counter(db, "bob", "g1")["updatedAt"] == T0 + timedelta(hours=1)
    assert unread.unread_counts(db, "bob").totalUnread == 5
    # Nothing left to repair; bob's call repairs bob's counters only.
    assert unread.recalculate(db, "bob").recalculated == 0
    assert [s.reference.parent.parent.id for s in lost] == ["alice", "bob"]
    assert counter(db, "alice", "g1") is None


def test_a_damaged_counter_never_reads_negative(db, pair):
    db.document("users/bob/unreadCounters/c1").set({"chatId": "c1", "count": -2})
    assert unread.unread_counts(db, "bob").model_dump() == {"unreadCounts": {"c1": 0}, "totalUnread": 0}


# ------------------------------------------------------------ random workload


@pytest.mark.parametrize("seed", [427, 2026])
def test_a_random_workload_leaves_every_counter_equal_to_the_inbox(db, seed):
    rng = random.Random(seed)
    chats = [Chat(db, "c1", ["alice", "bob"]), Chat(db, "c2", ["alice", "bob", "carol"]),
             Chat(db, "c3", ["bob", "carol", "dave"])]
    sent: dict[str, list[str]] = {c.id: [] for c in chats}
    pending: list[firestore.DocumentSnapshot] = []  # trigger events not yet delivered (maybe again)
    duplicates = reads = 0

    for _round in range(12):
        # Sends: the inbox entries exist before their events run, as in Cloud Functions.
        for _ in range(rng.randint(1, 4)):
            chat = rng.choice(chats)
            message_id, snapshots = chat.send(rng.choice(chat.participants))
            sent[chat.id].append(message_id)
            for snapshot in snapshots:
                copies = rng.choice([1, 1, 2, 3])
                duplicates += copies - 1
                pending += [snapshot] * copies
        rng.shuffle(pending)
        # Some events now (others later, out of order), raced with reads from several devices.
        due = rng.randint(0, len(pending))
        events, pending = pending[:due], pending[due:]
        work = [lambda s=s: unread.on_new_message(db, s) for s in events]
        for _ in range(rng.randint(0, 3)):
            chat = rng.choice([c for c in chats if sent[c.id]])
            reader = rng.choice(chat.participants)
            position = rng.choice(sent[chat.id])
            reads += 1
            work.append(lambda r=reader, c=chat, p=position: read(db, r, c, p))
        rng.shuffle(work)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda call: call(), work))
        for snapshot in db.collection_group("unreadCounters").stream():
            assert snapshot.get("count") >= 0

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda s: unread.on_new_message(db, s), pending))

    assert duplicates > 0 and reads > 0
    users = {"alice", "bob", "carol", "dave"}
    for chat in chats:
        for uid in users & set(chat.participants):
            stored = counter(db, uid, chat.id)
            assert (stored["count"] if stored else 0) == truth(db, uid, chat.id), (uid, chat.id)
    for uid in users:
        assert unread.recalculate(db, uid).recalculated == 0
