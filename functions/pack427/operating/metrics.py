"""Queue metrics: the seed's figures per region, stored, logged and checked against its alerts.

Each export computes, for every region, over the last METRICS_WINDOW_SECONDS:
queue depth and counts by status, delivery success rate, failed delivery
rate, dropped messages, send-to-inbox latency p50/p95/p99 (same-region and
cross-region) and sync duration. It stores the snapshot under
`regions/{region}/queueStats/`, writes one structured log line per region
(`metric: "queue_stats"`, every figure a field, for log-based metrics), and
one line per alert (`alert: NAME`, warning or error) for each seed threshold
crossed.

Deliveries are counted from the inbox entries the window created (a
collection-group query on `region` and `deliveredAt`), those the send placed
itself among them: they never were in a queue and their latency is 0 (placed
in the commit that accepted the message). The latency percentiles are those
of the queue's deliveries, from the queue entries. Failed and dropped
attempts come from the histories of the queue entries that failed in the window.

Cost per region: 8 count/avg aggregations (one read each per 1,000 entries
counted) and at most LATENCY_SAMPLE + FAILURE_SAMPLE + SYNC_SAMPLE document
reads, whatever the size of the queue. Nothing is scanned in full.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from firebase_functions import logger
from google.cloud.firestore import Client
from google.cloud.firestore_v1.base_query import FieldFilter

from .. import clock, paths
from ..delivering import backlog
from ..models import LatencyPercentiles, QueueStatus, Region, RegionMetrics

METRICS_WINDOW_SECONDS = 300
"""The window rates, latencies and sync durations cover: the export's period."""

LATENCY_SAMPLE = 1_000
"""Deliveries of the window whose latency is measured (the window's first ones):
percentiles need the values, which no aggregation gives, so they come from a
bounded sample; below this many deliveries per window they are exact."""

FAILURE_SAMPLE = 1_000
"""Queue entries with a failure in the window whose histories are read to count
failed and dropped attempts (exact below this many entries)."""

SYNC_SAMPLE = 1_000
"""Syncs of the window read for the slowest duration (count and mean are exact)."""

# Seed alert thresholds.
QUEUE_DEPTH_ALERT = 10_000
"""Entries waiting in one region above which QUEUE_DEPTH is logged (warning)."""
SUCCESS_RATE_ALERT = 0.99
"""Delivery success rate under which DELIVERY_SUCCESS_RATE is logged (error)."""
FAILED_RATE_ALERT = 0.01
"""Failed delivery rate over which FAILED_DELIVERY_RATE is logged (warning)."""
SYNC_DURATION_ALERT_MS = 30_000
"""A sync slower than this in the window logs SYNC_DURATION (warning)."""


def export_queue_stats(
    db: Client, *, now: datetime | None = None, window_seconds: int = METRICS_WINDOW_SECONDS
) -> list[RegionMetrics]:
    """Compute, store and log every region's figures, and log the alerts they raise.

    Args:
        now: the end of the window and the snapshot's time (default: the clock).
        window_seconds: the window's length (default METRICS_WINDOW_SECONDS).

    Returns:
        The figures of each region, in Region order.
    """
    now = now or clock.now()
    snapshots = []
    for region in Region:
        figures = region_metrics(db, region, now=now, window_seconds=window_seconds)
        paths.queue_stats(db, region).document(now.strftime("%Y%m%dT%H%M%S")).set(figures.to_firestore())
        logger.info(f"queue stats {region.value}", metric="queue_stats", **figures.model_dump(mode="json"))
        for severity, name, message, fields in alerts(figures):
            log = logger.error if severity == "error" else logger.warn
            log(message, alert=name, region=region.value, **fields)
        snapshots.append(figures)
    return snapshots


