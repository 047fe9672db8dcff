"""firestore.rules for the real-time signals, evaluated by the emulator.

The rules file is loaded into a project of these tests' own (the emulator
keeps rules per project); data is written with the admin client, which
bypasses rules, and read over REST as signed-in users (emulator ID tokens),
exactly as a client SDK's requests reach Firestore.
"""

from __future__ import annotations

import os

import pytest
from google.cloud import firestore
from support.rest import RulesApi, load_rules

PROJECT = "demo-pack427-rules" + os.environ.get("PYTEST_XDIST_WORKER", "")


@pytest.fixture
def rules(firestore_emulator):
    load_rules(firestore_emulator, PROJECT)
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
    return RulesApi(firestore_emulator, PROJECT)


def typing_query(rules: RulesApi, uid: str, chat_id: str, *, member_filter: bool = True) -> tuple[int, list[str]]:
    """The typing listener's query, across every region's typingEvents."""
    filters = [("chatId", "EQUAL", chat_id)] + ([("participants", "ARRAY_CONTAINS", uid)] if member_filter else [])
    return rules.query("typingEvents", uid, filters, group=True)


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
    assert typing_query(rules, "alice", "c1") == (200, ["c1_bob"])
    assert typing_query(rules, "mallory", "c2") == (200, ["c2_carol"])
    assert typing_query(rules, "mallory", "c1") == (200, [])
    # A query that does not restrict itself to the caller's chats is refused as a whole.
    assert typing_query(rules, "mallory", "c1", member_filter=False)[0] == 403


@pytest.mark.parametrize("path", [
    "users/bob/inboxHead/current", "chats/c1/readReceipts/bob", "regions/US/typingEvents/c1_bob",
])
def test_clients_write_none_of_them(rules, path):
    assert rules.writes(path, "bob") == {"update": 403, "create": 403, "delete": 403}
