"""firestore.indexes.json declares every index the code's queries need.

The emulator serves any query without an index; production refuses one that
has none (FAILED_PRECONDITION, "The query requires an index"). So the query
shapes are derived from the code itself: every query the service package
builds goes through `BaseQuery._to_protobuf`, which is wrapped here to
record it while the code paths run against the emulator. Each recorded shape
is then checked against the declared indexes, with Firestore's rules:

- a query on one field is served by the automatic single-field index
  (collection scope), unless a fieldOverride for that field replaces it;
- equality-only queries (==, in, array-contains) on several fields are
  served by merging single-field indexes (collection scope);
- collection-group queries have no automatic single-field indexes: they
  need a fieldOverride with COLLECTION_GROUP scope, or a composite index;
- anything else (an order or inequality with other fields) needs a composite
  index: the equality fields first (any order), then the order-by fields
  (explicit orders, then inequality fields in field-name order) in that
  order and direction.

A static scan makes sure the scenario below ran every function of the
package that builds a query: a new query in a new function fails the test
until the scenario runs it.
"""

from __future__ import annotations

import ast
import json
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from google.cloud.firestore_v1 import base_query
from support.chatcore import make_chat, make_user
from support.emulator import ROOT
from ulid import ULID

from pack427 import audit, clock, constants, paths
from pack427.accepting import chat_core_intake, scheduling, sending
from pack427.delivering import backlog, delivery, fan_out, rollback
from pack427.delivering.notifier import EmulatorNotifier
from pack427.models import (
    AckMessagesRequest,
    GetChatListRequest,
    GetTypingUsersRequest,
    MarkAsReadRequest,
    QueuedMessage,
    Region,
    RegisterDeviceRequest,
    ResyncChatRequest,
    SendMessageRequest,
    SyncMessagesRequest,
    UpdateTypingStateRequest,
)
from pack427.operating import heatmap, metrics, ops
from pack427.reading import chat_list, sync, typing_state, unread
from pack427.workers import processor

PACKAGE = ROOT / "functions" / "pack427"
QUERY_METHODS = {"where", "order_by", "collection_group", "count", "stream", "limit", "start_after"}
EQUALITY = {"EQUAL", "IN", "ARRAY_CONTAINS", "ARRAY_CONTAINS_ANY", "IS_NULL", "IS_NAN"}
ARRAY = {"ARRAY_CONTAINS", "ARRAY_CONTAINS_ANY"}


@dataclass(frozen=True)
class Shape:
    """What decides the index a query needs."""

    collection: str
    group: bool
    equalities: frozenset[tuple[str, str]]  # (field, "ASCENDING" or "CONTAINS")
    orders: tuple[tuple[str, str], ...]  # (field, "ASCENDING" / "DESCENDING"), __name__ left out
    where: str = ""

    @property
    def fields(self) -> set[str]:
        return {f for f, _ in self.equalities} | {f for f, _ in self.orders}


def shape_of(structured, where: str = "") -> Shape:
    source = structured.from_[0]
    equalities, inequalities = set(), set()

    def walk(flt):
        kind = flt._pb.WhichOneof("filter_type") if flt is not None else None
        if kind == "composite_filter":
            for sub in flt.composite_filter.filters:
                walk(sub)
        elif kind == "field_filter":
            op = flt.field_filter.op.name
            field = flt.field_filter.field.field_path
            if op in EQUALITY:
                equalities.add((field, "CONTAINS" if op in ARRAY else "ASCENDING"))
            else:
                inequalities.add(field)
        elif kind == "unary_filter":
            op = flt.unary_filter.op.name
            field = flt.unary_filter.field.field_path
            (equalities.add((field, "ASCENDING")) if op in EQUALITY else inequalities.add(field))

    walk(structured.where if "where" in structured else None)
    orders = [(o.field.field_path, o.direction.name) for o in structured.order_by]
    ordered = {f for f, _ in orders}
    orders += [(f, "ASCENDING") for f in sorted(inequalities - ordered)]
    return Shape(
        collection=source.collection_id,
        group=bool(source.all_descendants),
        equalities=frozenset(equalities),
        orders=tuple((f, d) for f, d in orders if f != "__name__"),
        where=where,
    )


def single_field_ok(shape: Shape, field: str, mode: str, overrides: list[dict]) -> bool:
    scope = "COLLECTION_GROUP" if shape.group else "COLLECTION"
    # A map's override holds for its fields too (`lastMessage` for `lastMessage.createdAt`): the nearest wins.
    enclosing = [field.rsplit(".", n)[0] for n in range(field.count(".") + 1)]
    override = next((o for path in enclosing for o in overrides
                     if o["collectionGroup"] == shape.collection and o["fieldPath"] == path), None)
    if override is None:
        return not shape.group  # automatic single-field indexes exist for collection scope only
    for index in override.get("indexes", []):
        index_mode = "CONTAINS" if index.get("arrayConfig") else index.get("order")
        if index.get("queryScope", "COLLECTION") == scope and (index_mode == mode or
                                                                {index_mode, mode} <= {"ASCENDING", "DESCENDING"}):
            return True
    return False


