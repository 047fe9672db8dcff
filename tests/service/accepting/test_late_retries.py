"""A retry of an accepted send (same clientMessageId, same content) gets the first result back,
marked duplicate, whatever changed since it was accepted; the hooks are asked once per message."""

from __future__ import annotations

from datetime import timedelta

import pytest
from support.chatcore import all_documents, inbox, make_chat, make_user
from ulid import ULID

from pack427 import clock, constants, settings
from pack427.accepting import scheduling, sending
from pack427.errors import FailedPrecondition, InvalidArgument
from pack427.guarding import admission
from pack427.guarding.fraud import Verdict
from pack427.models import SendMessageRequest


@pytest.fixture
def chat(db):
    make_user(db, "alice")
    make_user(db, "bob")
    make_chat(db, "c1", ["alice", "bob"])
    return db


class CountingChecker:
    """A spam hook that counts what it is asked and refuses once told to."""

    name = "counting"

    def __init__(self, on_review=None):
        self.reviewed: list[str] = []
        self.refuse = False
        self.on_review = on_review

    def review(self, attempt):
        self.reviewed.append(attempt.client_message_id)
        if self.on_review is not None:
            self.on_review()
        return Verdict("spam_suspected", "no") if self.refuse else None


def request(**fields) -> SendMessageRequest:
    return SendMessageRequest(**({"chatId": "c1", "clientMessageId": str(ULID()), "text": "hi"} | fields))


def retried_after(db, change, req: SendMessageRequest, *, now=None, checker=None):
    first = sending.send_message(db, "alice", req, now=now, fraud_checker=checker)
    change()
    before = all_documents(db)
    again = sending.send_message(db, "alice", req, now=now, fraud_checker=checker)
    assert again == first.model_copy(update={"duplicate": True})
    assert all_documents(db) == before  # the retry wrote nothing
    return first


def test_a_retry_after_the_sender_left_the_chat_gets_its_first_result(chat):
    retried_after(chat, lambda: chat.document("chats/c1").update({"participants": ["bob"]}), request())
    assert [e["text"] for e in inbox(chat, "bob")] == ["hi"]


def test_a_retry_after_a_block_or_a_lost_age_verification_gets_its_first_result(chat):
    req = request()
    retried_after(chat, lambda: make_user(chat, "bob", blocked=["alice"]), req)
    make_user(chat, "alice", adult=False)
    again = sending.send_message(chat, "alice", req)
    assert again.duplicate and len(inbox(chat, "bob")) == 1


def test_a_retry_when_the_rate_window_is_full_gets_its_first_result(chat, monkeypatch):
    settings.set_rate_limit(chat, 3, actor="test")
    req = request()
    retried_after(chat, lambda: [sending.send_message(chat, "alice", request()) for _ in range(2)], req)


def test_a_scheduled_send_retried_after_its_time_gets_its_scheduled_id(chat):
    now = clock.now()
    req = request(deliverAt=clock.to_millis(now + timedelta(minutes=1)))
    first = sending.send_message(chat, "alice", req, now=now)
    later = now + timedelta(minutes=5)
    again = sending.send_message(chat, "alice", req, now=later)
    assert (again.messageId, again.status, again.duplicate) == (first.messageId, "SCHEDULED", True)
    # Without the first acceptance the same deliverAt is refused, naming it.
    with pytest.raises(InvalidArgument, match="deliverAt"):
        sending.send_message(chat, "alice", request(deliverAt=req.deliverAt), now=later)


def test_a_retry_that_a_hook_would_now_refuse_is_answered_and_the_hooks_are_not_asked_again(chat):
    checker = CountingChecker()
    req = request()

    def hook_now_refuses():
        checker.refuse = True

    retried_after(chat, hook_now_refuses, req, checker=checker)
    assert checker.reviewed == [req.clientMessageId]


