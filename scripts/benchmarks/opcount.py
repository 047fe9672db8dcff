"""Count Firestore operations made by this process, as Firestore bills them.

Every call of the google-cloud-firestore client ends in one method of its
generated API client (`FirestoreClient`: commit, batch_get_documents,
run_query, run_aggregation_query, begin_transaction, ...). Wrapping those
methods, rather than DocumentReference.get, Query.stream, WriteBatch.commit
and so on one by one, catches every path (a `get` is a batch_get of one
document, a batch commit and a transaction commit are both `commit`), and
sees what was actually sent and returned.

Billing rules applied (Firestore pricing):
- a document read: each document a batch get asks for, found or not;
  each document a query returns, and at least one per query;
- an aggregation (count) query: one read per 1,000 index entries counted,
  at least one (counted here as one: the bench's counts stay far below 1,000);
- a write: each write of a commit (create, set, update, delete);
  a commit whose precondition failed writes nothing but still costs a round trip;
- a transaction: a begin_transaction; its commit's writes count as writes.

Usage:
    counter = install()          # once, before the operations to count
    before = counter.snapshot()
    ... work ...
    spent = counter.snapshot() - before
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from google.cloud.firestore_v1.services.firestore.client import FirestoreClient

FIELDS = ("reads", "writes", "transactions", "queries", "aggregations", "commits", "failed_commits", "round_trips")


@dataclass(frozen=True)
class Ops:
    """Operation counts (see FIELDS); subtract two snapshots for what happened in between."""

    counts: Counter = field(default_factory=Counter)
    by_collection: Counter = field(default_factory=Counter)
    """"reads:inbox", "writes:messageQueue", "creates:messageQueue"...: documents by the
    collection they belong to (creates: writes that create a document, counted among writes too)."""
    queries: Counter = field(default_factory=Counter)
    """Queries and aggregations by their shape (query_shape)."""

    def __sub__(self, other: Ops) -> Ops:
        by_collection, queries = Counter(self.by_collection), Counter(self.queries)
        by_collection.subtract(other.by_collection)
        queries.subtract(other.queries)
        return Ops(Counter({k: self.counts[k] - other.counts[k] for k in FIELDS}), +by_collection, +queries)

    def __getitem__(self, name: str) -> int:
        return self.counts[name]

    def as_dict(self) -> dict[str, int]:
        return {k: self.counts[k] for k in FIELDS}


class OpCounter:
    """Thread-safe totals; deliveries run on thread pools, so the lock matters."""

    def __init__(self) -> None:
        self._counts: Counter = Counter()
        self._by_collection: Counter = Counter()
        self._queries: Counter = Counter()
        self._samples: dict[str, tuple[str, object]] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    def counting(self) -> bool:
        """Whether this thread's operations count (it is not in a `paused` block): the engine's, not the bench's."""
        return not getattr(self._local, "paused", False)

    def add(self, **counts: int) -> None:
        if self.counting():
            with self._lock:
                self._counts.update(counts)

    def add_document(self, kind: str, name: str) -> None:
        """One read or write of document `name` (full resource name), by its collection."""
        if self.counting():
            with self._lock:
                self._by_collection[f"{kind}:{collection_of(name)}"] += 1

    def add_query(self, shape: str, method: str, request) -> None:
        """One query (or aggregation) of `shape` (see query_shape), sent as `request` to FirestoreClient's
        `method`; the last request of each shape is kept (`samples`) for the load run to send again (load.query_costs)."""
        if self.counting():
            with self._lock:
                self._queries[shape] += 1
                self._samples[shape] = (method, request)

    def samples(self) -> dict[str, tuple[str, object]]:
        """The last request counted of each query shape: (FirestoreClient's method, its request)."""
        with self._lock:
            return dict(self._samples)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Count nothing this thread does in the block (the bench's own reads, e.g. a trigger's
        event snapshot); other threads' operations still count."""
        self._local.paused = True
        try:
            yield
        finally:
            self._local.paused = False

    def snapshot(self) -> Ops:
        with self._lock:
            return Ops(Counter(self._counts), Counter(self._by_collection), Counter(self._queries))


_counter: OpCounter | None = None


def collection_of(name: str) -> str:
    """The collection id of a document's resource name (".../documents/users/u1/inbox/m1" -> "inbox")."""
    parts = name.split("/documents/", 1)[-1].split("/")
    return parts[-2] if len(parts) >= 2 else "?"


