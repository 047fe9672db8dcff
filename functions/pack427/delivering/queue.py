"""A queue entry's life: its creation, its state changes (each with its history event), its expiry.

What waits in the queues (due entries, entries awaiting their inbox, depth)
is read in backlog.

State machine of an entry: PENDING, then DELIVERED; a failed attempt makes it
FAILED with `attempts` and `nextAttemptAt` (exponential back-off); the
MAX_ATTEMPTS-th failure makes it DROPPED, a dead letter that raises an alert.
Apart from the status, `awaitingInbox` says whether the message still has to
reach the inbox: it keeps the per-chat order (see delivery.deliver_in_order).

Every change is conditional on the entry being unchanged since it was read
(Firestore's update-time precondition, see store): of two workers racing on
one entry, exactly one changes it and the other learns it lost. No
transactions, so no locks are held while a delivery talks to the network.
Each change appends its event to the entry's `history` in the same write
(see audit). A DELIVERED entry carries `expiresAt` (delivered_expiry): Firestore's
TTL policy on it deletes the entry, and its trail, DELIVERED_RETENTION_DAYS later.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud.firestore import Client, WriteBatch
from google.cloud.firestore_v1 import DocumentSnapshot
from pydantic import ValidationError

from .. import alerts, audit, clock, constants, paths, store
from ..models import DUE_STATUSES, QueuedMessage, QueueEvent, QueueStatus, Region, problems


@dataclass(frozen=True)
class LoadedEntry:
    """A queue entry as read, with the update time its next change is conditional on."""

    entry: QueuedMessage
    update_time: datetime

    @classmethod
    def from_snapshot(cls, snapshot: DocumentSnapshot) -> LoadedEntry:
        """Raises ValidationError for an unusable stored entry (see `usable`)."""
        return cls(QueuedMessage.model_validate(snapshot.to_dict()), snapshot.update_time)


def usable(db: Client, snapshots: Iterable[DocumentSnapshot], *, actor: str) -> list[LoadedEntry]:
    """The entries among `snapshots`, in their order; an unusable one is quarantined and left out.

    Every worker reads queue entries through this, so that one entry an operator or
    another system damaged never stops a batch, a chat or a region: it alone waits,
    set aside, for an operator (`quarantine`).
    """
    loaded = []
    for snapshot in snapshots:
        try:
            loaded.append(LoadedEntry.from_snapshot(snapshot))
        except ValidationError as err:
            quarantine(db, snapshot, problems(err), actor=actor)
    return loaded


def quarantine(db: Client, snapshot: DocumentSnapshot, problem: str, *, actor: str,
               now: datetime | None = None) -> bool:
    """Set an unusable stored entry aside: status QUARANTINED, out of every due and awaiting query
    (so it holds no chat back), what it was kept under `quarantine`; logged as the
    QUEUE_ENTRY_QUARANTINED alert. Conditional on the entry as read. `scripts/ops quarantined`
    lists them, `scripts/ops release` puts a repaired one back (ops.release).

    Returns:
        True if this call set it aside (False: someone changed it first).
    """
    data = snapshot.to_dict() or {}
    now = now or clock.now()
    kept = {"problem": problem[:1000], "status": repr(data.get("status"))[:200],
            "awaitingInbox": data.get("awaitingInbox") is not False, "at": now, "by": actor}
    batch = db.batch()
    store.update_if_unchanged(db, batch, snapshot.reference, snapshot.update_time,
                              {"status": QueueStatus.QUARANTINED.value, "awaitingInbox": False, "quarantine": kept})
    if not store.commit_if_unchanged(batch):
        return False
    region = snapshot.reference.parent.parent.id if snapshot.reference.parent.parent else "?"
    alerts.entry_quarantined(region, snapshot.id, problem)
    return True


def backoff(attempts: int) -> timedelta:
    """Wait before the next attempt after `attempts` failed ones: 1 s, 2 s, 4 s ... capped at 1 h."""
    delay_ms = constants.BASE_DELAY_MS * 2 ** max(attempts - 1, 0)
    return clock.millis(min(delay_ms, constants.MAX_DELAY_MS))


def with_history(entry: QueuedMessage, *, actor: str) -> QueuedMessage:
    """`entry` as it is created: its history opens with ENQUEUED."""
    event = QueueEvent(actor=actor, action=audit.ENQUEUED, to_status=entry.status, attempts=0, at=entry.created_at)
    return entry.model_copy(update={"history": [*entry.history, event]})


def add_enqueue(db: Client, batch: WriteBatch, entry: QueuedMessage, *, actor: str) -> None:
    """Add the creation of `entry` (its history opened with ENQUEUED) to `batch`.

    `create` fails the whole batch if the entry exists: together with the
    entry id `{messageId}_{recipientId}` this makes a second entry for the
    same (message, recipient) impossible.
    """
    batch.create(paths.queue_entry(db, entry.target_region, entry.id), with_history(entry, actor=actor).to_firestore())


HISTORY_EVENT_BYTES = 1024
"""An allowance for the history event a state change appends to an entry (store.commits)."""


def entry_cost(db: Client, entry: QueuedMessage) -> store.Cost:
    """What a write of `entry` (its creation, or a change of its state: never more than the whole
    entry and one history event) adds to a commit (store.commits)."""
    return store.Cost.of_write(paths.queue_entry(db, entry.target_region, entry.id).path,
                               entry.to_firestore()) + store.Cost(0, HISTORY_EVENT_BYTES)


def enqueue(db: Client, entries: list[QueuedMessage], *, actor: str) -> int:
    """Put `entries` on their queues. Idempotent: an entry already there is left as it is.

    Args:
        entries: at most 500 (one write each in one batch).
        actor: recorded in each entry's history.

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


