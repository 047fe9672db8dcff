"""Offline sync on the full emulator suite: devices page their inbox over the
callable protocol, acks become receipts the sender sees in its chat list."""

from __future__ import annotations

from support.chatcore import make_chat, make_user, wait_for
from ulid import ULID

FUNCTION_WAIT_S = 120
"""How long a function may take to act: the first call of each function starts
its Python worker in the emulator, which takes a minute on a busy 2-core machine."""


def send(client, chat_id: str, text: str) -> str:
    data = {"chatId": chat_id, "clientMessageId": str(ULID()), "text": text}
    return client.call("pack427_sendMessage", data)["messageId"]


def sync_all(client, device: str, cursor: str | None = None) -> tuple[list[dict], str]:
    received: list[dict] = []
    while True:
        page = client.call("pack427_syncMessages", {"deviceId": device} | ({"cursor": cursor} if cursor else {}))
        received += page["messages"]
        cursor = page["cursor"]
        if not page["hasMore"]:
            return received, cursor


def test_two_devices_sync_everything_once_and_acks_reach_the_sender(suite_db, app_user):
    alice, alice_client = app_user("alice")
    bob, bob_client = app_user("bob")
    make_user(suite_db, alice, region="EU", name="Alice")
    make_user(suite_db, bob, region="US", online=False)
    make_chat(suite_db, "ab", [alice, bob])
    assert bob_client.call("pack427_registerDevice", {"deviceId": "phone", "platform": "ios", "appVersion": "1"}) == {
        "success": True, "region": "US",
    }

    sent = [send(alice_client, "ab", f"m{n}") for n in range(5)]
    head = suite_db.document(f"users/{bob}/inboxHead/current")
    wait_for(head, lambda d: d["seq"] == 5, FUNCTION_WAIT_S)

    phone, phone_cursor = sync_all(bob_client, "phone")
    tablet, _ = sync_all(bob_client, "tablet")  # never registered: registered by its first sync
    for received in (phone, tablet):
        assert [m["messageId"] for m in received] == sent
        assert received[0]["text"] == "m0" and received[0]["senderName"] == "Alice"
    # More arrives while the phone is away; it resumes from its cursor and gets only that.
    later = send(alice_client, "ab", "m5")
    wait_for(head, lambda d: d["seq"] == 6, FUNCTION_WAIT_S)
    rest, _ = sync_all(bob_client, "phone", phone_cursor)
    assert [m["messageId"] for m in rest] == [later]

    assert bob_client.call("pack427_ackMessages", {"messageIds": [*sent, later], "deviceId": "phone"}) == {
        "success": True, "acknowledgedCount": 6,
    }
    chats = alice_client.call("pack427_getChatList", {})["chats"]
    assert [(c["chatId"], c["lastMessage"]["messageId"], c["lastMessageStatus"]) for c in chats] == [
        ("ab", later, {bob: "delivered"})
    ]
    resync = bob_client.call("pack427_resyncChat", {"chatId": "ab"})
    assert [m["messageId"] for m in resync["messages"]] == [*sent, later] and resync["hasMore"] is False
