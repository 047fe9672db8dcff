"""Read receipts and unread counts: exact under duplicated and racing deliveries
and reads from several devices; drift is repaired by recalculation."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from support.chatcore import make_chat, make_user
from support.signals import T0, Chat, counter, receipt, truth
from ulid import ULID

from pack427 import constants
from pack427.accepting import sending
from pack427.delivering.notifier import EmulatorNotifier
from pack427.errors import InvalidArgument, NotFound, PermissionDenied, ResourceExhausted
from pack427.models import MarkAsReadRequest, RecalculateUnreadCountersRequest, Region, SendMessageRequest
from pack427.reading import unread
from pack427.workers import processor


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


def head_time(db, uid: str):
    return db.document(f"users/{uid}/inboxHead/current").get().update_time


@pytest.fixture
def pair(db) -> Chat:
    return Chat(db, "c1", ["alice", "bob"])


# ------------------------------------------------------------ delivery counts


def test_a_message_delivered_twice_counts_once(db, pair):
    first = pair.message("alice")
    assert pair.deliver(first, "alice", "bob") is True
    assert counter(db, "bob", "c1")["unread"] == 1
    second = pair.send("alice")
    assert counter(db, "bob", "c1")["unread"] == 2
    # A redelivery (a duplicated trigger event, a retry): refused, counts nothing.
    assert pair.deliver(first, "alice", "bob") is False
    assert pair.deliver(first, "alice", "bob") is False

    assert counter(db, "bob", "c1") == {"unread": 2, "readUpTo": None, "last": second}
    assert counter(db, "alice", "c1") is None


def test_racing_deliveries_of_the_same_messages_count_each_once(db, pair):
    ids = [pair.message("alice") for _ in range(3)]

    # Every message delivered twice, all six at once.
    results = race(*[lambda m=m: pair.deliver(m, "alice", "bob") for m in ids * 2])

    assert sorted(results) == [False] * 3 + [True] * 3
    assert counter(db, "bob", "c1")["unread"] == 3 == truth(db, "bob", "c1")


def test_deliveries_in_any_order_give_the_same_count(db, pair):
    ids = [pair.message("alice") for _ in range(4)]
    for message_id in reversed(ids):
        pair.deliver(message_id, "alice", "bob")
    assert counter(db, "bob", "c1") == {"unread": 4, "readUpTo": None, "last": ids[-1]}


def test_a_message_read_before_it_reaches_the_inbox_is_not_counted(db, pair):
    first, second = pair.message("alice"), pair.message("alice")
    # Bob reads up to the first message (seen in the chat's history) before its delivery.
    assert read(db, "bob", pair, first).unreadCount == 0

    pair.deliver(first, "alice", "bob")
    pair.deliver(second, "alice", "bob")
    assert counter(db, "bob", "c1")["unread"] == 1 == truth(db, "bob", "c1")


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
        processor.process_batch(db, region, EmulatorNotifier(), now=T0 + timedelta(minutes=1))

    assert counter(db, "bob", "c1")["unread"] == 3
    assert counter(db, "alice", "c1")["unread"] == 1


def test_an_own_message_in_the_inbox_would_still_not_count(db, pair):
    # Not something delivery does; the count must not rely on it.
    pair.deliver(pair.message("bob"), "bob", "bob")
    pair.send("alice")

    assert counter(db, "bob", "c1")["unread"] == 1
    assert unread.recalculate(db, "bob").recalculated == 0


# ------------------------------------------------------------ read receipts


def test_mark_as_read_moves_the_receipt_and_returns_the_new_count(db, pair):
    ids = [pair.send("alice") for _ in range(4)]

    result = read(db, "bob", pair, ids[1], now=T0 + timedelta(minutes=1))

    assert (result.success, result.unreadCount) == (True, 2)
    stored = receipt(db, "bob", "c1")
    assert stored["readUpToMessageId"] == ids[1] and stored["chatId"] == "c1" and stored["userId"] == "bob"
    assert stored["readAt"] == T0 + timedelta(minutes=1)
    assert stored["readUpToTimestamp"] == ULID.from_str(ids[1]).datetime
    assert counter(db, "bob", "c1") == {"unread": 2, "readUpTo": ids[1], "last": ids[3]}
    assert read(db, "bob", pair, ids[3]).unreadCount == 0
    assert counter(db, "bob", "c1")["unread"] == 0


def test_an_older_position_is_accepted_and_ignored(db, pair):
    ids = [pair.send("alice") for _ in range(3)]
    read(db, "bob", pair, ids[1])
    receipt_before = db.document("chats/c1/readReceipts/bob").get().update_time
    head_before = head_time(db, "bob")

    assert read(db, "bob", pair, ids[0]).unreadCount == 1
    assert receipt(db, "bob", "c1")["readUpToMessageId"] == ids[1]
    # Nothing rewritten.
    assert db.document("chats/c1/readReceipts/bob").get().update_time == receipt_before
    assert head_time(db, "bob") == head_before


@pytest.mark.parametrize("round_", range(3))
def test_two_devices_marking_different_positions_at_once_end_at_the_furthest(db, pair, round_):
    ids = [pair.send("alice") for _ in range(6)]
    near, far = (ids[1], ids[4]) if round_ % 2 else (ids[4], ids[1])

    results = race(lambda: read(db, "bob", pair, near), lambda: read(db, "bob", pair, far))

    furthest = max(near, far)
    assert receipt(db, "bob", "c1")["readUpToMessageId"] == furthest
    assert counter(db, "bob", "c1")["unread"] == 1 == truth(db, "bob", "c1")
    assert counter(db, "bob", "c1")["readUpTo"] == furthest
    # The device that read further is told so; the other saw one of the two states.
    assert results[[near, far].index(furthest)].unreadCount == 1
    assert {r.unreadCount for r in results} <= {1, 4}


def test_reads_racing_new_messages_leave_the_count_exact(db, pair):
    first = pair.send("alice")
    newer = [pair.message("alice") for _ in range(3)]

    race(
        lambda: read(db, "bob", pair, first),
        *[lambda m=m: pair.deliver(m, "alice", "bob") for m in newer],
        lambda: read(db, "bob", pair, first),
    )

    assert counter(db, "bob", "c1")["unread"] == 3 == truth(db, "bob", "c1")


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
        pair.send("alice")
    group.send("carol")
    group.send("alice")

    assert unread.unread_counts(db, "bob").model_dump() == {"unreadCounts": {"c1": 2, "g1": 2}, "totalUnread": 4}
    assert unread.unread_counts(db, "alice").model_dump() == {"unreadCounts": {"g1": 1}, "totalUnread": 1}
    assert unread.unread_counts(db, "nobody").model_dump() == {"unreadCounts": {}, "totalUnread": 0}


def test_recalculation_repairs_injected_drift_and_reports_it(db, pair):
    group = Chat(db, "g1", ["alice", "bob", "carol"])
    quiet = Chat(db, "q1", ["bob", "carol"])
    quiet.message("carol")  # a message that never reached bob's inbox: nothing unread
    for _ in range(3):
        pair.send("alice")
    group.send("alice")
    group.send("carol")
    assert [counter(db, "bob", c)["unread"] for c in ("c1", "g1")] == [3, 2]

    # Drift: a wrong count, a chat the head lost, counts for chats with nothing unread.
    head = db.document("users/bob/inboxHead/current")
    chats = head.get().get("chats")
    chats["c1"]["unread"] = 9
    del chats["g1"]
    chats["gone"] = {"unread": 7, "readUpTo": None, "last": None}
    chats["q1"] = {"unread": "many", "readUpTo": None, "last": None}
    head.update({"chats": chats})

    report = unread.recalculate(db, "bob", now=T0 + timedelta(hours=1))

    changes = {c.chatId: (c.before, c.after) for c in report.changes}
    assert changes == {"c1": (9, 3), "g1": (None, 2), "gone": (7, 0)}  # q1's damaged count already reads 0
    assert (report.success, report.recalculated, report.checked) == (True, 3, 4)
    for chat_id in ("c1", "g1", "gone", "q1"):
        assert counter(db, "bob", chat_id)["unread"] == truth(db, "bob", chat_id)
    assert head.get().get("updatedAt") == T0 + timedelta(hours=1)
    assert unread.unread_counts(db, "bob").totalUnread == 5
    # Nothing left to repair; bob's call repairs bob's counts only.
    assert unread.recalculate(db, "bob").recalculated == 0
    assert counter(db, "carol", "g1")["unread"] == 1


def test_a_damaged_count_never_reads_negative(db, pair):
    pair.send("alice")
    db.document("users/bob/inboxHead/current").update({"chats.c1.unread": -2})
    assert unread.unread_counts(db, "bob").model_dump() == {"unreadCounts": {"c1": 0}, "totalUnread": 0}
    pair.send("alice")  # the inbox still takes messages
    assert unread.recalculate(db, "bob").changes[0].after == 2


# ------------------------------------------------------------ random workload


@pytest.mark.parametrize("seed", [427, 2026])
def test_a_random_workload_leaves_every_count_equal_to_the_inbox(db, seed):
    rng = random.Random(seed)
    chats = [Chat(db, "c1", ["alice", "bob"]), Chat(db, "c2", ["alice", "bob", "carol"]),
             Chat(db, "c3", ["bob", "carol", "dave"])]
    sent: dict[str, list[str]] = {c.id: [] for c in chats}
    pending: list = []  # deliveries not yet made (some more than once)
    duplicates = reads = 0

    for _round in range(12):
        for _ in range(rng.randint(1, 4)):
            chat = rng.choice(chats)
            sender = rng.choice(chat.participants)
            message_id = chat.message(sender)
            sent[chat.id].append(message_id)
            for uid in chat.participants:
                if uid != sender:
                    copies = rng.choice([1, 1, 2, 3])
                    duplicates += copies - 1
                    pending += [(chat, message_id, sender, uid)] * copies
        rng.shuffle(pending)
        # Some deliveries now (others later, out of order), raced with reads from several devices.
        due = rng.randint(0, len(pending))
        now, pending = pending[:due], pending[due:]
        work = [lambda d=d: d[0].deliver(*d[1:]) for d in now]
        for _ in range(rng.randint(0, 3)):
            chat = rng.choice([c for c in chats if sent[c.id]])
            reader = rng.choice(chat.participants)
            position = rng.choice(sent[chat.id])
            reads += 1
            work.append(lambda r=reader, c=chat, p=position: read(db, r, c, p))
        rng.shuffle(work)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda call: call(), work))
        for uid in ("alice", "bob", "carol", "dave"):
            for chat in chats:
                stored = counter(db, uid, chat.id)
                assert stored is None or stored["unread"] == truth(db, uid, chat.id), (uid, chat.id)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda d: d[0].deliver(*d[1:]), pending))

    assert duplicates > 0 and reads > 0
    users = {"alice", "bob", "carol", "dave"}
    for chat in chats:
        for uid in users & set(chat.participants):
            stored = counter(db, uid, chat.id)
            assert (stored["unread"] if stored else 0) == truth(db, uid, chat.id), (uid, chat.id)
    for uid in users:
        assert unread.recalculate(db, uid).recalculated == 0


# ------------------------------------------------------------ the recount's bounds (issue 27)


def many_chats(db, uid: str, n: int, *, drift: int = 5) -> list[str]:
    """`n` chats of `uid` and alice, each with one message of alice's in `uid`'s inbox, and a head that
    counts `drift` unread in each (the truth is 1). Written directly, 400 documents a commit."""
    chat_ids = [f"chat{i:04}" for i in range(n)]
    writes = []
    for seq, chat_id in enumerate(chat_ids, start=1):
        message_id = str(ULID.from_datetime(T0 + timedelta(milliseconds=seq)))
        writes.append((f"chats/{chat_id}", {"participants": [uid, "alice"]}))
        writes.append((f"users/{uid}/inbox/{message_id}", {
            "seq": seq, "messageId": message_id, "chatId": chat_id, "senderId": "alice", "text": "x",
            "contentRef": f"chats/{chat_id}/messages/{message_id}", "region": "EU", "via": "send",
            "createdAt": T0, "deliveredAt": T0}))
    head = {"seq": n, "ackedSeq": 0, "updatedAt": T0,
            "chats": {chat_id: {"unread": drift, "readUpTo": None, "last": None} for chat_id in chat_ids}}
    writes.append((f"users/{uid}/inboxHead/current", head))
    for start in range(0, len(writes), 400):
        batch = db.batch()
        for path, data in writes[start:start + 400]:
            batch.set(db.document(path), data)
        batch.commit()
    return chat_ids


def recount_call(db, uid: str, cursor: str | None = None, *, now=None):
    request = RecalculateUnreadCountersRequest(cursor=cursor)
    return unread.recalculate_for_caller(db, uid, request, now=now or T0)


@pytest.mark.parametrize("extra", [0, 1], ids=["at the bound", "past the bound"])
def test_one_call_recounts_at_most_a_page_of_chats_and_a_cursor_the_rest(db, extra):
    page = constants.RECALCULATE_PAGE
    chat_ids = many_chats(db, "bob", page + extra)

    first = recount_call(db, "bob")
    assert (first.checked, first.recalculated, first.hasMore) == (page, page, bool(extra))
    assert [c.chatId for c in first.changes] == chat_ids[:page]
    if extra:
        assert first.cursor is not None
        # Past the bound the last chat still counts 5 until the next call, which recounts only it.
        assert counter(db, "bob", chat_ids[-1])["unread"] == 5
        second = recount_call(db, "bob", first.cursor)
        assert (second.checked, second.recalculated, second.hasMore, second.cursor) == (1, 1, False, None)
        assert second.changes[0].model_dump() == {"chatId": chat_ids[-1], "before": 5, "after": 1}
    else:
        assert first.cursor is None
    assert all(counter(db, "bob", chat_id)["unread"] == 1 for chat_id in chat_ids)
    assert unread.unread_counts(db, "bob").totalUnread == page + extra


def test_paged_recounts_end_exact_with_deliveries_and_reads_racing_them(db):
    chats = [Chat(db, f"r{i}", ["alice", "bob"]) for i in range(7)]
    for chat in chats:
        chat.send("alice")
    head = db.document("users/bob/inboxHead/current")
    head.update({f"chats.{chat.id}.unread": 9 for chat in chats})
    sent = {chat.id: [chat.message("alice") for _ in range(3)] for chat in chats}

    def deliveries():
        for chat in chats:
            for message_id in sent[chat.id]:
                chat.deliver(message_id, "alice", "bob")
            read(db, "bob", chat, sent[chat.id][0])

    def pages():
        after, more = None, True
        while more:
            result, after = unread.recalculate_page(db, "bob", after=after, limit=3, now=T0)
            more = result.hasMore
        return True

    race(deliveries, pages)
    for chat in chats:
        assert counter(db, "bob", chat.id)["unread"] == truth(db, "bob", chat.id) == 2, chat.id


def test_a_head_damaged_between_pages_is_rebuilt_and_recounted_from_the_first_chat(db):
    chats = [Chat(db, f"d{i}", ["alice", "bob"]) for i in range(5)]
    for chat in chats:
        chat.send("alice")
    first, after = unread.recalculate_page(db, "bob", limit=3, now=T0)
    assert (first.checked, first.hasMore, after) == (3, True, "d2")
    db.document("users/bob/inboxHead/current").update({"seq": "broken"})

    second, after = unread.recalculate_page(db, "bob", after=after, limit=3, now=T0)
    assert (second.checked, second.hasMore, after) == (3, True, "d2")  # from d0 again, not from d3
    third, _ = unread.recalculate_page(db, "bob", after=after, limit=3, now=T0)
    assert (third.checked, third.hasMore) == (2, False)
    assert all(counter(db, "bob", chat.id)["unread"] == 1 for chat in chats)


def test_recount_calls_past_the_limit_are_refused_and_recount_nothing(db, pair):
    pair.send("alice")
    limit = constants.MAX_RECALCULATIONS_PER_MINUTE
    for i in range(limit):
        assert recount_call(db, "bob", now=T0 + timedelta(seconds=i)).success
    db.document("users/bob/inboxHead/current").update({"chats.c1.unread": 7})
    before = head_time(db, "bob")

    with pytest.raises(ResourceExhausted) as refused:
        recount_call(db, "bob", now=T0 + timedelta(seconds=30))
    assert f"at most {limit} times a minute" in refused.value.message
    assert refused.value.details == {"reason": "recalculation_rate_limited", "retryAfterMs": 30_000,
                                     "limit": limit, "windowSeconds": 60}
    assert head_time(db, "bob") == before and counter(db, "bob", "c1")["unread"] == 7
    assert len(db.document("recalculationWindows/bob").get().get("calls")) == limit

    # Another user is not held back; bob is again once his first call left the window.
    assert recount_call(db, "alice", now=T0 + timedelta(seconds=30)).success
    assert recount_call(db, "bob", now=T0 + timedelta(seconds=60)).changes[0].after == 1


def test_racing_recount_calls_cannot_pass_the_limit_together(db, pair):
    limit = constants.MAX_RECALCULATIONS_PER_MINUTE
    for i in range(limit - 3):
        recount_call(db, "bob", now=T0 + timedelta(milliseconds=i))

    def one():
        try:
            return recount_call(db, "bob", now=T0 + timedelta(seconds=1)).success
        except ResourceExhausted:
            return False

    assert sorted(race(*[one] * 8)) == [False] * 5 + [True] * 3
    assert len(db.document("recalculationWindows/bob").get().get("calls")) == limit
