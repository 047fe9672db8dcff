"""Unread counters that stay exact under duplicated events and concurrent reads.

The truth is the inbox: the unread count of (user, chat) is the number of
the user's inbox entries of that chat newer than the user's read position
and not sent by the user. `users/{uid}/unreadCounters/{chatId}` holds that
number for cheap reads and listeners.

A counter is never incremented. Every writer (the new-message trigger,
markAsRead, recalculation) recounts: it reads the counter, then the read
position, then counts the inbox with a count aggregation, and writes the
result conditional on the counter being unchanged since it read it (or
absent). If anyone wrote the counter in between, it starts over.

Why that is exact:
- A duplicated or replayed trigger event recounts the same inbox and writes
  the same number: nothing is counted twice, whatever the event ids.
- Successful writes are serialised by their preconditions: each one read the
  counter after the previous one was written, so it read the position and
  the inbox after it too.
- Every change of the truth is followed by a successful write that read it:
  an inbox entry is created before its trigger runs, and the trigger keeps
  trying until its own write succeeds; a read position moves before
  markAsRead recounts, and markAsRead keeps trying until its write succeeds.
  Both write even when the number looks unchanged: otherwise a slower writer
  holding an older read could still land after them.
- So the last write read everything that came before it: after quiescence
  every counter equals its recount, and a count is never negative.

A message already read when its trigger runs (id <= read position) is not
part of the truth and never will be (positions only move forward): that
trigger has nothing to do. Nor has one whose recount finds no counter and
nothing unread (its entry was read or is gone): it creates no empty counter.
A user's own message is never counted.

Cost per new message and recipient: two document reads, one count
aggregation (billed as one read per 1,000 unread entries) and one write; a
duplicate event costs the same again. Conditional writes hold no locks, so
racing writers never wait for each other (the emulator's transaction locks
take seconds under contention: 8 racing transactions took a minute there);
when writers race on one counter, each round one wins and the others read
again.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from firebase_functions import logger
from google.api_core import exceptions as gexc
from google.cloud.firestore import Client
from google.cloud.firestore_v1 import DocumentSnapshot
from google.cloud.firestore_v1.base_query import FieldFilter

from . import clock, constants, paths, policy, read_state
from .errors import Aborted, InvalidArgument
from .models import (
    CounterChange,
    MarkAsReadRequest,
    MarkAsReadResult,
    NoArgumentsRequest,
    RecalculateUnreadCountersResult,
    UnreadCounter,
    UnreadCountsResult,
)


@dataclass(frozen=True)
class Recount:
    """The outcome of one recount of a counter.

    Attributes:
        chat_id: the chat.
        before: the stored count (None: no counter, or not a valid count).
        after: the count now, as the inbox says.
        written: whether this recount wrote the counter.
    """

    chat_id: str
    before: int | None
    after: int
    written: bool


def count_unread(db: Client, uid: str, chat_id: str, read_up_to: str | None) -> int:
    """Entries of `uid`'s inbox from `chat_id`, newer than `read_up_to`, not sent by `uid`.

    One count aggregation: no document is read.

    Args:
        uid: the reader.
        chat_id: the chat.
        read_up_to: the read position (None: nothing read; every ULID is > "").
    """
    query = (
        paths.inbox(db, uid)
        .where(filter=FieldFilter("chatId", "==", chat_id))
        .where(filter=FieldFilter("messageId", ">", read_up_to or ""))
        .where(filter=FieldFilter("senderId", "!=", uid))
    )
    return query.count().get()[0][0].value


def recount(
    db: Client,
    uid: str,
    chat_id: str,
    *,
    now: datetime | None = None,
    always_write: bool = False,
    create_empty: bool = True,
    unless_read: str | None = None,
) -> Recount | None:
    """Set the user's counter of the chat to what the inbox says (see the module docstring).

    Args:
        uid: the counter's owner.
        chat_id: the chat.
        now: stored as `updatedAt` (default: the clock).
        always_write: write even if the stored counter already agrees. A
            writer that changed the truth (a new inbox entry, a moved read
            position) must: its write is what makes later stale writers fail.
            Default False (recalculation, a read position that did not move).
        create_empty: with always_write, create a missing counter even when
            the count is 0. Default True. The trigger passes False: a count
            of 0 means its message is no longer unread (read, or gone), so it
            changed nothing it must answer for, and an absent counter already
            reads as 0.
        unless_read: a message id; if the read position is at it or past it,
            stop (no count, no write) and return None. The trigger passes its
            message: read already, it is not part of the truth and never will
            be (positions only move forward). Checked on the position the
            recount reads anyway, which saves the trigger a read of its own.
            Default None (always count).

    Raises:
        Aborted: other writers kept changing the counter for UNREAD_WRITE_RETRIES attempts.
    """
    now = now or clock.now()
    ref = paths.unread_counter(db, uid, chat_id)
    for _ in range(constants.UNREAD_WRITE_RETRIES):
        # Order matters: the counter first, so the position and inbox are read after its last write.
        snapshot = ref.get()
        stored = _stored(snapshot)
        read_up_to = read_state.read_up_to(db, chat_id, uid)
        if unless_read is not None and read_up_to is not None and unless_read <= read_up_to:
            return None
        count = count_unread(db, uid, chat_id, read_up_to)
        before = stored.count if stored else None
        agrees = (
            (stored is not None and (stored.count, stored.read_up_to_message_id) == (count, read_up_to))
            or (not snapshot.exists and count == 0)
        )
        if agrees and (not always_write or (not snapshot.exists and not create_empty)):
            return Recount(chat_id, before, count, written=False)
        counter = UnreadCounter(
            chat_id=chat_id, user_id=uid, count=count, read_up_to_message_id=read_up_to, updated_at=now
        ).to_firestore()
        try:
            if snapshot.exists:
                ref.update(counter, option=db.write_option(last_update_time=snapshot.update_time))
            else:
                ref.create(counter)
            return Recount(chat_id, before, count, written=True)
        except (gexc.FailedPrecondition, gexc.AlreadyExists, gexc.Aborted):
            continue  # another writer got there first: read again, after its write
    raise Aborted(f"the unread counter of chat {chat_id!r} is changing too fast; try again")


def on_new_message(db: Client, snapshot: DocumentSnapshot | None, *, now: datetime | None = None) -> Recount | None:
    """The `pack427_onNewMessage` trigger: a new inbox entry updates its owner's counter.

    Safe to run any number of times for one entry, concurrently or not.

    Args:
        snapshot: the created inbox entry `users/{uid}/inbox/{messageId}`.
        now: stored as the counter's `updatedAt` (default: the clock).

    Returns:
        The recount; None when there was nothing to count (the user's own
        message, a message already read, or not an inbox entry we understand).
    """
    if snapshot is None or not snapshot.exists:
        return None
    uid = paths.inbox_owner(snapshot.reference)
    data = snapshot.to_dict() or {}
    chat_id, sender_id = data.get("chatId"), data.get("senderId")
    message_id = data.get("messageId") or snapshot.id
    if not isinstance(chat_id, str) or not chat_id or not isinstance(message_id, str):
        logger.warn(f"inbox entry {snapshot.reference.path} has no chatId; not counted", path=snapshot.reference.path)
        return None
    if sender_id == uid:
        return None
    # A message read already never counts: the recount stops at its read of the position.
    result = recount(db, uid, chat_id, now=now, always_write=True, create_empty=False, unless_read=message_id)
    if result is None:
        return None
    logger.debug(f"unread {uid}/{chat_id}: {result.after}", uid=uid, chatId=chat_id, messageId=message_id)
    return result


def mark_as_read(
    db: Client, uid: str, request: MarkAsReadRequest, *, now: datetime | None = None
) -> MarkAsReadResult:
    """`pack427_markAsRead`: move the caller's read position forward and recount.

    Args:
        uid: the authenticated caller.
        request: the chat and the newest message read.
        now: stored as `readAt` and `updatedAt` (default: the clock).

    Returns:
        The chat's unread count after the move (every device of the user
        sees it on the counter).

    Raises:
        NotFound: no such chat.
        PermissionDenied: the caller is not a participant.
        InvalidArgument: readUpToMessageId is not a message of this chat.
        Aborted: too many concurrent changes to the receipt or the counter.
    """
    now = now or clock.now()
    policy.participant_chat(db, request.chatId, uid)
    if not _message_of_chat(db, request.chatId, uid, request.readUpToMessageId):
        message = f"readUpToMessageId: {request.readUpToMessageId} is not a message of chat {request.chatId!r}"
        raise InvalidArgument(message, {"fields": [{"field": "readUpToMessageId", "problem": message}]})
    moved = read_state.advance(db, request.chatId, uid, request.readUpToMessageId, now=now)
    result = recount(db, uid, request.chatId, now=now, always_write=moved)
    return MarkAsReadResult(success=True, unreadCount=result.after)


def unread_counts(db: Client, uid: str, chat_ids: Iterable[str] | None = None) -> UnreadCountsResult:
    """The user's unread counts per chat, and their total, as the counters hold them.

    Args:
        uid: the user.
        chat_ids: only these chats (a chat without a counter has 0); default:
            every chat with a counter.
    """
    if chat_ids is None:
        snapshots = list(paths.unread_counters(db, uid).stream())
    else:
        refs = [paths.unread_counter(db, uid, chat_id) for chat_id in dict.fromkeys(chat_ids)]
        snapshots = list(db.get_all(refs)) if refs else []
    counts = {s.id: 0 for s in snapshots}
    for snapshot in snapshots:
        stored = _stored(snapshot)
        # A damaged counter reads as 0 until recalculation repairs it: never negative.
        counts[snapshot.id] = stored.count if stored else 0
    if chat_ids is not None:
        counts = {chat_id: counts.get(chat_id, 0) for chat_id in dict.fromkeys(chat_ids)}
    return UnreadCountsResult(unreadCounts=counts, totalUnread=sum(counts.values()))


def get_unread_counts(db: Client, uid: str, request: NoArgumentsRequest) -> UnreadCountsResult:
    """`pack427_getUnreadCounts`: every chat with a counter, and the total."""
    return unread_counts(db, uid)


def recalculate(
    db: Client, uid: str, request: NoArgumentsRequest | None = None, *, now: datetime | None = None
) -> RecalculateUnreadCountersResult:
    """`pack427_recalculateUnreadCounters`: recount the caller's counters and repair any drift.

    Covers every chat the user takes part in and every chat they have a
    counter of (a chat they left keeps its counter, recounted too).

    Args:
        uid: the authenticated caller.
        request: no arguments.
        now: stored as `updatedAt` of the counters it changes (default: the clock).

    Returns:
        How many counters were checked and how many changed, with before and after.
    """
    now = now or clock.now()
    member_of = paths.chats(db).where(filter=FieldFilter("participants", "array_contains", uid)).select([])
    chat_ids = sorted({s.id for s in member_of.stream()} | {s.id for s in paths.unread_counters(db, uid).stream()})
    with ThreadPoolExecutor(max_workers=constants.RECALCULATE_PARALLELISM) as pool:
        results = list(pool.map(lambda chat_id: recount(db, uid, chat_id, now=now), chat_ids))
    changes = [CounterChange(chatId=r.chat_id, before=r.before, after=r.after) for r in results if r.written]
    if changes:
        logger.info(f"repaired {len(changes)} unread counters of {uid}", uid=uid,
                    changes=[c.model_dump() for c in changes])
    return RecalculateUnreadCountersResult(
        success=True, recalculated=len(changes), checked=len(results), changes=changes
    )


def _message_of_chat(db: Client, chat_id: str, uid: str, message_id: str) -> bool:
    """Whether the message is the chat's: in its messages, or in the reader's inbox under that chat.

    The inbox is checked too because it is what the reader has seen (and what
    counts); a chat core that keeps messages elsewhere still works.
    """
    if paths.chat_message(db, chat_id, message_id).get().exists:
        return True
    entry = paths.inbox_entry(db, uid, message_id).get()
    return entry.exists and entry.get("chatId") == chat_id


def _stored(snapshot: DocumentSnapshot) -> UnreadCounter | None:
    """The counter as stored, or None if absent or damaged (a recount rewrites it)."""
    if not snapshot.exists:
        return None
    try:
        return UnreadCounter.model_validate(snapshot.to_dict())
    except ValueError:
        return None
