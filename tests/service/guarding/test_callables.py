"""Callables driven in-process, as the Functions runtime calls them: a Flask
request with the callable protocol's body and an emulator ID token."""

from __future__ import annotations

import pytest
from support.callables import app, call, emulator_id_token, firebase_admin, main  # noqa: E402, F401
from support.chatcore import all_documents, make_chat, make_user
from ulid import ULID

from pack427 import constants  # noqa: E402
from pack427 import db as service_db  # noqa: E402


@pytest.fixture
def chat(db, monkeypatch):
    monkeypatch.setattr(service_db, "client", lambda: db)
    make_user(db, "alice")
    make_user(db, "bob", region="US")
    make_user(db, "mallory")
    make_chat(db, "c1", ["alice", "bob"])
    return db


def valid(**overrides):
    return {"chatId": "c1", "clientMessageId": str(ULID()), "text": "hi"} | overrides


def test_send_message_accepts_and_replays(chat):
    data = valid()
    status, body = call(main.pack427_sendMessage, data)
    assert status == 200
    first = body["result"]
    assert first["duplicate"] is False and first["status"] == "QUEUED"
    status, body = call(main.pack427_sendMessage, data)
    assert status == 200 and body["result"] == first | {"duplicate": True}


BAD_INPUT = [
    # (case, data, uid, HTTP status, error status, words the message must contain)
    ("no auth", valid(), None, 401, "UNAUTHENTICATED", "sign in"),
    ("data not an object", ["c1"], "alice", 400, "INVALID_ARGUMENT", "data must be an object"),
    ("missing chatId", {"clientMessageId": str(ULID()), "text": "x"}, "alice", 400, "INVALID_ARGUMENT", "chatId"),
    ("chatId wrong type", valid(chatId=42), "alice", 400, "INVALID_ARGUMENT", "chatId"),
    ("chatId with slash", valid(chatId="c1/messages/x"), "alice", 400, "INVALID_ARGUMENT", "chatId"),
    ("chatId too long", valid(chatId="c" * 129), "alice", 400, "INVALID_ARGUMENT", "chatId"),
    ("clientMessageId not a ULID", valid(clientMessageId="not-a-ulid-but-26-chars-xx"), "alice", 400, "INVALID_ARGUMENT", "clientMessageId"),
    ("clientMessageId missing", {"chatId": "c1", "text": "x"}, "alice", 400, "INVALID_ARGUMENT", "clientMessageId"),
    ("clientMessageId number", valid(clientMessageId=12345), "alice", 400, "INVALID_ARGUMENT", "clientMessageId"),
    ("text too long", valid(text="x" * (constants.MAX_TEXT_LENGTH + 1)), "alice", 400, "INVALID_ARGUMENT", "text"),
    ("text wrong type", valid(text=["hi"]), "alice", 400, "INVALID_ARGUMENT", "text"),
    ("text blank", valid(text="   "), "alice", 400, "INVALID_ARGUMENT", "blank"),
    ("no content", {"chatId": "c1", "clientMessageId": str(ULID())}, "alice", 400, "INVALID_ARGUMENT", "text or contentRef"),
    ("unknown field", valid(billingState={"paid": False}), "alice", 400, "INVALID_ARGUMENT", "billingState"),
    ("unknown chat", valid(chatId="nope"), "alice", 404, "NOT_FOUND", "nope"),
    ("not a participant", valid(), "mallory", 403, "PERMISSION_DENIED", "not a participant"),
]


