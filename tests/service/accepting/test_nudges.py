"""System nudges: the engine's own messages to a user, through the queue, idempotent by key,
never rate-limited or billed, marked as nudges, and never sendable by a client."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import main
import pytest
from support.callables import call
from support.chatcore import all_documents, head, inbox, make_chat, make_user, queue_entries
from support.emulator import UNIT_PROJECT
from ulid import ULID

from pack427 import constants
from pack427 import db as service_db
from pack427.accepting import nudges
from pack427.delivering.notifier import EmulatorNotifier
from pack427.errors import InvalidArgument
from pack427.models import Region, SyncMessagesRequest
from pack427.operating import cli
from pack427.reading import sync
from pack427.workers import processor

T0 = datetime(2026, 8, 1, 9, 0, tzinfo=UTC)


def deliver(db, at=T0 + timedelta(seconds=5)) -> None:
    for region in Region:
        processor.process_batch(db, region, EmulatorNotifier(), now=at)


def test_a_nudge_goes_through_the_queue_and_is_marked_in_the_inbox_and_in_sync(db):
    make_user(db, "bob", region="US", online=False, tokens=["tok"])
    sent = nudges.send_nudge(db, "bob", key="winback-1", text="We miss you!", now=T0)

    assert sent.duplicate is False
    [entry] = queue_entries(db)  # through the same queue: awaiting bob's inbox, with his push
    assert entry["_path"] == f"regions/US/messageQueue/{sent.messageId}_bob"
    assert (entry["awaitingInbox"], entry["systemNudge"], entry["senderId"]) == (True, True, "system")
    assert entry["transportMetadata"]["pushTokens"] == ["tok"]
    message = db.document(f"chats/nudges_bob/messages/{sent.messageId}").get().to_dict()
    assert (message["systemNudge"], message["billingState"]) == (True, {})  # never billed
    assert db.document("chats/nudges_bob").get().get("participants") == ["bob"]

    deliver(db)
    [placed] = inbox(db, "bob")
    assert (placed["messageId"], placed["systemNudge"], placed["chatId"]) == (sent.messageId, True, "nudges_bob")
    assert head(db, "bob")["chats"]["nudges_bob"]["unread"] == 1
    page = sync.sync_messages(db, "bob", SyncMessagesRequest(deviceId="phone"))
    assert [(m.messageId, m.systemNudge, m.senderName) for m in page.messages] == [(sent.messageId, True, "System")]


def test_the_same_key_is_the_same_nudge_and_other_content_under_it_is_refused(db):
    make_user(db, "bob")
    first = nudges.send_nudge(db, "bob", key="k1", text="hello", now=T0)
    again = nudges.send_nudge(db, "bob", key="k1", text="hello", now=T0 + timedelta(seconds=1))
    assert (again.messageId, again.duplicate) == (first.messageId, True)
    before = all_documents(db)
    with pytest.raises(InvalidArgument, match="already used"):
        nudges.send_nudge(db, "bob", key="k1", text="something else")
    assert all_documents(db) == before
    assert len(queue_entries(db)) == 1


def test_racing_nudges_with_one_key_make_one_message(db):
    make_user(db, "bob")
    with ThreadPoolExecutor(5) as pool:
        results = list(pool.map(lambda _: nudges.send_nudge(db, "bob", key="race", text="once", now=T0), range(5)))
    assert len({r.messageId for r in results}) == 1
    assert sorted(r.duplicate for r in results) == [False, True, True, True, True]
    assert len(list(db.collection("chats/nudges_bob/messages").stream())) == 1


def test_nudges_are_not_rate_limited_and_keep_their_order(db):
    make_user(db, "bob")
    ids = [nudges.send_nudge(db, "bob", key=f"n{i}", text=f"nudge {i}", now=T0 + timedelta(milliseconds=i)).messageId
           for i in range(constants.MAX_MESSAGES_PER_MINUTE + 5)]
    assert not db.document("rateLimits/system").get().exists
    deliver(db)
    assert [e["messageId"] for e in inbox(db, "bob")] == ids


def test_bad_keys_and_texts_are_refused_and_write_nothing(db):
    make_user(db, "bob")
    before = all_documents(db)
    for kwargs in ({"key": "a/b", "text": "x"}, {"key": "", "text": "x"}, {"key": "k", "text": "  "},
                   {"key": "k", "text": "x" * (constants.MAX_TEXT_LENGTH + 1)}):
        with pytest.raises(InvalidArgument):
            nudges.send_nudge(db, "bob", **kwargs)
    assert all_documents(db) == before


def test_no_client_can_send_one(db, monkeypatch):
    monkeypatch.setattr(service_db, "client", lambda: db)
    make_user(db, "alice")
    make_user(db, "bob")
    make_chat(db, "ab", ["alice", "bob"])
    before = all_documents(db)
    status, body = call(main.pack427_sendMessage, {"chatId": "ab", "clientMessageId": str(ULID()), "text": "hi",
                                                   "systemNudge": True})
    assert status == 400 and body["error"]["status"] == "INVALID_ARGUMENT" and "systemNudge" in body["error"]["message"]
    assert all_documents(db) == before


def test_an_operator_sends_one(db, capsys):
    make_user(db, "bob")
    assert cli.main(["--project", UNIT_PROJECT, "nudge", "bob", "ops-1", "Your trial ends soon"]) == 0
    assert cli.main(["--project", UNIT_PROJECT, "nudge", "bob", "ops-1", "Your trial ends soon"]) == 0
    out = capsys.readouterr().out
    assert "queued" in out and "sent before with this key" in out
    [entry] = queue_entries(db)
    assert (entry["systemNudge"], entry["text"], entry["history"][0]["actor"]) == (True, "Your trial ends soon", "system")
