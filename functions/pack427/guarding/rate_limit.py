"""At most MAX_MESSAGES_PER_MINUTE (60) sends per user in any 60 seconds, exactly.

Operators can change the limit in `config/engine` (settings.set_rate_limit,
`scripts/ops rate-limit N`); "60" below stands for the limit in force.

Each user has one window document, `rateLimits/{uid}`: the accepted sends of
the last RATE_WINDOW_SECONDS (time, chat, content hash), oldest first. A
send reads it, refuses itself if the window already holds 60 sends, and
otherwise writes the window with its own send added, in the same atomic
batch as the message, conditional on the window being unchanged since it was
read (`create` when there was none).

Why concurrent sends cannot get past 60 together:
- Every accepted send committed a window write in its batch, so every
  accepted send is in the window (for 60 s).
- Those writes are serialised by their preconditions: a write succeeds only
  if no other send wrote the window after it was read. So the window a
  successful send read already held every send accepted before it, and it
  checked that they were fewer than 60 in the last minute.
- A send whose precondition failed committed nothing (the batch is atomic):
  no message, no queue entry, no billing request. It reads again and checks
  again (sending's retry loop).
Hence at no time do the accepted sends of any 60 seconds number more than
60, however many race. The window is a sliding log, not a counter per
calendar minute, so a burst across a minute boundary cannot double it.

A refused send raises ResourceExhausted before anything is written: it is
not billed and leaves no trace but a log line. `details.retryAfterMs` says
when the oldest send of the window leaves it.

Cost: one document read and one write per send (inside the batch the send
commits anyway). Sends of one user contend on the window; a user sends at
most one message a second on average, so this costs nothing in practice.
A TTL policy on `expiresAt` (firestore.indexes.json) deletes idle windows.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from firebase_functions import logger
from google.cloud.firestore import Client, WriteBatch
from google.cloud.firestore_v1 import DocumentSnapshot
from pydantic import ValidationError

from .. import constants, paths, settings, store
from ..errors import Aborted, ResourceExhausted
from ..models import CallWindow, RateWindow, SendRecord

WINDOW = timedelta(seconds=constants.RATE_WINDOW_SECONDS)
RATE_LIMITED = "rate_limited"


@dataclass(frozen=True)
class LoadedWindow:
    """A user's window as read, with what a conditional write of it needs.

    Attributes:
        uid: the user.
        recent: the sends still in the window at the time of the check, oldest first.
        update_time: the document's update time; None if there was none.
        limit: the sends allowed in a window (config/engine, at load time).
    """

    uid: str
    recent: list[SendRecord]
    update_time: datetime | None
    limit: int


def from_snapshot(db: Client, uid: str, snapshot: DocumentSnapshot, *, now: datetime) -> LoadedWindow:
    """The window of `uid` from its document as read (`paths.rate_window`).

    Args:
        uid: the sender.
        snapshot: the window document (it may not exist).
        now: the time of the send being checked.
    """
    recent: list[SendRecord] = []
    if snapshot.exists:
        try:
            sends = RateWindow.model_validate(snapshot.to_dict()).sends
        except ValidationError:
            sends = []  # a damaged window is rewritten by the next send
        recent = sorted((s for s in sends if s.at > now - WINDOW), key=lambda s: s.at)
    limit = settings.current(db).max_messages_per_minute
    return LoadedWindow(uid, recent, snapshot.update_time if snapshot.exists else None, limit)


def check(window: LoadedWindow, *, now: datetime) -> None:
    """ResourceExhausted if the window is full.

    Args:
        window: the sender's window, as loaded for this send.
        now: the time of the send.
    """
    limit = window.limit
    wait_ms = retry_after_ms([s.at for s in window.recent], limit, now=now)
    if wait_ms is None:
        return
    logger.warn(f"rate limit: {window.uid} sent {len(window.recent)} messages in the last minute",
                event=RATE_LIMITED, uid=window.uid, retryAfterMs=wait_ms)
    raise refusal(f"You can send at most {limit} messages a minute.", RATE_LIMITED, limit, wait_ms)


def retry_after_ms(times: list[datetime], limit: int, *, now: datetime) -> int | None:
    """How long until one more call fits a sliding window that holds `times`; None if it fits now.

    Args:
        times: the times of the accepted calls, oldest first (those older than the window are ignored).
        limit: calls allowed in any RATE_WINDOW_SECONDS.
        now: the time of the call being checked.
    """
    recent = [t for t in times if t > now - WINDOW]
    if len(recent) < limit:
        return None
    frees_at = recent[-limit] + WINDOW
    return max(1, round((frees_at - now).total_seconds() * 1000))


def refusal(message: str, reason: str, limit: int, wait_ms: int) -> ResourceExhausted:
    """The resource-exhausted answer to a call over a limit: `message` and the wait, in words and in
    `details` (reason, retryAfterMs, limit, windowSeconds)."""
    return ResourceExhausted(
        f"{message} Try again in {-(-wait_ms // 1000)} s.",
        {"reason": reason, "retryAfterMs": wait_ms, "limit": limit, "windowSeconds": constants.RATE_WINDOW_SECONDS},
    )


RECALCULATION_RATE_LIMITED = "recalculation_rate_limited"


def admit_recalculation(db: Client, uid: str, *, now: datetime) -> None:
    """Count one pack427_recalculateUnreadCounters call of `uid`, or refuse it as resource-exhausted
    if the user made MAX_RECALCULATIONS_PER_MINUTE in the last RATE_WINDOW_SECONDS.

    The window (`recalculationWindows/{uid}`) is written in a commit of its own, before the recount,
    conditional on it as read: racing calls cannot get past the limit together (as sends, above).
    A refused call writes nothing.

    Args:
        uid: the caller.
        now: the call's time.

    Raises:
        ResourceExhausted: over the limit; `details.retryAfterMs` says when the next call fits.
        Aborted: the window kept changing (the user's own calls racing) for UNREAD_WRITE_RETRIES attempts.
    """
    ref = paths.recalculation_window(db, uid)
    limit = constants.MAX_RECALCULATIONS_PER_MINUTE

    def attempt(_: int) -> None:
        doc = store.read(db, [ref])[ref.path]
        try:
            calls = CallWindow.model_validate(doc.data).calls if doc.exists else []
        except ValidationError:
            calls = []  # a damaged window is rewritten
        recent = sorted(t for t in calls if t > now - WINDOW)
        wait_ms = retry_after_ms(recent, limit, now=now)
        if wait_ms is not None:
            logger.warn(f"rate limit: {uid} recounted their unread counters {len(recent)} times in the last minute",
                        event=RECALCULATION_RATE_LIMITED, uid=uid, retryAfterMs=wait_ms)
            raise refusal(f"You can recount your unread counters (pack427_recalculateUnreadCounters) at most "
                          f"{limit} times a minute.", RECALCULATION_RATE_LIMITED, limit, wait_ms)
        kept = [*recent, now][-limit:]
        window = CallWindow(user_id=uid, calls=kept, updated_at=now, expires_at=max(kept) + WINDOW)
        batch = db.batch()
        store.write_if_unchanged(db, batch, doc, window.to_firestore())
        store.commit(batch)

    store.retry_on_conflict(attempt, attempts=constants.UNREAD_WRITE_RETRIES,
                            give_up=lambda: Aborted("your recount calls are racing each other; try again"))


def add_send(db: Client, batch: WriteBatch, window: LoadedWindow, record: SendRecord) -> None:
    """Add the window with `record` appended to `batch`, conditional on it being unchanged.

    Args:
        batch: the send's batch; it fails as a whole if the window changed.
        window: the window as loaded (and checked) for this send.
        record: the send being accepted.
    """
    sends = [*window.recent, record][-window.limit:]
    document = RateWindow(
        user_id=window.uid, sends=sends, updated_at=record.at, expires_at=max(s.at for s in sends) + WINDOW
    ).to_firestore()
    ref = paths.rate_window(db, window.uid)
    if window.update_time is None:
        batch.create(ref, document)
    else:
        store.update_if_unchanged(db, batch, ref, window.update_time, document)


def content_hash(text: str | None, content_ref: str | None) -> str:
    """A short hash of what a message says, equal for texts that differ only in case,
    spacing or Unicode form (what a spammer varies first)."""
    if text is not None:
        normalised = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
        source = "t:" + normalised
    else:
        source = "r:" + (content_ref or "")
    return hashlib.sha256(source.encode()).hexdigest()[:16]
