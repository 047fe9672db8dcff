"""A user with more chats with unread messages than the inbox head holds: the least recently
active are parked (users/{uid}/inboxChats/{chatId}), and every count stays exact, per chat and in
total, through deliveries to parked chats (by the queue and by a send), reads of parked chats and
recalculation. Against the emulator; the truth is recounted from the inbox entries themselves."""

from __future__ import annotations

from datetime import timedelta

import pytest
from support.chatcore import make_user
from support.signals import T0, Chat, truth
from ulid import ULID

from pack427 import constants, inbox
from pack427.accepting import sending
from pack427.delivering.notifier import EmulatorNotifier
from pack427.models import ChatInbox, InboxHead, MarkAsReadRequest, Region, SendMessageRequest
from pack427.reading import unread
from pack427.workers import processor

BOUND = 4


@pytest.fixture
def small_bound(monkeypatch):
    """A head of at most 4 chats: a handful of chats crosses the bound (the bound's own figure is
    tested at and past it below, and in tests/unit/test_sizes.py)."""
    monkeypatch.setattr(constants, "MAX_TRACKED_CHATS", BOUND)


def chats_of(db, n: int) -> list[Chat]:
    """`n` chats of alice and bob whose messages are later the later the chat (c0's the oldest)."""
    chats = []
    for k in range(n):
        chat = Chat(db, f"c{k}", ["alice", "bob"])
        chat.sent = 1000 * k  # the Chat helper's message times start at T0 + `sent` ms
        chats.append(chat)
    return chats


def head_doc(db, uid: str) -> dict:
    return db.document(f"users/{uid}/inboxHead/current").get().to_dict() or {}


def parked_docs(db, uid: str) -> dict[str, dict]:
    return {s.id: s.to_dict() for s in db.collection(f"users/{uid}/inboxChats").stream()}


def assert_exact(db, uid: str, chats: list[Chat]) -> None:
    """Per chat and in total, what the head and the parked documents say is what the inbox holds;
    getUnreadCounts answers the same; the head holds at most BOUND chats."""
    head, parked = head_doc(db, uid), parked_docs(db, uid)
    held = head.get("chats", {})
    assert len(held) <= constants.MAX_TRACKED_CHATS
    assert not set(held) & set(parked), "a chat both held and parked"
    truths = {chat.id: truth(db, uid, chat.id) for chat in chats}
    for chat in chats:
        state = held.get(chat.id) or parked.get(chat.id) or {"unread": 0}
        assert state["unread"] == truths[chat.id], chat.id
    assert head.get("parkedChats", 0) == len(parked)
    assert head.get("parkedUnread", 0) == sum(p["unread"] for p in parked.values())
    counts = unread.unread_counts(db, uid)
    assert counts.totalUnread == sum(truths.values())
    assert {c: n for c, n in counts.unreadCounts.items() if n} == {c: n for c, n in truths.items() if n}


def read(db, uid: str, chat: Chat, message_id: str):
    return unread.mark_as_read(db, uid, MarkAsReadRequest(chatId=chat.id, readUpToMessageId=message_id), now=T0)


