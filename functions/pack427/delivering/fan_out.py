"""Fan-out: a message's delivery to a large group, in chunks, resumable after a crash at any point.

A send to a chat with more than INLINE_MAX_RECIPIENTS recipients, every send
to a chat whose `fanOutPending` is set, and every message the chat core
creates in chat-core mode (chat_core_intake) is accepted with a fan-out job
(`chats/{chatId}/fanOuts/{messageId}`, FanOut) in the same atomic commit as
the message, listing its recipients: in the job document up to
FAN_OUT_INLINE_BYTES of ids, the rest in part documents of at most
FAN_OUT_PART_BYTES (`split_recipients`), so that no document nears Firestore's
1 MiB whatever the ids (10,000 of 128 characters). Its trigger (`pack427_onFanOut`) works
the chat's jobs, and the processor resumes a job nobody moved for
FAN_OUT_STALLED_SECONDS (`resume_stalled`).

A worker takes the chat's oldest job and handles its recipients FAN_OUT_CHUNK
at a time, each chunk in one commit that also moves the job's cursor,
conditional on the job as read (the last chunk deletes the job):

- a recipient with no older message of the chat waiting in a queue gets the
  message placed in their inbox, as a send places it (placing.add_placed:
  entry and head move, conditional on the head; a push-only queue entry if
  offline);
- the others, a recipient whose head needs a read position (inbox) or is
  damaged (inbox.Head: set aside with an alert, delivered once repaired), and
  a whole chunk that lost FAN_OUT_PLACE_ATTEMPTS races for heads, get a queue
  entry awaiting the inbox, which the queue delivers behind the older ones;
- a recipient who blocked the sender, or whom the sender blocked, gets
  nothing (policy: a group's blocks), decided on profiles read with the chunk.

Exactly once: a chunk's writes and the cursor's move are one commit, so of
any number of workers and replays exactly one writes each chunk, and a crash
leaves the cursor where the last commit put it. Per-chat order: a chat's
jobs are worked one at a time, oldest message first; while a chat has jobs
(`fanOutPending`), each new message of it gets a job too, behind them; the
worker that finds no job left clears the flag. The send set `deliveryQueued`
too, so a later small send asks the queue before it places (see sending).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from firebase_functions import logger
from google.cloud.firestore import Client, WriteBatch
from google.cloud.firestore_v1 import DocumentSnapshot
from google.cloud.firestore_v1.base_query import FieldFilter
from pydantic import ValidationError

from .. import chat_core, clock, constants, inbox, paths, store
from ..guarding import policy
from ..models import ChatMessage, FanOut, FanOutPart, Region, UserProfile, problems
from . import backlog, placing, queue

ACTOR = "fanOut"

RESUME_BUDGET_SECONDS = 20
"""Of a processor run (50 s), the time stalled fan-outs may take before the queues' drain."""


class UnusableParts(Exception):
    """A part document of a job is missing or not a FanOutPart (a hand edit): the job is set aside."""


@dataclass(frozen=True)
class Job:
    """A fan-out job as read, with the update time its next move is conditional on, and all its
    recipients (the job's own, then its parts', which never change)."""

    doc: store.Read
    fan_out: FanOut
    recipients: list[str]

    @classmethod
    def load(cls, db: Client, doc: store.Read) -> Job:
        """The job of `doc` with its parts' recipients (one more round trip if it has parts).

        Raises:
            ValidationError: the job document is not a FanOut.
            UnusableParts: a part is missing or unusable.
        """
        fan_out = FanOut.model_validate(doc.data)
        chat_id, message_id = doc.ref.parent.parent.id, doc.ref.id
        return cls(doc, fan_out, fan_out.recipients + _part_recipients(db, chat_id, message_id, fan_out.parts))

    def moved(self, doc: store.Read) -> Job:
        """The same job as `doc` (read again, or as a commit left it) has it now."""
        return Job(doc, FanOut.model_validate(doc.data), self.recipients)

    @property
    def chunk(self) -> list[str]:
        """The recipients the job's next commit handles."""
        return self.recipients[self.fan_out.next:self.fan_out.next + constants.FAN_OUT_CHUNK]


