"""The per-region message queue: entries, their state changes and queries.

State machine of an entry: PENDING, then DELIVERED; a failed attempt makes it
FAILED with `attempts` and `nextAttemptAt` (exponential back-off); the
MAX_ATTEMPTS-th failure makes it DROPPED, a dead letter that raises an alert.
Apart from the status, `awaitingInbox` says whether the message still has to
reach the inbox: it keeps the per-chat order (see delivery.deliver_in_order).

Every change is conditional on the entry being unchanged since it was read
(Firestore's update-time precondition): of two workers racing on one entry,
exactly one changes it and the other learns it lost. No transactions, so no
locks are held while a delivery talks to the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from google.api_core import exceptions as gexc
from google.cloud.firestore import Client, WriteBatch
from google.cloud.firestore_v1 import DocumentSnapshot
from google.cloud.firestore_v1.base_query import FieldFilter

from . import alerts, audit, clock, constants, paths
from .models import DUE_STATUSES, QueuedMessage, QueueStatus, Region, RegionQueueStats


@dataclass(frozen=True)
class LoadedEntry:
    """A queue entry as read, with the update time its next change is conditional on."""

    entry: QueuedMessage
    update_time: datetime

    @classmethod
    def from_snapshot(cls, snapshot: DocumentSnapshot) -> LoadedEntry:
        return cls(QueuedMessage.model_validate(snapshot.to_dict()), snapshot.update_time)


def backoff(attempts: int) -> timedelta:
    """Wait before the next attempt after `attempts` failed ones: 1 s, 2 s, 4 s ... capped at 1 h."""
    delay_ms = constants.BASE_DELAY_MS * 2 ** max(attempts - 1, 0)
    return clock.millis(min(delay_ms, constants.MAX_DELAY_MS))


def add_enqueue(db: Client, batch: WriteBatch, entry: QueuedMessage, *, actor: str) -> None:
    """Add the creation of `entry` (and its audit event) to `batch`.

    `create` fails the whole batch if the entry exists: together with the
    entry id `{messageId}_{recipientId}` this makes a second entry for the
    same (message, recipient) impossible.
    """
    batch.create(paths.queue_entry(db, entry.target_region, entry.id), entry.to_firestore())
    audit.record(
        db, batch, entry, actor=actor, to_status=QueueStatus.PENDING, attempts=0, at=entry.created_at
    )


def enqueue(db: Client, entries: list[QueuedMessage], *, actor: str) -> int:
    """Put `entries` on their queues. Idempotent: an entry already there is left as it is.

    Args:
        entries: at most 250 (two writes each in one batch).
        actor: recorded in the audit trail.

    Returns:
        How many entries this call created.
    """
    batch = db.batch()
    for entry in entries:
        add_enqueue(db, batch, entry, actor=actor)
    try:
        batch.commit()
        return len(entries)
    except gexc.AlreadyExists:
        pass
    # Some were there already (a replay): create the others one by one.
    created = 0
    for entry in entries:
        batch = db.batch()
        add_enqueue(db, batch, entry, actor=actor)
        try:
            batch.commit()
            created += 1
        except gexc.AlreadyExists:
            continue
    return created


def load(db: Client, region: Region, entry_id: str) -> LoadedEntry | None:
    snapshot = paths.queue_entry(db, region, entry_id).get()
    return LoadedEntry.from_snapshot(snapshot) if snapshot.exists else None


def add_delivered(db: Client, batch: WriteBatch, loaded: LoadedEntry, *, actor: str, now: datetime) -> None:
    """Add the change of `loaded` to DELIVERED to `batch`, conditional on it being unchanged."""
    entry = loaded.entry
    attempts = entry.attempts + 1
    batch.update(
        paths.queue_entry(db, entry.target_region, entry.id),
        {
            "status": QueueStatus.DELIVERED.value,
            "awaitingInbox": False,
            "attempts": attempts,
            "deliveredAt": now,
            "updatedAt": now,
            "lastError": None,
        },
        option=db.write_option(last_update_time=loaded.update_time),
    )
    audit.record(
        db, batch, entry, actor=actor, from_status=entry.status, to_status=QueueStatus.DELIVERED,
        attempts=attempts, at=now,
    )


def mark_delivered(db: Client, loaded: LoadedEntry, *, actor: str, now: datetime | None = None) -> bool:
    """Mark the entry DELIVERED. Idempotent.

    Returns:
        True if this call delivered it; False if it was already delivered,
        dropped, or changed by someone else since it was read.
    """
    if loaded.entry.status not in DUE_STATUSES:
        return False
    batch = db.batch()
    add_delivered(db, batch, loaded, actor=actor, now=now or clock.now())
    return commit_if_unchanged(batch)


def mark_failed(
    db: Client, loaded: LoadedEntry, error: str, *, actor: str, now: datetime | None = None
) -> QueueStatus | None:
    """Record a failed attempt: FAILED with back-off, or DROPPED after MAX_ATTEMPTS.

    Args:
        error: what went wrong, kept on the entry and in the audit trail.
        actor: who attempted the delivery.
        now: the time of the failure (default: the clock).

    Returns:
        The new status, or None if the entry was not due or someone else
        changed it first (then their change stands).
    """
    entry = loaded.entry
    if entry.status not in DUE_STATUSES:
        return None
    now = now or clock.now()
    attempts = entry.attempts + 1
    dropped = attempts >= constants.MAX_ATTEMPTS
    status = QueueStatus.DROPPED if dropped else QueueStatus.FAILED
    next_attempt_at = now + backoff(attempts)
    batch = db.batch()
    batch.update(
        paths.queue_entry(db, entry.target_region, entry.id),
        {
            "status": status.value,
            # A dead letter no longer holds newer messages of its chat back.
            "awaitingInbox": entry.awaiting_inbox and not dropped,
            "attempts": attempts,
            "nextAttemptAt": next_attempt_at,
            "lastError": error[:1000],
            "updatedAt": now,
        },
        option=db.write_option(last_update_time=loaded.update_time),
    )
    details = {"error": error[:1000]}
    if not dropped:
        details["nextAttemptAt"] = next_attempt_at.isoformat()
    audit.record(
        db, batch, entry, actor=actor, from_status=entry.status, to_status=status,
        attempts=attempts, at=now, details=details,
    )
    if not commit_if_unchanged(batch):
        return None
    if dropped:
        alerts.message_dropped(entry, attempts=attempts, error=error)
    return status


def add_placed(db: Client, batch: WriteBatch, loaded: LoadedEntry, *, now: datetime) -> None:
    """Add to `batch` that the message is in the inbox (status unchanged), conditional on the entry."""
    batch.update(
        paths.queue_entry(db, loaded.entry.target_region, loaded.entry.id),
        {"awaitingInbox": False, "updatedAt": now},
        option=db.write_option(last_update_time=loaded.update_time),
    )


def defer(db: Client, loaded: LoadedEntry, *, until: datetime, now: datetime) -> bool:
    """Hold a due entry back until `until`, when the older message it waits for is retried.

    Returns:
        True if the entry was moved; False if it was due no earlier already,
        or changed by someone else since it was read.
    """
    if loaded.entry.next_attempt_at >= until:
        return False
    batch = db.batch()
    batch.update(
        paths.queue_entry(db, loaded.entry.target_region, loaded.entry.id),
        {"nextAttemptAt": until, "updatedAt": now},
        option=db.write_option(last_update_time=loaded.update_time),
    )
    return commit_if_unchanged(batch)


def commit_if_unchanged(batch: WriteBatch) -> bool:
    """Commit `batch`; False if one of its preconditions no longer held."""
    try:
        batch.commit()
    except (gexc.FailedPrecondition, gexc.Aborted):
        return False
    return True


def due_entries(
    db: Client, region: Region, *, now: datetime, limit: int = constants.BATCH_SIZE, shard: int | None = None
) -> list[LoadedEntry]:
    """Entries of `region` that may be attempted at `now`, longest waiting first.

    Args:
        limit: at most this many (default BATCH_SIZE).
        shard: only this slice of the queue (QueuedMessage.shard); default: all.
    """
    query = paths.queue(db, region).where(filter=FieldFilter("status", "in", [s.value for s in DUE_STATUSES]))
    if shard is not None:
        query = query.where(filter=FieldFilter("shard", "==", shard))
    query = query.where(filter=FieldFilter("nextAttemptAt", "<=", now)).order_by("nextAttemptAt").limit(limit)
    return [LoadedEntry.from_snapshot(s) for s in query.stream()]


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
    return [LoadedEntry.from_snapshot(s) for s in query.order_by("messageId").limit(limit).stream()]


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
    found = [LoadedEntry.from_snapshot(s) for s in query.stream()]
    if len(found) == limit:
        # Complete only below the last id read: its other recipients' entries may come after it.
        covered = {pair: last for pair, last in newest.items() if last < found[-1].entry.message_id}
    else:
        covered = newest
    pairs: dict[tuple[str, str], list[LoadedEntry]] = {pair: [] for pair in covered}
    for loaded in found:
        pair = (loaded.entry.chat_id, loaded.entry.recipient_id)
        if pair in pairs and loaded.entry.message_id <= covered[pair]:
            pairs[pair].append(loaded)
    return pairs


def pending_for_user(db: Client, uid: str, *, limit: int = constants.BATCH_SIZE) -> list[QueuedMessage]:
    """Entries not yet delivered to `uid`, in any region's queue, oldest first."""
    query = (
        db.collection_group("messageQueue")
        .where(filter=FieldFilter("recipientId", "==", uid))
        .where(filter=FieldFilter("status", "in", [s.value for s in DUE_STATUSES]))
        .order_by("createdAt")
        .limit(limit)
    )
    return [QueuedMessage.model_validate(s.to_dict()) for s in query.stream()]


