"""One odd document stops only its own work: settings typed by hand, damaged inbox heads,
unusable queue entries, odd chat-core documents. Each is set aside with an alert (or read
leniently) and the rest of the engine goes on; the operator commands repair it."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import main  # noqa: F401  (test_callables set up the environment)
import pytest
from support.callables import call
from support.chatcore import head, inbox, make_chat, make_user, queue_entries
from ulid import ULID

from pack427 import clock, constants, settings
from pack427 import db as service_db
from pack427.accepting import chat_core_intake, sending
from pack427.delivering import fan_out, queue
from pack427.delivering.notifier import EmulatorNotifier
from pack427.models import EngineMode, Region, SendMessageRequest
from pack427.operating import ops
from pack427.reading import unread
from pack427.workers import processor


@pytest.fixture(autouse=True)
def callables_use_the_test_db(db, monkeypatch):
    monkeypatch.setattr(service_db, "client", lambda: db)


def alerts(captured) -> list[dict]:
    lines = (captured.out + captured.err).splitlines()
    return [record for record in map(_json, lines) if record.get("alert")]


def _json(line: str) -> dict:
    try:
        record = json.loads(line)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def send(db, sender: str, chat_id: str, text: str = "hi", client_message_id: str | None = None):
    request = SendMessageRequest(chatId=chat_id, clientMessageId=client_message_id or str(ULID()), text=text)
    return sending.send_message(db, sender, request)


# ------------------------------------------------------------------ settings


def test_a_typo_in_config_engine_stops_no_send_and_is_alerted(db, capfd):
    make_user(db, "alice")
    make_user(db, "bob")
    make_chat(db, "c1", ["alice", "bob"])
    db.document("config/engine").set({"mode": "DIRECT", "maxMessagesPerMinute": 0})

    status, body = call(main.pack427_sendMessage, {"chatId": "c1", "clientMessageId": str(ULID()), "text": "hi"})

    assert status == 200, body
    assert [e["text"] for e in inbox(db, "bob")] == ["hi"]
    current = settings.current(db, max_age_s=0)
    assert (current.mode, current.max_messages_per_minute) == (EngineMode.QUEUE, constants.MAX_MESSAGES_PER_MINUTE)
    [alert, *_] = [a for a in alerts(capfd.readouterr()) if a["alert"] == "SETTINGS_UNUSABLE"]
    assert alert["fields"] == ["maxMessagesPerMinute", "mode"]


def test_the_operator_commands_repair_any_stored_settings_and_keep_each_others_changes(db):
    db.document("config/engine").set({"mode": "DIRECT", "maxMessagesPerMinute": "sixty", "note": "by hand"})

    settings.set_mode(db, EngineMode.DIRECT, actor="ops:ann")
    stored = db.document("config/engine").get().to_dict()
    assert (stored["mode"], stored["maxMessagesPerMinute"]) == ("direct", constants.MAX_MESSAGES_PER_MINUTE)

    # Two operators at once: one switches the mode, the other the limit; both changes stay.
    start = threading.Barrier(2)

    def mode():
        start.wait()
        settings.set_mode(db, EngineMode.QUEUE, actor="ops:ann")

    def limit():
        start.wait()
        settings.set_rate_limit(db, 120, actor="ops:bea")

    threads = [threading.Thread(target=mode), threading.Thread(target=limit)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = db.document("config/engine").get().to_dict()
    assert (stored["mode"], stored["maxMessagesPerMinute"]) == ("queue", 120)


# ------------------------------------------------------------------ queue entries


def drain(db):
    return processor.drain(db, EmulatorNotifier(), actor="test", time_budget_s=30)


def test_an_unusable_queue_entry_is_quarantined_and_holds_back_no_chat_and_no_region(db, monkeypatch, capfd):
    monkeypatch.setattr(constants, "INLINE_ATTEMPTS", 0)  # every send through the queue
    for uid, region in (("alice", "EU"), ("bob", "EU"), ("carol", "US")):
        make_user(db, uid, region=region)
    make_chat(db, "c1", ["alice", "bob"])
    make_chat(db, "c2", ["alice", "carol"])
    first, second = send(db, "alice", "c1", "one").messageId, send(db, "alice", "c1", "two").messageId
    to_carol = send(db, "alice", "c2", "to carol").messageId
    broken = db.document(f"regions/EU/messageQueue/{first}_bob")
    broken.update({"status": "BROKEN"})  # an operator's typo in the console

    drain(db)

    assert [e["messageId"] for e in inbox(db, "bob")] == [second]  # the chat goes on past it
    assert [e["messageId"] for e in inbox(db, "carol")] == [to_carol]  # and the other region
    stored = broken.get().to_dict()
    assert (stored["status"], stored["awaitingInbox"], stored["quarantine"]["status"]) == (
        "QUARANTINED", False, "'BROKEN'")
    [alert] = [a for a in alerts(capfd.readouterr()) if a["alert"] == "QUEUE_ENTRY_QUARANTINED"]
    assert alert["entryId"] == f"{first}_bob" and "status" in alert["problem"]
    assert [(q["region"], q["entryId"]) for q in ops.quarantined(db)] == [("EU", f"{first}_bob")]

    assert ops.release(db, Region.EU, f"{first}_bob") is None
    drain(db)
    assert sorted(e["messageId"] for e in inbox(db, "bob")) == [first, second]  # late, never lost, once
    assert broken.get().to_dict()["status"] == "DELIVERED" and ops.quarantined(db) == []
    assert ops.release(db, Region.EU, f"{first}_bob") == f"EU/{first}_bob is not quarantined"


def test_a_quarantined_entry_still_unusable_is_not_released(db, monkeypatch):
    monkeypatch.setattr(constants, "INLINE_ATTEMPTS", 0)
    make_user(db, "alice")
    make_user(db, "bob")
    make_chat(db, "c1", ["alice", "bob"])
    message = send(db, "alice", "c1").messageId
    entry = db.document(f"regions/EU/messageQueue/{message}_bob")
    entry.update({"createdAt": "yesterday"})
    # The trigger's read (here: the worker's) quarantines it, whatever field is odd.
    assert queue.load(db, Region.EU, f"{message}_bob") is None
    assert entry.get().to_dict()["status"] == "QUARANTINED"
    assert ops.release(db, Region.EU, f"{message}_bob").startswith("still unusable: createdAt")
    assert entry.get().to_dict()["status"] == "QUARANTINED" and inbox(db, "bob") == []


# ------------------------------------------------------------------ inbox heads


def damage_head(db, uid: str) -> None:
    db.document(f"users/{uid}/inboxHead/current").set({"seq": "many", "chats": "oops"})


def fanned_out_group(db, monkeypatch, size: int) -> list[str]:
    """Chat `big` of `size` members, over the inline limit (2) and in chunks of 3: fanned out."""
    monkeypatch.setattr(constants, "FAN_OUT_CHUNK", 3)
    monkeypatch.setattr(constants, "INLINE_MAX_RECIPIENTS", 2)
    members = [f"m{n}" for n in range(size)]
    for uid in members:
        make_user(db, uid)
    make_chat(db, "big", members)
    return members


def test_a_damaged_head_in_a_fanned_out_group_holds_back_only_its_owner_until_repaired(db, monkeypatch, capfd):
    members = fanned_out_group(db, monkeypatch, 8)
    damage_head(db, "m3")

    first = send(db, "m0", "big", "one").messageId
    fan_out.run_chat(db, "big")
    second = send(db, "m0", "big", "two").messageId
    fan_out.run_chat(db, "big")

    healthy = [uid for uid in members[1:] if uid != "m3"]
    assert all([e["messageId"] for e in inbox(db, uid)] == [first, second] for uid in healthy)
    assert db.collection("chats/big/fanOuts").get() == []  # no job stays behind
    assert inbox(db, "m3") == []
    assert {e["messageId"] for e in queue_entries(db) if e["recipientId"] == "m3"} == {first, second}
    assert any(a["alert"] == "INBOX_HEAD_UNUSABLE" and a["uid"] == "m3" for a in alerts(capfd.readouterr()))
    drain(db)  # its deliveries fail (recorded, retried), nobody else's
    assert inbox(db, "m3") == []

    report = ops.repair_inbox(db, "m3", EmulatorNotifier())

    assert [e["messageId"] for e in inbox(db, "m3")] == [first, second]
    assert [e["seq"] for e in inbox(db, "m3")] == [1, 2]
    assert head(db, "m3")["chats"]["big"]["unread"] == 2 and report.delivered == 2
    assert unread.unread_counts(db, "m3").totalUnread == 2


def test_a_damaged_head_makes_a_small_chat_queue_for_its_owner_and_place_the_others(db):
    for uid in ("alice", "bob", "carol"):
        make_user(db, uid)
    make_chat(db, "g", ["alice", "bob", "carol"])
    damage_head(db, "bob")

    status, body = call(main.pack427_sendMessage, {"chatId": "g", "clientMessageId": str(ULID()), "text": "hi"})

    assert status == 200, body
    assert [e["text"] for e in inbox(db, "carol")] == ["hi"]
    assert [e["recipientId"] for e in queue_entries(db)] == ["bob"]
    # The owner's own calls say what is wrong, and recalculation repairs it.
    status, body = call(main.pack427_getUnreadCounts, {}, uid="bob")
    assert status == 400 and body["error"]["status"] == "FAILED_PRECONDITION"
    assert body["error"]["details"]["reason"] == "inbox_needs_repair"
    status, body = call(main.pack427_recalculateUnreadCounters, {}, uid="bob")
    assert status == 200, body
    status, body = call(main.pack427_getUnreadCounts, {}, uid="bob")
    assert status == 200 and body["result"]["totalUnread"] == 0  # nothing of g reached bob's inbox yet


# ------------------------------------------------------------------ nothing depends on one trigger run


def test_the_processor_sweeps_chat_core_messages_whose_trigger_failed_in_chat_order_once(db, monkeypatch):
    monkeypatch.setenv("PACK427_MESSAGE_SOURCE", "chatCore")
    for uid in ("alice", "bob"):
        make_user(db, uid)
    make_chat(db, "c", ["alice", "bob"])
    two_minutes_ago = clock.now() - timedelta(minutes=2)
    ids = []
    for n in range(3):  # the conversation's last messages; no trigger ever took them
        message_id = str(ULID.from_datetime(two_minutes_ago + timedelta(milliseconds=n)))
        db.document(f"chats/c/messages/{message_id}").set(
            {"senderId": "bob", "text": f"m{n}", "createdAt": two_minutes_ago + timedelta(milliseconds=n)})
        ids.append(message_id)
    fresh = str(ULID())  # younger than the lag: left to its own trigger
    db.document(f"chats/c/messages/{fresh}").set({"senderId": "bob", "text": "new", "createdAt": clock.now()})

    drain(db)
    fan_out.run_chat(db, "c")  # the fan-out trigger of the jobs the sweep created

    assert [e["messageId"] for e in inbox(db, "alice")] == ids
    assert "intake" not in db.document(f"chats/c/messages/{fresh}").get().to_dict()
    assert chat_core_intake.sweep(db) == 0  # swept once: nothing taken twice
    assert [e["messageId"] for e in inbox(db, "alice")] == ids


def test_outside_chat_core_mode_the_sweep_reads_nothing(db, monkeypatch):
    monkeypatch.delenv("PACK427_MESSAGE_SOURCE", raising=False)
    make_user(db, "bob")
    make_chat(db, "c", ["alice", "bob"])
    db.document(f"chats/c/messages/{ULID()}").set({"senderId": "bob", "text": "x",
                                                  "createdAt": clock.now() - timedelta(hours=1)})
    assert chat_core_intake.sweep(db) == 0 and not db.document("config/intakeSweep").get().exists


def test_a_member_who_left_clears_their_unread_count_by_reading_or_recalculating(db):
    for uid in ("alice", "bob", "carol"):
        make_user(db, uid)
    make_chat(db, "g", ["alice", "bob", "carol"])
    make_chat(db, "h", ["alice", "bob"])
    last = [send(db, "alice", "g", f"m{n}").messageId for n in range(3)][-1]
    send(db, "alice", "h", "stays")
    db.document("chats/g").update({"participants": ["alice", "carol"]})  # the chat core removes bob

    status, body = call(main.pack427_markAsRead, {"chatId": "g", "readUpToMessageId": last}, uid="bob")
    assert status == 200 and body["result"]["unreadCount"] == 0
    assert head(db, "bob")["chats"]["g"]["unread"] == 0

    # Carol left too, and recalculation drops the chat from her counts; her other chats stay.
    db.document("chats/g").update({"participants": ["alice"]})
    report = unread.recalculate(db, "carol")
    assert [(c.chatId, c.before, c.after) for c in report.changes] == [("g", 3, 0)]
    assert "g" not in head(db, "carol")["chats"] and unread.unread_counts(db, "carol").totalUnread == 0
    assert unread.recalculate(db, "bob").changes == [] or "g" not in head(db, "bob")["chats"]
    assert unread.unread_counts(db, "bob").unreadCounts == {"h": 1}
    # Someone never in the chat still may not mark it.
    status, body = call(main.pack427_markAsRead, {"chatId": "g", "readUpToMessageId": last}, uid="mallory")
    assert status == 403


# ------------------------------------------------------------------ the chat core's documents


def test_odd_chat_documents_reach_their_valid_members_and_keep_the_reads_working(db):
    for uid in ("alice", "bob", "carol"):
        make_user(db, uid)
    db.document("users/carol").update({"region": "MARS", "fcmTokens": "not a list", "blockedUsers": {"x": 1},
                                       "online": "yes", "displayName": 7})
    db.document("chats/g").set({
        "participants": ["alice", "bob", "carol", "a/b", "..", 42, None, "__x__", "bob"],
        "billing": "free", "deliveryQueued": "maybe", "fanOutPending": 3,
        "lastMessage": {"text": "written by the chat core", "sentAt": "yesterday"},
    })
    status, body = call(main.pack427_sendMessage, {"chatId": "g", "clientMessageId": str(ULID()), "text": "hi"})
    assert status == 200, body
    fan_out.run_chat(db, "g")  # fanOutPending was odd: taken as set, so the message fanned out
    drain(db)
    assert [e["text"] for e in inbox(db, "bob")] == ["hi"] and [e["text"] for e in inbox(db, "carol")] == ["hi"]
    for function, data, uid in [
        (main.pack427_getChatList, {}, "bob"),
        (main.pack427_getChatList, {}, "alice"),
        (main.pack427_resyncChat, {"chatId": "g"}, "carol"),
        (main.pack427_syncMessages, {"deviceId": "phone"}, "carol"),
        (main.pack427_markAsRead, {"chatId": "g", "readUpToMessageId": inbox(db, "bob")[0]["messageId"]}, "bob"),
        (main.pack427_updateTypingState, {"chatId": "g", "isTyping": True}, "carol"),
        (main.pack427_getTypingUsers, {"chatId": "g"}, "alice"),
        (main.pack427_recalculateUnreadCounters, {}, "carol"),
    ]:
        status, body = call(function, data, uid=uid)
        assert status == 200, (function.__name__, body)


def test_a_chat_at_the_end_of_the_id_space_or_with_foreign_ids_still_takes_sends(db):
    make_user(db, "alice")
    make_user(db, "bob")
    make_chat(db, "c", ["alice", "bob"])
    db.document("chats/c").update({"lastMessage": {"messageId": "7ZZZZZZZZZZZZZZZZZZZZZZZZZ", "senderId": "bob",
                                                   "createdAt": clock.now()}})
    assert send(db, "alice", "c", "after the last ULID").messageId
    db.document("chats/c").update({"lastMessage.messageId": "core-000042"})
    assert send(db, "alice", "c", "after a foreign id").messageId
    assert [e["text"] for e in inbox(db, "bob")] == ["after the last ULID", "after a foreign id"]
    status, body = call(main.pack427_markAsRead, {"chatId": "c", "readUpToMessageId": "core-000042"}, uid="bob")
    assert status == 400 and "readUpToMessageId" in body["error"]["message"]  # not a message of c: named


def test_other_hand_edited_documents_get_a_clear_answer_or_are_read_around(db):
    make_user(db, "alice")
    make_user(db, "bob")
    make_chat(db, "c1", ["alice", "bob"])
    later = clock.to_millis(clock.now() + timedelta(hours=1))
    good, odd = (sending.send_message(db, "alice", SendMessageRequest(
        chatId="c1", clientMessageId=str(ULID()), text=t, deliverAt=later)).messageId for t in ("good", "odd"))
    db.document(f"scheduledMessages/alice_{odd}").update({"deliveryKey": None})
    db.document("regions/EU/deviceSyncStates/bob_phone").set({"cursor": {"seq": "x"}, "userId": 3})
    first = send(db, "alice", "c1", "one").messageId
    db.document("chats/c1/readReceipts/bob").set({"readUpToMessageId": 42})

    status, body = call(main.pack427_listScheduledMessages, {}, uid="alice")
    assert status == 200 and [m["scheduledId"] for m in body["result"]["messages"]] == [good]
    status, body = call(main.pack427_syncMessages, {"deviceId": "phone"}, uid="bob")  # the state taken as new
    assert status == 200 and [m["messageId"] for m in body["result"]["messages"]] == [first]
    status, body = call(main.pack427_getChatList, {}, uid="alice")
    assert status == 200 and body["result"]["chats"][0]["lastMessageStatus"] == {"bob": "sent"}
    # At its time the odd scheduled message fails with its problem; the good one is delivered.
    from pack427.accepting import scheduling
    assert scheduling.deliver_due(db, now=clock.now() + timedelta(hours=2)) == {
        "delivered": 1, "failed": 1, "skipped": 0}
    assert db.document(f"scheduledMessages/alice_{odd}").get().get("reason").startswith("unusable: deliveryKey")
    # A damaged inbox entry: sync says which, instead of passing over a message.
    db.document(f"users/bob/inbox/{first}").update({"chatId": None})
    status, body = call(main.pack427_syncMessages, {"deviceId": "tablet"}, uid="bob")
    assert status == 400 and body["error"]["details"]["reason"] == "inbox_needs_repair"
    assert first in body["error"]["message"]


def test_an_unusable_fan_out_job_is_set_aside_and_the_group_goes_on(db, monkeypatch, capfd):
    members = fanned_out_group(db, monkeypatch, 6)
    first = send(db, "m0", "big", "one").messageId
    job = db.document(f"chats/big/fanOuts/{first}")
    recipients = job.get().get("recipients")
    job.update({"recipients": "everyone"})  # a hand edit

    second = send(db, "m0", "big", "two").messageId
    fan_out.run_chat(db, "big")

    assert all([e["messageId"] for e in inbox(db, uid)] == [second] for uid in members[1:])
    assert not job.get().exists
    assert [q["entryId"] for q in ops.quarantined(db)] == [f"big/{first}"]
    assert any(a["alert"] == "FAN_OUT_QUARANTINED" for a in alerts(capfd.readouterr()))
    assert fan_out.release(db, "big", first).startswith("still unusable: recipients")

    db.document(f"chats/big/quarantinedFanOuts/{first}").update({"recipients": recipients})
    assert fan_out.release(db, "big", first) is None
    fan_out.run_chat(db, "big")  # its trigger
    assert all(sorted(e["messageId"] for e in inbox(db, uid)) == [first, second] for uid in members[1:])
    assert ops.quarantined(db) == [] and db.collection("chats/big/fanOuts").get() == []
