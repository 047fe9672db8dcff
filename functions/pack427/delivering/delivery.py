"""Delivery: put a queued message in the recipient's inbox, exactly once in effect.

The inbox entry's id is the message id and it is written with `create`, so a
redelivery, a duplicated trigger event or two racing workers can never make
a second one, nor rewrite the first.
The queue entry's change to DELIVERED is conditional on it being unchanged
since it was read: of two racing workers exactly one reports the delivery.

Per-chat order: a message enters a recipient's inbox only after every older
message of the same chat to that recipient is there (or dropped). Whoever
delivers an entry delivers the older due ones of its chat first; a newer one
whose elder is waiting for a retry is deferred to that retry's time. Inbox
arrival order per chat is therefore message order, which is what lets sync
read the inbox by arrival without ever showing a chat out of order.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from firebase_functions import logger
from google.api_core import exceptions as gexc
from google.cloud.firestore import Client
from google.cloud.firestore_v1 import DocumentSnapshot

from .. import clock, inbox, settings
from ..models import DUE_STATUSES, InboxEntry, QueuedMessage, QueueStatus
from . import backlog, queue
from .notifier import Notifier
from .queue import LoadedEntry

PARALLEL_DELIVERIES = 32
"""Deliveries one worker keeps in flight: each is a network round trip."""

DELIVERY_GROUP_SIZE = 100
"""Messages to one recipient delivered in one commit: two writes each
(inbox entry, queue entry) plus the inbox head, under Firestore's 500
writes per commit."""


class Outcome(StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"
    DROPPED = "dropped"
    SKIPPED = "skipped"
    """Not due any more, or another worker changed it first."""
    DEFERRED = "deferred"
    """Waits for an older message of its chat that is waiting for a retry."""
    BUSY = "busy"
    """Lost every race for the recipient's inbox head (INBOX_HEAD_RETRIES) to its other writers:
    left due as it was, no attempt counted and no back-off (nothing failed); the next worker takes it."""


def deliver(
    db: Client, loaded: LoadedEntry, notifier: Notifier, *, actor: str, now: datetime | None = None
) -> Outcome:
    """Attempt one delivery of a due entry; a failure is recorded, never raised. A lost race for
    the inbox head is not a failure: it is retried at once, and after INBOX_HEAD_RETRIES the entry
    is left due (Outcome.BUSY).

    Args:
        loaded: the entry as read; the change is conditional on it.
        notifier: pushes to offline recipients (entries with push tokens).
        actor: recorded in the entry's history (`trigger`, `scheduler`, ...).
        now: the attempt's time (default: the clock).
    """
    entry = loaded.entry
    if entry.status not in (QueueStatus.PENDING, QueueStatus.FAILED):
        return Outcome.SKIPPED
    now = now or clock.now()
    try:
        if not entry.transport_metadata.push_tokens:
            return _deliver_in_one_commit(db, loaded, actor=actor, now=now)
        # Offline recipient: the message goes to the inbox first, then the push.
        if entry.awaiting_inbox:
            in_inbox = _place_in_inbox(db, loaded, now)
            if in_inbox is None:
                return Outcome.SKIPPED
            loaded = in_inbox
        elif entry.attempts and _acknowledged(db, loaded.entry):
            # A push being retried for a message a device already has: nothing left to tell.
            delivered = queue.mark_delivered(db, loaded, actor=actor, now=now, details={"acknowledged": True})
            return Outcome.DELIVERED if delivered else Outcome.SKIPPED
        notifier.notify(entry)
        return Outcome.DELIVERED if queue.mark_delivered(db, loaded, actor=actor, now=now) else Outcome.SKIPPED
    except inbox.InboxBusy as err:
        logger.info(f"delivery of {entry.id} left due: {err}", entryId=entry.id, actor=actor)
        return Outcome.BUSY
    except Exception as err:  # noqa: BLE001 - any failure is a failed attempt, retried later
        logger.warn(f"delivery of {entry.id} failed: {err!r}", entryId=entry.id, actor=actor)
        status = queue.mark_failed(db, loaded, f"{type(err).__name__}: {err}", actor=actor, now=now)
        if status is None:
            return Outcome.SKIPPED
        return Outcome.DROPPED if status is QueueStatus.DROPPED else Outcome.FAILED


def _acknowledged(db: Client, entry: QueuedMessage) -> bool:
    """Whether a device of the recipient acknowledged the entry's inbox position (ackMessages)."""
    if entry.inbox_seq is None:
        return False
    return inbox.acked_seqs(db, [entry.recipient_id])[entry.recipient_id] >= entry.inbox_seq


