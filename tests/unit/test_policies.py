"""The seed's numbers, checked as numbers: alert thresholds, percentiles, the rate limit,
the spam rule, back-off and message ids. Pure functions, no emulator.

Each test states the seed's value literally, not through the constant it checks: a
changed threshold fails here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from ulid import ULID

from pack427.accepting import send_plan
from pack427.delivering import queue
from pack427.errors import ResourceExhausted
from pack427.guarding import fraud, rate_limit
from pack427.models import Chat, LastMessage, LatencyPercentiles, Region, RegionMetrics, SendRecord
from pack427.operating import metrics
from pack427.workers import processor

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def figures(**changes) -> RegionMetrics:
    """A healthy region's figures, with `changes`."""
    healthy = dict(
        region=Region.EU, at=T0, window_seconds=300, pending=0, failed=0, delivered=100, dropped=0, depth=0,
        delivered_in_window=100, failed_in_window=0, dropped_in_window=0, delivery_success_rate=1.0,
        failed_delivery_rate=0.0, latency_same_region=LatencyPercentiles(samples=0),
        latency_cross_region=LatencyPercentiles(samples=0), syncs_in_window=0, sync_avg_ms=None,
        sync_max_ms=None, slow_syncs=0,
    )
    return RegionMetrics(**(healthy | changes))


def alert_names(**changes) -> list[str]:
    return [name for _, name, _, _ in metrics.alerts(figures(**changes))]


@pytest.mark.parametrize(("changes", "expected"), [
    ({}, []),
    ({"depth": 10_000}, []),
    ({"depth": 10_001}, ["QUEUE_DEPTH"]),
    ({"delivery_success_rate": 0.99}, []),
    ({"delivery_success_rate": 0.9899}, ["DELIVERY_SUCCESS_RATE"]),
    ({"delivery_success_rate": None}, []),  # nothing settled in the window: no rate, no alert
    ({"failed_delivery_rate": 0.01}, []),
    ({"failed_delivery_rate": 0.0101}, ["FAILED_DELIVERY_RATE"]),
    ({"dropped": 1}, ["DROPPED_MESSAGES"]),
    ({"slow_syncs": 1, "sync_max_ms": 30_001}, ["SYNC_DURATION"]),
])
def test_alerts_fire_just_past_the_seeds_thresholds_and_not_at_them(changes, expected):
    assert alert_names(**changes) == expected


def test_alert_severities_are_the_seeds():
    severities = {name: severity for severity, name, _, _ in metrics.alerts(figures(
        depth=10_001, delivery_success_rate=0.5, failed_delivery_rate=0.5, dropped=1, slow_syncs=1))}
    assert severities == {"QUEUE_DEPTH": "warning", "DELIVERY_SUCCESS_RATE": "error",
                          "FAILED_DELIVERY_RATE": "warning", "DROPPED_MESSAGES": "error", "SYNC_DURATION": "warning"}


def test_slow_syncs_are_those_over_30_seconds():
    assert metrics.SYNC_DURATION_ALERT_MS == 30_000  # the service test places syncs on both sides of it


def test_percentiles_are_nearest_rank():
    p = metrics._percentiles(list(range(1, 101)))
    assert (p.samples, p.p50_ms, p.p95_ms, p.p99_ms) == (100, 50, 95, 99)
    one = metrics._percentiles([7])
    assert (one.p50_ms, one.p95_ms, one.p99_ms) == (7, 7, 7)
    assert metrics._percentiles([]).samples == 0


def window(sends: int, *, limit: int = 60, spacing_s: float = 0.5) -> rate_limit.LoadedWindow:
    recent = [SendRecord(at=T0 + timedelta(seconds=spacing_s * i), chat_id="c", content_hash=f"h{i}")
              for i in range(sends)]
    return rate_limit.LoadedWindow("alice", recent, None, limit)


def test_the_default_limit_is_60_a_minute():
    from pack427 import constants
    assert (constants.MAX_MESSAGES_PER_MINUTE, constants.RATE_WINDOW_SECONDS) == (60, 60)


