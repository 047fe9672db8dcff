"""firestore.rules on every collection the engine uses, evaluated by the emulator.

As an attacker would try it: real REST requests with emulator ID tokens of
the owner, of another signed-in user and of nobody, for get, list (a query)
and write (create, update, delete). The data is written with the admin
client, which bypasses rules.
"""

from __future__ import annotations

import os

import pytest
from google.cloud import firestore
from support.rest import RulesApi, load_rules

PROJECT = "demo-pack427-rules-all" + os.environ.get("PYTEST_XDIST_WORKER", "")

DOCUMENTS = {
    "users/bob": {"region": "EU", "ageVerified18Plus": True, "blockedUsers": ["mallory"]},
    "users/bob/inbox/m1": {"messageId": "m1", "chatId": "c1", "senderId": "alice", "seq": 1},
    "users/bob/inboxHead/current": {"seq": 1, "messageId": "m1", "chats": {"c1": {"unread": 1, "last": "m1"}}},
    "users/bob/inboxChats/c9": {"chatId": "c9", "unread": 3, "last": "m0"},  # a chat parked out of the head
    "chats/c1": {"participants": ["alice", "bob"]},
    "chats/c1/messages/m1": {"id": "m1", "chatId": "c1", "senderId": "alice", "text": "hi"},
    "chats/c1/readReceipts/bob": {"chatId": "c1", "userId": "bob", "readUpToMessageId": "m1"},
    "chats/c1/fanOuts/m2": {"chatId": "c1", "recipients": ["bob"], "next": 0},
    "chats/c1/fanOuts/m2/parts/1": {"recipients": ["carol"]},
    "chats/c2": {"participants": ["carol", "mallory"]},
    "regions/EU/deviceSyncStates/bob_phone": {"userId": "bob", "deviceId": "phone"},
    # The seed's rule (`uid in syncStateId`) would let bob read bobby's state.
    "regions/EU/deviceSyncStates/bobby_phone": {"userId": "bobby", "deviceId": "phone"},
    "regions/US/typingEvents/c1_alice": {"chatId": "c1", "userId": "alice", "participants": ["alice", "bob"]},
    "regions/EU/messageQueue/m1_bob": {"messageId": "m1", "senderId": "alice", "recipientId": "bob"},
    "regions/EU/queueStats/20260301T000000": {"region": "EU", "pending": 0},
    "idempotencyKeys/alice_01J": {"messageId": "m1", "senderId": "alice"},
    "auditLog/rejected_alice_01K": {"senderId": "alice", "actor": "user:alice", "reason": "spam_suspected"},
    "rateLimits/alice": {"userId": "alice", "sends": []},
    "recalculationWindows/alice": {"userId": "alice", "calls": []},
    "scheduleSlots/alice_20260301T0900": {"senderId": "alice", "scheduled": 1},
    "scheduledMessages/alice_01J": {"senderId": "alice", "chatId": "c1", "text": "later", "status": "SCHEDULED"},
}

# (document, who may read it, someone who may not). The reader is the owner
# or a participant; the outsider is signed in.
READABLE = [
    ("users/bob", "bob", "alice"),
    ("users/bob/inbox/m1", "bob", "alice"),
    ("users/bob/inboxHead/current", "bob", "alice"),
    ("users/bob/inboxChats/c9", "bob", "alice"),
    ("chats/c1", "bob", "mallory"),
    ("chats/c1/messages/m1", "bob", "mallory"),
    ("chats/c1/readReceipts/bob", "alice", "mallory"),
    ("regions/EU/deviceSyncStates/bob_phone", "bob", "alice"),
    ("regions/US/typingEvents/c1_alice", "bob", "mallory"),
]
# Engine-only documents: nobody reads them, not even the user they concern.
CLOSED = [
    ("regions/EU/messageQueue/m1_bob", "bob"),
    ("regions/EU/messageQueue/m1_bob", "alice"),
    ("regions/EU/queueStats/20260301T000000", "bob"),
    ("idempotencyKeys/alice_01J", "alice"),
    ("auditLog/rejected_alice_01K", "alice"),
    ("rateLimits/alice", "alice"),
    ("recalculationWindows/alice", "alice"),
    ("scheduleSlots/alice_20260301T0900", "alice"),
    ("regions/EU/deviceSyncStates/bobby_phone", "bob"),
    ("chats/c1/fanOuts/m2", "bob"),  # a participant: the recipients list is the engine's
    ("chats/c1/fanOuts/m2/parts/1", "bob"),  # and so are its parts
    ("scheduledMessages/alice_01J", "alice"),  # its sender reads it through pack427_listScheduledMessages
]


