"""The inbox: each user's delivered messages, numbered in the order they became
visible, and the head that keeps their count.

Every inbox entry gets the next `seq` of its user, and is created in the same
commit that moves the user's head (`InboxHead`) to that seq, conditional on
the head being unchanged since it was read. Two deliveries to one user that
race both read seq n; one commits n+1, the other's precondition fails and it
goes again with n+2. Seq n+1 is thus only ever assigned once entry n is
visible, so a reader that has seen seq k has seen every entry up to k:
"everything after seq k" never skips an entry, whatever the timestamps say,
however late a retried delivery lands. Sync cursors are seqs.

Unread counts live on the same head, per chat (`ChatInbox`): the commit that
creates an entry counts it, unless it is at or before the chat's read
position, and markAsRead sets the position and the recounted number in a
commit conditional on the head too. Every change of an inbox or of a read
position is thus serialised on one document, and each count is decided on
the state it changes: the counts are exact at every moment, never negative,
and a duplicated delivery (refused by `create`) counts nothing. No trigger
recounts after the fact.

The head is bounded (`bounded`): at most MAX_TRACKED_CHATS chats and
INBOX_HEAD_MAX_BYTES, whatever the number of chats with unread messages.
Past either, fully read chats are pruned, then the least recently active
chats with unread messages are parked: each in its own document
(`users/{uid}/inboxChats/{chatId}`, ParkedChat), written in the commit that
takes it off the head, which keeps the parked chats' unread total
(`parkedUnread`) and number (`parkedChats`). A change to a chat the head does
not hold, when it has parked chats, reads that chat's document first
(`look_up`) and brings it back into the head, deleting the document in the
same commit (`placed`, `read_to`); the commit is conditional on the head as
ever, so parked counts are serialised with everything else and the total
(the chats' and `parkedUnread`) is exact at every moment.

The functions above the line are pure: what a head becomes. Below it, the
reads and commits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from firebase_functions import logger
from google.api_core import exceptions as gexc
from google.cloud.firestore import Client, WriteBatch
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.types.write import WriteResult
from pydantic import ValidationError

from . import constants, paths, store
from .errors import FailedPrecondition
from .models import ChatInbox, InboxAcks, InboxEntry, InboxHead, ParkedChat, problems


class InboxBusy(Exception):
    """The head kept moving for INBOX_HEAD_RETRIES attempts: other writers won every race (not a
    failure of the delivery, which stays due for the next worker)."""


HEAD_UNUSABLE = "INBOX_HEAD_UNUSABLE"
INBOX_NEEDS_REPAIR = "inbox_needs_repair"


class HeadUnusable(FailedPrecondition):
    """The user's inbox head is damaged (another system or a hand edit): nothing can be numbered
    or counted on it until it is rebuilt from the inbox (unread.recalculate; `scripts/ops
    repair-inbox USER` also delivers what waited). Other users are not affected: a send or a
    fan-out queues this user's messages, and their delivery fails until the repair."""

    def __init__(self, uid: str, problem: str):
        super().__init__(f"the inbox of {uid} needs repair ({problem}); pack427_recalculateUnreadCounters rebuilds it",
                         {"reason": INBOX_NEEDS_REPAIR})


@dataclass(frozen=True)
class Lookup:
    """What the documents beside a head say of chats it does not hold (`look_up`).

    Attributes:
        chats: the chats looked up (each of `needs_lookup`'s).
        parked: of those, the parked ones, as their inboxChats documents hold them.
        positions: of the others, their read positions (from their read receipts; None: none).
    """

    chats: frozenset[str] = frozenset()
    parked: dict[str, ChatInbox] = field(default_factory=dict)
    positions: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Moved:
    """What a change of a head writes: the head, and the parked chats' documents.

    Attributes:
        head: the head after the change, within its bounds (`bounded`).
        park: chats moved out of the head by the change: their inboxChats documents, written.
        unpark: chats brought back into the head and not parked again: their documents, deleted.
    """

    head: InboxHead
    park: dict[str, ChatInbox] = field(default_factory=dict)
    unpark: frozenset[str] = frozenset()


