"""Queue metrics: per-region figures, stored and logged every few minutes.

Each export stores a snapshot under `regions/{region}/queueStats/` and writes
one structured log line per region (`metric: "queue_stats"`) from which Cloud
Logging can build log-based metrics. Thresholds from the seed raise alerts.
"""

from __future__ import annotations

from datetime import datetime

from firebase_functions import logger
from google.cloud.firestore import Client

from . import clock, paths, queue
from .models import Region, RegionQueueStats

QUEUE_DEPTH_ALERT = 10_000
"""Entries waiting in one region above which an alert is logged (seed)."""


def export_queue_stats(db: Client, *, now: datetime | None = None) -> list[RegionQueueStats]:
    """Compute, store and log the queue figures of every region."""
    now = now or clock.now()
    snapshots = []
    for region in Region:
        stats = queue.stats(db, region, now=now)
        paths.queue_stats(db, region).document(now.strftime("%Y%m%dT%H%M%S")).set(stats.to_firestore())
        logger.info(f"queue stats {region.value}", metric="queue_stats", depth=stats.depth, **stats.model_dump(mode="json"))
        if stats.depth > QUEUE_DEPTH_ALERT:
            logger.warn(
                f"queue depth {stats.depth} in {region.value} is over {QUEUE_DEPTH_ALERT}",
                alert="QUEUE_DEPTH", region=region.value, depth=stats.depth,
            )
        if stats.dropped:
            logger.error(
                f"{stats.dropped} dropped messages in {region.value}",
                alert="DROPPED_MESSAGES", region=region.value, dropped=stats.dropped,
            )
        snapshots.append(stats)
    return snapshots