def load(db: Client, region: Region, entry_id: str, *, actor: str = "worker") -> LoadedEntry | None:
    """The entry, or None if it does not exist or was unusable (then quarantined, see `usable`)."""
    snapshot = paths.queue_entry(db, region, entry_id).get()
    found = usable(db, [snapshot], actor=actor) if snapshot.exists else []
    return found[0] if found else None


@dataclass(frozen=True)
class Change:
    """A state change of a queue entry, decided without Firestore (see `delivered`, `failed`,
    `requeued`): the stored fields that change, and the event its history records.

    Attributes:
        fields: camelCase, as stored.
        to_status: the status after the change.
        attempts: the entry's attempts after the change.
        details: recorded in the event.
        action: the event's action (default: the new status).
    """

    fields: dict[str, Any]
    to_status: QueueStatus
    attempts: int
    details: dict[str, Any]
    action: str | None = None


def delivered_expiry(delivered_at: datetime) -> datetime:
    """When a DELIVERED entry's TTL comes (its `expiresAt`): DELIVERED_RETENTION_DAYS after delivery."""
    return delivered_at + timedelta(days=constants.DELIVERED_RETENTION_DAYS)


def delivered(
    entry: QueuedMessage, *, now: datetime, inbox_seq: int | None = None, details: dict[str, Any] | None = None
) -> Change:
    """`entry` delivered at `now` by an attempt (inbox entry placed at `inbox_seq` by the same commit, if given)."""
    attempts = entry.attempts + 1
    fields = {"status": QueueStatus.DELIVERED.value, "awaitingInbox": False, "attempts": attempts,
              "deliveredAt": now, "expiresAt": delivered_expiry(now), "lastError": None}
    if inbox_seq is not None:
        fields["inboxSeq"] = inbox_seq
    return Change(fields, QueueStatus.DELIVERED, attempts, details or {})


def failed(entry: QueuedMessage, error: str, *, now: datetime) -> Change:
    """A failed attempt of `entry` at `now`: FAILED, due again after back-off, or DROPPED once
    MAX_ATTEMPTS attempts have failed (a dead letter no longer holds its chat back)."""
    attempts = entry.attempts + 1
    dropped = attempts >= constants.MAX_ATTEMPTS
    status = QueueStatus.DROPPED if dropped else QueueStatus.FAILED
    next_attempt_at = now + backoff(attempts)
    details = {"error": error[:1000]} | ({} if dropped else {"nextAttemptAt": next_attempt_at.isoformat()})
    fields = {"status": status.value, "awaitingInbox": entry.awaiting_inbox and not dropped, "attempts": attempts,
              "nextAttemptAt": next_attempt_at, "lastError": error[:1000], "lastFailedAt": now}
    return Change(fields, status, attempts, details)


