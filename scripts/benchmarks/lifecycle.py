"""Firestore operations per message over its whole life, counted by instrumenting the client.

One message from alice to bob (one recipient, online, same region), in
process, stage by stage, with the service functions the deployed functions
call: send (pack427_sendMessage), deliver (pack427_onMessageEnqueued, once
for each queue entry the send created: the trigger invocations), sync of one
page (pack427_syncMessages), ack (pack427_ackMessages), read
(pack427_markAsRead). The trigger stage gets the document snapshot the event
would carry; reading it is the bench's cost, not counted. A first message
warms everything up (rate window, inbox head, device state exist
afterwards, as they do in steady use); the figures are averages over the
following lives.

A group message is measured the same way for send and delivery, in a chat
of GROUP_SIZE members, all online: what each additional recipient adds.
"""

from __future__ import annotations

from google.cloud.firestore_v1.base_query import FieldFilter
from ulid import ULID

from pack427 import paths
from pack427.accepting import sending
from pack427.delivering import delivery
from pack427.delivering.notifier import EmulatorNotifier
from pack427.models import (
    AckMessagesRequest,
    MarkAsReadRequest,
    RegisterDeviceRequest,
    SendMessageRequest,
    SyncMessagesRequest,
)
from pack427.reading import sync, unread

from . import opcount

STAGES = ("send", "deliver", "sync", "ack", "read")

GROUP_SIZE = 6
"""Members of the group chat of the group measurement (a sender and five recipients)."""

SEED_COSTS = {
    "queue_writes_per_message": 2,
    "unread_writes_per_message": 1,
    "note": "seed 'Performance Optimization / Firestore Costs': ~2 queue writes per message "
    "(enqueue + delivered), 1 unread-counter write per new message per recipient, "
    "~200 queue-processing reads per minute per region, sync reads 'variable'",
}


def measure(db, lives: int = 10) -> dict:
    """Average operations per stage of one message's life, over `lives` messages (default 10).

    Args:
        db: a client of a project of its own (no triggers fire there).
        lives: measured messages after the warm-up one.
    """
    counter = opcount.install()
    alice, bob, chat_id = "alice", "bob", "lifecycle-chat"
    for uid in (alice, bob):
        paths.user(db, uid).set({"region": "EU", "online": True, "ageVerified18Plus": True})
    paths.chat(db, chat_id).set({"participants": [alice, bob]})
    sync.register_device(db, bob, RegisterDeviceRequest(deviceId="phone", platform="ios", appVersion="1.0"))
    totals: dict[str, opcount.Ops] = {}
    cursor = None
    for life in range(lives + 1):
        spent, cursor = _one_life(db, counter, alice, bob, chat_id, cursor)
        if life == 0:
            continue  # warm-up
        for stage, ops in spent.items():
            totals[stage] = ops if stage not in totals else _add(totals[stage], ops)
    per_stage = {stage: _per(totals[stage], lives) for stage in STAGES}
    whole = {k: sum(per_stage[s]["counts"][k] for s in STAGES) for k in opcount.FIELDS}
    by_collection: dict[str, float] = {}
    for stage in STAGES:
        for key, n in per_stage[stage]["by_collection"].items():
            by_collection[key] = by_collection.get(key, 0) + n
    return {
        "lives": lives,
        "stages": per_stage,
        "per_message": whole,
        "by_collection": dict(sorted(by_collection.items())),
        "triggers_per_message": by_collection.get("creates:messageQueue", 0),
        "queue_writes_per_message": by_collection.get("writes:messageQueue", 0),
        "unread_writes_per_message": by_collection.get("writes:inboxHead", 0),
        "group": _group(db, counter, lives),
        "seed": SEED_COSTS,
    }


def _one_life(db, counter, alice, bob, chat_id, cursor):
    spent = {}

    def stage(name, work):
        before = counter.snapshot()
        result = work()
        spent[name] = counter.snapshot() - before
        return result

    sent = stage("send", lambda: sending.send_message(
        db, alice, SendMessageRequest(chatId=chat_id, clientMessageId=str(ULID()), text="hello")))
    message_id = sent.messageId
    stage("deliver", lambda: _run_triggers(db, message_id))
    page = stage("sync", lambda: sync.sync_messages(db, bob, SyncMessagesRequest(deviceId="phone", cursor=cursor)))
    if [m.messageId for m in page.messages] != [message_id]:
        raise SystemExit(f"lifecycle: sync returned {[m.messageId for m in page.messages]}, expected {message_id}")
    stage("ack", lambda: sync.ack_messages(db, bob, AckMessagesRequest(messageIds=[message_id], deviceId="phone")))
    stage("read", lambda: unread.mark_as_read(db, bob, MarkAsReadRequest(chatId=chat_id, readUpToMessageId=message_id)))
    return spent, page.cursor


def _run_triggers(db, message_id: str) -> int:
    """Run pack427_onMessageEnqueued's service for each queue entry of the message, as the
    trigger would (the snapshots are read outside the count); how many ran."""
    counter = opcount.install()
    with counter.paused():
        query = db.collection_group("messageQueue").where(filter=FieldFilter("messageId", "==", message_id))
        snapshots = list(query.stream())
    for snapshot in snapshots:
        delivery.on_enqueued(db, snapshot, EmulatorNotifier())
    return len(snapshots)


def _group(db, counter, lives: int) -> dict:
    """Send and delivery of a message to a group of GROUP_SIZE online members, per message."""
    members = [f"member{n}" for n in range(GROUP_SIZE)]
    for uid in members:
        paths.user(db, uid).set({"region": "EU", "online": True, "ageVerified18Plus": True})
    chat_id = "lifecycle-group"
    paths.chat(db, chat_id).set({"participants": members})
    totals = None
    for life in range(lives + 1):
        before = counter.snapshot()
        sent = sending.send_message(
            db, members[0], SendMessageRequest(chatId=chat_id, clientMessageId=str(ULID()), text="hello all"))
        _run_triggers(db, sent.messageId)
        spent = counter.snapshot() - before
        if life:
            totals = spent if totals is None else _add(totals, spent)
    per = _per(totals, lives)
    return {"members": GROUP_SIZE, "recipients": GROUP_SIZE - 1, "send_and_deliver": per,
            "triggers_per_message": per["by_collection"].get("creates:messageQueue", 0)}


def _add(a: opcount.Ops, b: opcount.Ops) -> opcount.Ops:
    return opcount.Ops(a.counts + b.counts, a.by_collection + b.by_collection)


def _per(ops: opcount.Ops, n: int) -> dict:
    return {
        "counts": {k: ops.counts[k] / n for k in opcount.FIELDS},
        "by_collection": {k: v / n for k, v in sorted(ops.by_collection.items())},
    }
