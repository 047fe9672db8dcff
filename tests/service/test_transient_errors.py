"""A transient Firestore error under a callable: the caller gets UNAVAILABLE, never INTERNAL, and its
retry with the same arguments does what the first call would have done, once. Under the processor:
the region's next round, or the next run, delivers what it left; the other regions are drained.

Faults are real transport errors around real emulator calls (support.faults): a read refused before
it is sent, a commit that applied and whose answer was lost.
"""

from __future__ import annotations

import os

import pytest
from google.api_core import exceptions as gexc
from support.chatcore import head, inbox, make_chat, make_user
from support.entries import enqueue, make_entry
from support.faults import transport_fault
from ulid import ULID

os.environ.setdefault("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")
os.environ.setdefault("GCLOUD_PROJECT", "demo-pack427")

import main  # noqa: E402
from test_callables import call  # noqa: E402

from pack427 import db as service_db  # noqa: E402
from pack427 import paths  # noqa: E402
from pack427.delivering.notifier import EmulatorNotifier  # noqa: E402
from pack427.models import Region  # noqa: E402
from pack427.workers import processor  # noqa: E402


@pytest.fixture
def chat(db, monkeypatch):
    monkeypatch.setattr(service_db, "client", lambda: db)
    make_user(db, "alice")
    make_user(db, "bob", region="US")
    make_chat(db, "c1", ["alice", "bob"])
    return db


def send(data: dict) -> tuple[int, dict]:
    return call(main.pack427_sendMessage, data)


def test_a_send_whose_reads_are_unavailable_answers_unavailable_writes_nothing_and_its_retry_sends(chat):
    data = {"chatId": "c1", "clientMessageId": str(ULID()), "text": "hi"}
    with transport_fault("batch_get_documents") as fault:
        status, body = send(data)
    assert fault.hits == 1
    assert (status, body["error"]["status"]) == (503, "UNAVAILABLE")
    assert "retry" in body["error"]["message"]
    assert list(paths.chat(chat, "c1").collection("messages").stream()) == [] and inbox(chat, "bob") == []
    status, body = send(data)
    assert status == 200 and body["result"]["duplicate"] is False
    assert [e["messageId"] for e in inbox(chat, "bob")] == [body["result"]["messageId"]]


@pytest.mark.parametrize("error", [gexc.DeadlineExceeded, gexc.ServiceUnavailable, gexc.InternalServerError])
def test_a_send_whose_answer_was_lost_answers_unavailable_and_its_retry_gets_the_one_message(chat, error):
    data = {"chatId": "c1", "clientMessageId": str(ULID()), "text": "hi"}
    with transport_fault("commit", applied=True, error=error):
        status, body = send(data)
    assert (status, body["error"]["status"]) == (503, "UNAVAILABLE")
    placed = inbox(chat, "bob")
    assert len(placed) == 1  # the commit applied: the message is there already
    status, body = send(data)
    assert status == 200 and body["result"] == {"messageId": placed[0]["messageId"], "status": "QUEUED",
                                                "duplicate": True}
    assert inbox(chat, "bob") == placed and head(chat, "bob")["chats"]["c1"]["unread"] == 1


def test_a_mark_as_read_whose_answer_was_lost_answers_unavailable_and_its_retry_counts_once(chat):
    status, body = send({"chatId": "c1", "clientMessageId": str(ULID()), "text": "hi"})
    message_id = body["result"]["messageId"]
    request = {"chatId": "c1", "readUpToMessageId": message_id}
    with transport_fault("commit", applied=True, error=gexc.DeadlineExceeded):
        status, body = call(main.pack427_markAsRead, request, uid="bob")
    assert (status, body["error"]["status"]) == (503, "UNAVAILABLE")
    status, body = call(main.pack427_markAsRead, request, uid="bob")
    assert (status, body["result"]) == (200, {"success": True, "unreadCount": 0})
    assert head(chat, "bob")["chats"]["c1"]["unread"] == 0


@pytest.mark.parametrize("method", ["batch_get_documents", "run_query", "commit"])
def test_sync_answers_unavailable_when_firestore_does_and_its_retry_pages(chat, method):
    send({"chatId": "c1", "clientMessageId": str(ULID()), "text": "hi"})
    assert call(main.pack427_registerDevice, {"deviceId": "phone", "platform": "ios", "appVersion": "1"},
                uid="bob")[0] == 200
    with transport_fault(method, times=10) as fault:
        status, body = call(main.pack427_syncMessages, {"deviceId": "phone"}, uid="bob")
    if fault.hits:  # the page's reads, or the device's position
        assert (status, body["error"]["status"]) == (503, "UNAVAILABLE")
    status, body = call(main.pack427_syncMessages, {"deviceId": "phone"}, uid="bob")
    assert status == 200 and len(body["result"]["messages"]) == 1


def test_a_drain_whose_read_was_refused_in_one_region_still_drains_every_region(db):
    make_user(db, "ann", region="EU")
    make_user(db, "bob", region="US")
    eu, us = make_entry("ann", region=Region.EU, chat="c-eu"), make_entry("bob", region=Region.US, chat="c-us")
    enqueue(db, eu, us)
    # The first region's depth count is refused (the first count of the run): its next round goes on.
    with transport_fault("run_aggregation_query") as fault:
        processor.drain(db, EmulatorNotifier(), regions=(Region.EU, Region.US), actor="test", time_budget_s=60)
    assert fault.hits == 1
    assert [e["messageId"] for e in inbox(db, "ann")] == [eu.message_id]
    assert [e["messageId"] for e in inbox(db, "bob")] == [us.message_id]


def test_a_drain_whose_reads_keep_failing_ends_and_the_next_run_delivers(db):
    make_user(db, "bob", region="US")
    entry = make_entry("bob", region=Region.US)
    enqueue(db, entry)
    with transport_fault("run_query", times=1000):
        processor.drain(db, EmulatorNotifier(), regions=(Region.US,), actor="test", time_budget_s=60)
    assert inbox(db, "bob") == []
    processor.drain(db, EmulatorNotifier(), regions=(Region.US,), actor="test", time_budget_s=60)
    assert [e["messageId"] for e in inbox(db, "bob")] == [entry.message_id]