def _part_recipients(db: Client, chat_id: str, message_id: str, parts: int) -> list[str]:
    """The recipients of a job's `parts` part documents, in order (one round trip); UnusableParts if one is
    missing or unusable."""
    refs = [paths.fan_out_part(db, chat_id, message_id, k) for k in range(1, parts + 1)]
    found = store.read(db, refs)
    recipients: list[str] = []
    for k, ref in enumerate(refs, start=1):
        doc = found[ref.path]
        if not doc.exists:
            raise UnusableParts(f"part {k} of {parts} is missing")
        try:
            recipients += FanOutPart.model_validate(doc.data).recipients
        except ValidationError as err:
            raise UnusableParts(f"part {k} of {parts}: {problems(err)}") from None
    return recipients


def split_recipients(
    recipients: list[str], *, inline_bytes: int, part_bytes: int
) -> tuple[list[str], list[list[str]]]:
    """The recipients a job document holds itself and those of each of its parts, in order.

    An id takes its Firestore size (UTF-8 bytes and 1). The job holds the first ones, as many as
    `inline_bytes` hold; each part the next ones, as many as `part_bytes` hold (an id is never
    split: one larger than a part would get a part of its own, which no accepted id is).

    Args:
        recipients: all of them, in the order the fan-out handles them.
        inline_bytes: the job document's share (FAN_OUT_INLINE_BYTES).
        part_bytes: a part's (FAN_OUT_PART_BYTES).
    """
    groups: list[list[str]] = [[]]
    budget, used = inline_bytes, 0
    for uid in recipients:
        size = len(uid.encode()) + 1
        if used + size > budget and (groups[-1] or len(groups) == 1):
            groups.append([])
            budget, used = part_bytes, 0
        groups[-1].append(uid)
        used += size
    return groups[0], groups[1:]


def add_job(db: Client, batch: WriteBatch, message: ChatMessage, recipients: list[str], *, origin: Region) -> None:
    """Add to the accepting commit the creation of `message`'s fan-out job, and of its parts if its
    recipients' ids take more than FAN_OUT_INLINE_BYTES.

    Args:
        recipients: who the message goes to, ids that can key documents (chat_core.parse_chat);
            blocks are applied chunk by chunk.
        origin: the sender's home region.
    """
    inline, parts = split_recipients(recipients, inline_bytes=constants.FAN_OUT_INLINE_BYTES,
                                     part_bytes=constants.FAN_OUT_PART_BYTES)
    job = FanOut(chat_id=message.chat_id, message=message, recipients=inline, parts=len(parts), origin=origin,
                 created_at=message.created_at, updated_at=message.created_at)
    batch.create(paths.fan_out(db, message.chat_id, message.id), job.to_firestore())
    for k, part in enumerate(parts, start=1):
        batch.create(paths.fan_out_part(db, message.chat_id, message.id, k), FanOutPart(recipients=part).to_firestore())


def job_cost(db: Client, message: ChatMessage, recipients: list[str], *, origin: Region) -> store.Cost:
    """What `add_job` adds to a commit (store.commits): the job and its parts, by their sizes."""
    inline, parts = split_recipients(recipients, inline_bytes=constants.FAN_OUT_INLINE_BYTES,
                                     part_bytes=constants.FAN_OUT_PART_BYTES)
    job = FanOut(chat_id=message.chat_id, message=message, recipients=inline, parts=len(parts), origin=origin,
                 created_at=message.created_at, updated_at=message.created_at)
    cost = store.Cost.of_write(paths.fan_out(db, message.chat_id, message.id).path, job.to_firestore())
    for k, part in enumerate(parts, start=1):
        cost += store.Cost.of_write(paths.fan_out_part(db, message.chat_id, message.id, k).path,
                                    FanOutPart(recipients=part).to_firestore())
    return cost


