"""The main flow on the full emulator suite: the callable places the message, the trigger
takes what was queued (pushes, larger chats, a send that lost a race)."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from support.chatcore import all_documents, billing_requests, make_chat, make_user, queue_entries, wait_for
from support.entries import enqueue, make_entry
from ulid import ULID

from e2e.calls import call_retrying
from pack427 import audit, clock, constants
from pack427.delivering import queue
from pack427.delivering.notifier import EmulatorNotifier
from pack427.models import Region
from pack427.workers import processor
from pack427_client import CallableError

FUNCTION_WAIT_S = 120
"""How long a function may take to act: the first call of each function starts
its Python worker in the emulator, which takes a minute on a busy 2-core machine."""


def send(client, chat_id: str, text: str, client_id: str | None = None, retried: list[str] | None = None) -> dict:
    data = {"chatId": chat_id, "clientMessageId": client_id or str(ULID()), "text": text}
    return call_retrying(client, "pack427_sendMessage", data, retried)


def inbox_ref(db, uid: str, message_id: str):
    return db.collection("users").document(uid).collection("inbox").document(message_id)


def test_message_posted_to_the_callable_is_in_the_inbox_when_the_call_returns(suite_db, app_user):
    alice, alice_client = app_user("alice")
    bob, bob_client = app_user("bob")
    make_user(suite_db, alice, region="EU")
    make_user(suite_db, bob, region="US")
    make_chat(suite_db, "ab", [alice, bob])

    first = send(alice_client, "ab", "hello Bob")
    started = time.monotonic()
    reply = send(bob_client, "ab", "hi Alice")
    received = inbox_ref(suite_db, alice, reply["messageId"]).get().to_dict()
    print(f"send-to-inbox: {(time.monotonic() - started) * 1000:.0f} ms")

    assert received["text"] == "hi Alice" and received["senderId"] == bob and received["region"] == "EU"
    assert inbox_ref(suite_db, bob, first["messageId"]).get().get("via") == "send"
    for message_id, recipient in ((first["messageId"], bob), (reply["messageId"], alice)):
        [delivered] = audit.history(suite_db, "ab", message_id)
        assert (delivered.action, delivered.entry_id, delivered.details["placedBySend"]) == (
            "DELIVERED", f"{message_id}_{recipient}", True)
    assert queue_entries(suite_db) == []  # both online: nothing queued, no trigger ran


def test_an_entry_on_the_queue_is_delivered_by_the_trigger(suite_db, app_user):
    bob, _ = app_user("bob")
    make_user(suite_db, "alice", region="EU")
    make_user(suite_db, bob, region="US")
    make_chat(suite_db, "ab", ["alice", bob])
    # Queued as a send to a larger chat, or one that lost a race for an inbox head, queues it.
    entry = make_entry(bob, region=Region.US, created=clock.now(), chat="ab")
    enqueue(suite_db, entry)

    received = wait_for(inbox_ref(suite_db, bob, entry.message_id), lambda d: True, FUNCTION_WAIT_S)
    assert (received["via"], received["region"]) == ("queue", "US")
    stored = wait_for(suite_db.document(f"regions/US/messageQueue/{entry.id}"),
                      lambda d: d["status"] == "DELIVERED", FUNCTION_WAIT_S)
    assert (stored["inboxSeq"], [(h["action"], h["actor"]) for h in stored["history"]]) == (
        received["seq"], [("ENQUEUED", "test"), ("DELIVERED", "trigger")])


def test_a_group_over_the_inline_limit_reaches_every_member_through_the_fan_out_trigger(suite_db, app_user):
    alice, alice_client = app_user("alice")
    make_user(suite_db, alice)
    members = [f"member{n:03d}" for n in range(constants.INLINE_MAX_RECIPIENTS + 10)]
    for uid in members:
        make_user(suite_db, uid, region="US" if uid.endswith("7") else "EU")
    make_chat(suite_db, "crowd", [alice, *members])

    sent = send(alice_client, "crowd", "hello everyone")
    last = wait_for(inbox_ref(suite_db, members[-1], sent["messageId"]), lambda d: True, FUNCTION_WAIT_S)
    assert (last["via"], last["seq"], last["text"]) == ("fanOut", 1, "hello everyone")
    wait_for(suite_db.document("chats/crowd"), lambda d: d.get("fanOutPending") is False, FUNCTION_WAIT_S)
    assert all(inbox_ref(suite_db, uid, sent["messageId"]).get().exists for uid in members)
    assert list(suite_db.collection("chats/crowd/fanOuts").stream()) == []
    assert queue_entries(suite_db) == []  # everyone online, nothing waited: no queue entry, no per-member trigger


def test_five_concurrent_sends_with_one_client_message_id_make_one_message(suite_db, app_user):
    alice, alice_client = app_user("alice")
    bob, _ = app_user("bob")
    carol, _ = app_user("carol")
    for uid in (alice, bob, carol):
        make_user(suite_db, uid)
    make_chat(suite_db, "group", [alice, bob, carol])
    client_id = str(ULID())

    retried: list[str] = []
    with ThreadPoolExecutor(5) as pool:
        results = list(pool.map(lambda _: send(alice_client, "group", "once", client_id, retried), range(5)))

    assert len({r["messageId"] for r in results}) == 1
    if retried:  # the first answer may have been the lost one: its repeat says duplicate
        assert sorted(r["duplicate"] for r in results)[1:] == [True] * 4, retried
    else:
        assert sorted(r["duplicate"] for r in results) == [False, True, True, True, True]
    assert len(list(suite_db.collection("chats/group/messages").stream())) == 1
    assert [len(list(suite_db.collection(f"users/{uid}/inbox").stream())) for uid in (bob, carol)] == [1, 1]
    assert billing_requests(suite_db) == [results[0]["messageId"]]


def test_always_failing_delivery_is_retried_with_backoff_then_dropped(suite_db, app_user, capfd):
    alice, alice_client = app_user("alice")
    carol, _ = app_user("carol")
    make_user(suite_db, alice)
    make_user(suite_db, carol, region="APAC", online=False, tokens=["fail-always"])
    make_chat(suite_db, "ac", [alice, carol])

    sent = send(alice_client, "ac", "are you there?")
    entry_id = f"{sent['messageId']}_{carol}"
    entry_ref = suite_db.document(f"regions/APAC/messageQueue/{entry_id}")
    wait_for(entry_ref, lambda d: d["status"] == "FAILED", FUNCTION_WAIT_S)

    # The scheduler's part, at the seed's back-off after each failure (1 s, 2 s, 4 s, 8 s): a
    # millisecond earlier the entry is not due and nothing is attempted; at the back-off it is.
    for attempt, wait_s in enumerate((1, 2, 4, 8), start=2):
        failed_at = queue.load(suite_db, Region.APAC, entry_id).entry.last_failed_at
        early = failed_at + timedelta(seconds=wait_s) - timedelta(milliseconds=1)
        assert processor.process_batch(suite_db, Region.APAC, EmulatorNotifier(), now=early).attempted == 0
        # At the back-off it is attempted. A run whose emulator call failed (it answered CANCELLED
        # once under load) leaves the entry to the next run, as the scheduled processor does.
        for _ in range(3):
            processor.process_batch(suite_db, Region.APAC, EmulatorNotifier(), now=failed_at + timedelta(seconds=wait_s))
            if queue.load(suite_db, Region.APAC, entry_id).entry.attempts == attempt:
                break
        assert queue.load(suite_db, Region.APAC, entry_id).entry.attempts == attempt

    stored = queue.load(suite_db, Region.APAC, entry_id).entry
    assert stored.status == "DROPPED" and stored.attempts == 5
    placed, *history = [e for e in audit.history(suite_db, "ac", sent["messageId"]) if e.action != "ENQUEUED"]
    assert (placed.action, placed.actor, placed.details["placedBySend"]) == ("DELIVERED", f"user:{alice}", True)
    assert [(e.action, e.actor) for e in history] == [("FAILED", "trigger")] + [("FAILED", "scheduler")] * 3 + [("DROPPED", "scheduler")]
    gaps = [(b.at - a.at).total_seconds() for a, b in zip(history, history[1:], strict=False)]
    assert gaps == [1, 2, 4, 8]
    alerts = [json.loads(line) for line in capfd.readouterr().err.splitlines() if "MESSAGE_DROPPED" in line]
    assert [a["entryId"] for a in alerts] == [entry_id]
    # The push failed five times; the message itself is in Carol's inbox.
    assert inbox_ref(suite_db, carol, sent["messageId"]).get().exists


def test_bad_input_over_http_gets_the_right_error_and_writes_nothing(suite, suite_db, app_user):
    alice, alice_client = app_user("alice")
    make_user(suite_db, alice)
    make_chat(suite_db, "solo", [alice, "bob"])
    anonymous = type(alice_client)(suite["PACK427_FUNCTIONS_URL"])
    before = all_documents(suite_db)

    cases = [
        (anonymous, {"chatId": "solo", "clientMessageId": str(ULID()), "text": "x"}, "UNAUTHENTICATED"),
        (alice_client, {"chatId": "solo", "clientMessageId": "nope", "text": "x"}, "INVALID_ARGUMENT"),
        (alice_client, {"chatId": "solo", "clientMessageId": str(ULID()), "text": "x" * 5000}, "INVALID_ARGUMENT"),
        (alice_client, {"chatId": "other", "clientMessageId": str(ULID()), "text": "x"}, "NOT_FOUND"),
    ]
    for client, data, status in cases:
        with pytest.raises(CallableError) as raised:
            client.call("pack427_sendMessage", data)
        assert raised.value.status == status
    assert all_documents(suite_db) == before