def composite_ok(shape: Shape, indexes: list[dict]) -> bool:
    scope = "COLLECTION_GROUP" if shape.group else "COLLECTION"
    for index in indexes:
        if index["collectionGroup"] != shape.collection or index.get("queryScope", "COLLECTION") != scope:
            continue
        fields = [(f["fieldPath"], "CONTAINS" if f.get("arrayConfig") else f["order"]) for f in index["fields"]]
        fields = [f for f in fields if f[0] != "__name__"]
        k = len(shape.equalities)
        if set(fields[:k]) == set(shape.equalities) and tuple(fields[k:]) == shape.orders:
            return True
    return False


def missing_index(shape: Shape, declared: dict) -> bool:
    overrides, indexes = declared.get("fieldOverrides", []), declared.get("indexes", [])
    if len(shape.fields) <= 1:
        (field, mode), = list(shape.equalities) or [shape.orders[0]] if shape.fields else [("__name__", "ASCENDING")]
        return field != "__name__" and not single_field_ok(shape, field, mode, overrides)
    if not shape.orders and all(single_field_ok(shape, f, m, overrides) for f, m in shape.equalities):
        return False  # index merging
    return not composite_ok(shape, indexes)


# ------------------------------------------------------------- recording


@pytest.fixture
def recorded(monkeypatch):
    """Every query built while the test runs: (shape, the package functions on the stack)."""
    found: list[tuple[Shape, set[tuple[str, str]]]] = []
    original = base_query.BaseQuery._to_protobuf

    def recording(self):
        structured = original(self)
        callers, frame = set(), sys._getframe(1)
        while frame is not None:
            path = Path(frame.f_code.co_filename)
            if PACKAGE in path.parents:
                callers.add((path.stem, frame.f_code.co_name))
            frame = frame.f_back
        where = " <- ".join(sorted(f"{m}.{f}" for m, f in callers))
        found.append((shape_of(structured, where), callers))
        return structured

    monkeypatch.setattr(base_query.BaseQuery, "_to_protobuf", recording)
    return found


def query_functions() -> set[tuple[str, str]]:
    """(module, function) of every function in the package whose body builds or runs a query."""
    result = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                calls = {
                    n.func.attr for n in ast.walk(node)
                    if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                }
                if calls & QUERY_METHODS:
                    result.add((path.stem, node.name))
    return result