def inbox_entries(entries: list[QueuedMessage], now: datetime) -> list[InboxEntry]:
    """The inbox entries of `entries` delivered at `now` (numbered by inbox.placed)."""
    return [
        InboxEntry(
            seq=0,
            message_id=entry.message_id,
            chat_id=entry.chat_id,
            sender_id=entry.sender_id,
            sender_name=entry.transport_metadata.sender_name,
            text=entry.text,
            content_ref=entry.content_ref,
            region=entry.target_region,
            system_nudge=entry.system_nudge,
            created_at=entry.created_at,
            delivered_at=now,
        )
        for entry in entries
    ]


def _place_in_inbox(db: Client, loaded: LoadedEntry, now: datetime) -> LoadedEntry | None:
    """Create the inbox entry and clear `awaitingInbox` atomically; the status stays.

    Returns:
        The entry as now stored, or None if another worker changed it first.
    """
    entry = loaded.entry
    placed: list[InboxEntry] = []

    def add_writes(batch, numbered: list[InboxEntry]) -> None:
        placed[:] = numbered
        queue.add_placed(db, batch, loaded, inbox_seq=numbered[0].seq, now=now)

    try:
        written = inbox.place(db, entry.recipient_id, inbox_entries([entry], now), add_writes, now=now)
    except gexc.AlreadyExists:
        return None
    if written is None:
        return None
    update = {"awaiting_inbox": False, "inbox_seq": placed[0].seq}
    return LoadedEntry(entry.model_copy(update=update), written[0].update_time)


def _deliver_in_one_commit(db: Client, loaded: LoadedEntry, *, actor: str, now: datetime) -> Outcome:
    """Inbox entry and DELIVERED in one atomic commit (the common, online case)."""
    entry = loaded.entry

    def add_writes(batch, numbered: list[InboxEntry]) -> None:
        queue.add_delivered(db, batch, loaded, actor=actor, now=now, inbox_seq=numbered[0].seq)

    try:
        delivered = inbox.place(db, entry.recipient_id, inbox_entries([entry], now), add_writes, now=now) is not None
    except gexc.AlreadyExists:
        # An earlier attempt placed the message; only the status is left to record.
        delivered = queue.mark_delivered(db, loaded, actor=actor, now=now)
    return Outcome.DELIVERED if delivered else Outcome.SKIPPED


def deliver_in_order(
    db: Client,
    chat_id: str,
    recipient_id: str,
    notifier: Notifier,
    *,
    actor: str,
    now: datetime | None = None,
    up_to: str | None = None,
    awaiting: list[LoadedEntry] | None = None,
) -> dict[str, Outcome]:
    """Attempt the entries of one (chat, recipient) not yet in the inbox, oldest message first.

    The first one that is not due (it waits for a retry) holds back the newer
    ones: they are deferred to its retry time, so that none overtakes it.

    Args:
        up_to: stop at this message id (the trigger's own message); default: all.
        now: the attempt's time (default: the clock).
        awaiting: the pair's entries not in the inbox up to `up_to`, as just
            read (`backlog.awaiting_inbox_of_pairs`); default: read them here.

    Returns:
        The outcome for each entry id that was attempted or deferred.
    """
    now = now or clock.now()
    outcomes: dict[str, Outcome] = {}
    blocker: QueuedMessage | None = None
    if awaiting is None:
        awaiting = backlog.awaiting_inbox(db, chat_id, recipient_id, up_to=up_to)
    i = 0
    while i < len(awaiting):
        loaded = awaiting[i]
        entry = loaded.entry
        if blocker is None and entry.next_attempt_at > now:
            blocker = entry
        if blocker is not None:
            if blocker is not entry and queue.defer(db, loaded, until=blocker.next_attempt_at, now=now):
                outcomes[entry.id] = Outcome.DEFERRED
            i += 1
            continue
        run = _online_run(awaiting[i:], now)
        if len(run) > 1 and _deliver_together(db, run, actor=actor, now=now):
            outcomes.update((e.entry.id, Outcome.DELIVERED) for e in run)
            i += len(run)
            continue
        outcomes[entry.id] = deliver(db, loaded, notifier, actor=actor, now=now)
        if outcomes[entry.id] is not Outcome.DELIVERED:
            # Failed, dropped or handled by another worker: is it in the inbox now?
            fresh = queue.load(db, entry.target_region, entry.id)
            if fresh is not None and fresh.entry.awaiting_inbox:
                blocker = fresh.entry
        i += 1
    return outcomes