def needs_lookup(head: InboxHead, chat_ids: Iterable[str]) -> set[str]:
    """Of `chat_ids`, the chats a change must look up beside the head (`look_up`) before it decides.

    A chat the head does not hold is new to the inbox (nothing read, nothing unread), unless the
    head ever pruned chats (then its read position may be in its read receipt) or has parked
    chats (then it may be one: its count is in its inboxChats document). A user with few chats
    has neither, and nothing is looked up.
    """
    if not head.pruned and not head.parked_chats:
        return set()
    return {chat_id for chat_id in chat_ids if chat_id not in head.chats}


def unparked(head: InboxHead, parked: dict[str, ChatInbox]) -> InboxHead:
    """`head` with the `parked` chats (as their documents hold them) back in `chats`, their counts
    out of `parkedUnread` and `parkedChats`."""
    if not parked:
        return head
    return head.model_copy(update={
        "chats": {**head.chats, **parked},
        "parked_unread": max(head.parked_unread - sum(s.unread for s in parked.values()), 0),
        "parked_chats": max(head.parked_chats - len(parked), 0),
    })


def chat_size(chat_id: str, state: ChatInbox) -> int:
    """What one chat takes of a head's Firestore size (its key in `chats` and its map)."""
    return store.string_size(chat_id) + store.value_size(state.to_firestore())


def head_size(uid: str, head: InboxHead) -> int:
    """The Firestore size of `uid`'s head `head` (store.document_size: its name, its fields)."""
    return store.document_size(paths.inbox_head_name(uid), head.to_firestore())


def bounded(
    head: InboxHead, uid: str, *, max_chats: int | None = None, max_bytes: int | None = None,
) -> tuple[InboxHead, dict[str, ChatInbox]]:
    """`head` within `max_chats` chats and `max_bytes` bytes (default MAX_TRACKED_CHATS and
    INBOX_HEAD_MAX_BYTES, as they are at the call), and the chats parked to get there.

    While over either bound: first the fully read chats go, oldest newest-message first (pruned:
    their read positions stay in their read receipts, `needs_lookup`); then the chats with unread
    messages that were least recently active (oldest newest-message first) are parked: out of
    `chats`, their counts added to `parkedUnread` and `parkedChats`, their states returned for
    their inboxChats documents. So the total unread (the chats' and `parkedUnread`) is the same
    before and after. The most recently active chat is the last to go.
    """
    max_chats = constants.MAX_TRACKED_CHATS if max_chats is None else max_chats
    max_bytes = constants.INBOX_HEAD_MAX_BYTES if max_bytes is None else max_bytes
    dumped = head.to_firestore()  # one dump: this runs on every change of every head
    sizes = {chat_id: store.string_size(chat_id) + store.value_size(state)
             for chat_id, state in dumped["chats"].items()}
    total = store.document_size(paths.inbox_head_name(uid), {**dumped, "chats": {}}) + sum(sizes.values())
    count = len(sizes)

    def over() -> bool:
        return count > max_chats or total > max_bytes

    if not over():
        return head, {}
    by_age = sorted((s.last or "", chat_id) for chat_id, s in head.chats.items())
    gone: set[str] = set()
    parked: dict[str, ChatInbox] = {}
    for _, chat_id in by_age:
        if not over():
            break
        if head.chats[chat_id].unread == 0:
            gone.add(chat_id)
            count, total = count - 1, total - sizes[chat_id]
    for _, chat_id in by_age[:-1]:  # never the most recently active
        if not over():
            break
        if chat_id not in gone:
            parked[chat_id] = head.chats[chat_id]
            count, total = count - 1, total - sizes[chat_id]
    chats = {chat_id: s for chat_id, s in head.chats.items() if chat_id not in gone and chat_id not in parked}
    return head.model_copy(update={
        "chats": chats,
        "pruned": head.pruned or bool(gone),
        "parked_unread": head.parked_unread + sum(s.unread for s in parked.values()),
        "parked_chats": head.parked_chats + len(parked),
    }), parked


