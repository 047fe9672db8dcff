"""What operators read and set: queue figures, the engine's settings, the reports of repairs.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import (
    ConfigDict,
    Field,
)

from .. import constants
from .api import CounterChange, Response
from .base import Document, Region


class LatencyPercentiles(Document):
    """Send-to-inbox latency (createdAt to deliveredAt) of a sample of deliveries, in ms.

    Attributes:
        samples: deliveries measured (None percentiles when there were none).
    """

    samples: int
    p50_ms: int | None = None
    p95_ms: int | None = None
    p99_ms: int | None = None


class RegionMetrics(Document):
    """`regions/{region}/queueStats/{yyyymmddTHHMMSS}`: one region's figures at `at`.

    Counts (`pending` ... `depth`) are the whole queue at `at`; the rest cover
    the window [`at` - `window_seconds`, `at`).

    Attributes:
        depth: entries waiting for delivery (PENDING + FAILED).
        delivered_in_window: messages that reached an inbox of the region
            (by the send itself or from the queue).
        placed_by_send_in_window: of those, placed by the send's own commit
            (no queue, no latency).
        failed_in_window, dropped_in_window: delivery attempts that ended so,
            from the queue entries' histories (a FAILED attempt is retried
            later; a DROPPED one was the last).
        lost_in_window: of the dropped, those whose message never reached the
            inbox (the others only lost their push notification).
        delivery_success_rate: of the messages whose fate was settled in the
            window, the share that reached the inbox: delivered / (delivered
            + lost); None when none was settled.
        failed_delivery_rate: of the attempts in the window, the share that
            failed: (failed + dropped) / (delivered + failed + dropped).
        latency_all: every message that reached an inbox of the region in the
            window, whatever its path (placed by its send: 0 ms; fan-out; queue),
            from its acceptance to its inbox; what the delivery heatmap shows.
        latency_same_region, latency_cross_region: entries delivered from the
            queue in the window whose sender is in this region, or in another.
        syncs_in_window: devices of this region whose last sync was in the window.
        sync_avg_ms, sync_max_ms: their sync durations; slow_syncs: how many
            took longer than the alert threshold.
    """

    region: Region
    at: datetime
    window_seconds: int
    pending: int
    failed: int
    delivered: int
    dropped: int
    depth: int
    delivered_in_window: int
    placed_by_send_in_window: int = 0
    failed_in_window: int
    dropped_in_window: int
    lost_in_window: int = 0
    delivery_success_rate: float | None
    failed_delivery_rate: float | None
    latency_same_region: LatencyPercentiles
    latency_cross_region: LatencyPercentiles
    latency_all: LatencyPercentiles = Field(default_factory=lambda: LatencyPercentiles(samples=0))
    syncs_in_window: int
    sync_avg_ms: float | None
    sync_max_ms: int | None
    slow_syncs: int


class EngineMode(StrEnum):
    QUEUE = "queue"
    """Normal operation: the trigger and the processor deliver from the queues."""
    DIRECT = "direct"
    """Rollback: the trigger stands still and pack427_sendMessage delivers what it queues in the
    request; the processor still drains what was queued before, and retries."""


class EngineSettings(Document):
    """`config/engine`: runtime settings the functions read without a redeploy.

    Attributes:
        mode: queue (default, also when the document is missing) or direct.
        max_messages_per_minute: sends allowed per user in any 60 seconds
            (default MAX_MESSAGES_PER_MINUTE; raised for bots and load tests).
        updated_by: who last changed it (`ops:{user}`).
        reason: why, as the operator said.
    """

    model_config = ConfigDict(extra="ignore")

    mode: EngineMode = EngineMode.QUEUE
    max_messages_per_minute: Annotated[int, Field(ge=1, le=constants.MAX_RATE_LIMIT)] = (
        constants.MAX_MESSAGES_PER_MINUTE)
    updated_at: datetime | None = None
    updated_by: str | None = None
    reason: str | None = None


class RequeueReport(Response):
    """What `ops requeue-dropped` did: entry ids back to PENDING, and dropped
    entries whose message was in the inbox already (a push that kept failing),
    now marked DELIVERED."""

    requeued: list[str]
    markedDelivered: list[str]


class ChatRepairReport(Response):
    """What `ops resync USER CHAT` did for the chat's messages missing from the user's inbox.

    Attributes:
        checked: messages of the chat sent by others.
        missing: of those, not in the inbox before the repair.
        requeued: dropped entries put back on the queue.
        retried: waiting entries made due at once.
        stillMissing: message ids not in the inbox after the repair (a failed
            attempt, retried by the processor; or never queued for the user:
            see `unqueued`).
        unqueued: message ids with no queue entry for the user (sent before
            they joined, or their entry was cleaned up): reported, not invented.
    """

    checked: int
    missing: int
    requeued: list[str]
    retried: list[str]
    stillMissing: list[str]
    unqueued: list[str]


class InboxRepairReport(Response):
    """What `ops repair-inbox USER` did.

    Attributes:
        recounted: the unread counts the rebuilt head changed.
        requeued: the user's dead letters put back on the queue.
        retried: the user's failed entries made due at once.
        delivered: entries delivered by the repair itself (the processor takes any left).
    """

    recounted: list[CounterChange]
    requeued: list[str]
    retried: list[str]
    delivered: int
