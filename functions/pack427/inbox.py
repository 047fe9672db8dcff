"""The inbox: each user's delivered messages, numbered in the order they became visible.

Every inbox entry gets the next `seq` of its user, and is created in the same
commit that moves the user's head (`InboxHead`) to that seq, conditional on
the head being unchanged since it was read. Two deliveries to one user that
race both read seq n; one commits n+1, the other's precondition fails and it
goes again with n+2. Seq n+1 is thus only ever assigned once entry n is
visible, so a reader that has seen seq k has seen every entry up to k:
"everything after seq k" never skips an entry, whatever the timestamps say,
however late a retried delivery lands. Sync cursors are seqs.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from google.api_core import exceptions as gexc
from google.cloud.firestore import Client, WriteBatch
from google.cloud.firestore_v1 import DocumentSnapshot
from google.cloud.firestore_v1.types.write import WriteResult
from google.cloud.firestore_v1.base_query import FieldFilter

from . import constants, paths
from .models import InboxEntry, InboxHead


class InboxBusy(Exception):
    """The head kept moving for INBOX_HEAD_RETRIES attempts; the delivery is retried later."""


@dataclass(frozen=True)
class Head:
    """A user's inbox head as read: the seq of the newest entry, and what a move is conditional on."""

    uid: str
    seq: int
    update_time: datetime | None
    """None: the user has no inbox entry yet (the head is then created, which fails if someone else did)."""

    @classmethod
    def from_snapshot(cls, uid: str, snapshot: DocumentSnapshot) -> Head:
        if not snapshot.exists:
            return cls(uid, 0, None)
        return cls(uid, snapshot.get("seq"), snapshot.update_time)


def heads(db: Client, uids: list[str]) -> dict[str, Head]:
    """The inbox heads of `uids`, in one round trip."""
    refs = [paths.inbox_head(db, uid) for uid in uids]
    uid_of = {ref.path: uid for ref, uid in zip(refs, uids)}
    return {uid_of[s.reference.path]: Head.from_snapshot(uid_of[s.reference.path], s) for s in db.get_all(refs)}


def add_placement(db: Client, batch: WriteBatch, head: Head, entries: list[InboxEntry], *, now: datetime) -> None:
    """Add to `batch` the creation of `entries` (the caller numbered them from head.seq + 1) and
    the head's move to the last of them, conditional on the head being as read.

    Args:
        now: stored as the head's update time.
    """
    for entry in entries:
        batch.create(paths.inbox_entry(db, head.uid, entry.message_id), entry.to_firestore())
    last = entries[-1]
    moved = InboxHead(seq=last.seq, message_id=last.message_id, updated_at=now).to_firestore()
    head_ref = paths.inbox_head(db, head.uid)
    if head.update_time is None:
        batch.create(head_ref, moved)
    else:
        batch.update(head_ref, moved, option=db.write_option(last_update_time=head.update_time))


def place(
    db: Client,
    uid: str,
    make_entries: Callable[[int], list[InboxEntry]],
    add_writes: Callable[[WriteBatch], None],
    *,
    now: datetime,
) -> list[WriteResult] | None:
    """Create inbox entries of `uid` with the next seqs, in one commit with `add_writes`.

    Args:
        make_entries: builds the entries, numbered from the first seq it is
            given (first, first + 1, ...).
        add_writes: adds the caller's own writes (conditional ones included)
            to the batch; they come first, so their results come first.
        now: stored as the head's update time.

    Returns:
        The commit's write results; None if one of the caller's
        preconditions failed (someone else changed what it read).

    Raises:
        google.api_core.exceptions.AlreadyExists: an entry is in the inbox already.
        InboxBusy: other deliveries to this user kept winning.
    """
    head_ref = paths.inbox_head(db, uid)
    for _ in range(constants.INBOX_HEAD_RETRIES):
        head = Head.from_snapshot(uid, head_ref.get())
        entries = make_entries(head.seq + 1)
        batch = db.batch()
        add_writes(batch)
        add_placement(db, batch, head, entries, now=now)
        try:
            return batch.commit()
        except gexc.AlreadyExists:
            refs = [paths.inbox_entry(db, uid, entry.message_id) for entry in entries]
            if any(s.exists for s in db.get_all(refs)):
                raise
            # The head was created by a concurrent delivery: go again.
        except (gexc.FailedPrecondition, gexc.Aborted):
            if head_ref.get().update_time == head.update_time:
                return None  # the head held, so the caller's own precondition failed
        # Lost the race for the head: a short random pause spreads the retries of racing deliveries.
        time.sleep(random.uniform(0, 0.01))
    raise InboxBusy(f"the inbox of {uid} kept changing for {constants.INBOX_HEAD_RETRIES} attempts")


def after(db: Client, uid: str, seq: int, *, limit: int) -> list[InboxEntry]:
    """Entries of `uid` with a seq greater than `seq`, in seq order, at most `limit`."""
    query = (
        paths.inbox(db, uid)
        .where(filter=FieldFilter("seq", ">", seq))
        .order_by("seq")
        .limit(limit)
    )
    return [InboxEntry.model_validate(s.to_dict()) for s in query.stream()]


def seq_before_delivered_after(db: Client, uid: str, at: datetime) -> int:
    """The position just before the first entry delivered after `at` (for `since` syncs).

    Delivery times come from the workers' clocks, so this is as exact as a
    timestamp can be; the cursor returned from there on is exact.
    """
    query = (
        paths.inbox(db, uid)
        .where(filter=FieldFilter("deliveredAt", ">", at))
        .order_by("deliveredAt")
        .limit(1)
    )
    first = next(iter(query.stream()), None)
    if first is not None:
        return first.get("seq") - 1
    head = paths.inbox_head(db, uid).get()
    return head.get("seq") if head.exists else 0


def entries(db: Client, uid: str, message_ids: list[str]) -> list[InboxEntry]:
    """The inbox entries of `uid` among `message_ids` (missing ones left out), one round trip."""
    refs = [paths.inbox_entry(db, uid, message_id) for message_id in message_ids]
    return [InboxEntry.model_validate(s.to_dict()) for s in db.get_all(refs) if s.exists]