def test_the_hooks_are_asked_once_when_a_conflict_makes_the_send_go_again(chat):
    touched = []

    def move_the_chat():  # between the send's read and its commit, once: its commit conflicts
        if not touched:
            touched.append(1)
            chat.document("chats/c1").update({"touchedBy": "the chat core"})

    checker = CountingChecker(on_review=move_the_chat)
    admitted = []

    class CountingAdmission:
        name = "counting-admission"

        def admit(self, attempt, billing_state):
            admitted.append(attempt.client_message_id)

    previous = admission.install(CountingAdmission())
    try:
        req = request()
        result = sending.send_message(chat, "alice", req, fraud_checker=checker)
    finally:
        admission.install(previous)
    assert touched and not result.duplicate
    assert checker.reviewed == [req.clientMessageId] and admitted == [req.clientMessageId]
    assert [e["messageId"] for e in inbox(chat, "bob")] == [result.messageId]


def test_a_different_message_under_an_accepted_id_is_still_refused(chat):
    req = request()
    sending.send_message(chat, "alice", req)
    chat.document("chats/c1").update({"participants": ["bob"]})
    with pytest.raises(InvalidArgument, match="already used for a different message"):
        sending.send_message(chat, "alice", req.model_copy(update={"text": "other"}))




def test_idempotency_records_carry_their_retention_and_a_retry_after_it_is_refused_not_duplicated(chat):
    """Firestore's TTL policy on idempotencyKeys.expiresAt deletes a record IDEMPOTENCY_RETENTION_DAYS
    after its send (after its deliverAt, if scheduled). A retry while it is there gets the first
    result, however late; once it is gone, a clientMessageId that old is refused, so a retry can
    never become a second message. The emulator does not run TTL: the test deletes the record."""
    now = clock.now()
    req = request()
    first = sending.send_message(chat, "alice", req, now=now)
    record = chat.document(f"idempotencyKeys/alice_{req.clientMessageId}")
    assert record.get().get("expiresAt") == now + timedelta(days=constants.IDEMPOTENCY_RETENTION_DAYS)
    scheduled = request(deliverAt=clock.to_millis(now + timedelta(days=20)))
    sending.send_message(chat, "alice", scheduled, now=now)
    assert chat.document(f"idempotencyKeys/alice_{scheduled.clientMessageId}").get().get("expiresAt") == (
        clock.from_millis(scheduled.deliverAt) + timedelta(days=constants.IDEMPOTENCY_RETENTION_DAYS))

    # Past its expiry but not yet deleted (TTL runs up to a day late): still the first result.
    late = now + timedelta(days=constants.IDEMPOTENCY_RETENTION_DAYS, hours=12)
    assert sending.send_message(chat, "alice", req, now=late) == first.model_copy(update={"duplicate": True})

    record.delete()  # what the TTL policy does
    before = all_documents(chat)
    with pytest.raises(FailedPrecondition) as refused:
        sending.send_message(chat, "alice", req, now=late)
    assert refused.value.details == {"reason": "client_message_id_expired",
                                     "maxAgeDays": constants.CLIENT_MESSAGE_ID_MAX_AGE_DAYS}
    assert "send it again with a new clientMessageId" in refused.value.message
    assert all_documents(chat) == before  # nothing written: no second message, no rate-window entry
    assert [e["text"] for e in inbox(chat, "bob")] == ["hi"]

    # A new message at that time, and one made offline up to the limit, are sent.
    new = request(clientMessageId=str(ULID.from_datetime(late)), text="new")
    assert not sending.send_message(chat, "alice", new, now=late).duplicate
    made_offline = str(ULID.from_datetime(late - timedelta(days=constants.CLIENT_MESSAGE_ID_MAX_AGE_DAYS - 1)))
    assert not sending.send_message(chat, "alice", request(clientMessageId=made_offline, text="from the plane"),
                                    now=late).duplicate
    assert [e["text"] for e in inbox(chat, "bob")] == ["hi", "new", "from the plane"]


def test_a_scheduled_message_is_delivered_whatever_its_age_at_delivery(chat):
    """Its delivery is sent under the engine's own key, made when it was scheduled, up to
    MAX_SCHEDULE_DAYS earlier: never refused as too old."""
    now = clock.now()
    at = now + timedelta(days=constants.MAX_SCHEDULE_DAYS)
    sending.send_message(chat, "alice", request(text="in a month", deliverAt=clock.to_millis(at)), now=now)
    assert scheduling.deliver_due(chat, now=at + timedelta(days=2))["delivered"] == 1
    assert [e["text"] for e in inbox(chat, "bob")] == ["in a month"]