def requeued(entry: QueuedMessage, *, now: datetime, placed_seq: int | None, placed_at: datetime | None) -> Change:
    """A dead letter put back by an operator: PENDING, due now, attempts from 0, `requeues` counted;
    or DELIVERED if its message reached the inbox at `placed_seq` (only its push kept failing)."""
    if placed_seq is not None:
        fields = {"status": QueueStatus.DELIVERED.value, "awaitingInbox": False, "deliveredAt": placed_at or now,
                  "expiresAt": delivered_expiry(placed_at or now), "inboxSeq": placed_seq, "lastError": None}
        return Change(fields, QueueStatus.DELIVERED, entry.attempts, {"requeued": True, "alreadyInInbox": True})
    fields = {"status": QueueStatus.PENDING.value, "awaitingInbox": True, "attempts": 0, "nextAttemptAt": now,
              "lastError": None, "requeues": entry.requeues + 1}
    details = {"previousAttempts": entry.attempts, "lastError": entry.last_error}
    return Change(fields, QueueStatus.PENDING, 0, details, action=audit.REQUEUED)


def add_change(
    db: Client, batch: WriteBatch, loaded: LoadedEntry, change: Change, *, actor: str, now: datetime
) -> None:
    """Add `change` of `loaded` to `batch`: its fields, `updatedAt` and its event appended to the
    entry's history, conditional on the entry being unchanged since it was read."""
    entry = loaded.entry
    event = QueueEvent(actor=actor, action=change.action or change.to_status.value, from_status=entry.status,
                       to_status=change.to_status, attempts=change.attempts, at=now, details=change.details)
    history = audit.appended(entry, event)
    store.update_if_unchanged(db, batch, paths.queue_entry(db, entry.target_region, entry.id), loaded.update_time,
                              {**change.fields, "updatedAt": now, "history": history})


def add_delivered(
    db: Client,
    batch: WriteBatch,
    loaded: LoadedEntry,
    *,
    actor: str,
    now: datetime,
    inbox_seq: int | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Add the change of `loaded` to DELIVERED to `batch`, conditional on it being unchanged.

    Args:
        inbox_seq: the message's seq in the inbox, when this commit places it.
        details: recorded in the event (default none).
    """
    add_change(db, batch, loaded, delivered(loaded.entry, now=now, inbox_seq=inbox_seq, details=details),
               actor=actor, now=now)


def mark_delivered(
    db: Client, loaded: LoadedEntry, *, actor: str, now: datetime | None = None, details: dict[str, Any] | None = None
) -> bool:
    """Mark the entry DELIVERED. Idempotent.

    Args:
        details: recorded in the event (default none).

    Returns:
        True if this call delivered it; False if it was already delivered,
        dropped, or changed by someone else since it was read.
    """
    if loaded.entry.status not in DUE_STATUSES:
        return False
    batch = db.batch()
    add_delivered(db, batch, loaded, actor=actor, now=now or clock.now(), details=details)
    return store.commit_if_unchanged(batch)


def mark_failed(
    db: Client, loaded: LoadedEntry, error: str, *, actor: str, now: datetime | None = None
) -> QueueStatus | None:
    """Record a failed attempt: FAILED with back-off, or DROPPED after MAX_ATTEMPTS.

    Args:
        error: what went wrong, kept on the entry and in its history.
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
    change = failed(entry, error, now=now)
    batch = db.batch()
    add_change(db, batch, loaded, change, actor=actor, now=now)
    if not store.commit_if_unchanged(batch):
        return None
    if change.to_status is QueueStatus.DROPPED:
        alerts.message_dropped(entry, attempts=change.attempts, error=error)
    return change.to_status


def add_placed(db: Client, batch: WriteBatch, loaded: LoadedEntry, *, inbox_seq: int, now: datetime) -> None:
    """Add to `batch` that the message is in the inbox at `inbox_seq` (status unchanged),
    conditional on the entry being unchanged."""
    store.update_if_unchanged(db, batch, paths.queue_entry(db, loaded.entry.target_region, loaded.entry.id),
                              loaded.update_time, {"awaitingInbox": False, "inboxSeq": inbox_seq, "updatedAt": now})


def defer(db: Client, loaded: LoadedEntry, *, until: datetime, now: datetime) -> bool:
    """Hold a due entry back until `until`, when the older message it waits for is retried.

    Returns:
        True if the entry was moved; False if it was due no earlier already,
        or changed by someone else since it was read.
    """
    if loaded.entry.next_attempt_at >= until:
        return False
    batch = db.batch()
    store.update_if_unchanged(db, batch, paths.queue_entry(db, loaded.entry.target_region, loaded.entry.id),
                              loaded.update_time, {"nextAttemptAt": until, "updatedAt": now})
    return store.commit_if_unchanged(batch)