def region_metrics(
    db: Client, region: Region, *, now: datetime | None = None, window_seconds: int = METRICS_WINDOW_SECONDS
) -> RegionMetrics:
    """One region's figures at `now` over the preceding `window_seconds` (read only).

    Args:
        now: the end of the window (default: the clock).
        window_seconds: the window's length (default METRICS_WINDOW_SECONDS).
    """
    now = now or clock.now()
    start = now - timedelta(seconds=window_seconds)
    counts = backlog.stats(db, region, now=now)
    delivered, placed_by_send = _deliveries(db, region, start, now)
    failed, dropped, lost = _failures(db, region, start, now)
    same, cross = _latencies(db, region, start, now)
    every_path = _inbox_latencies(db, region, start, now)
    syncs, sync_avg, sync_max, slow = _syncs(db, region, start, now)
    return RegionMetrics(
        region=region,
        at=now,
        window_seconds=window_seconds,
        pending=counts.pending,
        failed=counts.failed,
        delivered=counts.delivered,
        dropped=counts.dropped,
        depth=counts.depth,
        delivered_in_window=delivered,
        placed_by_send_in_window=placed_by_send,
        failed_in_window=failed,
        dropped_in_window=dropped,
        lost_in_window=lost,
        delivery_success_rate=_ratio(delivered, delivered + lost),
        failed_delivery_rate=_ratio(failed + dropped, delivered + failed + dropped),
        latency_same_region=_percentiles(same),
        latency_cross_region=_percentiles(cross),
        latency_all=_percentiles(every_path),
        syncs_in_window=syncs,
        sync_avg_ms=sync_avg,
        sync_max_ms=sync_max,
        slow_syncs=slow,
    )


def alerts(figures: RegionMetrics) -> list[tuple[str, str, str, dict]]:
    """The seed thresholds `figures` crosses: (severity, alert name, message, log fields)."""
    region = figures.region.value
    found: list[tuple[str, str, str, dict[str, Any]]] = []
    if figures.depth > QUEUE_DEPTH_ALERT:
        found.append(("warning", "QUEUE_DEPTH", f"queue depth {figures.depth} in {region} is over {QUEUE_DEPTH_ALERT}",
                      {"depth": figures.depth, "threshold": QUEUE_DEPTH_ALERT}))
    rate = figures.delivery_success_rate
    if rate is not None and rate < SUCCESS_RATE_ALERT:
        found.append(("error", "DELIVERY_SUCCESS_RATE",
                      f"delivery success rate {rate:.2%} in {region} is under {SUCCESS_RATE_ALERT:.0%}",
                      {"rate": rate, "threshold": SUCCESS_RATE_ALERT, "delivered": figures.delivered_in_window,
                       "dropped": figures.dropped_in_window}))
    rate = figures.failed_delivery_rate
    if rate is not None and rate > FAILED_RATE_ALERT:
        found.append(("warning", "FAILED_DELIVERY_RATE",
                      f"failed delivery rate {rate:.2%} in {region} is over {FAILED_RATE_ALERT:.0%}",
                      {"rate": rate, "threshold": FAILED_RATE_ALERT, "failed": figures.failed_in_window,
                       "dropped": figures.dropped_in_window, "delivered": figures.delivered_in_window}))
    if figures.dropped:
        found.append(("error", "DROPPED_MESSAGES", f"{figures.dropped} dropped messages in {region}",
                      {"dropped": figures.dropped, "droppedInWindow": figures.dropped_in_window}))
    if figures.slow_syncs:
        found.append(("warning", "SYNC_DURATION",
                      f"{figures.slow_syncs} syncs in {region} took over {SYNC_DURATION_ALERT_MS // 1000} s "
                      f"(slowest {figures.sync_max_ms} ms)",
                      {"slowSyncs": figures.slow_syncs, "maxMs": figures.sync_max_ms,
                       "threshold": SYNC_DURATION_ALERT_MS}))
    return found


# ------------------------------------------------------------------ details


def _failures(db: Client, region: Region, start: datetime, end: datetime) -> tuple[int, int, int]:
    """Attempts of `region`'s entries in [start, end) that failed, that dropped, and that dropped
    a message which never reached the inbox (a dead letter of a push alone is not a lost message)."""
    query = (
        paths.queue(db, region)
        .where(filter=FieldFilter("lastFailedAt", ">=", start))
        .where(filter=FieldFilter("lastFailedAt", "<", end))
        .limit(FAILURE_SAMPLE)
        .select(["history", "inboxSeq"])
    )
    failed = dropped = lost = 0
    for snapshot in query.stream():
        data = snapshot.to_dict() or {}
        for event in data.get("history") or []:
            if start <= event.get("at") < end:
                failed += event.get("action") == QueueStatus.FAILED.value
                if event.get("action") == QueueStatus.DROPPED.value:
                    dropped += 1
                    lost += data.get("inboxSeq") is None
    return failed, dropped, lost