def settled(head: InboxHead, uid: str, *, unparked_chats: Iterable[str] = ()) -> Moved:
    """What writing `head` (changed, maybe over its bounds) takes: the head within them, the chats
    parked to get there, and the chats brought back (`unparked_chats`) whose documents go."""
    within, parked = bounded(head, uid)
    return Moved(within, parked, frozenset(set(unparked_chats) - parked.keys()))


def placed(
    head: InboxHead,
    owner: str,
    entries: list[InboxEntry],
    *,
    now: datetime,
    lookup: Lookup | None = None,
) -> tuple[Moved, list[InboxEntry]]:
    """The head after `entries` are added to `owner`'s inbox (within its bounds), and the entries numbered.

    Args:
        head: the head as read.
        owner: whose inbox; an entry of theirs (never the case in delivery) is not unread.
        entries: in the order they become visible; their `seq` is ignored.
        now: the head's `updatedAt`.
        lookup: what `look_up` found of the entries' chats that `needs_lookup`: a parked chat is
            brought back into the head (its document deleted, unless parked again) and counted there.

    Raises:
        ValueError: a chat that needs a lookup was not looked up.
    """
    lookup = lookup or Lookup()
    missing = needs_lookup(head, (e.chat_id for e in entries)) - lookup.chats
    if missing:
        raise ValueError(f"lookups needed for chats {sorted(missing)}")
    back = {chat_id: s for chat_id, s in lookup.parked.items() if chat_id not in head.chats}
    head = unparked(head, back)
    numbered = [entry.model_copy(update={"seq": head.seq + 1 + i}) for i, entry in enumerate(entries)]
    chats = dict(head.chats)
    for entry in numbered:
        state = chats.get(entry.chat_id) or ChatInbox(read_up_to=lookup.positions.get(entry.chat_id))
        unread = entry.sender_id != owner and (state.read_up_to is None or entry.message_id > state.read_up_to)
        chats[entry.chat_id] = state.model_copy(
            update={"unread": state.unread + unread, "last": max(state.last or "", entry.message_id)}
        )
    last = numbered[-1]
    moved = head.model_copy(update={"seq": last.seq, "message_id": last.message_id, "chats": chats, "updated_at": now})
    return settled(moved, owner, unparked_chats=back), numbered


def contiguous(entries: list[InboxEntry], after_seq: int) -> list[InboxEntry]:
    """The leading `entries` (in seq order) whose seqs follow `after_seq` one by one, up to the first gap."""
    prefix = []
    for expected, entry in enumerate(entries, start=after_seq + 1):
        if entry.seq != expected:
            break
        prefix.append(entry)
    return prefix


def read_to(
    head: InboxHead, uid: str, chat_id: str, position: str, unread: int, *, now: datetime,
    parked: ChatInbox | None = None,
) -> Moved:
    """The head after `uid` read `chat_id` up to `position`, `unread` messages left unread.

    Args:
        parked: the chat's parked state (its inboxChats document), if it is parked: it comes back
            into the head, read, and the head is bounded again (it may be parked again).
    """
    back = {chat_id: parked} if parked is not None and chat_id not in head.chats else {}
    head = unparked(head, back)
    state = head.chats.get(chat_id) or ChatInbox()
    chats = {**head.chats, chat_id: state.model_copy(update={"read_up_to": position, "unread": unread})}
    return settled(head.model_copy(update={"chats": chats, "updated_at": now}), uid, unparked_chats=back)


def pruned(head: InboxHead, *, limit: int = constants.MAX_TRACKED_CHATS) -> InboxHead:
    """`head` with at most `limit` chats, if fully read ones can go: oldest newest-message first.

    Chats with unread messages stay (`bounded` parks them). A dropped chat's read position
    stays in its read receipt (`needs_lookup`).
    """
    excess = len(head.chats) - limit
    if excess <= 0:
        return head
    read = sorted((s.last or "", chat_id) for chat_id, s in head.chats.items() if s.unread == 0)
    dropped = read[:excess]
    if not dropped:
        return head
    gone = {chat_id for _, chat_id in dropped}
    chats = {chat_id: s for chat_id, s in head.chats.items() if chat_id not in gone}
    return head.model_copy(update={"chats": chats, "pruned": True})