def on_created(db: Client, snapshot: DocumentSnapshot | None) -> None:
    """The trigger of a new job: work its chat's jobs (a replayed event finds nothing left)."""
    if snapshot is not None and snapshot.exists:
        run_chat(db, snapshot.reference.parent.parent.id)


def run_chat(db: Client, chat_id: str, *, now: datetime | None = None) -> int:
    """Work `chat_id`'s fan-out jobs, oldest message first, until none is left; then clear `fanOutPending`.

    Safe to run in several workers at once (see the module docstring).

    Args:
        now: the deliveries' time (default: the clock at each chunk).

    Returns:
        Recipients this call handled (placed, queued or left out for a block).
    """
    handled = 0
    while True:
        chat_doc = store.read(db, [paths.chat(db, chat_id)])[paths.chat(db, chat_id).path]
        oldest = list(paths.fan_outs(db, chat_id).order_by("__name__").limit(1).stream())
        if oldest:
            doc = store.Read.of(oldest[0])
            try:
                job = Job.load(db, doc)
            except (ValidationError, UnusableParts) as err:  # the chat's later messages go on
                _set_aside(db, doc, problems(err) if isinstance(err, ValidationError) else str(err))
                continue
            handled += _run_job(db, job, now=now)
            continue
        if not chat_doc.exists or not chat_doc.data.get("fanOutPending"):
            return handled
        batch = db.batch()
        store.update_if_unchanged(db, batch, chat_doc.ref, chat_doc.time, {"fanOutPending": False})
        if store.commit_if_unchanged(batch):
            return handled
        # A send changed the chat (maybe with a new job): look again.


def _set_aside(db: Client, doc: store.Read, problem: str) -> None:
    """Move an unusable job (a hand edit) to `quarantinedFanOuts`, with the problem, conditional on it as
    read; logged as the FAN_OUT_QUARANTINED alert. Its parts stay where they are, under the job's path,
    where a released job finds them. `scripts/ops release-fan-out` puts a repaired one back."""
    chat_id = doc.ref.parent.parent.id
    batch = db.batch()
    batch.delete(doc.ref, option=db.write_option(last_update_time=doc.time))
    batch.set(paths.quarantined_fan_out(db, chat_id, doc.ref.id),
              {**doc.data, "quarantine": {"problem": problem[:1000], "at": clock.now()}})
    if store.commit_if_unchanged(batch):
        logger.error(f"fan-out job {doc.ref.path} QUARANTINED: {problem} (scripts/ops quarantined; "
                     f"scripts/ops release-fan-out {chat_id} {doc.ref.id})", alert="FAN_OUT_QUARANTINED",
                     chatId=chat_id, messageId=doc.ref.id, problem=problem[:1000])


def release(db: Client, chat_id: str, message_id: str) -> str | None:
    """Put a quarantined job, repaired by hand, back: its chat's fan-out goes on from its cursor (the
    job's trigger fires again; a member it already placed is never placed twice, their inbox entry
    exists). Returns None if it is back, otherwise why not."""
    held = store.Read.of(paths.quarantined_fan_out(db, chat_id, message_id).get())
    if not held.exists:
        return f"no quarantined fan-out {chat_id}/{message_id}"
    data = {k: v for k, v in held.data.items() if k != "quarantine"}
    try:
        _part_recipients(db, chat_id, message_id, FanOut.model_validate(data).parts)
    except ValidationError as err:
        return f"still unusable: {problems(err)}"
    except UnusableParts as err:
        return f"still unusable: {err}"
    batch = db.batch()
    batch.delete(held.ref, option=db.write_option(last_update_time=held.time))
    batch.create(paths.fan_out(db, chat_id, message_id), data | {"updatedAt": clock.now()})
    batch.update(paths.chat(db, chat_id), {"fanOutPending": True, "deliveryQueued": True})
    return None if store.commit_if_unchanged(batch) else f"{chat_id}/{message_id} changed meanwhile; look again"