def run_every_query(db, monkeypatch) -> None:
    """Drive every code path of the package that queries Firestore."""
    now = clock.now()
    make_user(db, "alice")
    make_user(db, "bob", region="US")
    make_user(db, "carol", region="APAC", online=False, tokens=["fail-always"])
    make_chat(db, "g", ["alice", "bob", "carol"])
    notifier = EmulatorNotifier()

    def send(uid: str, n: int) -> str:
        request = SendMessageRequest(chatId="g", clientMessageId=str(ULID()), text=f"m{n}")
        return sending.send_message(db, uid, request, now=now + timedelta(milliseconds=n)).messageId

    with monkeypatch.context() as queued:  # through the queues (a larger chat's way)
        queued.setattr(constants, "INLINE_ATTEMPTS", 0)
        sent = [send(uid, n) for n, uid in enumerate(["alice", "bob", "alice"])]
    sent.append(send("bob", 3))  # the chat's messages wait in the queue: the send asks it, and queues too
    with monkeypatch.context() as large:  # a larger group's way: a fan-out, behind the messages queued
        large.setattr(constants, "INLINE_MAX_RECIPIENTS", 1)
        sent.append(send("alice", 4))
    fan_out.run_chat(db, "g", now=now)
    make_chat(db, "core", ["alice", "bob"])  # chat-core mode: the core creates messages, the trigger takes them
    core_ids = [str(ULID()) for _ in range(2)]
    for message_id in core_ids:
        db.document(f"chats/core/messages/{message_id}").set({"senderId": "alice", "text": "from the core"})
    chat_core_intake.take(db, "core", core_ids[-1], now=now)
    with monkeypatch.context() as core_mode:  # the processor's sweep of what no trigger took, twice (its cursor)
        core_mode.setenv("PACK427_MESSAGE_SOURCE", "chatCore")
        db.document(f"chats/core/messages/{ULID()}").set({"senderId": "alice", "text": "missed",
                                                         "createdAt": now - timedelta(minutes=2)})
        chat_core_intake.sweep(db, now=now)
        chat_core_intake.sweep(db, now=now)
    later = SendMessageRequest(chatId="g", clientMessageId=str(ULID()), text="later",
                               deliverAt=clock.to_millis(now + timedelta(minutes=5)))
    sending.send_message(db, "alice", later, now=now)  # scheduled: listed, then delivered at its time
    scheduling.list_scheduled(db, "alice")
    scheduling.deliver_due(db, now=now + timedelta(minutes=5))
    # The trigger's path behind an older queued message (one chat and recipient: it asks the queue),
    # then the processor's (a batch of them).
    behind_to_bob = paths.queue_entry(db, Region.US, QueuedMessage.entry_id(sent[2], "bob")).get()
    assert behind_to_bob.get("behindQueue") is True
    delivery.on_enqueued(db, behind_to_bob, notifier, now=now + timedelta(seconds=1))
    for region in Region:
        processor.process_batch(db, region, notifier, now=now + timedelta(seconds=1))
    processor.drain(db, notifier, regions=tuple(Region), actor="test", time_budget_s=30)
    rollback.deliver_now(db, "g", sent[0], notifier, now=now)  # the rollback switch's delivery in the request
    sent.append(send("alice", 5))  # nothing waits any more: placed by the send
    audit.history(db, "g", sent[0])
    audit.history(db, "g", sent[-1])
    metrics.export_queue_stats(db, now=now + timedelta(minutes=1))
    heatmap.load(db, now - timedelta(days=28))
    backlog.due_entries(db, Region.EU, now=now, limit=10, shard=0)  # the fanned-out drain's slice
    backlog.due_entries(db, Region.EU, now=now, limit=10, shard=0, priority_only=True)  # and its priority lane
    ops.requeue_dropped(db, now=now)
    ops.resync(db, "carol", "g", notifier, now=now)
    ops.quarantined(db)
    ops.set_expiry(db, now=now)
    db.document("users/dave/inboxHead/current").set({"seq": "damaged"})
    ops.repair_inbox(db, "dave", notifier, now=now)  # rebuilds the head from the inbox, retries what waited

    sync.register_device(db, "bob", RegisterDeviceRequest(deviceId="phone", platform="ios", appVersion="1"))
    page = sync.sync_messages(db, "bob", SyncMessagesRequest(deviceId="phone"))
    sync.sync_messages(db, "bob", SyncMessagesRequest(deviceId="phone", cursor=page.cursor))
    sync.sync_messages(db, "bob", SyncMessagesRequest(deviceId="tablet", since=0))
    sync.ack_messages(db, "bob", AckMessagesRequest(messageIds=sent, deviceId="phone"))
    first = sync.resync_chat(db, "bob", ResyncChatRequest(chatId="g"))
    sync.resync_chat(db, "bob", ResyncChatRequest(chatId="g", cursor=first.cursor))

    make_chat(db, "d", ["alice", "bob"])
    with monkeypatch.context() as queued:  # a last message bob does not have yet: its queue entry is asked
        queued.setattr(constants, "INLINE_ATTEMPTS", 0)
        sending.send_message(db, "alice", SendMessageRequest(chatId="d", clientMessageId=str(ULID()), text="x"), now=now)
    chats = chat_list.get_chat_list(db, "alice", GetChatListRequest(limit=1))
    chat_list.get_chat_list(db, "alice", GetChatListRequest(limit=1, cursor=chats.cursor))
    with monkeypatch.context() as large:  # a larger group's receipts: counted, not read member by member
        large.setattr(constants, "RECEIPT_DETAIL_MAX_RECIPIENTS", 0)
        chat_list.get_chat_list(db, "alice", GetChatListRequest())

    unread.mark_as_read(db, "bob", MarkAsReadRequest(chatId="g", readUpToMessageId=sent[0]), now=now)
    unread.unread_counts(db, "bob")
    unread.recalculate(db, "bob", now=now)
    # A head past its bound (inbox.bounded) has parked chats: they are listed and recounted.
    db.document("users/erin/inboxHead/current").set({"seq": 1, "chats": {}, "parkedChats": 1, "parkedUnread": 1})
    db.document("users/erin/inboxChats/g").set({"chatId": "g", "unread": 1, "last": sent[0]})
    unread.unread_counts(db, "erin")
    unread.recalculate(db, "erin", now=now)

    typing_state.update_typing_state(db, "bob", UpdateTypingStateRequest(chatId="g", isTyping=True), now=now)
    typing_state.get_typing_users(db, "alice", GetTypingUsersRequest(chatId="g"), now=now)


