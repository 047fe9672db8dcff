"""Unread counts and read positions, kept on each user's inbox head.

The truth is the inbox: the unread count of (user, chat) is the number of
the user's inbox entries of that chat newer than the user's read position
(never the user's own messages: a sender is not a recipient). The inbox head
holds that number per chat (`InboxHead.chats`, see inbox), with the read
position and the chat's newest entry:

- a delivery counts its entries in the commit that creates them, conditional
  on the head (inbox.placed), so a message is counted exactly when it becomes
  visible, once, whatever the duplicated events or racing workers;
- markAsRead moves the position forward and stores the count after it, in a
  commit conditional on the head too. The count is 0 when the position is
  at or past the chat's newest entry, which the head knows; otherwise one
  count aggregation of the inbox, read after the head, so a delivery in
  between fails the commit and the read goes again;
- the read receipt (`chats/{chatId}/readReceipts/{uid}`, for the other
  participants) is written in the same commit, so it moves forward only: the
  head serialises every read of the user.

Every change of an inbox or a read position is a conditional write of the
head that decided on the state it changes: the counts are exact at every
moment, never negative. Recalculation recounts from the inbox and repairs a
head that drifted (a damaged or deleted document).
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from firebase_functions import logger
from google.cloud.firestore import Client
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath
from pydantic import ValidationError
from ulid import ULID

from .. import clock, constants, inbox, paths, store
from ..errors import Aborted, InvalidArgument
from ..guarding import policy, rate_limit
from ..models import (
    ChatInbox,
    CounterChange,
    InboxHead,
    MarkAsReadRequest,
    MarkAsReadResult,
    ParkedChat,
    ReadReceipt,
    RecalculateUnreadCountersRequest,
    RecalculateUnreadCountersResult,
    UnreadCountsResult,
)
from . import cursors


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
    return int(query.count().get()[0][0].value)  # the emulator answers 0.0 for none


def unread_after(state: ChatInbox | None, position: str) -> int | None:
    """The unread count of a chat read up to `position`, if the head alone tells it; None if
    the inbox must be counted.

    A chat the head does not track has no unread entry (never had one, or was
    pruned fully read), and none is newer than its newest entry.
    """
    if state is None or (state.last is not None and position >= state.last):
        return 0
    return None


def mark_as_read(
    db: Client, uid: str, request: MarkAsReadRequest, *, now: datetime | None = None
) -> MarkAsReadResult:
    """`pack427_markAsRead`: move the caller's read position forward and store the count after it.

    Args:
        uid: the authenticated caller.
        request: the chat and the newest message read.
        now: stored as `readAt` and `updatedAt` (default: the clock).

    Returns:
        The chat's unread count after the move (every device of the user
        sees it on the head). An older position than the stored one is
        accepted, ignored, and writes nothing.

    Raises:
        NotFound: no such chat (and none the caller's inbox counts).
        PermissionDenied: the caller is not a participant, nor a former one whose inbox counts the chat.
        InvalidArgument: readUpToMessageId is not a message of this chat.
        Aborted: the head kept changing for UNREAD_WRITE_RETRIES attempts.
    """
    now = now or clock.now()
    chat_id, position = request.chatId, request.readUpToMessageId

    def attempt(_: int) -> MarkAsReadResult:
        head = inbox.heads(db, [uid])[uid]
        state = head.state.chats.get(chat_id)
        lookup = inbox.look_up(db, uid, head.state, [chat_id]) if state is None else None
        parked = lookup.parked.get(chat_id) if lookup is not None else None
        state = state or parked  # a parked chat is counted by the inbox as any
        if state is None:  # a chat the inbox does not count: the caller must take part in it
            policy.participant_chat(db, chat_id, uid)
        # else a chat their inbox counts (they received its messages): no read of the chat, and a
        # member who left it, or whose chat is gone, still clears what they had.
        if (state is None or state.last != position) and not _message_of_chat(db, chat_id, uid, position):
            message = f"readUpToMessageId: {position} is not a message of chat {chat_id!r}"
            raise InvalidArgument(message, {"fields": [{"field": "readUpToMessageId", "problem": message}]})
        if state is not None:
            current = state.read_up_to
        elif lookup is not None and chat_id in lookup.positions:
            current = lookup.positions[chat_id]
        else:
            current = inbox.read_positions(db, uid, {chat_id})[chat_id]
        if current is not None and current >= position:
            return MarkAsReadResult(success=True, unreadCount=state.unread if state is not None else 0)
        unread = unread_after(state, position)
        if unread is None:
            unread = count_unread(db, uid, chat_id, position)
        batch = db.batch()
        batch.set(paths.read_receipt(db, chat_id, uid), ReadReceipt(
            chat_id=chat_id, user_id=uid, read_up_to_message_id=position,
            read_up_to_timestamp=_time_of(position, now), read_at=now,
        ).to_firestore())
        moved = inbox.read_to(head.state, uid, chat_id, position, unread, now=now, parked=parked)
        inbox.add_moved(db, batch, head, moved)
        store.commit(batch)
        return MarkAsReadResult(success=True, unreadCount=unread)

    return store.retry_on_conflict(
        attempt, attempts=constants.UNREAD_WRITE_RETRIES,
        give_up=lambda: Aborted(f"the read position of chat {chat_id!r} is changing too fast; try again"),
    )


def unread_counts(db: Client, uid: str) -> UnreadCountsResult:
    """`pack427_getUnreadCounts`: the user's unread count of every chat their inbox counts, and
    their total: one read of the head, and, if it has parked chats (inbox.bounded), one query of
    them (a read each). The total is the head's: its chats' and `parkedUnread`."""
    head = inbox.heads(db, [uid])[uid].state
    counts = {chat_id: state.unread for chat_id, state in head.chats.items()}
    if head.parked_chats:
        parked = parked_states(db, uid)
        counts |= {chat_id: state.unread for chat_id, state in parked.items() if chat_id not in head.chats}
    return UnreadCountsResult(unreadCounts=counts, totalUnread=total_unread(head))


def counts_of(db: Client, uid: str, chat_ids: list[str]) -> UnreadCountsResult:
    """The unread counts of `chat_ids` (a chat list's page) and the user's total: one read of the
    head, and if it has parked chats, one round trip for those of `chat_ids` it does not hold."""
    head = inbox.heads(db, [uid])[uid].state
    counts = {c: head.chats[c].unread for c in chat_ids if c in head.chats}
    missing = [c for c in chat_ids if c not in head.chats]
    if head.parked_chats and missing:
        counts |= {c: state.unread for c, state in parked_states(db, uid, missing).items()}
    return UnreadCountsResult(unreadCounts=counts, totalUnread=total_unread(head))


def total_unread(head: InboxHead) -> int:
    """The user's unread messages in every chat: the head's chats' and the parked chats' (`parkedUnread`)."""
    return sum(state.unread for state in head.chats.values()) + head.parked_unread


def parked_states(db: Client, uid: str, chat_ids: Iterable[str] | None = None) -> dict[str, ChatInbox]:
    """The parked chats of `uid` (ParkedChat), every one (a query) or those of `chat_ids` that are
    parked (one round trip). A document unusable as stored reads as nothing unread."""
    if chat_ids is None:
        snapshots = [store.Read.of(s) for s in paths.inbox_chats(db, uid).stream()]
    else:
        snapshots = list(store.read(db, [paths.inbox_chat(db, uid, c) for c in sorted(set(chat_ids))]).values())
    found: dict[str, ChatInbox] = {}
    for doc in snapshots:
        if doc.exists:
            try:
                found[doc.ref.id] = ParkedChat.model_validate({"chatId": doc.ref.id, **doc.data}).state()
            except ValidationError:
                found[doc.ref.id] = ChatInbox()
    return found


RECALCULATE_CURSOR = "recalculate"
"""The cursors' kind (see cursors) of pack427_recalculateUnreadCounters."""


def recalculate_for_caller(
    db: Client, uid: str, request: RecalculateUnreadCountersRequest, *, now: datetime | None = None
) -> RecalculateUnreadCountersResult:
    """`pack427_recalculateUnreadCounters`: recount the next RECALCULATE_PAGE of the caller's chats.

    Each call is counted against MAX_RECALCULATIONS_PER_MINUTE first (rate_limit.admit_recalculation);
    a call past it is resource-exhausted and recounts nothing. A user in more chats than one call
    recounts gets `hasMore` and a `cursor`: the calls from no cursor until `hasMore` is false
    recount every chat, each exactly on the state it was committed on, so the counts are then exact.

    Args:
        uid: the authenticated caller.
        request: the cursor of the previous call (default: from the first chat).
        now: the call's time, and the head's `updatedAt` if anything changed (default: the clock).

    Raises:
        ResourceExhausted: the caller made MAX_RECALCULATIONS_PER_MINUTE calls in the last minute.
        InvalidArgument: a cursor that is not one this callable gave the caller.
    """
    now = now or clock.now()
    after = cursors.decode(RECALCULATE_CURSOR, uid, request.cursor)["after"] if request.cursor else None
    if after is not None and not isinstance(after, str):
        raise InvalidArgument("cursor is not a cursor this service returned")
    rate_limit.admit_recalculation(db, uid, now=now)
    result, last = recalculate_page(db, uid, after=after, limit=constants.RECALCULATE_PAGE, now=now)
    cursor = cursors.encode(RECALCULATE_CURSOR, uid, {"after": last}) if result.hasMore else None
    return result.model_copy(update={"cursor": cursor})


def recalculate(db: Client, uid: str, *, now: datetime | None = None) -> RecalculateUnreadCountersResult:
    """Recount every chat of `uid`, page after page (the operators' `scripts/ops recalc-unread`, and
    `repair-inbox`): no rate limit; what every page checked and changed, together.

    Args:
        uid: the user.
        now: stored as the head's `updatedAt` if anything changed (default: the clock).
    """
    now = now or clock.now()
    after: str | None = None
    checked, changes = 0, list[CounterChange]()
    while True:
        page, after = recalculate_page(db, uid, after=after, now=now)
        checked, changes = checked + page.checked, changes + page.changes
        if not page.hasMore:
            return RecalculateUnreadCountersResult(success=True, recalculated=len(changes), checked=checked,
                                                   changes=changes)


def page_of_chats(
    members: list[str], tracked: Iterable[str], *, after: str | None, limit: int, parked: list[str] | None = None,
) -> tuple[list[str], bool]:
    """The chats one recount call covers, in id order, and whether more follow.

    A chat is recounted if the user is listed in it (`members`, from the member query), their
    head tracks it, or it is parked (`parked`, from the query of their inboxChats). When a query
    was cut off (it returned `limit` + 1), a chat past its last row is left to a later call:
    every chat of a page was looked for in every source.

    Args:
        members: ids of the chats listing the user after `after`, in id order, at most `limit` + 1.
        tracked: the chats the user's head tracks, any order, any position.
        after: the last chat of the previous call (None: from the first).
        limit: chats a call covers.
        parked: ids of the user's parked chats after `after`, in id order, at most `limit` + 1.
    """
    parked = parked or []
    cuts = [source[limit - 1] for source in (members, parked) if len(source) > limit]
    candidates = set(members[:limit]) | set(parked[:limit])
    candidates |= {chat_id for chat_id in tracked if after is None or chat_id > after}
    if cuts:
        candidates = {chat_id for chat_id in candidates if chat_id <= min(cuts)}
    ordered = sorted(candidates)
    return ordered[:limit], bool(cuts) or len(ordered) > limit


def parked_totals(db: Client, uid: str) -> tuple[int, int]:
    """How many chats of `uid` are parked and their unread messages together (aggregations of the
    inboxChats collection: a read per 1,000 documents), to repair the head's `parkedChats` and
    `parkedUnread` by."""
    result = paths.inbox_chats(db, uid).count(alias="n").sum("unread", alias="u").get()
    values = {r.alias: r.value for r in result[0]}
    return int(values.get("n") or 0), int(values.get("u") or 0)


class _Restart(Exception):
    """The head was damaged during a paged recount: it is rebuilt, and every chat recounted from the first."""


def recalculate_page(
    db: Client, uid: str, *, after: str | None = None, limit: int = constants.RECALCULATE_PAGE,
    now: datetime | None = None,
) -> tuple[RecalculateUnreadCountersResult, str | None]:
    """Recount up to `limit` of `uid`'s chats after `after` (by id) and repair any drift.

    Covers the chats the user takes part in and those their head tracks (page_of_chats); a chat
    they left (its document no longer lists them) is dropped from the head, its count with it. A
    damaged head is rebuilt from the inbox (`_rebuilt`), and then the page starts from the first
    chat whatever `after` says (the rebuilt head tracks nothing). The new counts are written in one
    commit conditional on the head; if a delivery or a read changed it meanwhile, the chats whose
    state on the head changed are recounted (the others' counts still hold: every change of a
    chat's entries or read position changes its state on the head) and the commit goes again.

    Args:
        uid: the user.
        after: the last chat id of the previous page (default: from the first).
        limit: chats this page covers (default RECALCULATE_PAGE).
        now: stored as the head's `updatedAt` if anything changed (default: the clock).

    Returns:
        What was checked and changed (`hasMore` if chats follow), and the chat to continue after.
    """
    now = now or clock.now()
    head = inbox.heads(db, [uid])[uid]
    start = after if head.usable else None
    member_of = (paths.chats(db).where(filter=FieldFilter("participants", "array_contains", uid))
                 .order_by(FieldPath.document_id()))
    if start is not None:
        member_of = member_of.start_after({FieldPath.document_id(): paths.chat(db, start)})
    members = [s.id for s in member_of.select([]).limit(limit + 1).stream()]
    parked_query = paths.inbox_chats(db, uid).order_by(FieldPath.document_id())
    if start is not None:
        parked_query = parked_query.start_after({FieldPath.document_id(): paths.inbox_chat(db, uid, start)})
    parked_ids = [s.id for s in parked_query.select([]).limit(limit + 1).stream()]
    # Kept across attempts, so that a retry reads only what changed: per chat, its state on the head
    # when it was counted, its read position and its count; and which chats the user left.
    counted: dict[str, tuple[ChatInbox | None, str | None, int]] = {}
    gone: dict[str, bool] = {}

    def attempt(n: int) -> tuple[RecalculateUnreadCountersResult, str | None]:
        current = head if n == 0 else inbox.heads(db, [uid])[uid]
        if not current.usable and start is not None:
            raise _Restart()
        state = current.parsed or _rebuilt(db, current)
        page, more = page_of_chats(members, state.chats, after=start, limit=limit, parked=parked_ids)
        # The page's parked chats come back into the head to be recounted (settled parks them again
        # if it must); the parked totals are recounted from their documents, read after the head.
        in_page = [c for c in page if c in parked_ids]
        parked_here = parked_states(db, uid, in_page) if in_page else {}
        count_parked, unread_parked = parked_totals(db, uid) if parked_ids or state.parked_chats else (0, 0)
        repaired_totals = (count_parked, unread_parked) != (state.parked_chats, state.parked_unread)
        state = state.model_copy(update={
            "chats": {**parked_here, **state.chats},  # a chat both held and parked: the head's holds
            "parked_chats": max(count_parked - len(parked_here), 0),
            "parked_unread": max(unread_parked - sum(p.unread for p in parked_here.values()), 0),
        })
        tracked = state.chats
        unlisted = {c for c in page if c not in members and c in tracked and c not in gone}
        found_left = _chats_left(db, uid, unlisted)
        gone.update({c: c in found_left for c in unlisted})
        left = {c for c in page if gone.get(c)}
        stale = [c for c in page if c not in left and (c not in counted or counted[c][0] != tracked.get(c))]
        positions = {c: tracked[c].read_up_to for c in stale if c in tracked}
        untracked = {c for c in stale if c not in tracked}
        positions |= inbox.read_positions(db, uid, untracked) if untracked else {}
        with ThreadPoolExecutor(max_workers=constants.RECALCULATE_PARALLELISM) as pool:
            recounted = pool.map(lambda c: count_unread(db, uid, c, positions[c]), stale)
            counted.update({c: (tracked.get(c), positions[c], k) for c, k in zip(stale, recounted, strict=True)})
        counts = {c: counted[c][2] for c in page if c not in left} | dict.fromkeys(left, 0)
        changes = [
            CounterChange(chatId=chat_id, before=tracked[chat_id].unread if chat_id in tracked else None, after=count)
            for chat_id, count in sorted(counts.items())
            if (tracked[chat_id].unread if chat_id in tracked else 0) != count
        ]
        if changes or left or not current.usable or repaired_totals:
            chats = {chat_id: s for chat_id, s in tracked.items() if chat_id not in left}
            for change in changes:
                if change.chatId not in left:
                    s = chats.get(change.chatId) or ChatInbox(read_up_to=counted[change.chatId][1])
                    chats[change.chatId] = s.model_copy(update={"unread": change.after})
            batch = db.batch()
            moved = inbox.settled(state.model_copy(update={"chats": chats, "updated_at": now}), uid,
                                  unparked_chats=parked_here)
            # Every field of a head is written: a damaged one is replaced, conditional on it as read.
            inbox.add_moved(db, batch, current, moved)
            store.commit(batch)
            logger.info(f"repaired {len(changes)} unread counts of {uid}" + ("" if current.usable else
                        " and rebuilt their damaged inbox head"), uid=uid, changes=[c.model_dump() for c in changes],
                        left=sorted(left))
        result = RecalculateUnreadCountersResult(
            success=True, recalculated=len(changes), checked=len(page), changes=changes, hasMore=more)
        return result, page[-1] if page else None

    try:
        return store.retry_on_conflict(
            attempt, attempts=constants.UNREAD_WRITE_RETRIES,
            give_up=lambda: Aborted("the inbox kept changing during the recount; try again"),
        )
    except _Restart:
        return recalculate_page(db, uid, limit=limit, now=now)


def _message_of_chat(db: Client, chat_id: str, uid: str, message_id: str) -> bool:
    """Whether the message is the chat's: in its messages, or in the reader's inbox under that chat
    (one round trip).

    The inbox is checked too because it is what the reader has seen (and what
    counts); a chat core that keeps messages elsewhere still works.
    """
    message, entry = paths.chat_message(db, chat_id, message_id), paths.inbox_entry(db, uid, message_id)
    found = store.read(db, [message, entry])
    placed = found[entry.path]
    return found[message.path].exists or (placed.exists and placed.data.get("chatId") == chat_id)


def _chats_left(db: Client, uid: str, candidates: set[str]) -> set[str]:
    """Of `candidates` (chats the head counts but the user is not listed in), those the user left:
    the chat exists and does not list them. (A nudge chat has no document, and stays.)"""
    if not candidates:
        return set()
    found = store.read(db, [paths.chat(db, chat_id) for chat_id in sorted(candidates)])
    left = set()
    for doc in found.values():
        if doc.exists:
            participants = doc.data.get("participants")
            if not isinstance(participants, list) or uid not in participants:
                left.add(doc.ref.id)
    return left


def _rebuilt(db: Client, head: inbox.Head) -> InboxHead:
    """A head to replace a damaged one: its seq the inbox's newest entry's (so no seq is given twice),
    its chats to be recounted (`pruned`: a chat it does not track takes its read position from its
    receipt). The devices' acknowledged position is not the head's (InboxAcks): it stays as it is."""
    newest = list(paths.inbox(db, head.uid).order_by("seq", direction="DESCENDING").limit(1).stream())
    seq = max(newest[0].get("seq") if newest else 0, 0)
    return InboxHead(seq=seq, message_id=newest[0].id if newest else None, pruned=True)


def _time_of(message_id: str, now: datetime) -> datetime:
    """The time in a ULID message id; `now` for a chat core's id of another scheme."""
    try:
        return ULID.from_str(message_id).datetime
    except ValueError:
        return now