def resume_stalled(
    db: Client, *, now: datetime | None = None, limit: int = 100, budget_s: float = RESUME_BUDGET_SECONDS
) -> int:
    """Work the chats of jobs nobody moved for FAN_OUT_STALLED_SECONDS (a crashed or timed-out worker).

    Called by the processor each run; after `budget_s` (default RESUME_BUDGET_SECONDS) no
    further chat is started (the first always is), so the queues' drain keeps most of the
    run. Returns the recipients handled.
    """
    now = now or clock.now()
    cutoff = now - timedelta(seconds=constants.FAN_OUT_STALLED_SECONDS)
    query = db.collection_group("fanOuts").where(filter=FieldFilter("updatedAt", "<", cutoff)).limit(limit)
    chats = dict.fromkeys(snapshot.get("chatId") for snapshot in query.select(["chatId"]).stream())
    handled, deadline = 0, time.monotonic() + budget_s
    for chat_id in chats:
        logger.warn(f"resuming the stalled fan-out of chat {chat_id}", alert="FAN_OUT_STALLED", chatId=chat_id)
        try:
            handled += run_chat(db, chat_id)
        except Exception as err:  # noqa: BLE001 - one chat's trouble must not hold the others back
            logger.error(f"the stalled fan-out of chat {chat_id} failed again: {err!r}", chatId=chat_id)
        if time.monotonic() > deadline:
            break  # the next run goes on: the jobs keep their cursors
    return handled


def _run_job(db: Client, first: Job, *, now: datetime | None) -> int:
    """Handle `job`'s recipients chunk by chunk until its last commit deletes it (or another worker's does).

    The next chunk's profiles and heads are read while the current one commits
    (other members: the commit does not change them); after a conflict they are read again.
    """
    job: Job | None = first
    message = first.fan_out.message
    sender_ref = paths.user(db, message.sender_id)
    sender = chat_core.profile_of(store.read(db, [sender_ref])[sender_ref.path])
    # Older messages of the chat cannot start waiting later: their queue entries were
    # created before this job was (by their sends, or by earlier jobs).
    waiting = backlog.recipients_awaiting(db, message.chat_id, limit=constants.FAN_OUT_WAITING_LOOKUP)
    handled, lost_races = 0, 0
    reads = _read_chunk(db, first.chunk, waiting, place=True)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fan-out-prefetch") as prefetch:
        while job is not None:
            following = job.recipients[job.fan_out.next + len(job.chunk):][:constants.FAN_OUT_CHUNK]
            upcoming = prefetch.submit(_read_chunk, db, following, waiting, place=True) if following else None
            try:
                moved, taken = _commit_chunk(db, job, sender, reads, now=now or clock.now())
            except store.Conflict:
                if upcoming is not None:
                    upcoming.cancel()
                fresh = store.read(db, [job.doc.ref])[job.doc.ref.path]
                # The job unchanged: a head moved under the chunk. Changed: another worker moved it.
                lost_races = lost_races + 1 if fresh.update_time == job.doc.update_time else 0
                job = first.moved(fresh) if fresh.exists else None
                if job is not None:
                    reads = _read_chunk(db, job.chunk, waiting, place=lost_races < constants.FAN_OUT_PLACE_ATTEMPTS)
                continue
            handled += taken
            job, lost_races = moved, 0
            if job is not None and upcoming is not None and job.chunk == following:
                reads = upcoming.result()  # more members: `following` was read meanwhile
            elif job is not None:  # the commit held less than a chunk (store.fitting): the rest is next
                if upcoming is not None:
                    upcoming.cancel()
                reads = _read_chunk(db, job.chunk, waiting, place=True)
    return handled


@dataclass(frozen=True)
class ChunkReads:
    """What a chunk's commit is decided on: the members' profiles, and the heads of those it may place."""

    users: dict[str, UserProfile]
    heads: dict[str, inbox.Head]