def test_past_the_bound_the_least_recently_active_chats_are_parked_and_every_count_stays_exact(db, small_bound):
    chats = chats_of(db, 7)
    last = {}
    for chat in chats:  # c0 is the least recently active, c6 the most
        for _ in range(2):
            last[chat.id] = chat.send("alice")

    held, parked = head_doc(db, "bob")["chats"], parked_docs(db, "bob")
    assert sorted(held) == ["c3", "c4", "c5", "c6"] and sorted(parked) == ["c0", "c1", "c2"]
    assert parked["c0"]["unread"] == 2 and parked["c0"]["last"] == last["c0"]
    assert (head_doc(db, "bob")["parkedChats"], head_doc(db, "bob")["parkedUnread"]) == (3, 6)
    assert_exact(db, "bob", chats)

    # A new message of a parked chat brings it back, counted exactly; the least active one is parked instead.
    chats[0].sent = 100_000  # now the newest message of all
    chats[0].send("alice")
    assert head_doc(db, "bob")["chats"]["c0"]["unread"] == 3
    assert sorted(parked_docs(db, "bob")) == ["c1", "c2", "c3"]
    assert_exact(db, "bob", chats)

    # A duplicated delivery to a parked chat counts nothing.
    assert chats[1].deliver(last["c1"], "alice", "bob") is False
    assert_exact(db, "bob", chats)

    # Reading a parked chat in part: its position and count are exact (it stays parked, the least active).
    first_of_c2 = sorted(m.id for m in db.collection("chats/c2/messages").stream())[0]
    assert read(db, "bob", chats[2], first_of_c2).unreadCount == 1
    assert parked_docs(db, "bob")["c2"] == {**parked_docs(db, "bob")["c2"], "unread": 1, "readUpTo": first_of_c2}
    assert_exact(db, "bob", chats)
    # Read to the end: nothing left unread in it, and it is no longer counted anywhere.
    assert read(db, "bob", chats[2], last["c2"]).unreadCount == 0
    assert "c2" not in parked_docs(db, "bob")
    assert db.document("chats/c2/readReceipts/bob").get().get("readUpToMessageId") == last["c2"]
    assert_exact(db, "bob", chats)
    # A late message of a fully read chat that left the head is counted after its read position.
    chats[2].send("alice")
    assert_exact(db, "bob", chats)

    # Recalculation finds nothing to repair, then repairs a drifted parked count and total.
    result = unread.recalculate(db, "bob")
    assert result.recalculated == 0 and result.checked == 7
    parked_now = parked_docs(db, "bob")
    victim = sorted(parked_now)[0]
    db.document(f"users/bob/inboxChats/{victim}").update({"unread": 40})
    db.document("users/bob/inboxHead/current").update({"parkedUnread": 99})
    result = unread.recalculate(db, "bob")
    assert [(c.chatId, c.before, c.after) for c in result.changes] == [(victim, 40, truth(db, "bob", victim))]
    assert_exact(db, "bob", chats)


def test_a_send_to_a_parked_chat_is_queued_and_delivered_exactly(db, small_bound):
    make_user(db, "alice")
    make_user(db, "bob")
    chats = chats_of(db, 6)
    for chat in chats:
        chat.send("alice")
    assert "c0" in parked_docs(db, "bob")

    sent = sending.send_message(db, "alice", SendMessageRequest(chatId="c0", clientMessageId=str(ULID()), text="hi"),
                                now=T0 + timedelta(seconds=5))
    # The send cannot count a parked chat on the head it read: the message goes through the queue.
    processor.process_batch(db, Region.EU, EmulatorNotifier(), now=T0 + timedelta(minutes=1))
    assert db.document(f"users/bob/inbox/{sent.messageId}").get().exists
    assert head_doc(db, "bob")["chats"]["c0"]["unread"] == 2
    assert_exact(db, "bob", chats)


def test_a_user_with_few_chats_has_no_parked_chat_and_nothing_is_looked_up(db, small_bound):
    chats = chats_of(db, BOUND)
    for chat in chats:
        chat.send("alice")
    head = head_doc(db, "bob")
    assert (head["parkedChats"], head["parkedUnread"], head["pruned"]) == (0, 0, False)
    assert inbox.needs_lookup(InboxHead.model_validate(head), ["new"]) == set()
    assert parked_docs(db, "bob") == {}
    assert_exact(db, "bob", chats)


