"""A delivery-time heatmap: send-to-inbox latency by day of week and hour of day, per region.

Read from the stored queue statistics (`regions/{region}/queueStats/`, a
snapshot of each region's last 5 minutes every 5 minutes, see metrics), so an
operator sees when delivery slows (`scripts/ops heatmap`). Each cell gathers
the snapshots taken in that hour of that weekday (UTC) over the period: its
p50 is the median of their p50s, its p95 the median of their p95s, each
snapshot's figure over every message that reached an inbox of the region
(`latencyAll`: placed by its send, by a fan-out, or from the queue). A cell
without deliveries is blank.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from google.cloud.firestore import Client
from google.cloud.firestore_v1.base_query import FieldFilter

from .. import paths
from ..models import Region, RegionMetrics

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
STATS = ("p50", "p95")

Grid = list[list[float | None]]
"""7 rows (Monday first) of 24 hours (UTC); milliseconds, None where nothing was delivered."""


def snapshot_latency(snapshot: RegionMetrics) -> dict[str, float] | None:
    """The snapshot's p50 and p95 over every message that reached an inbox (`latency_all`;
    for snapshots stored before it existed, the queue's same- and cross-region figures
    weighted by their samples), or None if it measured none."""
    every = snapshot.latency_all
    if every.samples:
        return {"p50": float(every.p50_ms or 0), "p95": float(every.p95_ms or 0)}
    parts = [p for p in (snapshot.latency_same_region, snapshot.latency_cross_region) if p.samples]
    samples = sum(p.samples for p in parts)
    if not samples:
        return None
    return {"p50": sum((p.p50_ms or 0) * p.samples for p in parts) / samples,
            "p95": sum((p.p95_ms or 0) * p.samples for p in parts) / samples}


def grids(snapshots: Iterable[RegionMetrics]) -> dict[Region, dict[str, Grid]]:
    """Per region and statistic (p50, p95), the 7 x 24 grid of the medians of its snapshots' figures."""
    cells: dict[tuple[Region, str, int, int], list[float]] = defaultdict(list)
    for snapshot in snapshots:
        latency = snapshot_latency(snapshot)
        if latency is None:
            continue
        day, hour = snapshot.at.weekday(), snapshot.at.hour
        for stat in STATS:
            cells[(snapshot.region, stat, day, hour)].append(latency[stat])
    return {
        region: {stat: [[statistics.median(cells[(region, stat, d, h)]) if cells[(region, stat, d, h)] else None
                         for h in range(24)] for d in range(7)] for stat in STATS}
        for region in Region
    }


def load(db: Client, since: datetime) -> list[RegionMetrics]:
    """Every region's stored snapshots taken at or after `since` (one query per region)."""
    found = []
    for region in Region:
        query = paths.queue_stats(db, region).where(filter=FieldFilter("at", ">=", since))
        found += [RegionMetrics.model_validate(s.to_dict()) for s in query.stream()]
    return found


def render(by_region: dict[Region, dict[str, Grid]], path: Path, *, title: str) -> Path:
    """Write the heatmaps as one PNG: a row per region, p50 and p95 side by side, one colour scale."""
    import matplotlib  # an operator's tool: kept out of the functions' cold start

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = [v for grids_ in by_region.values() for grid in grids_.values() for row in grid for v in row
              if v is not None]
    top = max(values, default=1.0)
    fig, axes = plt.subplots(len(by_region), len(STATS), figsize=(14, 2.6 * len(by_region)), squeeze=False)
    for row, (region, grids_) in enumerate(by_region.items()):
        for col, stat in enumerate(STATS):
            ax = axes[row][col]
            data = [[float("nan") if v is None else v for v in line] for line in grids_[stat]]
            image = ax.imshow(data, aspect="auto", cmap="magma_r", vmin=0, vmax=top)
            ax.set_title(f"{region.value}: {stat} send-to-inbox latency (ms)")
            ax.set_yticks(range(7), DAYS)
            ax.set_xticks(range(0, 24, 3), [f"{h:02d}h" for h in range(0, 24, 3)])
            for d, line in enumerate(grids_[stat]):
                for h, v in enumerate(line):
                    if v is not None:
                        ax.text(h, d, f"{v:.0f}", ha="center", va="center", fontsize=7,
                                color="white" if v > top / 2 else "black")
            fig.colorbar(image, ax=ax, fraction=0.025)
    fig.suptitle(title)
    fig.supxlabel("hour of day (UTC)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
