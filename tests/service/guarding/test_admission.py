"""Paid-chat admission: the hook a paid-chat engine installs to refuse a send (insufficient tokens)."""

from __future__ import annotations

from datetime import UTC, datetime

import main
import pytest
from support.callables import call
from support.chatcore import all_documents, billing_requests, make_chat, make_user
from ulid import ULID

from pack427 import db as service_db
from pack427.accepting import sending
from pack427.errors import FailedPrecondition, Unavailable
from pack427.guarding import admission
from pack427.guarding.fraud import Verdict
from pack427.models import SendMessageRequest

T0 = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)


class Wallet:
    """A paid-chat engine: chats billed `paid` need a token per message; it has `tokens` for each sender."""

    name = "test-wallet"

    def __init__(self, tokens: dict[str, int], *, reason: str | None = None, broken: bool = False):
        self.tokens, self.reason, self.broken = tokens, reason, broken
        self.asked: list[tuple[str, dict]] = []

    def admit(self, attempt, billing_state):
        self.asked.append((attempt.sender_id, billing_state))
        if self.broken:
            raise ConnectionError("wallet service down")
        if billing_state.get("mode") != "paid" or self.tokens.get(attempt.sender_id, 0) > 0:
            return None
        return Verdict(reason=self.reason, message="You need tokens to send in this chat.",
                       details={"balance": self.tokens.get(attempt.sender_id, 0)})


@pytest.fixture
def paid(db):
    make_user(db, "alice")
    make_user(db, "bob")
    make_chat(db, "paid", ["alice", "bob"], billing={"mode": "paid", "price": 2})
    make_chat(db, "free", ["alice", "bob"])
    return db


@pytest.fixture
def wallet():
    hook = Wallet({"bob": 5})
    previous = admission.install(hook)
    yield hook
    admission.install(previous)


def send(db, uid, chat_id, client_id=None):
    request = SendMessageRequest(chatId=chat_id, clientMessageId=client_id or str(ULID()), text="hello")
    return sending.send_message(db, uid, request, now=T0)


def test_a_refused_send_is_failed_precondition_and_writes_only_its_audit_record(paid, wallet):
    db = paid
    client_id = str(ULID())
    before = all_documents(db)
    with pytest.raises(FailedPrecondition) as refused:
        send(db, "alice", "paid", client_id)
    assert refused.value.details == {"reason": "insufficient_tokens", "rule": "test-wallet"}
    assert "tokens" in refused.value.message
    after = all_documents(db)
    assert set(after) - set(before) == {f"auditLog/rejected_alice_{client_id}"}
    assert {p for p in before if after[p] != before[p]} == set()
    event = db.document(f"auditLog/rejected_alice_{client_id}").get().to_dict()
    assert (event["action"], event["reason"], event["rule"], event["details"]) == (
        "SEND_REJECTED", "insufficient_tokens", "test-wallet", {"balance": 0})
    assert billing_requests(db) == []
    # The hook saw the chat's billing state, unchanged.
    assert wallet.asked == [("alice", {"mode": "paid", "price": 2})]


def test_admitted_sends_go_through_and_the_engine_still_never_bills(paid, wallet):
    db = paid
    assert send(db, "bob", "paid").duplicate is False  # bob has tokens
    assert send(db, "alice", "free").duplicate is False  # not a paid chat
    assert len(billing_requests(db)) == 2  # a request each for the billing system; nothing charged here


def test_the_hook_may_name_its_own_reason(paid):
    previous = admission.install(Wallet({}, reason="subscription_expired"))
    try:
        with pytest.raises(FailedPrecondition) as refused:
            send(paid, "alice", "paid")
    finally:
        admission.install(previous)
    assert refused.value.details["reason"] == "subscription_expired"


def test_a_failing_hook_refuses_for_now_and_writes_nothing(paid):
    db = paid
    previous = admission.install(Wallet({}, broken=True))
    before = all_documents(db)
    try:
        with pytest.raises(Unavailable):
            send(db, "alice", "paid")
    finally:
        admission.install(previous)
    assert all_documents(db) == before  # no message slipped through unchecked


def test_a_retry_of_an_accepted_send_is_answered_without_asking_again(paid, wallet):
    db = paid
    client_id = str(ULID())
    first = send(db, "bob", "paid", client_id)
    wallet.tokens["bob"] = 0  # the wallet is empty now
    again = send(db, "bob", "paid", client_id)
    assert (again.messageId, again.duplicate) == (first.messageId, True)


def test_over_the_callable_the_refusal_names_its_reason(paid, wallet, monkeypatch):
    monkeypatch.setattr(service_db, "client", lambda: paid)
    status, body = call(main.pack427_sendMessage, {"chatId": "paid", "clientMessageId": str(ULID()), "text": "hi"})
    assert status == 400 and body["error"]["status"] == "FAILED_PRECONDITION"
    assert body["error"]["details"] == {"reason": "insufficient_tokens", "rule": "test-wallet"}


def test_the_python_client_fails_a_refused_message_at_once_and_sends_the_next(paid, wallet, monkeypatch):
    from support.inprocess import chat_for

    from pack427_client import LocalStore, OutboxStatus

    monkeypatch.setattr(service_db, "client", lambda: paid)
    alice = chat_for("alice", LocalStore())
    refused = alice.send_message("paid", "no tokens for this")
    free = alice.send_message("free", "this one is free")
    assert (refused.status, free.status) == (OutboxStatus.FAILED, OutboxStatus.SENT)
    assert "insufficient_tokens" in refused.last_error or "FAILED_PRECONDITION" in refused.last_error
    assert alice.failed_messages_count == 1
