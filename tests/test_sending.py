"""Accepting messages: what a send stores, and what a retried send does not."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from chatcore import all_documents, count, inbox, make_chat, make_user, queue_entries
from pack427 import delivery, sending
from pack427.errors import InvalidArgument, NotFound, PermissionDenied
from pack427.models import Region, SendMessageRequest
from pack427.notifier import EmulatorNotifier
from ulid import ULID


def request(chat_id: str = "c1", text: str = "hello", client_id: str | None = None) -> SendMessageRequest:
    return SendMessageRequest(chatId=chat_id, clientMessageId=client_id or str(ULID()), text=text)


@pytest.fixture
def group(db):
    make_user(db, "alice", region="EU", name="Alice")
    make_user(db, "bob", region="US")
    make_user(db, "carol", region="APAC", online=False, tokens=["tok-carol"])
    make_chat(db, "c1", ["alice", "bob", "carol"], billing={"mode": "paid", "price": 3})
    return db


def test_send_stores_message_one_entry_per_recipient_and_one_billing_request(group):
    db = group
    result = sending.send_message(db, "alice", request(text="hi all"))

    assert result.duplicate is False and result.status == "QUEUED"
    message = db.document(f"chats/c1/messages/{result.messageId}").get().to_dict()
    assert message["senderId"] == "alice" and message["text"] == "hi all"
    entries = {e["recipientId"]: e for e in queue_entries(db)}
    assert set(entries) == {"bob", "carol"}
    assert entries["bob"]["_path"] == f"regions/US/messageQueue/{result.messageId}_bob"
    assert entries["carol"]["_path"] == f"regions/APAC/messageQueue/{result.messageId}_carol"
    for entry in entries.values():
        assert entry["region"] == "EU" and entry["status"] == "PENDING" and entry["attempts"] == 0
        assert entry["billingState"] == {"mode": "paid", "price": 3}
        assert entry["contentRef"] == f"chats/c1/messages/{result.messageId}"
    # Offline recipients carry their push tokens; online ones none.
    assert entries["carol"]["transportMetadata"] == {"pushTokens": ["tok-carol"], "senderName": "Alice"}
    assert entries["bob"]["transportMetadata"]["pushTokens"] == []
    billing = db.document(f"billingRequests/{result.messageId}").get().to_dict()
    assert billing["billingState"] == {"mode": "paid", "price": 3}
    assert count(db, "billingRequests") == 1
    assert count(db, "auditLog") == 2


def test_same_client_message_id_five_times_gives_one_message(group):
    db = group
    client_id = str(ULID())
    first = sending.send_message(db, "alice", request(client_id=client_id))
    again = [sending.send_message(db, "alice", request(client_id=client_id)) for _ in range(4)]

    assert all(r.duplicate and r.messageId == first.messageId for r in again)
    assert len(list(db.collection("chats/c1/messages").stream())) == 1
    assert len(queue_entries(db)) == 2
    assert count(db, "billingRequests") == 1


def test_concurrent_retries_of_one_send_give_one_message(group):
    db = group
    client_id = str(ULID())
    with ThreadPoolExecutor(5) as pool:
        results = list(pool.map(lambda _: sending.send_message(db, "alice", request(client_id=client_id)), range(5)))

    assert len({r.messageId for r in results}) == 1
    assert sorted(r.duplicate for r in results) == [False, True, True, True, True]
    assert len(list(db.collection("chats/c1/messages").stream())) == 1
    assert len(queue_entries(db)) == 2
    assert count(db, "billingRequests") == 1
    assert count(db, "auditLog") == 2


def test_client_message_id_reused_for_other_content_is_rejected(group):
    db = group
    client_id = str(ULID())
    sending.send_message(db, "alice", request(client_id=client_id, text="one"))
    before = all_documents(db)

    with pytest.raises(InvalidArgument, match="already used"):
        sending.send_message(db, "alice", request(client_id=client_id, text="two"))
    assert all_documents(db) == before


def test_same_client_message_id_from_two_senders_is_two_messages(group):
    db = group
    client_id = str(ULID())
    a = sending.send_message(db, "alice", request(client_id=client_id))
    b = sending.send_message(db, "bob", request(client_id=client_id))
    assert a.messageId != b.messageId and not b.duplicate


def test_sender_outside_the_chat_or_unknown_chat_writes_nothing(group):
    db = group
    make_user(db, "mallory")
    before = all_documents(db)

    with pytest.raises(PermissionDenied, match="not a participant"):
        sending.send_message(db, "mallory", request())
    with pytest.raises(NotFound, match="does not exist"):
        sending.send_message(db, "alice", request(chat_id="nope"))
    assert all_documents(db) == before


def test_cross_region_message_lands_in_the_recipients_region(db):
    make_user(db, "eve", region="EU")
    make_user(db, "uma", region="US")
    make_chat(db, "eu-us", ["eve", "uma"])
    result = sending.send_message(db, "eve", request(chat_id="eu-us", text="hello from Paris"))

    assert delivery.process_batch(db, Region.EU, EmulatorNotifier()).attempted == 0
    report = delivery.process_batch(db, Region.US, EmulatorNotifier())

    assert report.outcomes["delivered"] == 1
    [received] = inbox(db, "uma")
    assert received["messageId"] == result.messageId
    assert received["region"] == "US" and received["text"] == "hello from Paris"
    [entry] = queue_entries(db)
    assert (entry["region"], entry["targetRegion"], entry["status"]) == ("EU", "US", "DELIVERED")


def test_user_without_document_or_with_unknown_region_uses_the_default_region(db, monkeypatch):
    monkeypatch.setenv("PACK427_DEFAULT_REGION", "APAC")
    make_user(db, "kim", region="MARS")
    make_chat(db, "c2", ["kim", "ghost"])
    sending.send_message(db, "kim", request(chat_id="c2"))

    [entry] = queue_entries(db)
    assert (entry["region"], entry["targetRegion"]) == ("APAC", "APAC")
