"""Queue figures: stored per region and logged, with the seed's alerts."""

from __future__ import annotations

import json
from datetime import timedelta

from support.entries import T0, enqueue, load, make_entry

from pack427 import inbox, paths
from pack427.delivering import delivery
from pack427.delivering.notifier import EmulatorNotifier
from pack427.models import DeviceSyncState, Region
from pack427.operating import metrics


def test_export_stores_a_snapshot_per_region_and_alerts_over_thresholds(db, capfd):
    delivered, waiting, doomed = make_entry("a"), make_entry("b"), make_entry("c", tokens=["fail-always"])
    enqueue(db, delivered, waiting, doomed)
    delivery.deliver(db, load(db, delivered), EmulatorNotifier(), actor="test")
    for _ in range(5):
        delivery.deliver(db, load(db, doomed), EmulatorNotifier(), actor="test")
    capfd.readouterr()

    snapshots = metrics.export_queue_stats(db, now=T0)

    us = next(s for s in snapshots if s.region is Region.US)
    assert (us.pending, us.delivered, us.dropped, us.depth) == (1, 1, 1, 1)
    [stored] = [s.to_dict() for s in paths.queue_stats(db, Region.US).stream()]
    assert (stored["pending"], stored["delivered"], stored["dropped"]) == (1, 1, 1)
    assert len(list(paths.queue_stats(db, Region.EU).stream())) == 1
    captured = capfd.readouterr()
    stats_lines = [json.loads(line) for line in captured.out.splitlines() if '"queue_stats"' in line]
    lines = captured.out.splitlines() + captured.err.splitlines()
    alerts = [json.loads(line) for line in lines if '"alert"' in line]
    assert {(line["region"], line["depth"]) for line in stats_lines} == {("EU", 0), ("US", 1), ("APAC", 0)}
    # A depth of 1 is far under the seed's 10,000 (tests/unit/test_policies.py holds each threshold).
    assert sorted((a["alert"], a["region"], a["severity"]) for a in alerts) == [("DROPPED_MESSAGES", "US", "ERROR")]


NOW = T0 + timedelta(minutes=5)
"""The export's time: its window is [T0, NOW)."""


def _alerts(output: str) -> dict[str, dict]:
    return {a["alert"]: a for a in map(json.loads, output.splitlines()) if a.get("alert")}


def test_injected_failures_drops_and_slow_syncs_show_in_the_figures_and_alerts(db, capsys, monkeypatch):
    notifier = EmulatorNotifier()
    # 10 same-region deliveries of 100 ms ... 1,000 ms and 5 cross-region ones of 1 s ... 5 s, in the window.
    same = [make_entry("bob", chat=f"s{i}", created=T0 + timedelta(seconds=10 + i)).model_copy(
        update={"region": Region.US}) for i in range(10)]
    cross = [make_entry("bob", chat=f"x{i}", created=T0 + timedelta(seconds=30 + i)) for i in range(5)]
    before = make_entry("carol", created=T0 - timedelta(seconds=20))  # delivered before the window
    doomed = make_entry("dave", chat="d", created=T0 + timedelta(seconds=1))  # its inbox is unreachable
    waiting = make_entry("erin", chat="w", created=T0 + timedelta(seconds=2))
    enqueue(db, *same, *cross, before, doomed, waiting)
    for i, entry in enumerate(same):
        delivery.deliver(db, load(db, entry), notifier, actor="test",
                         now=entry.created_at + timedelta(milliseconds=100 * (i + 1)))
    for i, entry in enumerate(cross):
        delivery.deliver(db, load(db, entry), notifier, actor="test",
                         now=entry.created_at + timedelta(seconds=i + 1))
    delivery.deliver(db, load(db, before), notifier, actor="test", now=T0 - timedelta(seconds=1))
    place = inbox.place

    def unreachable_for_dave(db_, uid, *args, **kwargs):
        if uid == "dave":
            raise ConnectionError("dave's inbox is unreachable")
        return place(db_, uid, *args, **kwargs)

    monkeypatch.setattr(inbox, "place", unreachable_for_dave)
    for attempt in range(5):  # 4 FAILED attempts, then DROPPED: the message never reached the inbox
        delivery.deliver(db, load(db, doomed), notifier, actor="test", now=T0 + timedelta(seconds=60 * attempt + 5))
    # The seed's 30 s: a sync of exactly 30,000 ms is not slow, one of 30,001 ms is.
    for device, at, ms in [("at-limit", T0 + timedelta(seconds=50), 30_000),
                           ("slow", T0 + timedelta(seconds=70), 30_001),
                           ("old", T0 - timedelta(seconds=1), 60_000)]:
        paths.device_sync_state(db, Region.US, "bob", device).set(DeviceSyncState(
            user_id="bob", device_id=device, last_region=Region.US, last_sync_at=at,
            last_sync_duration_ms=ms, registered_at=T0, updated_at=at).to_firestore())
    capsys.readouterr()

    snapshots = metrics.export_queue_stats(db, now=NOW)

    us = next(s for s in snapshots if s.region is Region.US)
    assert (us.pending, us.failed, us.delivered, us.dropped, us.depth) == (1, 0, 16, 1, 1)
    assert (us.delivered_in_window, us.failed_in_window, us.dropped_in_window, us.lost_in_window) == (15, 4, 1, 1)
    assert us.delivery_success_rate == 15 / 16
    assert us.failed_delivery_rate == 5 / 20
    assert us.latency_same_region.model_dump() == {"samples": 10, "p50Ms": 500, "p95Ms": 1000, "p99Ms": 1000}
    assert us.latency_cross_region.model_dump() == {"samples": 5, "p50Ms": 3000, "p95Ms": 5000, "p99Ms": 5000}
    assert (us.syncs_in_window, us.sync_avg_ms, us.sync_max_ms, us.slow_syncs) == (2, 30_000.5, 30_001, 1)
    [stored] = [s.to_dict() for s in paths.queue_stats(db, Region.US).stream()]
    assert stored["deliverySuccessRate"] == 15 / 16 and stored["latencySameRegion"]["p95Ms"] == 1000

    captured = capsys.readouterr()
    out = captured.out
    [line] = [json.loads(x) for x in out.splitlines() if '"queue_stats"' in x and '"US"' in x]
    assert (line["depth"], line["failedInWindow"], line["droppedInWindow"]) == (1, 4, 1)
    assert line["latencyCrossRegion"]["p99Ms"] == 5000
    alerts = _alerts(out + captured.err)  # errors go to stderr
    assert {name: a["severity"] for name, a in alerts.items()} == {
        "DELIVERY_SUCCESS_RATE": "ERROR", "FAILED_DELIVERY_RATE": "WARNING",
        "DROPPED_MESSAGES": "ERROR", "SYNC_DURATION": "WARNING",
    }
    assert all(a["region"] == "US" for a in alerts.values())
    assert alerts["DELIVERY_SUCCESS_RATE"]["rate"] == 0.9375
    assert (alerts["FAILED_DELIVERY_RATE"]["failed"], alerts["FAILED_DELIVERY_RATE"]["dropped"]) == (4, 1)
    assert alerts["DROPPED_MESSAGES"]["dropped"] == 1
    assert alerts["SYNC_DURATION"]["maxMs"] == 30_001


