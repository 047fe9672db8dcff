"""firestore.rules for the real-time signals, evaluated by the emulator.

The rules file is loaded into a project of these tests' own (the emulator
keeps rules per project); data is written with the admin client, which
bypasses rules, and read over REST as signed-in users (emulator ID tokens),
exactly as a client SDK's requests reach Firestore.
"""

from __future__ import annotations

import os

import pytest
import requests
from google.cloud import firestore
from support.emulator import ROOT, clear_project
from support.idtokens import emulator_id_token

PROJECT = "demo-pack427-rules" + os.environ.get("PYTEST_XDIST_WORKER", "")


@pytest.fixture
def rules(firestore_emulator):
    host = firestore_emulator
    source = (ROOT / "firestore.rules").read_text()
    response = requests.put(
        f"http://{host}/emulator/v1/projects/{PROJECT}:securityRules",
        json={"rules": {"files": [{"name": "firestore.rules", "content": source}]}},
        timeout=30,
    )
    response.raise_for_status()
    clear_project(host, PROJECT)
    db = firestore.Client(project=PROJECT)
    db.document("chats/c1").set({"participants": ["alice", "bob"]})
    db.document("users/bob/inboxHead/current").set({"seq": 2, "chats": {"c1": {"unread": 2, "last": "01K"}}})
    db.document("chats/c1/readReceipts/bob").set({"chatId": "c1", "userId": "bob", "readUpToMessageId": "01J"})
    db.document("regions/US/typingEvents/c1_bob").set(
        {"chatId": "c1", "userId": "bob", "isTyping": True, "participants": ["alice", "bob"]}
    )
    db.document("chats/c2").set({"participants": ["carol", "mallory"]})
    db.document("regions/EU/typingEvents/c2_carol").set(
        {"chatId": "c2", "userId": "carol", "isTyping": True, "participants": ["carol", "mallory"]}
    )
    return Client(host)


class Client:
    """A signed-in app's view of Firestore, over the REST API."""

    def __init__(self, host: str):
        self.base = f"http://{host}/v1/projects/{PROJECT}/databases/(default)/documents"

    def _headers(self, uid: str | None) -> dict:
        return {"Authorization": f"Bearer {emulator_id_token(uid, PROJECT)}"} if uid else {}

    def get(self, path: str, uid: str | None) -> int:
        return requests.get(f"{self.base}/{path}", headers=self._headers(uid), timeout=30).status_code

    def write(self, path: str, uid: str | None) -> int:
        body = {"fields": {"count": {"integerValue": "0"}}}
        return requests.patch(f"{self.base}/{path}", headers=self._headers(uid), json=body, timeout=30).status_code

    def typing_query(self, uid: str, chat_id: str, *, member_filter: bool = True) -> tuple[int, list[str]]:
        filters = [{"fieldFilter": {"field": {"fieldPath": "chatId"}, "op": "EQUAL", "value": {"stringValue": chat_id}}}]
        if member_filter:
            filters.append({"fieldFilter": {"field": {"fieldPath": "participants"}, "op": "ARRAY_CONTAINS",
                                            "value": {"stringValue": uid}}})
        query = {"structuredQuery": {"from": [{"collectionId": "typingEvents", "allDescendants": True}],
                                     "where": {"compositeFilter": {"op": "AND", "filters": filters}}}}
        response = requests.post(f"{self.base}:runQuery", headers=self._headers(uid), json=query, timeout=30)
        found = [r["document"]["name"].rsplit("/", 1)[1] for r in response.json() if "document" in r] \
            if response.status_code == 200 else []
        return response.status_code, found


def test_unread_counts_are_readable_by_their_owner_only(rules):
    # An app listens to this one document for every chat's unread count.
    assert rules.get("users/bob/inboxHead/current", "bob") == 200
    assert rules.get("users/bob/inboxHead/current", "alice") == 403
    assert rules.get("users/bob/inboxHead/current", None) == 403


def test_read_receipts_are_readable_by_the_chats_participants_only(rules):
    assert rules.get("chats/c1/readReceipts/bob", "bob") == 200
    assert rules.get("chats/c1/readReceipts/bob", "alice") == 200
    assert rules.get("chats/c1/readReceipts/bob", "mallory") == 403
    assert rules.get("chats/c1/readReceipts/bob", None) == 403


def test_typing_events_are_readable_by_the_chats_participants_only(rules):
    assert rules.get("regions/US/typingEvents/c1_bob", "alice") == 200
    assert rules.get("regions/US/typingEvents/c1_bob", "mallory") == 403
    assert rules.get("regions/US/typingEvents/c1_bob", None) == 403
    # The listener's query, across every region's typingEvents.
    assert rules.typing_query("alice", "c1") == (200, ["c1_bob"])
    assert rules.typing_query("mallory", "c2") == (200, ["c2_carol"])
    assert rules.typing_query("mallory", "c1") == (200, [])
    # A query that does not restrict itself to the caller's chats is refused as a whole.
    assert rules.typing_query("mallory", "c1", member_filter=False)[0] == 403


@pytest.mark.parametrize("path", [
    "users/bob/inboxHead/current", "chats/c1/readReceipts/bob", "regions/US/typingEvents/c1_bob",
])
def test_clients_write_none_of_them(rules, path):
    assert rules.write(path, "bob") == 403