# --------------------------------------------------------------- Firestore


@dataclass(frozen=True)
class Head:
    """A user's inbox head as read: its state, and the document a move is conditional on.

    A head that is not a valid InboxHead is read all the same (`usable` false, `problem` says
    why, logged as the INBOX_HEAD_UNUSABLE alert): `state` then raises HeadUnusable, so that no
    writer can number entries or counts on it, while the writers of other users go on.
    """

    uid: str
    doc: store.Read
    parsed: InboxHead | None
    problem: str | None = None

    @classmethod
    def of(cls, uid: str, doc: store.Read) -> Head:
        if not doc.exists:
            return cls(uid, doc, InboxHead())
        try:
            return cls(uid, doc, InboxHead.model_validate(doc.data))
        except ValidationError as err:
            problem = problems(err)[:500]
            logger.error(f"the inbox head of {uid} is unusable: {problem}; its messages wait until"
                         f" `scripts/ops repair-inbox {uid}`", alert=HEAD_UNUSABLE, uid=uid, problem=problem)
            return cls(uid, doc, None, problem)

    @property
    def usable(self) -> bool:
        return self.parsed is not None

    @property
    def state(self) -> InboxHead:
        """The head's state; HeadUnusable if it is damaged."""
        if self.parsed is None:
            raise HeadUnusable(self.uid, self.problem or "unreadable")
        return self.parsed


def heads(db: Client, uids: list[str]) -> dict[str, Head]:
    """The inbox heads of `uids`, in one round trip."""
    refs = {uid: paths.inbox_head(db, uid) for uid in uids}
    found = store.read(db, list(refs.values()))
    return {uid: Head.of(uid, found[ref.path]) for uid, ref in refs.items()}


def read_positions(db: Client, uid: str, chat_ids: set[str]) -> dict[str, str | None]:
    """The user's read positions in `chat_ids`, from their read receipts (one round trip)."""
    found = store.read(db, [paths.read_receipt(db, chat_id, uid) for chat_id in sorted(chat_ids)])
    return {doc.ref.parent.parent.id: receipt_position(doc) for doc in found.values()}


def receipt_position(doc: store.Read) -> str | None:
    """The read position in a read receipt as read (None: none, or one that is unusable as stored)."""
    position = doc.data.get("readUpToMessageId") if doc.exists else None
    return position if isinstance(position, str) and position else None


def look_up(db: Client, uid: str, head: InboxHead, chat_ids: Iterable[str]) -> Lookup:
    """What `needs_lookup` says a change of `head` must know of `chat_ids`, in one round trip: the
    parked chats' inboxChats documents (if the head has parked chats), the others' read receipts
    (if it pruned chats). Read after the head: every write of those documents is in a commit
    conditional on the head, so a commit conditional on the head as read decided on them as read.
    """
    wanted = sorted(needs_lookup(head, chat_ids))
    parked_refs = {c: paths.inbox_chat(db, uid, c) for c in wanted} if head.parked_chats else {}
    receipt_refs = {c: paths.read_receipt(db, c, uid) for c in wanted} if head.pruned else {}
    found = store.read(db, [*parked_refs.values(), *receipt_refs.values()])
    parked: dict[str, ChatInbox] = {}
    for chat_id, ref in parked_refs.items():
        doc = found[ref.path]
        if doc.exists:
            try:
                parked[chat_id] = ParkedChat.model_validate({"chatId": chat_id, **doc.data}).state()
            except ValidationError as err:  # a hand edit: counted as a new chat; recalculation repairs it
                logger.error(f"parked chat {ref.path} is unusable: {problems(err)[:300]}", event="PARKED_CHAT_UNUSABLE",
                             uid=uid)
                parked[chat_id] = ChatInbox()
    positions = {c: receipt_position(found[ref.path]) for c, ref in receipt_refs.items() if c not in parked}
    return Lookup(frozenset(wanted), parked, positions)


