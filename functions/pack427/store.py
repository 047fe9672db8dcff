"""The seam every conditional write goes through: a document with its update
time, create-or-update writes conditional on it, and one retry-on-conflict policy.

The engine holds no locks and runs no transactions. A writer reads what it
depends on, decides, and commits a batch whose writes are conditional on
those documents being unchanged since they were read (Firestore's
update-time precondition; `create` for a document that did not exist). If
someone else wrote one of them first, the commit writes nothing and the
writer reads again and decides again (`retry_on_conflict`). Of N racing
writers, each round one wins and the others retry: every change is made
exactly once, on the state it was decided on.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.cloud.firestore import Client, DocumentReference, WriteBatch
from google.cloud.firestore_v1 import DocumentSnapshot

from . import constants

T = TypeVar("T")


class Conflict(Exception):
    """Something the writer read changed before its commit: read again and decide again."""


@dataclass(frozen=True)
class Read:
    """A document as read: where it is, its data ({} if it did not exist), its update time
    (None if it did not exist).

    A write conditional on a Read succeeds only if the document is still as it
    was read: unchanged since `update_time`, or still absent.
    """

    ref: DocumentReference
    data: dict[str, Any]
    update_time: datetime | None

    @classmethod
    def of(cls, snapshot: DocumentSnapshot) -> Read:
        if not snapshot.exists:
            return cls(snapshot.reference, {}, None)
        return cls(snapshot.reference, snapshot.to_dict() or {}, snapshot.update_time)

    @property
    def exists(self) -> bool:
        return self.update_time is not None

    @property
    def time(self) -> datetime:
        """The update time of a document that existed (a bug to ask of one that did not)."""
        if self.update_time is None:
            raise ValueError(f"{self.ref.path} did not exist when it was read")
        return self.update_time


def read(db: Client, refs: list[DocumentReference]) -> dict[str, Read]:
    """The documents `refs` in one round trip, by path (absent ones included)."""
    if not refs:
        return {}
    return {s.reference.path: Read.of(s) for s in db.get_all(refs)}


def write_if_unchanged(db: Client, batch: WriteBatch, document: Read, data: dict[str, Any]) -> None:
    """Add to `batch` a write of `data` to `document`, conditional on it being as read.

    Creates the document if it was absent (the commit fails if someone created
    it since); otherwise updates the given fields if it was not changed since.
    """
    if document.update_time is None:
        batch.create(document.ref, data)
    else:
        update_if_unchanged(db, batch, document.ref, document.update_time, data)


def update_if_unchanged(
    db: Client, batch: WriteBatch, ref: DocumentReference, update_time: datetime, data: dict[str, Any]
) -> None:
    """Add to `batch` an update of the fields `data` of `ref`, conditional on its update time
    still being `update_time` (the time it had when it was read)."""
    batch.update(ref, data, option=db.write_option(last_update_time=update_time))


CONFLICTS = (gexc.FailedPrecondition, gexc.Aborted, gexc.AlreadyExists)
"""What a commit raises when one of its preconditions failed."""


def commit(batch: WriteBatch) -> list:
    """Commit `batch`; Conflict if one of its preconditions no longer held."""
    try:
        return batch.commit()
    except CONFLICTS as err:
        raise Conflict(str(err)) from err


def commit_if_unchanged(batch: WriteBatch) -> bool:
    """Commit `batch`; False (nothing written) if one of its preconditions no longer held."""
    try:
        commit(batch)
    except Conflict:
        return False
    return True


def retry_on_conflict(
    attempt: Callable[[int], T],
    *,
    attempts: int,
    give_up: Callable[[], Exception],
    pause_s: float = 0.01,
    pause_cap_s: float = 0.5,
) -> T:
    """Run `attempt(n)` for n = 0, 1, ... until it returns without raising Conflict.

    Between attempts, a random pause of up to `pause_s` doubling with each
    conflict, at most `pause_cap_s`: racing writers spread out instead of
    colliding again in lockstep.

    Args:
        attempt: reads, decides and commits; raises Conflict to go again.
        attempts: how many times at most.
        give_up: the exception to raise when every attempt conflicted.
        pause_s: the first pause's bound (default 10 ms).
        pause_cap_s: no pause is longer than this (default 0.5 s).
    """
    for n in range(attempts):
        try:
            return attempt(n)
        except Conflict:
            if n + 1 < attempts:
                time.sleep(random.uniform(0, min(pause_cap_s, pause_s * 2**n)))
    raise give_up()


# --------------------------------------------------------------- sizes


def string_size(value: str) -> int:
    """Firestore's size of a string: its UTF-8 bytes and 1."""
    return len(value.encode("utf-8", "surrogatepass")) + 1


