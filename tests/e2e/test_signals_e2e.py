"""Real-time signals on the full emulator suite: each send counts itself on the
recipient's inbox head, the callables read and move the counts, and typing shows and goes."""

from __future__ import annotations

import pytest
from support.chatcore import make_chat, make_user, wait_for
from ulid import ULID

from pack427_client import CallableError

FUNCTION_WAIT_S = 120
"""How long a function may take to act: the first call of each function starts
its Python worker in the emulator, which takes a minute on a busy 2-core machine."""


def send(client, chat_id: str, text: str) -> dict:
    return client.call("pack427_sendMessage", {"chatId": chat_id, "clientMessageId": str(ULID()), "text": text})


def test_sends_count_at_once_and_mark_as_read_clears_them_on_every_device(suite_db, app_user):
    alice, alice_client = app_user("alice")
    bob, bob_phone = app_user("bob")
    make_user(suite_db, alice, region="EU")
    make_user(suite_db, bob, region="US")
    make_chat(suite_db, "ab", [alice, bob])
    head = suite_db.document(f"users/{bob}/inboxHead/current")  # what every device of bob listens to

    sent = [send(alice_client, "ab", f"m{n}")["messageId"] for n in range(3)]
    send(bob_phone, "ab", "my own message")
    # Counted by the sends themselves: no trigger to wait for.
    assert head.get().get("chats")["ab"]["unread"] == 3
    # Bob's own message counts for Alice only.
    assert suite_db.document(f"users/{alice}/inboxHead/current").get().get("chats")["ab"]["unread"] == 1
    assert bob_phone.call("pack427_getUnreadCounts", {}) == {"unreadCounts": {"ab": 3}, "totalUnread": 3}

    assert bob_phone.call("pack427_markAsRead", {"chatId": "ab", "readUpToMessageId": sent[1]}) == {
        "success": True, "unreadCount": 1,
    }
    # Every device of Bob sees the same count on the head it listens to.
    assert wait_for(head, lambda d: d["chats"]["ab"]["unread"] == 1, FUNCTION_WAIT_S)["chats"]["ab"]["readUpTo"] == sent[1]


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