def test_at_the_real_bound_nothing_is_parked_and_one_chat_past_it_one_is(db):
    """MAX_TRACKED_CHATS as shipped: a head seeded with 499 chats of unread messages, then deliveries."""
    stamps = [str(ULID.from_datetime(T0 - timedelta(hours=1) + timedelta(seconds=i)))
              for i in range(constants.MAX_TRACKED_CHATS)]
    seeded = {f"old{i:03}": ChatInbox(unread=1, last=stamps[i]) for i in range(constants.MAX_TRACKED_CHATS - 1)}
    db.document("users/bob/inboxHead/current").set(InboxHead(seq=0, chats=seeded).to_firestore())
    at, past = Chat(db, "at", ["alice", "bob"]), Chat(db, "past", ["alice", "bob"])

    at.send("alice")  # the 500th chat: at the bound
    head = head_doc(db, "bob")
    assert len(head["chats"]) == constants.MAX_TRACKED_CHATS and head["parkedChats"] == 0
    past.send("alice")  # the 501st: the least recently active is parked
    head = head_doc(db, "bob")
    assert len(head["chats"]) == constants.MAX_TRACKED_CHATS
    assert (head["parkedChats"], head["parkedUnread"]) == (1, 1)
    assert list(parked_docs(db, "bob")) == ["old000"]
    assert unread.unread_counts(db, "bob").totalUnread == constants.MAX_TRACKED_CHATS + 1
    assert inbox.head_size("bob", InboxHead.model_validate(head)) <= constants.INBOX_HEAD_MAX_BYTES


def test_the_chat_list_shows_a_parked_chat_s_count_and_the_total_with_parked_unread(db, small_bound):
    from pack427.models import GetChatListRequest
    from pack427.reading import chat_list

    chats = chats_of(db, 6)
    for k, chat in enumerate(chats):
        newest = chat.send("alice")
        db.document(f"chats/{chat.id}").update({"lastMessage": {  # what a send keeps on the chat
            "messageId": newest, "senderId": "alice", "text": "x", "createdAt": T0 + timedelta(seconds=k)}})
    assert sorted(parked_docs(db, "bob")) == ["c0", "c1"]

    listed = chat_list.get_chat_list(db, "bob", GetChatListRequest(limit=50))
    assert {c.chatId: c.unreadCount for c in listed.chats} == {chat.id: 1 for chat in chats}
    assert listed.totalUnread == 6
    oldest = chat_list.get_chat_list(db, "bob", GetChatListRequest(limit=2, cursor=chat_list.get_chat_list(
        db, "bob", GetChatListRequest(limit=4)).cursor))
    assert [(c.chatId, c.unreadCount) for c in oldest.chats] == [("c1", 1), ("c0", 1)]  # both parked


def test_racing_deliveries_to_parked_chats_and_reads_of_them_keep_every_count_exact(db, small_bound):
    import threading
    from concurrent.futures import ThreadPoolExecutor

    chats = chats_of(db, 7)
    for chat in chats:
        chat.send("alice")
    pending = {chat.id: chat.message("alice") for chat in chats[:3]}  # stored, for the racing deliveries
    newest_c3 = sorted(m.id for m in db.collection("chats/c3/messages").stream())[-1]
    barrier = threading.Barrier(5)

    def at_once(call):
        barrier.wait()
        return call()

    calls = [lambda c=chat: c.deliver(pending[c.id], "alice", "bob") for chat in chats[:3]]
    calls += [lambda: read(db, "bob", chats[3], newest_c3), lambda: chats[6].send("alice")]
    with ThreadPoolExecutor(5) as pool:
        list(pool.map(at_once, calls))
    assert_exact(db, "bob", chats)


def test_a_paged_recount_covers_parked_chats_page_by_page_and_ends_exact(db, small_bound):
    chats = chats_of(db, 9)
    for chat in chats:
        chat.send("alice")
    parked = sorted(parked_docs(db, "bob"))
    assert len(parked) == 5
    for chat_id in parked[::2]:  # drift: three parked counts and the head's totals
        db.document(f"users/bob/inboxChats/{chat_id}").update({"unread": 7})
    db.document("users/bob/inboxHead/current").update({"parkedUnread": 0, "parkedChats": 2})

    after, pages, repaired = None, 0, set()
    while True:
        result, after = unread.recalculate_page(db, "bob", after=after, limit=2, now=T0)
        pages += 1
        repaired |= {c.chatId for c in result.changes}
        if not result.hasMore:
            break
    assert pages == 5 and repaired == set(parked[::2])
    assert_exact(db, "bob", chats)