def name_size(path: str) -> int:
    """Firestore's size of a document's name (`users/u1/inbox/m1`): each segment as a string, and 16."""
    return sum(string_size(segment) for segment in path.split("/")) + 16


def value_size(value: Any) -> int:
    """Firestore's size of a field value: a string its UTF-8 bytes and 1, a boolean or null 1, an
    integer, float or time 8, bytes their length, a reference its name's size, an array the sum of
    its values, a map the sum of its keys (as strings) and values."""
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, int | float | datetime):
        return 8
    if isinstance(value, str):
        return string_size(value)
    if isinstance(value, bytes | bytearray):
        return len(value)
    if isinstance(value, DocumentReference):
        return name_size(value.path)
    if isinstance(value, Mapping):
        return sum(string_size(str(k)) + value_size(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return sum(value_size(v) for v in value)
    return string_size(str(value))  # anything else is stored as its text (enums are strings)


def document_size(path: str, data: Mapping[str, Any]) -> int:
    """Firestore's size of a document at `path` holding `data`: its name, its fields (names and
    values) and 32 bytes (https://firebase.google.com/docs/firestore/storage-size)."""
    return name_size(path) + value_size(data) + 32


WRITE_OVERHEAD_BYTES = 128
"""What a write adds to a commit beside its document: the operation, its precondition, its mask
(an allowance, larger than any the engine's writes take)."""


@dataclass(frozen=True)
class Cost:
    """What some writes add to a commit: how many, and their bytes (documents and overhead)."""

    writes: int = 0
    bytes: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.writes + other.writes, self.bytes + other.bytes)

    @classmethod
    def of_write(cls, path: str, data: Mapping[str, Any] | None = None) -> Cost:
        """One write of `data` to `path` (a delete: no data)."""
        return cls(1, document_size(path, data or {}) + WRITE_OVERHEAD_BYTES)


NOTHING = Cost()
"""No writes."""


def commits(
    costs: Sequence[Cost], *, reserve: Cost = NOTHING, max_writes: int | None = None, max_bytes: int | None = None,
) -> list[range]:
    """`costs` (units that must each commit whole, in order) split into consecutive commits, each
    with `reserve` (what every commit writes besides) under `max_writes` and `max_bytes`.

    A unit that alone passes a bound gets a commit of its own (Firestore will refuse it: the caller
    hears of it as of any failed commit). An empty `costs` is no commit.

    Args:
        costs: each unit's writes and bytes.
        reserve: what each commit adds (a job's cursor, a chat's update).
        max_writes: default Firestore's 500 writes a commit (COMMIT_MAX_WRITES).
        max_bytes: default the bytes a commit may take (COMMIT_MAX_BYTES: under Firestore's 10 MiB a request).
    """
    max_writes = constants.COMMIT_MAX_WRITES if max_writes is None else max_writes
    max_bytes = constants.COMMIT_MAX_BYTES if max_bytes is None else max_bytes
    groups: list[range] = []
    start, used = 0, reserve
    for i, cost in enumerate(costs):
        total = used + cost
        if i > start and (total.writes > max_writes or total.bytes > max_bytes):
            groups.append(range(start, i))
            start, total = i, reserve + cost
        used = total
    if start < len(costs):
        groups.append(range(start, len(costs)))
    return groups


def fitting(
    costs: Sequence[Cost], *, reserve: Cost = NOTHING, max_writes: int | None = None, max_bytes: int | None = None,
) -> int:
    """How many of the leading `costs` one commit takes (see `commits`; at least one if any)."""
    groups = commits(costs, reserve=reserve, max_writes=max_writes, max_bytes=max_bytes)
    return len(groups[0]) if groups else 0