def due_and_online(loaded: LoadedEntry, now: datetime) -> bool:
    """Due at `now` and needs no push: it can go to the inbox with others in one commit."""
    entry = loaded.entry
    return not entry.transport_metadata.push_tokens and entry.next_attempt_at <= now and entry.status in DUE_STATUSES


def _online_run(awaiting: list[LoadedEntry], now: datetime) -> list[LoadedEntry]:
    """The leading entries that are due and need no push, at most DELIVERY_GROUP_SIZE."""
    run = []
    for loaded in awaiting[:DELIVERY_GROUP_SIZE]:
        if not due_and_online(loaded, now):
            break
        run.append(loaded)
    return run


def _deliver_together(db: Client, run: list[LoadedEntry], *, actor: str, now: datetime) -> bool:
    """Deliver consecutive messages of one (chat, recipient) in one commit.

    A backlog then costs one head move per group instead of one per message.
    False if nothing was written (an entry changed, or any error): the caller
    then attempts them one by one, which records failures properly.
    """

    def add_writes(batch, numbered: list[InboxEntry]) -> None:
        for loaded, placed in zip(run, numbered, strict=True):
            queue.add_delivered(db, batch, loaded, actor=actor, now=now, inbox_seq=placed.seq)

    try:
        placing = inbox_entries([loaded.entry for loaded in run], now)
        return inbox.place(db, run[0].entry.recipient_id, placing, add_writes, now=now) is not None
    except Exception as err:  # noqa: BLE001 - the one-by-one path retries and records it
        logger.debug(f"group delivery fell back to one by one: {err!r}")
        return False


def on_enqueued(
    db: Client, snapshot: DocumentSnapshot | None, notifier: Notifier, *, now: datetime | None = None
) -> Outcome:
    """The first attempt, made by the trigger the moment an entry is created.

    An entry whose message the send placed in the inbox itself carries the
    push to an offline recipient: it is attempted as the event gives it, and
    so is one whose send knew that no older message of its chat waited in a
    queue (`behind_queue` false: nothing to ask the queue). Any other entry
    awaiting the inbox is delivered after the older due messages of its chat
    to its recipient (one query of the queues). If a worker got there first,
    the update-time precondition makes this a no-op.

    Returns:
        The outcome for the event's own entry.
    """
    if snapshot is None or not snapshot.exists or settings.direct_delivery(db):
        return Outcome.SKIPPED  # mode direct: the send delivers it, the drain retries what fails
    found = queue.usable(db, [snapshot], actor="trigger")
    if not found:
        return Outcome.SKIPPED  # unusable: quarantined, with its alert
    loaded = found[0]
    entry = loaded.entry
    if not entry.awaiting_inbox or not entry.behind_queue:
        outcome = deliver(db, loaded, notifier, actor="trigger", now=now)
    else:
        outcomes = deliver_in_order(
            db, entry.chat_id, entry.recipient_id, notifier, actor="trigger", now=now, up_to=entry.message_id
        )
        outcome = outcomes.get(entry.id, Outcome.SKIPPED)
    logger.debug(f"trigger attempt of {entry.id}: {outcome}", entryId=entry.id, outcome=outcome.value)
    return outcome
