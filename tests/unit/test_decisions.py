"""Decisions that need no Firestore: what an inbox head becomes, who a send places,
what a failed attempt leads to, a recipient's receipt status. No emulator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from support.entries import make_entry
from ulid import ULID

from pack427 import constants, inbox
from pack427.accepting import send_plan, sending
from pack427.delivering import queue
from pack427.errors import FailedPrecondition
from pack427.models import Chat, ChatInbox, InboxEntry, InboxHead, QueueStatus, ReceiptStatus, Region
from pack427.reading import chat_list, unread

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


def ids(n: int) -> list[str]:
    return [str(ULID.from_datetime(T0 + timedelta(seconds=i))) for i in range(n)]


def entry(message_id: str, chat_id: str = "c1", sender: str = "alice") -> InboxEntry:
    return InboxEntry(seq=0, message_id=message_id, chat_id=chat_id, sender_id=sender, content_ref="x",
                      region=Region.EU, created_at=T0, delivered_at=T0)


# ------------------------------------------------------------ inbox head


def test_placing_numbers_after_the_head_and_counts_each_entry_unread_in_its_chat():
    a, b, c = ids(3)
    moved, numbered = inbox.placed(InboxHead(), "bob", [entry(a), entry(b, "c2"), entry(c)], now=T0)
    head = moved.head
    assert [e.seq for e in numbered] == [1, 2, 3]
    assert (head.seq, head.message_id, head.updated_at) == (3, c, T0)
    assert head.chats == {"c1": ChatInbox(unread=2, last=c), "c2": ChatInbox(unread=1, last=b)}

    moved, numbered = inbox.placed(head, "bob", [entry(str(ULID.from_datetime(T0 + timedelta(minutes=1))))], now=T0)
    assert numbered[0].seq == 4 and moved.head.chats["c1"].unread == 3 and not moved.park and not moved.unpark


def test_an_entry_at_or_before_the_read_position_and_an_own_entry_are_not_unread():
    a, b, c, own = ids(4)
    head = InboxHead(seq=7, chats={"c1": ChatInbox(unread=0, read_up_to=b, last=b)})
    head = inbox.placed(head, "bob", [entry(a), entry(b), entry(c), entry(own, sender="bob")], now=T0)[0].head
    assert head.chats["c1"] == ChatInbox(unread=1, read_up_to=b, last=own)
    assert head.seq == 11


def test_reading_sets_the_position_and_the_count_and_keeps_the_rest():
    a, b = ids(2)
    head = InboxHead(seq=2, chats={"c1": ChatInbox(unread=2, last=b), "c2": ChatInbox(unread=5, last=a)})
    read = inbox.read_to(head, "bob", "c1", a, 1, now=T0).head
    assert read.chats == {"c1": ChatInbox(unread=1, read_up_to=a, last=b), "c2": ChatInbox(unread=5, last=a)}
    assert (read.seq, read.updated_at) == (2, T0)
    assert inbox.read_to(InboxHead(), "bob", "new", a, 0, now=T0).head.chats == {"new": ChatInbox(read_up_to=a)}


def test_pruning_drops_the_oldest_fully_read_chats_only_and_then_needs_read_positions():
    stamps = ids(6)
    chats = {f"c{i}": ChatInbox(unread=i % 2, read_up_to=stamps[i], last=stamps[i]) for i in range(6)}
    head = inbox.pruned(InboxHead(chats=chats), limit=4)
    assert sorted(head.chats) == ["c1", "c3", "c4", "c5"]
    assert head.pruned
    # Chats with unread messages always stay, even over the limit.
    unread_only = {f"u{i}": ChatInbox(unread=1, last=stamps[i]) for i in range(6)}
    assert len(inbox.pruned(InboxHead(chats=unread_only), limit=4).chats) == 6
    # Once pruned, a chat the head does not track may have a read position: it must be given.
    late = entry(stamps[0], "c0")
    assert inbox.needs_lookup(head, ["c0", "c5"]) == {"c0"}
    with pytest.raises(ValueError, match="lookups needed"):
        inbox.placed(head, "bob", [late], now=T0)
    lookup = inbox.Lookup(frozenset({"c0"}), positions={"c0": stamps[0]})
    moved, _ = inbox.placed(head, "bob", [late], now=T0, lookup=lookup)
    assert moved.head.chats["c0"] == ChatInbox(unread=0, read_up_to=stamps[0], last=stamps[0])
    assert inbox.needs_lookup(InboxHead(), ["c0"]) == set()


def test_a_damaged_count_reads_as_zero():
    assert ChatInbox.model_validate({"unread": -3}).unread == 0
    assert ChatInbox.model_validate({"unread": "many"}).unread == 0
    assert ChatInbox.model_validate({"unread": True}).unread == 0
    assert ChatInbox.model_validate({"unread": 4}).unread == 4


def test_unread_after_a_read_is_known_from_the_head_when_the_read_reaches_the_newest_entry():
    a, b = ids(2)
    assert unread.unread_after(None, a) == 0
    assert unread.unread_after(ChatInbox(unread=3, last=a), a) == 0
    assert unread.unread_after(ChatInbox(unread=3, last=a), b) == 0
    assert unread.unread_after(ChatInbox(unread=3, last=b), a) is None  # the inbox must be counted
    assert unread.unread_after(ChatInbox(unread=3), a) is None


# ------------------------------------------------------------ who a send places


def chat(queued: bool = False) -> Chat:
    return Chat(participants=["alice", "bob", "carol"], delivery_queued=queued)


def test_a_small_chat_with_nothing_queued_is_placed_by_the_send():
    plan = send_plan.plan_delivery(chat(), ["bob", "carol"], place=True, queue_checked_empty=False,
                                 needs_read_position=set())
    assert plan == send_plan.DeliveryPlan(placed=["bob", "carol"], queued=[], chat_queued=False, queue_clear=True)


def test_a_chat_with_queued_messages_is_queued_unless_the_queue_was_found_empty():
    queued = send_plan.plan_delivery(chat(queued=True), ["bob"], place=True, queue_checked_empty=False,
                                   needs_read_position=set())
    # Behind a queued message of the chat: its trigger must deliver the older ones first.
    assert queued == send_plan.DeliveryPlan(placed=[], queued=["bob"], chat_queued=True, queue_clear=False)
    cleared = send_plan.plan_delivery(chat(queued=True), ["bob"], place=True, queue_checked_empty=True,
                                    needs_read_position=set())
    assert cleared == send_plan.DeliveryPlan(placed=["bob"], queued=[], chat_queued=False, queue_clear=True)


def test_a_retry_or_a_large_chat_goes_through_the_queue_and_an_unchecked_flag_stays_set():
    retry = send_plan.plan_delivery(chat(), ["bob"], place=False, queue_checked_empty=False, needs_read_position=set())
    # Queued after lost races, with nothing of the chat queued before: nothing for its trigger to wait for.
    assert retry == send_plan.DeliveryPlan(placed=[], queued=["bob"], chat_queued=True, queue_clear=True)
    behind = send_plan.plan_delivery(chat(queued=True), ["bob"], place=False, queue_checked_empty=False,
                                     needs_read_position=set())
    assert behind.queue_clear is False
    many = [f"u{i}" for i in range(sending.constants.INLINE_MAX_RECIPIENTS + 1)]
    large = send_plan.plan_delivery(chat(), many, place=True, queue_checked_empty=False, needs_read_position=set())
    assert (large.placed, large.queued, large.chat_queued) == ([], many, True)
    # Nobody to deliver to (all blocked): the flag is only cleared if the queue was asked.
    nobody = send_plan.plan_delivery(chat(queued=True), [], place=False, queue_checked_empty=False,
                                   needs_read_position=set())
    assert nobody.chat_queued is True
    assert send_plan.plan_delivery(chat(), [], place=False, queue_checked_empty=False,
                                 needs_read_position=set()).chat_queued is False


def test_a_recipient_whose_head_needs_a_read_position_is_queued_alone():
    plan = send_plan.plan_delivery(chat(), ["bob", "carol"], place=True, queue_checked_empty=False,
                                 needs_read_position={"carol"})
    assert plan == send_plan.DeliveryPlan(placed=["bob"], queued=["carol"], chat_queued=True, queue_clear=True)


# ------------------------------------------------------------ queue entries


def test_a_failed_attempt_backs_off_keeps_its_place_and_the_fifth_drops():
    fresh = make_entry()
    first = queue.failed(fresh, "boom", now=T0)
    assert (first.to_status, first.attempts) == (QueueStatus.FAILED, 1)
    assert first.fields == {"status": "FAILED", "awaitingInbox": True, "attempts": 1,
                                 "nextAttemptAt": T0 + timedelta(seconds=1), "lastError": "boom", "lastFailedAt": T0}
    assert first.details == {"error": "boom", "nextAttemptAt": (T0 + timedelta(seconds=1)).isoformat()}
    third = queue.failed(fresh.model_copy(update={"attempts": 2}), "x" * 2000, now=T0)
    assert third.fields["nextAttemptAt"] == T0 + timedelta(seconds=4) and len(third.fields["lastError"]) == 1000
    last = queue.failed(fresh.model_copy(update={"attempts": 4}), "boom", now=T0)
    assert (last.to_status, last.attempts, last.fields["awaitingInbox"]) == (QueueStatus.DROPPED, 5, False)
    assert "nextAttemptAt" not in last.details  # a dead letter has no next attempt
    # A push retry (the message is in the inbox) stays out of its chat's way whatever happens.
    pushed = fresh.model_copy(update={"awaiting_inbox": False})
    assert queue.failed(pushed, "push", now=T0).fields["awaitingInbox"] is False


def test_delivered_counts_the_attempt_and_records_where_the_inbox_entry_went():
    change = queue.delivered(make_entry().model_copy(update={"attempts": 2}), now=T0, inbox_seq=7)
    assert (change.to_status, change.attempts, change.details) == (QueueStatus.DELIVERED, 3, {})
    assert change.fields == {"status": "DELIVERED", "awaitingInbox": False, "attempts": 3, "deliveredAt": T0,
                             "expiresAt": T0 + timedelta(days=constants.DELIVERED_RETENTION_DAYS),
                             "lastError": None, "inboxSeq": 7}
    acked = queue.delivered(make_entry(), now=T0, details={"acknowledged": True})
    assert "inboxSeq" not in acked.fields and acked.details == {"acknowledged": True}


def test_a_requeued_dead_letter_starts_over_unless_its_message_reached_the_inbox():
    dead = make_entry().model_copy(update={"status": QueueStatus.DROPPED, "attempts": 5, "last_error": "boom"})
    again = queue.requeued(dead, now=T0, placed_seq=None, placed_at=None)
    assert (again.to_status, again.attempts, again.action) == (QueueStatus.PENDING, 0, "REQUEUED")
    assert again.fields == {"status": "PENDING", "awaitingInbox": True, "attempts": 0, "nextAttemptAt": T0,
                            "lastError": None, "requeues": 1}
    assert again.details == {"previousAttempts": 5, "lastError": "boom"}
    placed = queue.requeued(dead, now=T0, placed_seq=3, placed_at=T0 - timedelta(hours=1))
    assert (placed.to_status, placed.fields["inboxSeq"], placed.fields["deliveredAt"]) == (
        QueueStatus.DELIVERED, 3, T0 - timedelta(hours=1))


# ------------------------------------------------------------ receipts


@pytest.mark.parametrize(("seq", "acked", "read_up_to", "entry_status", "expected"), [
    (None, 0, None, QueueStatus.PENDING, ReceiptStatus.PENDING),
    (None, 0, None, QueueStatus.FAILED, ReceiptStatus.PENDING),
    (None, 0, None, QueueStatus.DROPPED, ReceiptStatus.FAILED),
    (None, 0, None, None, ReceiptStatus.SENT),       # never queued (blocked), or cleaned up
    (4, 3, None, None, ReceiptStatus.SENT),
    (4, 4, None, None, ReceiptStatus.DELIVERED),    # a device acknowledged up to it
    (4, 9, None, QueueStatus.DROPPED, ReceiptStatus.DELIVERED),  # its push died; the message did not
    (4, 0, "M", None, ReceiptStatus.READ),
    (None, 0, "Z", QueueStatus.PENDING, ReceiptStatus.READ),
])
def test_receipt_status(seq, acked, read_up_to, entry_status, expected):
    queued = make_entry().model_copy(update={"status": entry_status}) if entry_status else None
    assert chat_list.status_of("M", seq, acked, read_up_to, queued) is expected


def test_a_page_is_cut_at_the_first_gap_in_its_seqs():
    def numbered(*seqs):
        return [InboxEntry(seq=s, message_id=f"m{s}", chat_id="c", sender_id="a", content_ref="r", region=Region.EU,
                           created_at=T0, delivered_at=T0) for s in seqs]
    assert [e.seq for e in inbox.contiguous(numbered(6, 7, 8), 5)] == [6, 7, 8]
    assert [e.seq for e in inbox.contiguous(numbered(6, 7, 9, 10), 5)] == [6, 7]
    assert inbox.contiguous(numbered(7, 8), 5) == []
    assert inbox.contiguous([], 5) == []


def test_a_send_record_is_kept_its_retention_after_the_send_or_after_its_scheduled_time():
    days = timedelta(days=constants.IDEMPOTENCY_RETENTION_DAYS)
    assert send_plan.record_expiry(T0) == T0 + days
    assert send_plan.record_expiry(T0, T0 + timedelta(days=20)) == T0 + timedelta(days=20) + days


def test_a_client_message_id_older_than_the_records_retention_is_refused_only_past_its_max_age():
    limit = timedelta(days=constants.CLIENT_MESSAGE_ID_MAX_AGE_DAYS)
    assert limit < timedelta(days=constants.IDEMPOTENCY_RETENTION_DAYS)  # room for a client clock ahead
    send_plan.check_client_message_id_age(str(ULID.from_datetime(T0 - limit + timedelta(seconds=1))), T0)
    send_plan.check_client_message_id_age(str(ULID.from_datetime(T0 + timedelta(days=3))), T0)  # clock ahead
    with pytest.raises(FailedPrecondition) as refused:
        send_plan.check_client_message_id_age(str(ULID.from_datetime(T0 - limit - timedelta(seconds=1))), T0)
    assert refused.value.details["reason"] == "client_message_id_expired"


def test_the_chat_list_reads_receipts_member_by_member_only_for_small_chats_within_its_budget():
    assert chat_list.detailed_chats({"a": 51, "b": 50, "c": 1}) == {"b", "c"}  # over the size: summarised
    page = {"n1": 50, "n2": 50, "n3": 50, "n4": 50, "n5": 1, "n6": 0}
    assert chat_list.detailed_chats(page) == {"n1", "n2", "n3", "n4", "n6"}  # 200 spent: n5 summarised
