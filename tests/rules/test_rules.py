"""firestore.rules on every collection the engine uses, evaluated by the emulator.

As an attacker would try it: real REST requests with emulator ID tokens of
the owner, of another signed-in user and of nobody, for get, list (a query)
and write (create, update, delete). The data is written with the admin
client, which bypasses rules.
"""

from __future__ import annotations

import os

import pytest
import requests
from google.cloud import firestore
from support.emulator import ROOT, clear_project
from support.idtokens import emulator_id_token

PROJECT = "demo-pack427-rules-all" + os.environ.get("PYTEST_XDIST_WORKER", "")

DOCUMENTS = {
    "users/bob": {"region": "EU", "ageVerified18Plus": True, "blockedUsers": ["mallory"]},
    "users/bob/inbox/m1": {"messageId": "m1", "chatId": "c1", "senderId": "alice", "seq": 1},
    "users/bob/inboxHead/current": {"seq": 1, "messageId": "m1", "chats": {"c1": {"unread": 1, "last": "m1"}}},
    "chats/c1": {"participants": ["alice", "bob"]},
    "chats/c1/messages/m1": {"id": "m1", "chatId": "c1", "senderId": "alice", "text": "hi"},
    "chats/c1/readReceipts/bob": {"chatId": "c1", "userId": "bob", "readUpToMessageId": "m1"},
    "chats/c1/fanOuts/m2": {"chatId": "c1", "recipients": ["bob"], "next": 0},
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
}

# (document, who may read it, someone who may not). The reader is the owner
# or a participant; the outsider is signed in.
READABLE = [
    ("users/bob", "bob", "alice"),
    ("users/bob/inbox/m1", "bob", "alice"),
    ("users/bob/inboxHead/current", "bob", "alice"),
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
    ("regions/EU/deviceSyncStates/bobby_phone", "bob"),
    ("chats/c1/fanOuts/m2", "bob"),  # a participant: the recipients list is the engine's
]


@pytest.fixture(scope="module")
def api(firestore_emulator):
    host = firestore_emulator
    source = (ROOT / "firestore.rules").read_text()
    requests.put(
        f"http://{host}/emulator/v1/projects/{PROJECT}:securityRules",
        json={"rules": {"files": [{"name": "firestore.rules", "content": source}]}},
        timeout=30,
    ).raise_for_status()
    clear_project(host, PROJECT)
    db = firestore.Client(project=PROJECT)
    for path, data in DOCUMENTS.items():
        db.document(path).set(data)
    return Api(host)


class Api:
    """A signed-in app's view of Firestore, over the REST API (as the client SDKs reach it)."""

    def __init__(self, host: str):
        self.root = f"http://{host}/v1/projects/{PROJECT}/databases/(default)/documents"

    def _headers(self, uid: str | None) -> dict:
        return {"Authorization": f"Bearer {emulator_id_token(uid, PROJECT)}"} if uid else {}

    def get(self, path: str, uid: str | None) -> int:
        return requests.get(f"{self.root}/{path}", headers=self._headers(uid), timeout=30).status_code

    def query(self, collection_path: str, uid: str | None, filters=(), *, group: bool = False):
        """Run a query on a collection (or a collection group); (status, ids found)."""
        parent, _, collection = collection_path.rpartition("/")
        structured = {"from": [{"collectionId": collection, "allDescendants": group}]}
        if filters:
            structured["where"] = {"compositeFilter": {"op": "AND", "filters": [
                {"fieldFilter": {"field": {"fieldPath": f}, "op": op, "value": {"stringValue": v}}}
                for f, op, v in filters
            ]}}
        url = f"{self.root}/{parent}:runQuery" if parent else f"{self.root}:runQuery"
        response = requests.post(url, headers=self._headers(uid), json={"structuredQuery": structured}, timeout=30)
        found = [r["document"]["name"].rsplit("/", 1)[1] for r in response.json() if "document" in r] \
            if response.status_code == 200 else []
        return response.status_code, found

    def writes(self, path: str, uid: str | None) -> dict[str, int]:
        """Status of an update, a create (a new id next to `path`) and a delete."""
        body = {"fields": {"count": {"integerValue": "0"}, "ageVerified18Plus": {"booleanValue": True}}}
        headers = self._headers(uid)
        parent, _, _ = path.rpartition("/")
        return {
            "update": requests.patch(f"{self.root}/{path}", headers=headers, json=body, timeout=30).status_code,
            "create": requests.post(f"{self.root}/{parent}?documentId=new-doc", headers=headers, json=body,
                                    timeout=30).status_code,
            "delete": requests.delete(f"{self.root}/{path}", headers=headers, timeout=30).status_code,
        }


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
    for collection in ("users/bob/inbox", "users/bob/inboxHead"):
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
    "regions/EU/messageQueue", "regions/EU/queueStats", "idempotencyKeys", "auditLog", "rateLimits", "chats/c1/fanOuts",
])
def test_engine_collections_cannot_be_listed(api, collection):
    assert api.query(collection, "bob")[0] == 403
    assert api.query(collection, "alice", [("senderId", "EQUAL", "alice")])[0] == 403
    assert api.query(collection, None)[0] == 403


def test_the_queue_is_closed_even_to_a_recipients_own_query(api):
    assert api.query("messageQueue", "bob", [("recipientId", "EQUAL", "bob")], group=True)[0] == 403