def stats(db: Client, region: Region, *, now: datetime | None = None) -> RegionQueueStats:
    """Entry counts of `region` by status, from count aggregations (no document reads)."""
    counts = {}
    for status in QueueStatus:
        query = paths.queue(db, region).where(filter=FieldFilter("status", "==", status.value))
        counts[status.value.lower()] = query.count().get()[0][0].value
    return RegionQueueStats(region=region, at=now or clock.now(), **counts)


def cleanup_delivered(db: Client, *, now: datetime | None = None) -> dict[str, int]:
    """Delete DELIVERED entries older than DELIVERED_RETENTION_DAYS in every region.

    DROPPED entries are dead letters and are kept; so is the audit trail.

    Returns:
        Per region, how many entries were deleted.
    """
    cutoff = (now or clock.now()) - timedelta(days=constants.DELIVERED_RETENTION_DAYS)
    return {region.value: _delete_delivered_before(db, region, cutoff) for region in Region}


def _delete_delivered_before(db: Client, region: Region, cutoff: datetime) -> int:
    query = (
        paths.queue(db, region)
        .where(filter=FieldFilter("status", "==", QueueStatus.DELIVERED.value))
        .where(filter=FieldFilter("deliveredAt", "<", cutoff))
        .limit(500)
    )
    deleted = 0
    while refs := [s.reference for s in query.select([]).stream()]:
        batch = db.batch()
        for ref in refs:
            batch.delete(ref)
        batch.commit()
        deleted += len(refs)
    return deleted