def _read_chunk(db: Client, chunk: list[str], waiting: set[str] | None, *, place: bool) -> ChunkReads:
    """Profiles of `chunk` and the heads of its members who may be placed, in one round trip.

    Args:
        waiting: members with an older message of the chat in a queue (None: maybe all): they are not placed.
        place: False after FAN_OUT_PLACE_ATTEMPTS lost races: nobody is placed, every member is queued.
    """
    placeable = [uid for uid in chunk if waiting is not None and uid not in waiting] if place else []
    head_refs = {uid: paths.inbox_head(db, uid) for uid in placeable}
    users, others = chat_core.load_users_with(db, chunk, list(head_refs.values()))
    heads = {uid: inbox.Head.of(uid, store.Read.of(others[ref.path])) for uid, ref in head_refs.items()}
    return ChunkReads(users, heads)


CHUNK_RESERVE = store.Cost(2, 4096)
"""What a chunk's commit writes besides its members' writes: the cursor's move (or the job's
delete), and the deletes of the job's parts (added per part)."""


def _commit_chunk(
    db: Client, job: Job, sender: UserProfile, reads: ChunkReads, *, now: datetime
) -> tuple[Job | None, int]:
    """Commit the job's next chunk, as much of it as one commit holds, and the move of its cursor
    past it (or the job's deletion after the last).

    The members' writes are sized (store.fitting: COMMIT_MAX_WRITES writes, COMMIT_MAX_BYTES): a
    member whose head is large (many chats, long ids) takes more of the commit, and the chunk ends
    where the next member would pass either bound; the cursor moves by the members committed, so
    the rest are the next chunk's. At least one member a commit.

    Args:
        sender: the sender's profile (blocks).
        reads: the chunk's profiles and heads; a member without a head read gets a queue entry.
        now: the delivery time.

    Returns:
        The job as this commit left it (None if it was the last chunk), and the members committed.

    Raises:
        store.Conflict: the job or a head changed since it was read; nothing was written.
    """
    fan_out, message = job.fan_out, job.fan_out.message
    units: list[tuple[store.Cost, Callable[[WriteBatch], None] | None]] = []
    for uid in job.chunk:
        if policy.blocked_between(message.sender_id, sender, uid, reads.users[uid]):
            units.append((store.Cost(), None))
            continue
        head = reads.heads.get(uid)
        if head is not None and head.usable and not inbox.needs_lookup(head.state, [fan_out.chat_id]):
            placed = placing.placement(db, message, head, reads.users[uid], origin=fan_out.origin, via="fanOut",
                                       now=now)
            units.append((placed.cost(db), partial(placing.add_placement, db, placed=placed, actor=ACTOR)))
        else:
            entry = placing.queue_entry(db, message, uid, reads.users[uid], origin=fan_out.origin)
            units.append((queue.entry_cost(db, entry), partial(queue.add_enqueue, db, entry=entry, actor=ACTOR)))
    reserve = CHUNK_RESERVE + store.Cost(fan_out.parts, 256 * fan_out.parts)
    taken = store.fitting([cost for cost, _ in units], reserve=reserve)
    moved = fan_out.model_copy(update={"next": fan_out.next + taken, "updated_at": now})
    last = moved.next >= len(job.recipients)
    batch = db.batch()
    if last:
        batch.delete(job.doc.ref, option=db.write_option(last_update_time=job.doc.update_time))
        for k in range(1, fan_out.parts + 1):  # done with the job; nothing reads them once it is gone
            batch.delete(paths.fan_out_part(db, fan_out.chat_id, message.id, k))
    else:
        store.update_if_unchanged(db, batch, job.doc.ref, job.doc.time, {"next": moved.next, "updatedAt": now})
    for _, add in units[:taken]:
        if add is not None:
            add(batch)
    results = store.commit(batch)
    if last:
        return None, taken
    return job.moved(store.Read(job.doc.ref, moved.to_firestore(), results[0].update_time)), taken