def test_a_healthy_window_raises_no_alert_and_an_empty_one_has_no_rates(db, capsys):
    entries = [make_entry(f"u{i}", chat=f"c{i}", created=T0 + timedelta(seconds=i)) for i in range(20)]
    enqueue(db, *entries)
    for entry in entries:
        delivery.deliver(db, load(db, entry), EmulatorNotifier(), actor="test", now=entry.created_at)
    capsys.readouterr()

    eu, us, apac = metrics.export_queue_stats(db, now=NOW)

    assert (us.delivery_success_rate, us.failed_delivery_rate, us.latency_cross_region.p99_ms) == (1.0, 0.0, 0)
    assert (eu.delivery_success_rate, eu.failed_delivery_rate, eu.latency_same_region.samples) == (None, None, 0)
    captured = capsys.readouterr()
    assert _alerts(captured.out + captured.err) == {}


def test_a_dead_letter_of_a_push_is_dropped_but_its_message_was_delivered(db, capsys):
    pushed = make_entry("carol", created=T0 + timedelta(seconds=1), tokens=["fail-always"])
    enqueue(db, pushed)
    for attempt in range(5):  # placed in the inbox on the first attempt; the push fails each time
        delivery.deliver(db, load(db, pushed), EmulatorNotifier(), actor="test", now=T0 + timedelta(seconds=10 * attempt + 2))
    capsys.readouterr()

    us = metrics.region_metrics(db, Region.US, now=NOW)

    assert (us.delivered_in_window, us.failed_in_window, us.dropped_in_window, us.lost_in_window) == (1, 4, 1, 0)
    assert us.delivery_success_rate == 1.0 and us.failed_delivery_rate == 5 / 6
    assert {name for _, name, _, _ in metrics.alerts(us)} == {"FAILED_DELIVERY_RATE", "DROPPED_MESSAGES"}


def test_messages_the_send_placed_count_as_delivered_and_placed_by_send(db):
    from support.chatcore import make_chat, make_user
    from ulid import ULID

    from pack427.accepting import sending
    from pack427.models import SendMessageRequest

    make_user(db, "alice", region="EU")
    make_user(db, "bob", region="US")
    make_user(db, "carol", region="EU")
    make_chat(db, "c1", ["alice", "bob", "carol"])
    sending.send_message(db, "alice", SendMessageRequest(chatId="c1", clientMessageId=str(ULID()), text="hi"),
                         now=T0 + timedelta(seconds=5))

    eu, us = (metrics.region_metrics(db, region, now=NOW) for region in (Region.EU, Region.US))

    assert (eu.delivered_in_window, eu.placed_by_send_in_window, us.delivered_in_window, us.placed_by_send_in_window) == (
        1, 1, 1, 1)
    assert eu.delivery_success_rate == us.delivery_success_rate == 1.0
    assert eu.latency_same_region.samples == us.latency_cross_region.samples == 0  # no queue, no latency
