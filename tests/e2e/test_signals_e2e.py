"""Real-time signals on the full emulator suite: the real onNewMessage trigger
keeps the counter, the callables read and move it, and typing shows and goes."""

from __future__ import annotations

import pytest
from chatcore import make_chat, make_user, wait_for
from pack427_client import CallableError
from ulid import ULID

FUNCTION_WAIT_S = 120
"""How long a function may take to act: the first call of each function starts
its Python worker in the emulator, which takes a minute on a busy 2-core machine."""


def send(client, chat_id: str, text: str) -> dict:
    return client.call("pack427_sendMessage", {"chatId": chat_id, "clientMessageId": str(ULID()), "text": text})


def test_the_trigger_counts_sends_and_mark_as_read_clears_them_on_every_device(suite_db, app_user):
    alice, alice_client = app_user("alice")
    bob, bob_phone = app_user("bob")
    make_user(suite_db, alice, region="EU")
    make_user(suite_db, bob, region="US")
    make_chat(suite_db, "ab", [alice, bob])
    counter = suite_db.document(f"users/{bob}/unreadCounters/ab")

    sent = [send(alice_client, "ab", f"m{n}")["messageId"] for n in range(3)]
    send(bob_phone, "ab", "my own message")
    wait_for(counter, lambda d: d["count"] == 3, FUNCTION_WAIT_S)
    # Bob's own message counts for Alice only (once its trigger has run, Bob still has 3).
    wait_for(suite_db.document(f"users/{alice}/unreadCounters/ab"), lambda d: d["count"] == 1, FUNCTION_WAIT_S)
    assert bob_phone.call("pack427_getUnreadCounts", {}) == {"unreadCounts": {"ab": 3}, "totalUnread": 3}

    assert bob_phone.call("pack427_markAsRead", {"chatId": "ab", "readUpToMessageId": sent[1]}) == {
        "success": True, "unreadCount": 1,
    }
    # Every device of Bob sees the same count on the counter it listens to.
    assert wait_for(counter, lambda d: d["count"] == 1, FUNCTION_WAIT_S)["readUpToMessageId"] == sent[1]


def test_typing_shows_to_the_other_participant_and_bad_input_is_refused(suite_db, app_user):
    alice, alice_client = app_user("alice")
    bob, bob_client = app_user("bob")
    make_user(suite_db, alice)
    make_user(suite_db, bob)
    make_chat(suite_db, "ab", [alice, bob])

    assert alice_client.call("pack427_updateTypingState", {"chatId": "ab", "isTyping": True}) == {"success": True}
    typers = bob_client.call("pack427_getTypingUsers", {"chatId": "ab"})["typingUsers"]
    assert [t["userId"] for t in typers] == [alice]

    for data, status in [({"chatId": "ab", "isTyping": "yes"}, "INVALID_ARGUMENT"),
                         ({"chatId": "nope", "isTyping": True}, "NOT_FOUND")]:
        with pytest.raises(CallableError) as raised:
            alice_client.call("pack427_updateTypingState", data)
        assert raised.value.status == status
