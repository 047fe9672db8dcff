"""The real-time signal callables, driven in-process as the Functions runtime calls them."""

from __future__ import annotations

import main
import pytest
from support.callables import call
from support.chatcore import all_documents, make_user
from support.signals import Chat, counter, receipt
from ulid import ULID

from pack427 import constants
from pack427 import db as service_db


@pytest.fixture
def chat(db, monkeypatch):
    monkeypatch.setattr(service_db, "client", lambda: db)
    for uid in ("alice", "bob", "mallory"):
        make_user(db, uid)
    c1 = Chat(db, "c1", ["alice", "bob"])
    c2 = Chat(db, "c2", ["alice", "mallory"])
    ids = [c1.send("alice") for _ in range(3)]
    db.document("ids/c1").set({"ids": ids, "foreign": c2.message("alice")})
    return db


def ids(db) -> tuple[list[str], str]:
    stored = db.document("ids/c1").get().to_dict()
    return stored["ids"], stored["foreign"]


def test_mark_as_read_then_counts_then_recalculate(chat):
    [first, _, last], _ = ids(chat)
    status, body = call(main.pack427_markAsRead, {"chatId": "c1", "readUpToMessageId": first.lower()}, uid="bob")
    assert status == 200 and body["result"] == {"success": True, "unreadCount": 2}
    assert receipt(chat, "bob", "c1")["readUpToMessageId"] == first  # ULIDs are stored upper case

    status, body = call(main.pack427_getUnreadCounts, {}, uid="bob")
    assert status == 200 and body["result"] == {"unreadCounts": {"c1": 2}, "totalUnread": 2}
    status, body = call(main.pack427_getUnreadCounts, None, uid="bob")
    assert status == 200 and body["result"]["totalUnread"] == 2

    chat.document("users/bob/inboxHead/current").update({"chats.c1.unread": 9})
    status, body = call(main.pack427_recalculateUnreadCounters, {}, uid="bob")
    assert status == 200
    assert body["result"] == {"success": True, "recalculated": 1, "checked": 1, "hasMore": False, "cursor": None,
                              "changes": [{"chatId": "c1", "before": 9, "after": 2}]}
    assert counter(chat, "bob", "c1")["unread"] == 2
    status, body = call(main.pack427_markAsRead, {"chatId": "c1", "readUpToMessageId": last}, uid="bob")
    assert body["result"] == {"success": True, "unreadCount": 0}


def test_typing_then_who_is_typing(chat):
    status, body = call(main.pack427_updateTypingState, {"chatId": "c1", "isTyping": True}, uid="alice")
    assert status == 200 and body["result"] == {"success": True}
    status, body = call(main.pack427_getTypingUsers, {"chatId": "c1"}, uid="bob")
    assert status == 200 and [u["userId"] for u in body["result"]["typingUsers"]] == ["alice"]
    status, body = call(main.pack427_updateTypingState, {"chatId": "c1", "isTyping": False}, uid="alice")
    assert status == 200
    status, body = call(main.pack427_getTypingUsers, {"chatId": "c1"}, uid="bob")
    assert body["result"] == {"typingUsers": []}


MARK = "pack427_markAsRead"
TYPE = "pack427_updateTypingState"
WHO = "pack427_getTypingUsers"
COUNTS = "pack427_getUnreadCounts"
RECALC = "pack427_recalculateUnreadCounters"