@pytest.mark.parametrize(("case", "data", "uid", "http", "code", "words"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_gets_a_clear_error_and_writes_nothing(chat, case, data, uid, http, code, words):
    before = all_documents(chat)
    status, body = call(main.pack427_sendMessage, data, uid=uid)
    assert (status, body["error"]["status"]) == (http, code)
    assert words in body["error"]["message"]
    assert all_documents(chat) == before


def test_malformed_callable_body_is_rejected(chat):
    before = all_documents(chat)
    status, body = call(main.pack427_sendMessage, None, body={"notData": 1})
    assert (status, body["error"]["status"]) == (400, "INVALID_ARGUMENT")
    assert all_documents(chat) == before


SYNC_BAD_INPUT = [
    # (case, function, data, uid, error status, words the message must contain)
    ("register without auth", "registerDevice", {"deviceId": "d", "platform": "ios", "appVersion": "1"}, None, "UNAUTHENTICATED", "sign in"),
    ("register missing deviceId", "registerDevice", {"platform": "ios", "appVersion": "1"}, "alice", "INVALID_ARGUMENT", "deviceId"),
    ("register unknown platform", "registerDevice", {"deviceId": "d", "platform": "symbian", "appVersion": "1"}, "alice", "INVALID_ARGUMENT", "platform"),
    ("register deviceId with slash", "registerDevice", {"deviceId": "a/b", "platform": "web", "appVersion": "1"}, "alice", "INVALID_ARGUMENT", "deviceId"),
    ("register appVersion too long", "registerDevice", {"deviceId": "d", "platform": "web", "appVersion": "1" * 65}, "alice", "INVALID_ARGUMENT", "appVersion"),
    ("sync missing deviceId", "syncMessages", {}, "alice", "INVALID_ARGUMENT", "deviceId"),
    ("sync cursor not ours", "syncMessages", {"deviceId": "d", "cursor": "eyJzZXEiOjB9.AAAA"}, "alice", "INVALID_ARGUMENT", "cursor"),
    ("sync cursor not a string", "syncMessages", {"deviceId": "d", "cursor": 5}, "alice", "INVALID_ARGUMENT", "cursor"),
    ("sync since negative", "syncMessages", {"deviceId": "d", "since": -1}, "alice", "INVALID_ARGUMENT", "since"),
    ("sync since a string", "syncMessages", {"deviceId": "d", "since": "yesterday"}, "alice", "INVALID_ARGUMENT", "since"),
    ("ack ids not a list", "ackMessages", {"messageIds": str(ULID())}, "alice", "INVALID_ARGUMENT", "messageIds"),
    ("ack no ids", "ackMessages", {"messageIds": []}, "alice", "INVALID_ARGUMENT", "messageIds"),
    ("ack 10,000 ids", "ackMessages", {"messageIds": [str(ULID()) for _ in range(10_000)]}, "alice", "INVALID_ARGUMENT", "messageIds"),
    ("ack id not a ULID", "ackMessages", {"messageIds": ["../../x"]}, "alice", "INVALID_ARGUMENT", "messageIds.0"),
    ("ack unknown region", "ackMessages", {"messageIds": [str(ULID())], "region": "MARS"}, "alice", "INVALID_ARGUMENT", "region"),
    ("resync not a participant", "resyncChat", {"chatId": "c1"}, "mallory", "PERMISSION_DENIED", "not a participant"),
    ("resync unknown chat", "resyncChat", {"chatId": "nope"}, "alice", "NOT_FOUND", "nope"),
    ("resync cursor not ours", "resyncChat", {"chatId": "c1", "cursor": "x.y"}, "alice", "INVALID_ARGUMENT", "cursor"),
    ("chat list limit 0", "getChatList", {"limit": 0}, "alice", "INVALID_ARGUMENT", "limit"),
    ("chat list limit 1000", "getChatList", {"limit": 1000}, "alice", "INVALID_ARGUMENT", "limit"),
    ("chat list cursor garbage", "getChatList", {"cursor": "garbage"}, "alice", "INVALID_ARGUMENT", "cursor"),
]


@pytest.mark.parametrize(
    ("case", "function", "data", "uid", "code", "words"), SYNC_BAD_INPUT, ids=[c[0] for c in SYNC_BAD_INPUT]
)
def test_sync_callables_refuse_bad_input_and_write_nothing(chat, case, function, data, uid, code, words):
    before = all_documents(chat)
    status, body = call(getattr(main, f"pack427_{function}"), data, uid=uid)
    assert 400 <= status < 500 and body["error"]["status"] == code
    assert words in body["error"]["message"]
    assert all_documents(chat) == before


def test_sync_callables_answer_over_the_callable_protocol(chat):
    status, body = call(main.pack427_registerDevice, {"deviceId": "phone", "platform": "android", "appVersion": "3.2"})
    assert (status, body["result"]) == (200, {"success": True, "region": "EU"})
    status, body = call(main.pack427_syncMessages, {"deviceId": "phone"})
    assert status == 200 and body["result"]["messages"] == [] and body["result"]["hasMore"] is False
    status, body = call(main.pack427_ackMessages, {"messageIds": [str(ULID())], "region": "EU"})
    assert (status, body["result"]) == (200, {"success": True, "acknowledgedCount": 0})
    status, body = call(main.pack427_getChatList, {})
    assert (status, body["result"]["chats"], body["result"]["hasMore"]) == (200, [], False)