# The queries apps run themselves (README, firestore.rules), not through the package.
CLIENT_QUERIES = [
    Shape("typingEvents", True, frozenset({("chatId", "ASCENDING"), ("participants", "CONTAINS")}), (),
          "app: typing listener"),
    Shape("chats", False, frozenset({("participants", "CONTAINS")}), (), "app: my chats"),
    Shape("deviceSyncStates", False, frozenset({("userId", "ASCENDING")}), (), "app: my devices in a region"),
    Shape("inbox", False, frozenset(), (("seq", "ASCENDING"),), "app: inbox listener after a seq"),
]


def declared() -> dict:
    """What a chat-core mode deployment has: firestore.indexes.json and the sweep's index (scripts/deploy)."""
    spec = engine_mode_declared()
    return spec | {"fieldOverrides": spec["fieldOverrides"] + chat_core_intake.SWEEP_FIELD_OVERRIDES}


def engine_mode_declared() -> dict:
    return json.loads((ROOT / "firestore.indexes.json").read_text())


def test_every_query_the_code_runs_has_its_index(db, recorded, monkeypatch):
    run_every_query(db, monkeypatch)
    covered = set().union(*(callers for _, callers in recorded))
    assert query_functions() <= covered, f"not run by the scenario: {sorted(query_functions() - covered)}"

    shapes = {shape for shape, _ in recorded} | set(CLIENT_QUERIES)
    missing = sorted({(s.collection, s.group, tuple(sorted(s.equalities)), s.orders, s.where)
                      for s in shapes if missing_index(s, declared())})
    assert not missing, "queries without a declared index:\n" + "\n".join(map(str, missing))
    # Engine mode deploys firestore.indexes.json alone: only the chat-core sweep needs more.
    engine_mode = sorted({s.where for s in shapes if missing_index(s, engine_mode_declared())})
    assert engine_mode and all("chat_core_intake.sweep" in where for where in engine_mode), engine_mode

    # And no composite index that nothing uses: each costs an index write on every write of its collection.
    needing = [s for s in shapes if len(s.fields) > 1]
    unused = [index for index in declared()["indexes"] if not any(composite_ok(s, [index]) for s in needing)]
    assert not unused, "composite indexes no query uses:\n" + "\n".join(map(str, unused))
    print(f"\n{len(recorded)} queries recorded, {len({(s.collection, s.group, s.equalities, s.orders) for s in shapes})}"
          " distinct shapes, all indexed")


def test_the_check_fails_when_an_index_is_missing(db, recorded, monkeypatch):
    """The checker itself: without any one of the composite indexes or query
    fieldOverrides, some query the code runs has no index (none is dead weight)."""
    run_every_query(db, monkeypatch)
    shapes = {shape for shape, _ in recorded} | set(CLIENT_QUERIES)
    full = declared()
    for kind in ("indexes", "fieldOverrides"):
        for n, dropped in enumerate(full[kind]):
            if dropped.get("ttl") or dropped.get("indexes") == []:
                continue  # TTL policies and exemptions serve no query (checked below)
            reduced = dict(full) | {kind: full[kind][:n] + full[kind][n + 1:]}
            assert any(missing_index(s, reduced) for s in shapes), f"nothing needs {kind}[{n}]: {dropped}"


def test_ttl_policies_are_declared():
    ttl = {(o["collectionGroup"], o["fieldPath"]) for o in declared()["fieldOverrides"] if o.get("ttl")}
    assert ttl == set(paths.TTL_FIELDS.items())


def test_a_query_that_needs_an_exempted_index_fails_the_check():
    """An exemption removes the field's automatic single-field indexes, for either scope: a query
    the code would run through one (alone, or merged with another field's) has no index then."""
    exempted = [(group, field) for group, fields in paths.INDEX_EXEMPTIONS.items() for field in fields]
    assert exempted
    for group, field in exempted:
        alone = Shape(group, False, frozenset({(field, "ASCENDING")}), ())
        ordered = Shape(group, False, frozenset(), ((field, "DESCENDING"),))
        merged = Shape(group, False, frozenset({(field, "ASCENDING"), ("someOtherField", "ASCENDING")}), ())
        assert all(missing_index(shape, declared()) for shape in (alone, ordered, merged)), (group, field)
        without = dict(declared()) | {"fieldOverrides": [o for o in declared()["fieldOverrides"]
                                                         if (o["collectionGroup"], o["fieldPath"]) != (group, field)]}
        assert not missing_index(alone, without)  # the automatic index would have served it
    # What history asked before it read the send's record by id: no index now, as production would say.
    old_history = Shape("idempotencyKeys", False, frozenset({("messageId", "ASCENDING")}), ())
    fan_out_lookup = Shape("inbox", True, frozenset({("messageId", "ASCENDING")}), ())
    assert missing_index(old_history, declared()) and missing_index(fan_out_lookup, declared())
