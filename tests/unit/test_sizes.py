"""Sizes and bounds that need no Firestore: a document's Firestore size, commits split by writes and
bytes, and the inbox head's bound (pruning, then parking, with the totals exact). No emulator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from ulid import ULID

from pack427 import constants, inbox, store
from pack427.models import ChatInbox, InboxEntry, InboxHead, Region
from pack427.reading import unread

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
Cost = store.Cost


def ids(n: int) -> list[str]:
    return [str(ULID.from_datetime(T0 + timedelta(seconds=i))) for i in range(n)]


def entry(message_id: str, chat_id: str, sender: str = "alice") -> InboxEntry:
    return InboxEntry(seq=0, message_id=message_id, chat_id=chat_id, sender_id=sender, content_ref="x",
                      region=Region.EU, created_at=T0, delivered_at=T0)


def total(head: InboxHead) -> int:
    return unread.total_unread(head)


# ------------------------------------------------------------ Firestore sizes


def test_a_document_s_size_is_firestore_s_documented_example():
    # https://firebase.google.com/docs/firestore/storage-size: 147 bytes.
    data = {"type": "Personal", "done": False, "priority": 1, "description": "Learn Cloud Firestore"}
    assert store.document_size("users/jeff/tasks/my_task_id", data) == 147


def test_values_take_their_documented_sizes():
    assert store.value_size("é") == 3  # UTF-8 bytes and 1
    assert store.value_size(None) == store.value_size(True) == 1
    assert store.value_size(7) == store.value_size(1.5) == store.value_size(T0) == 8
    assert store.value_size(b"abcd") == 4
    assert store.value_size(["ab", 1]) == 3 + 8
    assert store.value_size({"ab": {"c": None}}) == 3 + 2 + 1  # keys are strings too
    assert store.name_size("users/u1") == 6 + 3 + 16


# ------------------------------------------------------------ commits


def test_units_go_in_one_commit_up_to_the_write_bound_and_the_next_one_starts_another():
    at_bound = [Cost(5, 10)] * 100  # 500 writes
    assert store.commits(at_bound) == [range(0, 100)]
    past = [Cost(5, 10)] * 101
    assert store.commits(past) == [range(0, 100), range(100, 101)]
    assert store.fitting(past) == 100


def test_units_go_in_one_commit_up_to_the_byte_bound_and_the_next_one_starts_another():
    budget, mib = constants.COMMIT_MAX_BYTES, 1024 * 1024
    third = budget // 3
    assert store.commits([Cost(1, third)] * 3) == [range(0, 3)]  # at the bound (or a byte or two under)
    assert store.commits([Cost(1, budget)]) == [range(0, 1)]  # exactly at it
    assert store.commits([Cost(1, budget - 1), Cost(1, 1)]) == [range(0, 2)]
    assert store.commits([Cost(1, budget), Cost(1, 1)]) == [range(0, 1), range(1, 2)]  # one byte past it
    # What every commit writes besides counts toward both bounds.
    assert store.commits([Cost(1, third)] * 3, reserve=Cost(1, budget - 3 * third + 1)) == [range(0, 2), range(2, 3)]
    assert store.commits([Cost(100, 0)] * 5, reserve=Cost(1, 0)) == [range(0, 4), range(4, 5)]
    # Under Firestore's 10 MiB a request and the emulator's 4 MiB.
    assert constants.COMMIT_MAX_BYTES < 4 * mib and constants.COMMIT_MAX_WRITES == 500


def test_a_unit_over_a_bound_alone_gets_a_commit_of_its_own_and_none_is_empty():
    assert store.commits([Cost(1, 1), Cost(600, 1), Cost(1, 1)]) == [range(0, 1), range(1, 2), range(2, 3)]
    assert store.commits([]) == [] and store.fitting([]) == 0
    assert store.fitting([Cost(0, 0)] * 1000) == 1000  # blocked members write nothing


# ------------------------------------------------------------ the inbox head's bound


def head_of(n: int, *, unread_every: int = 1, chat_id=lambda i: f"c{i:04}") -> InboxHead:
    stamps = ids(n)
    chats = {chat_id(i): ChatInbox(unread=1 if i % unread_every == 0 else 0, read_up_to=None, last=stamps[i])
             for i in range(n)}
    return InboxHead(seq=n, chats=chats)


def test_a_head_s_size_is_its_document_s_and_counts_each_chat():
    head = head_of(3)
    assert inbox.head_size("bob", head) == store.document_size("users/bob/inboxHead/current", head.to_firestore())
    bigger = head.model_copy(update={"chats": {**head.chats, "more": ChatInbox(unread=2)}})
    assert inbox.head_size("bob", bigger) - inbox.head_size("bob", head) == inbox.chat_size("more", ChatInbox(unread=2))


def test_at_the_chat_bound_nothing_moves_and_past_it_the_least_recently_active_unread_chat_is_parked():
    at = head_of(constants.MAX_TRACKED_CHATS)
    assert inbox.bounded(at, "bob") == (at, {})
    past = head_of(constants.MAX_TRACKED_CHATS + 2)
    within, parked = inbox.bounded(past, "bob")
    assert sorted(parked) == ["c0000", "c0001"]  # the oldest newest-message first
    assert len(within.chats) == constants.MAX_TRACKED_CHATS
    assert (within.parked_chats, within.parked_unread) == (2, 2)
    assert total(within) == total(past) == constants.MAX_TRACKED_CHATS + 2


def test_fully_read_chats_are_pruned_before_any_chat_with_unread_messages_is_parked():
    past = head_of(constants.MAX_TRACKED_CHATS + 3, unread_every=2)  # c0000 unread, c0001 read, ...
    within, parked = inbox.bounded(past, "bob")
    assert parked == {} and within.pruned
    assert sorted(set(past.chats) - set(within.chats)) == ["c0001", "c0003", "c0005"]
    assert total(within) == total(past)


def test_the_byte_bound_parks_too_whatever_the_number_of_chats():
    long = head_of(200, chat_id=lambda i: f"{i:04}" + "x" * 1496)  # ids of 1,500 bytes: 300 KB of chats
    assert inbox.head_size("bob", long) > constants.INBOX_HEAD_MAX_BYTES
    within, parked = inbox.bounded(long, "bob")
    assert inbox.head_size("bob", within) <= constants.INBOX_HEAD_MAX_BYTES
    assert parked and len(within.chats) + len(parked) == 200
    # One chat fewer parked would pass the bound: no more was parked than needed.
    oldest_kept = min(within.chats, key=lambda c: within.chats[c].last or "")
    newest_parked = max(parked, key=lambda c: parked[c].last or "")
    assert (parked[newest_parked].last or "") < (within.chats[oldest_kept].last or "")
    back = within.model_copy(update={"chats": {**within.chats, newest_parked: parked[newest_parked]}})
    assert inbox.head_size("bob", back) > constants.INBOX_HEAD_MAX_BYTES
    assert total(within) == total(long)


def test_a_delivery_past_the_bound_parks_the_least_active_chat_and_never_the_one_delivered_to():
    full = head_of(constants.MAX_TRACKED_CHATS)
    (new,) = [str(ULID.from_datetime(T0 + timedelta(hours=1)))]
    moved, numbered = inbox.placed(full, "bob", [entry(new, "fresh")], now=T0)
    assert moved.head.chats["fresh"] == ChatInbox(unread=1, last=new)
    assert list(moved.park) == ["c0000"] and moved.unpark == frozenset()
    assert (moved.head.parked_chats, moved.head.parked_unread) == (1, 1)
    assert total(moved.head) == total(full) + 1 and numbered[0].seq == full.seq + 1


def test_a_delivery_to_a_parked_chat_brings_it_back_counted_exactly_and_parks_another():
    full = head_of(constants.MAX_TRACKED_CHATS + 1)
    head, parked = inbox.bounded(full, "bob")
    assert list(parked) == ["c0000"]
    # A chat the head does not hold, while it has parked chats, must be looked up.
    assert inbox.needs_lookup(head, ["c0000", "c0400"]) == {"c0000"}
    later = str(ULID.from_datetime(T0 + timedelta(hours=1)))
    with pytest.raises(ValueError, match="lookups needed"):
        inbox.placed(head, "bob", [entry(later, "c0000")], now=T0)
    lookup = inbox.Lookup(frozenset({"c0000"}), parked={"c0000": parked["c0000"]})
    moved, _ = inbox.placed(head, "bob", [entry(later, "c0000")], now=T0, lookup=lookup)
    assert moved.head.chats["c0000"].unread == 2  # the parked count and the new message
    assert list(moved.park) == ["c0001"] and moved.unpark == frozenset({"c0000"})
    assert (moved.head.parked_chats, moved.head.parked_unread) == (1, 1)
    assert total(moved.head) == total(head) + 1


def test_a_new_chat_while_chats_are_parked_is_looked_up_and_found_new():
    head, _ = inbox.bounded(head_of(constants.MAX_TRACKED_CHATS + 1), "bob")
    later = str(ULID.from_datetime(T0 + timedelta(hours=1)))
    moved, _ = inbox.placed(head, "bob", [entry(later, "new")], now=T0, lookup=inbox.Lookup(frozenset({"new"})))
    assert moved.head.chats["new"].unread == 1 and moved.head.parked_chats == 2
    assert total(moved.head) == total(head) + 1


def test_reading_a_parked_chat_sets_its_position_recounts_and_keeps_the_total_exact():
    head, parked = inbox.bounded(head_of(constants.MAX_TRACKED_CHATS + 1), "bob")
    state = parked["c0000"]
    read = inbox.read_to(head, "bob", "c0000", state.last or "", 0, now=T0, parked=state)
    # Read, it is the oldest fully read chat past the bound: pruned, its position in its receipt.
    assert "c0000" not in read.head.chats and read.head.pruned and read.park == {}
    assert read.unpark == frozenset({"c0000"})
    assert (read.head.parked_chats, read.head.parked_unread) == (0, 0)
    assert total(read.head) == total(head) - 1
    # Read in part, it stays counted: parked again (still the least recently active), its count 1 less.
    many = head.model_copy(update={"parked_unread": 5})
    some = inbox.read_to(many, "bob", "c0000", "x", 4, now=T0, parked=state.model_copy(update={"unread": 5}))
    assert some.park["c0000"] == ChatInbox(unread=4, read_up_to="x", last=state.last)
    assert some.unpark == frozenset() and (some.head.parked_chats, some.head.parked_unread) == (1, 4)


def test_recount_pages_cover_parked_chats_and_stop_at_a_cut_parked_query():
    page, more = unread.page_of_chats([], [], after=None, limit=2, parked=["p1", "p2", "p3"])
    assert (page, more) == (["p1", "p2"], True)
    page, more = unread.page_of_chats(["a", "z"], ["b"], after=None, limit=3, parked=["p1"])
    assert (page, more) == (["a", "b", "p1"], True)
    page, more = unread.page_of_chats(["a"], [], after=None, limit=3, parked=["p1"])
    assert (page, more) == (["a", "p1"], False)
