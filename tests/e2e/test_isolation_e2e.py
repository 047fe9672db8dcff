"""Odd documents on the full emulator suite: over HTTP, through the real triggers, one odd document
stops only its own work."""

from __future__ import annotations

from support.chatcore import make_chat, make_user, queue_entries, wait_for
from ulid import ULID

from e2e.calls import call_retrying
from pack427 import constants

FUNCTION_WAIT_S = 120


def send(client, chat_id: str, text: str) -> dict:
    return call_retrying(client, "pack427_sendMessage",
                         {"chatId": chat_id, "clientMessageId": str(ULID()), "text": text})


def test_a_settings_typo_and_a_damaged_head_in_a_group_of_60_stop_nobody_else(suite_db, app_user):
    alice, alice_client = app_user("alice")
    make_user(suite_db, alice)
    members = [f"member{n:03d}" for n in range(constants.INLINE_MAX_RECIPIENTS + 10)]
    for uid in members:
        make_user(suite_db, uid)
    make_chat(suite_db, "crowd", [alice, *members, "a/b", 42])  # two participant ids no document can have
    suite_db.document("config/engine").set({"mode": "DIRECT"})  # a typo in the console
    damaged = members[7]
    suite_db.document(f"users/{damaged}/inboxHead/current").set({"seq": "many"})

    first = send(alice_client, "crowd", "one")
    second = send(alice_client, "crowd", "two")

    for message in (first, second):
        ref = suite_db.document(f"users/{members[-1]}/inbox/{message['messageId']}")
        wait_for(ref, lambda d: True, FUNCTION_WAIT_S)
    wait_for(suite_db.document("chats/crowd"), lambda d: d.get("fanOutPending") is False, FUNCTION_WAIT_S)
    healthy = [uid for uid in members if uid != damaged]
    for uid in healthy:
        got = [s.id for s in suite_db.collection(f"users/{uid}/inbox").order_by("seq").stream()]
        assert got == [first["messageId"], second["messageId"]], uid
    assert list(suite_db.collection(f"users/{damaged}/inbox").stream()) == []
    assert {e["messageId"] for e in queue_entries(suite_db) if e["recipientId"] == damaged} == {
        first["messageId"], second["messageId"]}