@pytest.fixture(scope="module")
def api(firestore_emulator):
    load_rules(firestore_emulator, PROJECT)
    db = firestore.Client(project=PROJECT)
    for path, data in DOCUMENTS.items():
        db.document(path).set(data)
    return RulesApi(firestore_emulator, PROJECT)


@pytest.mark.parametrize(("path", "reader", "outsider"), READABLE, ids=[r[0] for r in READABLE])
def test_get_owner_or_participant_only(api, path, reader, outsider):
    assert api.get(path, reader) == 200
    assert api.get(path, outsider) == 403
    assert api.get(path, None) == 403


@pytest.mark.parametrize(("path", "uid"), CLOSED, ids=[f"{p} as {u}" for p, u in CLOSED])
def test_engine_documents_are_closed_to_everyone(api, path, uid):
    assert api.get(path, uid) == 403
    assert api.get(path, None) == 403


@pytest.mark.parametrize("path", list(DOCUMENTS))
def test_no_client_writes_anything(api, path):
    # The most privileged client there is for each document: its owner or a participant.
    owner = {"users": "bob", "chats": "bob", "regions": "bob"}.get(path.split("/")[0], "alice")
    for uid in (owner, "alice", None):
        statuses = api.writes(path, uid)
        assert all(status == 403 for status in statuses.values()), (uid, statuses)
    assert api.get("users/bob", "bob") == 200  # still there, unchanged by the attempts


def test_lists_of_a_users_own_collections(api):
    for collection in ("users/bob/inbox", "users/bob/inboxHead", "users/bob/inboxChats"):
        assert api.query(collection, "bob")[0] == 200, collection
        assert api.query(collection, "alice")[0] == 403, collection
        assert api.query(collection, None)[0] == 403, collection
    assert api.query("users", "bob")[0] == 403  # nobody lists the users


def test_lists_of_chats_and_their_subcollections(api):
    assert api.query("chats", "bob", [("participants", "ARRAY_CONTAINS", "bob")]) == (200, ["c1"])
    assert api.query("chats", "mallory", [("participants", "ARRAY_CONTAINS", "mallory")]) == (200, ["c2"])
    assert api.query("chats", "mallory")[0] == 403  # not restricted to the caller's chats
    assert api.query("chats", "mallory", [("participants", "ARRAY_CONTAINS", "bob")])[0] == 403
    assert api.query("chats/c1/messages", "bob") == (200, ["m1"])
    assert api.query("chats/c1/messages", "mallory")[0] == 403
    assert api.query("chats/c1/readReceipts", "alice") == (200, ["bob"])
    assert api.query("chats/c1/readReceipts", "mallory")[0] == 403
    assert api.query("chats/c1/messages", None)[0] == 403


def test_lists_of_device_sync_states_by_their_user_only(api):
    assert api.query("regions/EU/deviceSyncStates", "bob", [("userId", "EQUAL", "bob")]) == (200, ["bob_phone"])
    assert api.query("regions/EU/deviceSyncStates", "bob")[0] == 403
    assert api.query("regions/EU/deviceSyncStates", "bob", [("userId", "EQUAL", "bobby")])[0] == 403
    # Per region only (registerDevice says which): no collection-group listing.
    assert api.query("deviceSyncStates", "bob", [("userId", "EQUAL", "bob")], group=True)[0] == 403


def test_lists_of_typing_events_by_participants_only(api):
    member = [("chatId", "EQUAL", "c1"), ("participants", "ARRAY_CONTAINS", "bob")]
    assert api.query("typingEvents", "bob", member, group=True) == (200, ["c1_alice"])
    assert api.query("typingEvents", "mallory", [("chatId", "EQUAL", "c1")], group=True)[0] == 403
    assert api.query("regions/US/typingEvents", None)[0] == 403


@pytest.mark.parametrize("collection", [
    "regions/EU/messageQueue", "regions/EU/queueStats", "idempotencyKeys", "auditLog", "rateLimits", "recalculationWindows",
    "scheduleSlots", "chats/c1/fanOuts",
    "scheduledMessages",
])
def test_engine_collections_cannot_be_listed(api, collection):
    assert api.query(collection, "bob")[0] == 403
    assert api.query(collection, "alice", [("senderId", "EQUAL", "alice")])[0] == 403
    assert api.query(collection, None)[0] == 403


def test_the_queue_is_closed_even_to_a_recipients_own_query(api):
    assert api.query("messageQueue", "bob", [("recipientId", "EQUAL", "bob")], group=True)[0] == 403