def parked_document(chat_id: str, state: ChatInbox, now: datetime | None) -> dict:
    """The inboxChats document of a chat parked at `now`."""
    return ParkedChat(chat_id=chat_id, unread=state.unread, read_up_to=state.read_up_to, last=state.last,
                      parked_at=now).to_firestore()


def add_moved(db: Client, batch: WriteBatch, head: Head, moved: Moved) -> None:
    """Add to `batch` the head's move to `moved.head`, conditional on the head being as read, and the
    writes of the chats it parks and the deletes of those it brought back (serialised by that
    condition: nothing writes them but a commit conditional on the head)."""
    store.write_if_unchanged(db, batch, head.doc, moved.head.to_firestore())
    for chat_id, state in moved.park.items():
        batch.set(paths.inbox_chat(db, head.uid, chat_id), parked_document(chat_id, state, moved.head.updated_at))
    for chat_id in sorted(moved.unpark):
        batch.delete(paths.inbox_chat(db, head.uid, chat_id))


def moved_cost(uid: str, moved: Moved) -> store.Cost:
    """What `add_moved` adds to a commit (store.commits)."""
    cost = store.Cost.of_write(paths.inbox_head_name(uid), moved.head.to_firestore())
    for chat_id, state in moved.park.items():
        cost += store.Cost.of_write(paths.inbox_chat_name(uid, chat_id), parked_document(chat_id, state, None))
    for chat_id in moved.unpark:
        cost += store.Cost.of_write(paths.inbox_chat_name(uid, chat_id))
    return cost


def add_placement(db: Client, batch: WriteBatch, head: Head, moved: Moved, numbered: list[InboxEntry]) -> None:
    """Add to `batch` the creation of `numbered` and the head's move to `moved`
    (as `placed` gave them), conditional on the head being as read."""
    for entry in numbered:
        batch.create(paths.inbox_entry(db, head.uid, entry.message_id), entry.to_firestore())
    add_moved(db, batch, head, moved)


def placement_cost(uid: str, moved: Moved, numbered: list[InboxEntry]) -> store.Cost:
    """What `add_placement` adds to a commit (store.commits)."""
    cost = moved_cost(uid, moved)
    for entry in numbered:
        cost += store.Cost.of_write(paths.inbox_entry_name(uid, entry.message_id), entry.to_firestore())
    return cost


def place(
    db: Client,
    uid: str,
    entries: list[InboxEntry],
    add_writes: Callable[[WriteBatch, list[InboxEntry]], None],
    *,
    now: datetime,
) -> list[WriteResult] | None:
    """Create inbox entries of `uid` with the next seqs, in one commit with `add_writes`.

    Args:
        entries: the entries, in the order they become visible (seqs are given here).
        add_writes: adds the caller's own writes (conditional ones included)
            to the batch, given the entries as numbered; they come first, so
            their results come first.
        now: stored as the head's update time.

    Returns:
        The commit's write results; None if one of the caller's
        preconditions failed (someone else changed what it read).

    Raises:
        google.api_core.exceptions.AlreadyExists: an entry is in the inbox already.
        InboxBusy: other writers of this inbox kept winning.
    """

    def attempt(_: int) -> list[WriteResult] | None:
        head = heads(db, [uid])[uid]
        unknown = needs_lookup(head.state, (e.chat_id for e in entries))
        lookup = look_up(db, uid, head.state, unknown) if unknown else None
        moved, numbered = placed(head.state, uid, entries, now=now, lookup=lookup)
        batch = db.batch()
        add_writes(batch, numbered)
        add_placement(db, batch, head, moved, numbered)
        try:
            return batch.commit()
        except gexc.AlreadyExists:
            refs = [paths.inbox_entry(db, uid, entry.message_id) for entry in entries]
            if any(s.exists for s in db.get_all(refs)):
                raise
            raise store.Conflict("the head was created by a concurrent delivery") from None
        except (gexc.FailedPrecondition, gexc.Aborted):
            if paths.inbox_head(db, uid).get().update_time == head.doc.update_time:
                return None  # the head held, so the caller's own precondition failed
            raise store.Conflict("the head moved") from None

    return store.retry_on_conflict(
        attempt, attempts=constants.INBOX_HEAD_RETRIES,
        give_up=lambda: InboxBusy(f"the inbox of {uid} kept changing for {constants.INBOX_HEAD_RETRIES} attempts"),
    )


