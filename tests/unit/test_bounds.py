"""The pure decisions behind the bounds of issue 27: recount pages, call windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pack427 import clock, constants
from pack427.accepting import send_plan
from pack427.delivering import fan_out
from pack427.errors import FailedPrecondition
from pack427.guarding import rate_limit
from pack427.reading import unread
from pack427.workers import processor

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


# ------------------------------------------------------------ a sliding window of calls


def test_a_window_holding_fewer_calls_than_the_limit_takes_one_more():
    calls = [T0 + timedelta(seconds=s) for s in range(9)]
    assert rate_limit.retry_after_ms(calls, 10, now=T0 + timedelta(seconds=10)) is None


def test_a_full_window_says_when_its_oldest_call_leaves_it():
    calls = [T0 + timedelta(seconds=s) for s in range(10)]
    assert rate_limit.retry_after_ms(calls, 10, now=T0 + timedelta(seconds=10)) == 50_000
    # At the instant the oldest leaves, the next call fits; calls older than the window never count.
    assert rate_limit.retry_after_ms(calls, 10, now=T0 + timedelta(seconds=60)) is None
    assert rate_limit.retry_after_ms(calls * 3, 10, now=T0 + timedelta(seconds=70)) is None


def test_a_full_window_never_answers_a_wait_of_zero():
    calls = [T0] * 10
    assert rate_limit.retry_after_ms(calls, 10, now=T0 + timedelta(seconds=60) - timedelta(microseconds=1)) == 1


# ------------------------------------------------------------ recount pages


def chats(*numbers: int) -> list[str]:
    return [f"c{n:03}" for n in numbers]


def test_a_user_in_fewer_chats_than_a_page_is_recounted_in_one_call():
    page, more = unread.page_of_chats(chats(1, 2, 3), chats(2, 9), after=None, limit=4)
    assert (page, more) == (chats(1, 2, 3, 9), False)


def test_at_the_bound_one_call_and_past_it_two():
    assert unread.page_of_chats(chats(1, 2, 3, 4), [], after=None, limit=4) == (chats(1, 2, 3, 4), False)
    # Five chats listing the user: the member query (limit + 1 rows) is cut after the fourth.
    assert unread.page_of_chats(chats(1, 2, 3, 4, 5), [], after=None, limit=4) == (chats(1, 2, 3, 4), True)
    assert unread.page_of_chats(chats(5), [], after="c004", limit=4) == (chats(5), False)


def test_tracked_chats_count_toward_the_page_and_push_the_rest_to_the_next():
    # Three members and two tracked chats (one the user left): five chats, a page of four.
    page, more = unread.page_of_chats(chats(1, 3, 5), chats(2, 4), after=None, limit=4)
    assert (page, more) == (chats(1, 2, 3, 4), True)
    assert unread.page_of_chats(chats(5), chats(2, 4), after="c004", limit=4) == (chats(5), False)


def test_a_tracked_chat_past_a_cut_member_query_waits_for_a_later_page():
    # The member query was cut at c004, so chats between c004 and c009 it has not looked at yet:
    # a tracked c007 must not be recounted before c005 and c006 are, or a page would skip them.
    page, more = unread.page_of_chats(chats(1, 2, 3, 4, 5), chats(7), after=None, limit=4)
    assert (page, more) == (chats(1, 2, 3, 4), True)
    page, more = unread.page_of_chats(chats(5, 6), chats(7), after="c004", limit=4)
    assert (page, more) == (chats(5, 6, 7), False)


def test_pages_cover_every_chat_once_whatever_the_mix():
    members = {f"c{n:03}" for n in range(0, 60, 2)}
    tracked = {f"c{n:03}" for n in range(0, 60, 3)}
    seen: list[str] = []
    after, more = None, True
    while more:
        listed = sorted(c for c in members if after is None or c > after)[:8]
        page, more = unread.page_of_chats(listed, tracked, after=after, limit=7)
        seen += page
        after = page[-1] if page else after
    assert seen == sorted(members | tracked)


# ------------------------------------------------------------ scheduled messages of one minute


def test_a_scheduled_message_falls_in_the_utc_minute_of_its_deliver_at():
    at = T0 + timedelta(seconds=59, milliseconds=999)
    assert send_plan.schedule_minute(clock.to_millis(at)) == T0
    assert send_plan.schedule_minute(clock.to_millis(T0 + timedelta(minutes=1))) == T0 + timedelta(minutes=1)


def test_a_minute_takes_the_rate_limit_s_worth_of_scheduled_messages_and_no_more():
    send_plan.check_schedule_minute(59, 60, T0)
    with pytest.raises(FailedPrecondition) as full:
        send_plan.check_schedule_minute(60, 60, T0)
    assert full.value.details == {"reason": "schedule_minute_full", "limit": 60, "minute": clock.to_millis(T0)}
    assert "60 messages scheduled for 2026-03-01 09:00 UTC" in full.value.message


# ------------------------------------------------------------ scheduled deliveries' turn in a run


def test_scheduled_deliveries_take_turns_within_their_share_while_queues_wait():
    assert processor.scheduled_turn(True, True, 0.0, 50.0, 0.5)
    assert processor.scheduled_turn(True, True, 24.9, 50.0, 0.5)
    assert not processor.scheduled_turn(True, True, 25.0, 50.0, 0.5)  # half the run: the queues' turn only
    assert processor.scheduled_turn(True, False, 49.0, 50.0, 0.5)  # nothing waits in the queues: the rest is theirs
    assert not processor.scheduled_turn(False, False, 0.0, 50.0, 0.5)  # none due


# ------------------------------------------------------------ a fan-out job's recipients, by bytes


def test_recipients_that_fit_the_job_stay_in_it_and_one_more_byte_makes_a_part():
    ids = ["a" * 9] * 4  # 10 bytes each, as Firestore counts a string
    assert fan_out.split_recipients(ids, inline_bytes=40, part_bytes=20) == (ids, [])
    assert fan_out.split_recipients([*ids, "b"], inline_bytes=40, part_bytes=20) == (ids, [["b"]])


def test_ten_thousand_of_the_longest_ids_split_into_documents_far_under_a_mebibyte():
    longest = "\U0001f600" * constants.MAX_ID_LENGTH  # 128 characters of 4 UTF-8 bytes: 513 bytes each
    recipients = [f"{n:05d}" + longest[5:] for n in range(constants.MAX_RECIPIENTS)]
    inline, parts = fan_out.split_recipients(recipients, inline_bytes=constants.FAN_OUT_INLINE_BYTES,
                                             part_bytes=constants.FAN_OUT_PART_BYTES)

    def size(ids):
        return sum(len(uid.encode()) + 1 for uid in ids)

    assert inline + [uid for part in parts for uid in part] == recipients  # all of them, in order
    assert size(inline) <= constants.FAN_OUT_INLINE_BYTES and all(size(p) <= constants.FAN_OUT_PART_BYTES for p in parts)
    assert constants.FAN_OUT_INLINE_BYTES + 20_000 < 2**20 and constants.FAN_OUT_PART_BYTES < 2**20
    assert len(parts) == 10 and size(recipients) > 4_900_000  # one document would be 5 MB