def query_shape(request) -> str:
    """What a query asks, without its values: `group:messageQueue[chatId==,awaitingInbox==] order messageId`
    (`group:` for a collection-group query, which the emulator answers by scanning every document)."""
    query = _request_field(request, "structured_query") or getattr(
        _request_field(request, "structured_aggregation_query"), "structured_query", None)
    if query is None:
        return "?"
    source = query.from_[0] if query.from_ else None
    kind = "group" if source is not None and source.all_descendants else "collection"
    filters: list[str] = []

    def walk(f) -> None:
        if "composite_filter" in f:
            for sub in f.composite_filter.filters:
                walk(sub)
        elif "field_filter" in f:
            filters.append(f"{f.field_filter.field.field_path}{f.field_filter.op.name}")
        elif "unary_filter" in f:
            filters.append(f"{f.unary_filter.field.field_path}:{f.unary_filter.op.name}")

    if "where" in query:
        walk(query.where)
    order = ",".join(o.field.field_path for o in query.order_by)
    return f"{kind}:{source.collection_id if source else '?'}[{','.join(filters)}]" + (f" order {order}" if order else "")


def _request_field(request, name: str, default=None):
    if request is None:
        return default
    if isinstance(request, dict):
        return request.get(name, default)
    return getattr(request, name, default)


def install() -> OpCounter:
    """Wrap FirestoreClient's methods (once per process); returns the counter."""
    global _counter
    if _counter is not None:
        return _counter
    counter = _counter = OpCounter()

    def wrap_stream(name, on_item, on_end=None):
        original = getattr(FirestoreClient, name)

        def wrapped(self, request=None, *args, **kwargs):
            counter.add(round_trips=1)
            if name != "batch_get_documents":
                counter.add_query(query_shape(request), name, request)
            responses = original(self, request, *args, **kwargs)

            def counted():
                seen = 0
                for response in responses:
                    seen += on_item(response)
                    yield response
                if on_end is not None:
                    on_end(seen)

            return counted()

        setattr(FirestoreClient, name, wrapped)

    def batch_get_item(response) -> int:
        # One response per requested document: `found` or `missing`, both billed.
        if response.found or response.missing:
            counter.add(reads=1)
            counter.add_document("reads", response.found.name if response.found else response.missing)
        return 0

    def query_item(response) -> int:
        if response.document:
            counter.add(reads=1)
            counter.add_document("reads", response.document.name)
            return 1
        return 0

    def query_end(seen: int) -> None:
        counter.add(queries=1, reads=0 if seen else 1)  # an empty result still bills one read

    wrap_stream("batch_get_documents", batch_get_item)
    wrap_stream("run_query", query_item, query_end)
    wrap_stream("run_aggregation_query", lambda response: 0, lambda _seen: counter.add(aggregations=1, reads=1))

    original_commit = FirestoreClient.commit

    def commit(self, request=None, *args, **kwargs):
        writes = list(_request_field(request, "writes", []) or [])
        counter.add(round_trips=1, commits=1)
        try:
            result = original_commit(self, request, *args, **kwargs)
        except Exception:
            counter.add(failed_commits=1)
            raise
        counter.add(writes=len(writes))
        for write in writes:
            name = write.update.name or write.delete or write.transform.document
            counter.add_document("writes", name)
            if "current_document" in write and "exists" in write.current_document and not write.current_document.exists:
                counter.add_document("creates", name)  # what a document-created trigger fires on
        return result

    FirestoreClient.commit = commit

    original_begin = FirestoreClient.begin_transaction

    def begin_transaction(self, request=None, *args, **kwargs):
        counter.add(round_trips=1, transactions=1)
        return original_begin(self, request, *args, **kwargs)

    FirestoreClient.begin_transaction = begin_transaction

    for name in ("get_document", "list_documents", "update_document", "delete_document", "batch_write"):
        original = getattr(FirestoreClient, name)

        def plain(self, request=None, *args, _original=original, _name=name, **kwargs):
            # Not used by the engine today; counted as round trips so a new use shows up.
            counter.add(round_trips=1, **{f"other_{_name}": 1})
            return _original(self, request, *args, **kwargs)

        setattr(FirestoreClient, name, plain)
    return counter