def test_the_60th_send_of_a_minute_passes_and_the_61st_waits_for_the_oldest_to_leave_the_window():
    now = T0 + timedelta(seconds=30)
    rate_limit.check(window(59), now=now)
    with pytest.raises(ResourceExhausted) as refused:
        rate_limit.check(window(60), now=now)
    # The oldest of the 60 was at T0: it leaves the window at T0 + 60 s, 30 s from now.
    assert refused.value.details["retryAfterMs"] == 30_000
    assert refused.value.details["limit"] == 60


def test_an_operators_lower_limit_applies():
    with pytest.raises(ResourceExhausted):
        rate_limit.check(window(20, limit=20), now=T0 + timedelta(seconds=11))


def test_texts_that_differ_in_case_spacing_or_unicode_form_hash_alike():
    assert rate_limit.content_hash("Buy  NOW cheap", None) == rate_limit.content_hash("buy now cheap", None)
    assert rate_limit.content_hash("caf\u00e9 deals here", None) == rate_limit.content_hash("cafe\u0301 deals here", None)
    assert rate_limit.content_hash("one text", None) != rate_limit.content_hash("another text", None)


def attempt(chat_id: str, text: str, chats_before: list[str]) -> fraud.SendAttempt:
    digest = rate_limit.content_hash(text, None)
    recent = [SendRecord(at=T0, chat_id=c, content_hash=digest) for c in chats_before]
    return fraud.SendAttempt(sender_id="s", chat_id=chat_id, client_message_id=str(ULID()), text=text,
                             content_ref=None, content_hash=digest, recipients=["r"], recent=recent, now=T0)


def test_one_text_may_reach_5_chats_a_minute_and_the_6th_is_refused():
    rule = fraud.SameTextToManyChats()
    text = "visit my page for a prize"
    assert rule.review(attempt("c5", text, ["c1", "c2", "c3", "c4"])) is None
    verdict = rule.review(attempt("c6", text, ["c1", "c2", "c3", "c4", "c5"]))
    assert verdict is not None and verdict.reason == "spam_suspected"
    assert rule.review(attempt("c3", text, ["c1", "c2", "c3", "c4", "c5"])) is None  # a chat it already reached


def test_texts_under_12_characters_are_never_spam():
    assert fraud.SameTextToManyChats().review(attempt("c9", "see you soo", [f"c{i}" for i in range(8)])) is None
    assert fraud.SameTextToManyChats().review(attempt("c9", "see you soon", [f"c{i}" for i in range(8)])) is not None


@pytest.mark.parametrize(("depth", "limit", "workers", "mode"), [
    (0, 200, 1, "normal"),
    (5_000, 200, 1, "normal"),
    (5_001, 1_000, 1, "large"),
    (10_000, 1_000, 1, "large"),
    (10_001, 1_000, 4, "fan-out"),
])
def test_the_processor_scales_up_over_5000_waiting_and_fans_out_over_10000(depth, limit, workers, mode):
    plan = processor.back_pressure(depth)
    assert (plan.limit, len(plan.shards), plan.mode) == (limit, workers, mode)
    assert plan.shards == ([None] if workers == 1 else [0, 1, 2, 3])


def test_back_off_doubles_from_1_second_up_to_1_hour():
    assert [queue.backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert queue.backoff(12).total_seconds() == 2048
    assert queue.backoff(13).total_seconds() == 3600
    assert queue.backoff(40).total_seconds() == 3600


def chat_with_last(message_id: str | None) -> Chat:
    last = None if message_id is None else LastMessage(message_id=message_id, sender_id="a", created_at=T0)
    return Chat(participants=["a", "b"], last_message=last)


def test_a_message_id_is_a_ulid_of_the_send_time_and_always_after_the_chats_last():
    first = send_plan.next_message_id(chat_with_last(None), T0)
    assert ULID.from_str(first).datetime == T0
    # A sender whose clock is behind the last message's still gets a greater id.
    later = str(ULID.from_datetime(T0 + timedelta(seconds=5)))
    behind = send_plan.next_message_id(chat_with_last(later), T0)
    assert behind > later and int(ULID.from_str(behind)) == int(ULID.from_str(later)) + 1
    assert send_plan.next_message_id(chat_with_last(first), T0 + timedelta(seconds=1)) > first


def test_a_chat_cores_last_id_that_is_not_a_ulid_does_not_break_a_send():
    message_id = send_plan.next_message_id(chat_with_last("core-message-0042"), T0)
    assert ULID.from_str(message_id).datetime == T0