BAD_INPUT = [
    # (case, function, data, uid, HTTP status, error status, words the message must contain)
    ("markAsRead no auth", MARK, {"chatId": "c1", "readUpToMessageId": "FIRST"}, None, 401, "UNAUTHENTICATED", "sign in"),
    ("markAsRead unknown chat", MARK, {"chatId": "nope", "readUpToMessageId": "FIRST"}, "bob", 404, "NOT_FOUND", "nope"),
    ("markAsRead not a participant", MARK, {"chatId": "c1", "readUpToMessageId": "FIRST"}, "mallory", 403, "PERMISSION_DENIED", "not a participant"),
    ("markAsRead message of another chat", MARK, {"chatId": "c1", "readUpToMessageId": "FOREIGN"}, "bob", 400, "INVALID_ARGUMENT", "readUpToMessageId"),
    ("markAsRead unknown message", MARK, {"chatId": "c1", "readUpToMessageId": "UNKNOWN"}, "bob", 400, "INVALID_ARGUMENT", "readUpToMessageId"),
    ("markAsRead id not a ULID", MARK, {"chatId": "c1", "readUpToMessageId": "not-a-ulid-but-26-chars-xx"}, "bob", 400, "INVALID_ARGUMENT", "readUpToMessageId"),
    ("markAsRead id a number", MARK, {"chatId": "c1", "readUpToMessageId": 12}, "bob", 400, "INVALID_ARGUMENT", "readUpToMessageId"),
    ("markAsRead id missing", MARK, {"chatId": "c1"}, "bob", 400, "INVALID_ARGUMENT", "readUpToMessageId"),
    ("markAsRead chatId missing", MARK, {"readUpToMessageId": "FIRST"}, "bob", 400, "INVALID_ARGUMENT", "chatId"),
    ("markAsRead chatId with slash", MARK, {"chatId": "c1/x", "readUpToMessageId": "FIRST"}, "bob", 400, "INVALID_ARGUMENT", "chatId"),
    ("markAsRead unknown field", MARK, {"chatId": "c1", "readUpToMessageId": "FIRST", "count": 0}, "bob", 400, "INVALID_ARGUMENT", "count"),
    ("markAsRead data a list", MARK, ["c1"], "bob", 400, "INVALID_ARGUMENT", "data must be an object"),
    ("typing no auth", TYPE, {"chatId": "c1", "isTyping": True}, None, 401, "UNAUTHENTICATED", "sign in"),
    ("typing unknown chat", TYPE, {"chatId": "nope", "isTyping": True}, "bob", 404, "NOT_FOUND", "nope"),
    ("typing not a participant", TYPE, {"chatId": "c1", "isTyping": True}, "mallory", 403, "PERMISSION_DENIED", "not a participant"),
    ("typing isTyping a string", TYPE, {"chatId": "c1", "isTyping": "true"}, "bob", 400, "INVALID_ARGUMENT", "isTyping"),
    ("typing isTyping a number", TYPE, {"chatId": "c1", "isTyping": 1}, "bob", 400, "INVALID_ARGUMENT", "isTyping"),
    ("typing isTyping null", TYPE, {"chatId": "c1", "isTyping": None}, "bob", 400, "INVALID_ARGUMENT", "isTyping"),
    ("typing isTyping missing", TYPE, {"chatId": "c1"}, "bob", 400, "INVALID_ARGUMENT", "isTyping"),
    ("typing chatId a number", TYPE, {"chatId": 1, "isTyping": True}, "bob", 400, "INVALID_ARGUMENT", "chatId"),
    ("typing unknown field", TYPE, {"chatId": "c1", "isTyping": True, "expiresAt": 0}, "bob", 400, "INVALID_ARGUMENT", "expiresAt"),
    ("who unknown chat", WHO, {"chatId": "nope"}, "bob", 404, "NOT_FOUND", "nope"),
    ("who not a participant", WHO, {"chatId": "c1"}, "mallory", 403, "PERMISSION_DENIED", "not a participant"),
    ("who chatId missing", WHO, {}, "bob", 400, "INVALID_ARGUMENT", "chatId"),
    ("counts no auth", COUNTS, {}, None, 401, "UNAUTHENTICATED", "sign in"),
    ("counts unknown field", COUNTS, {"chatId": "c1"}, "bob", 400, "INVALID_ARGUMENT", "chatId"),
    ("recalculate no auth", RECALC, {}, None, 401, "UNAUTHENTICATED", "sign in"),
    ("recalculate unknown field", RECALC, {"uid": "alice"}, "bob", 400, "INVALID_ARGUMENT", "uid"),
    ("recalculate data a string", RECALC, "all", "bob", 400, "INVALID_ARGUMENT", "data must be an object"),
    ("recalculate cursor not ours", RECALC, {"cursor": "e30.AAAA"}, "bob", 400, "INVALID_ARGUMENT", "cursor"),
    ("recalculate cursor a number", RECALC, {"cursor": 3}, "bob", 400, "INVALID_ARGUMENT", "cursor"),
]


@pytest.mark.parametrize(("case", "function", "data", "uid", "http", "code", "words"), BAD_INPUT,
                         ids=[c[0] for c in BAD_INPUT])
def test_bad_input_gets_a_clear_error_and_writes_nothing(chat, case, function, data, uid, http, code, words):
    known, foreign = ids(chat)
    stand_ins = {"FIRST": known[0], "FOREIGN": foreign, "UNKNOWN": str(ULID())}
    if isinstance(data, dict) and data.get("readUpToMessageId") in stand_ins:
        data = data | {"readUpToMessageId": stand_ins[data["readUpToMessageId"]]}
    before = all_documents(chat)
    status, body = call(getattr(main, function), data, uid=uid)
    assert (status, body["error"]["status"]) == (http, code)
    assert words in body["error"]["message"]
    assert all_documents(chat) == before


def test_recalculate_past_its_limit_is_resource_exhausted_naming_the_limit(chat):
    limit = constants.MAX_RECALCULATIONS_PER_MINUTE
    for _ in range(limit):
        status, body = call(main.pack427_recalculateUnreadCounters, {}, uid="bob")
        assert status == 200 and body["result"]["success"] is True
    chat.document("users/bob/inboxHead/current").update({"chats.c1.unread": 9})
    before = all_documents(chat)

    status, body = call(main.pack427_recalculateUnreadCounters, {}, uid="bob")
    assert (status, body["error"]["status"]) == (429, "RESOURCE_EXHAUSTED")
    assert f"pack427_recalculateUnreadCounters) at most {limit} times a minute" in body["error"]["message"]
    details = body["error"]["details"]
    assert (details["reason"], details["limit"], details["windowSeconds"]) == ("recalculation_rate_limited", limit, 60)
    assert 0 < details["retryAfterMs"] <= 60_000
    assert all_documents(chat) == before and counter(chat, "bob", "c1")["unread"] == 9


def test_recalculate_pages_through_a_cursor_only_its_caller_can_use(chat, monkeypatch):
    monkeypatch.setattr(constants, "RECALCULATE_PAGE", 1)
    Chat(chat, "c3", ["bob", "carol"]).send("carol")
    status, body = call(main.pack427_recalculateUnreadCounters, {}, uid="bob")
    first = body["result"]
    assert (first["checked"], first["hasMore"]) == (1, True) and first["cursor"]
    status, body = call(main.pack427_recalculateUnreadCounters, {"cursor": first["cursor"]}, uid="mallory")
    assert (status, body["error"]["status"]) == (400, "INVALID_ARGUMENT") and "cursor" in body["error"]["message"]
    status, body = call(main.pack427_recalculateUnreadCounters, {"cursor": first["cursor"]}, uid="bob")
    assert (body["result"]["checked"], body["result"]["hasMore"], body["result"]["cursor"]) == (1, False, None)
