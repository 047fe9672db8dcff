"""Reading the queues: what is due, what still awaits its inbox, how deep a region is.

The queries every worker and the send ask (their indexes are in
firestore.indexes.json, checked by tests/service/test_indexes.py); a queue
entry's life itself (creation, changes, cleanup) is queue's.
"""

from __future__ import annotations

from datetime import datetime

from google.cloud.firestore import Client
from google.cloud.firestore_v1.base_query import FieldFilter

from .. import clock, constants, paths
from ..models import DUE_STATUSES, QueueStatus, Region, RegionQueueStats
from . import queue
from .queue import LoadedEntry


def due_entries(
    db: Client, region: Region, *, now: datetime, limit: int = constants.BATCH_SIZE, shard: int | None = None,
    priority_only: bool = False,
) -> list[LoadedEntry]:
    """Entries of `region` that may be attempted at `now`, longest waiting first.

    Args:
        limit: at most this many (default BATCH_SIZE).
        shard: only this slice of the queue (QueuedMessage.shard); default: all.
        priority_only: only the priority lane (QueuedMessage.priority); default: every entry,
            priority ones included, so that the normal lane's batch is never starved.
    """
    query = paths.queue(db, region).where(filter=FieldFilter("status", "in", [s.value for s in DUE_STATUSES]))
    if shard is not None:
        query = query.where(filter=FieldFilter("shard", "==", shard))
    if priority_only:
        query = query.where(filter=FieldFilter("priority", "==", True))
    query = query.where(filter=FieldFilter("nextAttemptAt", "<=", now)).order_by("nextAttemptAt").limit(limit)
    return queue.usable(db, query.stream(), actor="processor")


def depth(db: Client, region: Region) -> int:
    """Entries of `region` waiting for delivery (PENDING or FAILED): one count aggregation."""
    query = paths.queue(db, region).where(filter=FieldFilter("status", "in", [s.value for s in DUE_STATUSES]))
    return int(query.count().get()[0][0].value)  # the emulator answers 0.0 for an empty `in` count


def awaiting_inbox(
    db: Client, chat_id: str, recipient_id: str, *, up_to: str | None = None, limit: int = constants.BATCH_SIZE
) -> list[LoadedEntry]:
    """Entries of one (chat, recipient) whose message is not in the inbox yet, oldest message first.

    Args:
        up_to: only messages with this id or an older one (default: all).
        limit: at most this many.

    A collection-group query: a recipient who moved region has entries in two queues.
    """
    query = (
        db.collection_group("messageQueue")
        .where(filter=FieldFilter("chatId", "==", chat_id))
        .where(filter=FieldFilter("recipientId", "==", recipient_id))
        .where(filter=FieldFilter("awaitingInbox", "==", True))
    )
    if up_to is not None:
        query = query.where(filter=FieldFilter("messageId", "<=", up_to))
    return queue.usable(db, query.order_by("messageId").limit(limit).stream(), actor="worker")


def chat_awaits_inbox(db: Client, chat_id: str) -> bool:
    """Whether an entry of `chat_id` (any recipient, any region) still waits for its inbox.

    One query, at most one document read.
    """
    query = (
        db.collection_group("messageQueue")
        .where(filter=FieldFilter("chatId", "==", chat_id))
        .where(filter=FieldFilter("awaitingInbox", "==", True))
        .limit(1)
    )
    return any(True for _ in query.select([]).stream())


def awaiting_inbox_of_pairs(
    db: Client, newest: dict[tuple[str, str], str], *, limit: int
) -> dict[tuple[str, str], list[LoadedEntry]]:
    """What `awaiting_inbox(chat, recipient, up_to=newest)` returns for each pair, from one query.

    A processor batch holds entries of many (chat, recipient) pairs; asking
    for each pair's older entries is one query per pair. This asks once for
    every entry awaiting the inbox up to the newest message id of the batch,
    oldest first, and sorts them out by pair.

    Args:
        newest: per (chat, recipient), the newest message id to include.
        limit: at most this many entries read. If the query stops there, the
            pairs it did not fully cover are left out of the result: ask
            `awaiting_inbox` for those.

    Returns:
        Per covered pair, its entries not yet in the inbox, oldest message first (maybe none).
    """
    if not newest:
        return {}
    up_to = max(newest.values())
    query = (
        db.collection_group("messageQueue")
        .where(filter=FieldFilter("awaitingInbox", "==", True))
        .where(filter=FieldFilter("messageId", "<=", up_to))
        .order_by("messageId")
        .limit(limit)
    )
    snapshots = list(query.stream())
    found = queue.usable(db, snapshots, actor="processor")
    if len(snapshots) == limit:
        # Complete only below the last id read: its other recipients' entries may come after it.
        bound = found[-1].entry.message_id if found else ""
        covered = {pair: last for pair, last in newest.items() if last < bound}
    else:
        covered = newest
    pairs: dict[tuple[str, str], list[LoadedEntry]] = {pair: [] for pair in covered}
    for loaded in found:
        pair = (loaded.entry.chat_id, loaded.entry.recipient_id)
        if pair in pairs and loaded.entry.message_id <= covered[pair]:
            pairs[pair].append(loaded)
    return pairs


def stats(db: Client, region: Region, *, now: datetime | None = None) -> RegionQueueStats:
    """Entry counts of `region` by status, from count aggregations (no document reads)."""
    counts = {}
    for status in QueueStatus:
        query = paths.queue(db, region).where(filter=FieldFilter("status", "==", status.value))
        counts[status.value.lower()] = query.count().get()[0][0].value
    return RegionQueueStats(region=region, at=now or clock.now(), **counts)


def recipients_awaiting(db: Client, chat_id: str, *, limit: int) -> set[str] | None:
    """The recipients with a message of `chat_id` still awaiting their inbox in a queue
    (None: `limit` entries or more wait, treat everyone as waiting).

    One query; it reads nothing when nothing waits (chat_awaits_inbox first).
    """
    if not chat_awaits_inbox(db, chat_id):
        return set()
    query = (
        db.collection_group("messageQueue")
        .where(filter=FieldFilter("chatId", "==", chat_id))
        .where(filter=FieldFilter("awaitingInbox", "==", True))
        .limit(limit)
    )
    found = [snapshot.get("recipientId") for snapshot in query.select(["recipientId"]).stream()]
    return None if len(found) >= limit else set(found)