def after(db: Client, uid: str, seq: int, *, limit: int) -> list[InboxEntry]:
    """Entries of `uid` with a seq greater than `seq`, in seq order, at most `limit`."""
    query = (
        paths.inbox(db, uid)
        .where(filter=FieldFilter("seq", ">", seq))
        .order_by("seq")
        .limit(limit)
    )
    return [_entry(s) for s in query.stream()]


def _entry(snapshot) -> InboxEntry:
    """An inbox entry as stored; a damaged one (a hand edit) is FailedPrecondition naming it, with an alert:
    sync cannot pass over it without skipping a message."""
    try:
        return InboxEntry.model_validate(snapshot.to_dict())
    except ValidationError as err:
        problem = problems(err)[:300]
        logger.error(f"inbox entry {snapshot.reference.path} is unusable: {problem}", alert="INBOX_ENTRY_UNUSABLE",
                     path=snapshot.reference.path, problem=problem)
        raise FailedPrecondition(f"inbox entry {snapshot.id} needs repair ({problem})",
                                 {"reason": INBOX_NEEDS_REPAIR}) from None


def page_after(db: Client, uid: str, seq: int, *, limit: int) -> tuple[list[InboxEntry], bool]:
    """Up to `limit` entries of `uid` after `seq`, without a gap, and whether there are more.

    A seq is assigned only once every entry before it is visible (see the module docstring), so
    a read that shows a gap saw a later commit but not an earlier one: the one way a device could
    pass over an entry. (On the emulator under load a device once ended a test 4 messages short of
    320; whether a gapped read was the cause is not established. Firestore's queries read one
    snapshot.) The page is read once more, and then ends before the gap (more to come); a gap at
    the very start of a second read (which no delivery makes) is passed over rather than holding
    the device back. Logged as INBOX_READ_GAP.
    """
    entries = after(db, uid, seq, limit=limit + 1)
    prefix = contiguous(entries, seq)
    if len(prefix) < len(entries):
        logger.warn(f"inbox read of {uid} after seq {seq} showed a gap at seq {seq + len(prefix) + 1}; reading again",
                    event="INBOX_READ_GAP", uid=uid)
        entries = after(db, uid, seq, limit=limit + 1)
        prefix = contiguous(entries, seq) or entries
    page = prefix[:limit]
    return page, len(entries) > len(page)


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
    return heads(db, [uid])[uid].state.seq


def acked_seqs(db: Client, uids: list[str]) -> dict[str, int]:
    """Each user's acknowledged position (InboxAcks; 0 when none), one round trip."""
    found = store.read(db, [paths.inbox_acks(db, uid) for uid in uids])
    return {uid: acked_seq_of(found[paths.inbox_acks(db, uid).path]) for uid in uids}


def acked_seq_of(doc: store.Read) -> int:
    """The acknowledged position in an InboxAcks document as read (0: none, or unusable as stored)."""
    return InboxAcks.model_validate(doc.data).acked_seq if doc.exists else 0


def entries_of_users(db: Client, uids: list[str], message_id: str) -> list[tuple[str, InboxEntry]]:
    """(uid, entry) of each of `uids` whose inbox holds `message_id` (the others left out), one round trip."""
    refs = [paths.inbox_entry(db, uid, message_id) for uid in uids]
    return [(s.reference.parent.parent.id, _entry(s)) for s in db.get_all(refs) if s.exists]


def entries(db: Client, uid: str, message_ids: list[str]) -> list[InboxEntry]:
    """The inbox entries of `uid` among `message_ids` (missing ones left out), one round trip."""
    refs = [paths.inbox_entry(db, uid, message_id) for message_id in message_ids]
    return [_entry(s) for s in db.get_all(refs) if s.exists]
