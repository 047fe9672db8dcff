"""The heatmap's grid: which snapshot lands in which cell, and what a cell holds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pack427.models import LatencyPercentiles, Region, RegionMetrics
from pack427.operating import heatmap

MONDAY_9 = datetime(2026, 11, 23, 9, 2, tzinfo=UTC)


def snapshot(at: datetime, region: Region, same: tuple[int, int, int], cross: tuple[int, int, int] = (0, 0, 0)):
    """A stored snapshot with (samples, p50, p95) of same- and cross-region deliveries."""
    def p(samples, p50, p95):
        return LatencyPercentiles(samples=samples, p50_ms=p50 if samples else None, p95_ms=p95 if samples else None)
    return RegionMetrics(
        region=region, at=at, window_seconds=300, pending=0, failed=0, delivered=0, dropped=0, depth=0,
        delivered_in_window=0, failed_in_window=0, dropped_in_window=0, delivery_success_rate=None,
        failed_delivery_rate=None, latency_same_region=p(*same), latency_cross_region=p(*cross),
        syncs_in_window=0, sync_avg_ms=None, sync_max_ms=None, slow_syncs=0)


def test_each_cell_is_the_median_of_its_hours_snapshots_by_weekday_and_hour_utc():
    grids = heatmap.grids([
        snapshot(MONDAY_9, Region.EU, (10, 40, 100)),
        snapshot(MONDAY_9 + timedelta(minutes=5), Region.EU, (10, 60, 300)),
        snapshot(MONDAY_9 + timedelta(minutes=10), Region.EU, (10, 50, 200)),
        snapshot(MONDAY_9 + timedelta(days=2, hours=14), Region.US, (30, 20, 90), (10, 100, 500)),
    ])
    assert grids[Region.EU]["p50"][0][9] == 50 and grids[Region.EU]["p95"][0][9] == 200
    # Same- and cross-region together, weighted by their samples: (30 x 20 + 10 x 100) / 40.
    assert grids[Region.US]["p50"][2][23] == 40 and grids[Region.US]["p95"][2][23] == (30 * 90 + 10 * 500) / 40
    assert grids[Region.EU]["p50"][1][9] is None and grids[Region.APAC]["p95"] == [[None] * 24] * 7


def test_a_snapshot_without_deliveries_leaves_its_cell_blank():
    grids = heatmap.grids([snapshot(MONDAY_9, Region.EU, (0, 0, 0))])
    assert grids[Region.EU]["p50"][0][9] is None
