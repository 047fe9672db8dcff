"""Callables driven in-process, as the Functions runtime calls them: a Flask
request with the callable protocol's body and an emulator ID token."""

from __future__ import annotations

import os

import flask
import pytest
from chatcore import all_documents, make_chat, make_user
from ulid import ULID

os.environ.setdefault("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")
os.environ.setdefault("GCLOUD_PROJECT", "demo-pack427")

import firebase_admin  # noqa: E402
import main  # noqa: E402
from idtokens import emulator_id_token  # noqa: E402
from pack427 import constants  # noqa: E402
from pack427 import db as service_db  # noqa: E402

app = flask.Flask(__name__)


def call(function, data, uid: str | None = "alice", body: object = None):
    """POST `{"data": data}` to `function`; returns (HTTP status, decoded body)."""
    headers = {}
    if uid is not None:
        project = firebase_admin.get_app().project_id
        headers["Authorization"] = f"Bearer {emulator_id_token(uid, project)}"
    with app.test_request_context("/", method="POST", json={"data": data} if body is None else body, headers=headers):
        response = function(flask.request)
    return response.status_code, response.get_json()


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