def _deliveries(db: Client, region: Region, start: datetime, end: datetime) -> tuple[int, int]:
    """Messages that reached an inbox of `region` in [start, end): in all, and placed by their send."""
    in_window = (
        db.collection_group("inbox")
        .where(filter=FieldFilter("region", "==", region.value))
        .where(filter=FieldFilter("deliveredAt", ">=", start))
        .where(filter=FieldFilter("deliveredAt", "<", end))
    )
    by_send = in_window.where(filter=FieldFilter("via", "==", "send"))
    return int(in_window.count().get()[0][0].value), int(by_send.count().get()[0][0].value)


def _inbox_latencies(db: Client, region: Region, start: datetime, end: datetime) -> list[int]:
    """Send-to-inbox latencies in ms of (at most LATENCY_SAMPLE) messages that reached an inbox of
    `region` in [start, end), whatever their path: the send's own commit (0), a fan-out, the queue."""
    query = (
        db.collection_group("inbox")
        .where(filter=FieldFilter("region", "==", region.value))
        .where(filter=FieldFilter("deliveredAt", ">=", start))
        .where(filter=FieldFilter("deliveredAt", "<", end))
        .order_by("deliveredAt")
        .limit(LATENCY_SAMPLE)
        .select(["createdAt", "deliveredAt"])
    )
    latencies = []
    for snapshot in query.stream():
        data = snapshot.to_dict() or {}
        latencies.append(max(round((data["deliveredAt"] - data["createdAt"]).total_seconds() * 1000), 0))
    return latencies


def _latencies(db: Client, region: Region, start: datetime, end: datetime) -> tuple[list[int], list[int]]:
    """Latencies in ms of (at most LATENCY_SAMPLE) entries of `region` delivered from the queue in
    [start, end): from senders of the same region, of another. An entry that only carried the push
    of a message its send placed has no queue latency of its own and is left out."""
    query = (
        paths.queue(db, region)
        .where(filter=FieldFilter("status", "==", QueueStatus.DELIVERED.value))
        .where(filter=FieldFilter("deliveredAt", ">=", start))
        .where(filter=FieldFilter("deliveredAt", "<", end))
        .order_by("deliveredAt")
        .limit(LATENCY_SAMPLE)
        .select(["region", "createdAt", "deliveredAt", "placedBySend"])
    )
    same: list[int] = []
    cross: list[int] = []
    for snapshot in query.stream():
        data = snapshot.to_dict() or {}
        if data.get("placedBySend"):
            continue
        ms = round((data["deliveredAt"] - data["createdAt"]).total_seconds() * 1000)
        (same if data.get("region") == region.value else cross).append(max(ms, 0))
    return same, cross


def _syncs(db: Client, region: Region, start: datetime, end: datetime) -> tuple[int, float | None, int | None, int]:
    """Devices of `region` last synced in [start, end): count, mean and max duration, slow ones.

    Count and mean come from one aggregation; max and the slow ones from a
    sample of at most SYNC_SAMPLE states (exact below that many).
    """
    in_window = (
        paths.device_sync_states(db, region)
        .where(filter=FieldFilter("lastSyncAt", ">=", start))
        .where(filter=FieldFilter("lastSyncAt", "<", end))
    )
    result = {r.alias: r.value for r in in_window.count(alias="n").avg("lastSyncDurationMs", alias="avg").get()[0]}
    count, average = result["n"], result["avg"]
    if not count:
        return 0, None, None, 0
    durations = [
        s.get("lastSyncDurationMs") or 0
        for s in in_window.limit(SYNC_SAMPLE).select(["lastSyncDurationMs"]).stream()
    ]
    slow = sum(1 for ms in durations if ms > SYNC_DURATION_ALERT_MS)
    return count, average, max(durations, default=None), slow


def _percentiles(values: list[int]) -> LatencyPercentiles:
    """Nearest-rank percentiles of `values`."""
    if not values:
        return LatencyPercentiles(samples=0)
    ordered = sorted(values)

    def rank(p: float) -> int:
        return ordered[max(math.ceil(p * len(ordered)) - 1, 0)]

    return LatencyPercentiles(samples=len(ordered), p50_ms=rank(0.50), p95_ms=rank(0.95), p99_ms=rank(0.99))


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None
