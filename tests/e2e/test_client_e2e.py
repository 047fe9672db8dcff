"""docs/TEST_PLAN.md, automated: the engine as apps see it, through the Python
client (client/, pack427_client) against the full emulator suite.

Each test is one scenario of the plan (S1..S15). Messages go in through the
client's outbox and the sendMessage callable, come out through the real
triggers, and reach the other side through the client's sync; Firestore is
read directly only to set the scene (users, chats) and to check what the
engine stored.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from support.chatcore import make_chat, make_user, queue_entries, wait_for
from support.emulator import ROOT
from support.entries import enqueue, make_entry
from ulid import ULID

from e2e.calls import call_retrying
from pack427 import clock, settings
from pack427.delivering.notifier import EmulatorNotifier
from pack427.models import QueueStatus, Region
from pack427.workers import processor
from pack427_client import LocalStore, OfflineAwareChat, OutboxStatus, RealtimeSignals
from pack427_client.errors import (
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)

FUNCTION_WAIT_S = 120
"""How long a function may take to act: the first call of each function starts
its Python worker in the emulator, which takes a minute on a busy 2-core machine."""


@pytest.fixture
def device(app_user, tmp_path):
    """device(name, device_id="phone", uid_client=None) -> OfflineAwareChat with its own SQLite file."""
    users: dict[str, tuple[str, object]] = {}

    def make(name: str, device_id: str = "phone", **options) -> OfflineAwareChat:
        if name not in users:
            users[name] = app_user(name)
        uid, client = users[name]
        store = LocalStore(tmp_path / f"{name}-{device_id}.db")
        return OfflineAwareChat(client, store, user_id=uid, device_id=device_id, **options)

    return make


def inbox_seq(db, uid: str):
    return db.document(f"users/{uid}/inboxHead/current")


def texts(messages) -> list[str]:
    return [m.text for m in messages]


# S1 -----------------------------------------------------------------------
def test_s01_online_delivery_same_region(suite_db, device):
    alice, bob = device("alice"), device("bob")
    make_user(suite_db, alice.user_id, name="Alice")
    make_user(suite_db, bob.user_id)
    make_chat(suite_db, "ab", [alice.user_id, bob.user_id])

    sent = alice.send_message("ab", "hello Bob")
    assert sent.status is OutboxStatus.SENT and sent.message_id
    wait_for(inbox_seq(suite_db, bob.user_id), lambda d: d["seq"] == 1, FUNCTION_WAIT_S)
    received = bob.sync_messages()
    assert [(m.message_id, m.text, m.sender_id, m.sender_name) for m in received] == [
        (sent.message_id, "hello Bob", alice.user_id, "Alice")]


# S2 -----------------------------------------------------------------------
def test_s02_offline_recipient_is_pushed_and_a_sync_gets_the_messages_before_the_push_retry(suite_db, device):
    alice, bob = device("alice"), device("bob")
    make_user(suite_db, alice.user_id)
    make_user(suite_db, bob.user_id, online=False, tokens=["fail-first-1"])  # the first push fails
    make_chat(suite_db, "ab", [alice.user_id, bob.user_id])

    sent = [alice.send_message("ab", f"while you were away {n}").message_id for n in range(3)]
    entries = [suite_db.document(f"regions/EU/messageQueue/{m}_{bob.user_id}") for m in sent]
    for entry in entries:  # in the inbox, the push waiting for its retry
        waiting = wait_for(entry, lambda d: d["status"] == "FAILED", FUNCTION_WAIT_S)
        assert waiting["attempts"] == 1 and "push" in waiting["lastError"] and not waiting["awaitingInbox"]
    assert [m.message_id for m in bob.sync_messages()] == sent
    # The device has them, and acknowledged them: the retries settle without a push.
    processor.process_batch(suite_db, Region.EU, EmulatorNotifier(), now=clock.now() + timedelta(minutes=1))
    settled = [e.get().to_dict() for e in entries]
    assert {e["status"] for e in settled} == {"DELIVERED"}
    assert [e["history"][-1]["details"] for e in settled] == [{"acknowledged": True}] * 3


# S3 -----------------------------------------------------------------------
def test_s03_messages_written_offline_survive_a_restart_and_go_in_order(suite_db, device, app_user, tmp_path):
    alice, bob = device("alice"), device("bob")
    make_user(suite_db, alice.user_id)
    make_user(suite_db, bob.user_id)
    make_chat(suite_db, "ab", [alice.user_id, bob.user_id])

    alice.set_online(False)
    written = [alice.send_message("ab", f"offline {n}") for n in range(4)]
    assert [m.status for m in written] == [OutboxStatus.QUEUED] * 4
    assert alice.has_pending_messages and len(alice.queued_messages) == 4
    assert not queue_entries(suite_db)  # nothing left the device

    # The app is killed; a new process opens the same SQLite file.
    restarted = device("alice")
    assert [m.client_message_id for m in restarted.queued_messages] == [m.client_message_id for m in written]
    assert restarted.flush() == 4
    assert not restarted.has_pending_messages and restarted.failed_messages_count == 0
    wait_for(inbox_seq(suite_db, bob.user_id), lambda d: d["seq"] == 4, FUNCTION_WAIT_S)
    assert texts(bob.sync_messages()) == [f"offline {n}" for n in range(4)]


# S4 -----------------------------------------------------------------------
def test_s04_multi_device_sync_resumes_from_each_devices_cursor(suite_db, device):
    alice, phone, tablet = device("alice"), device("bob", "phone"), device("bob", "tablet")
    make_user(suite_db, alice.user_id)
    make_user(suite_db, phone.user_id, region="US")
    make_chat(suite_db, "ab", [alice.user_id, phone.user_id])

    for n in range(3):
        alice.send_message("ab", f"m{n}")
    wait_for(inbox_seq(suite_db, phone.user_id), lambda d: d["seq"] == 3, FUNCTION_WAIT_S)
    assert texts(phone.sync_messages()) == ["m0", "m1", "m2"]
    for n in range(3, 5):
        alice.send_message("ab", f"m{n}")
    wait_for(inbox_seq(suite_db, phone.user_id), lambda d: d["seq"] == 5, FUNCTION_WAIT_S)
    assert texts(phone.sync_messages()) == ["m3", "m4"]
    assert texts(tablet.sync_messages()) == ["m0", "m1", "m2", "m3", "m4"]
    assert phone.sync_messages() == [] and tablet.sync_messages() == []
    # Acks from the devices: Alice's chat list shows the receipts.
    assert alice.client.call("pack427_getChatList", {})["chats"][0]["lastMessageStatus"] == {
        phone.user_id: "delivered"}


# S5 -----------------------------------------------------------------------
def test_s05_rate_limit_one_send_over_the_limit_waits(suite_db, app_user):
    """LIMIT + 1 sends at once: exactly LIMIT accepted, one told how long to wait.

    The operator's limit is 20 here, not the default 60: over HTTP on the
    emulator suite a send costs seconds on a busy 2-core machine, and 61 did
    not always fit in one 60-second window (61 s seen), which would let the
    window slide and the test prove nothing. The default 60 is held by
    tests/test_abuse.py (61 concurrent sends in-process, exactly 60 accepted).
    """
    limit = 20
    alice, alice_client = app_user("alice")
    bob, _ = app_user("bob")
    make_user(suite_db, alice)
    make_user(suite_db, bob)
    make_chat(suite_db, "ab", [alice, bob])
    settings.set_rate_limit(suite_db, limit, actor="test")
    # The functions' instances follow config/engine within SETTINGS_CACHE_SECONDS of its change (an
    # instance that read it for an earlier test still allows 60 until then): the sends start once
    # every instance must have read it again.
    changed = suite_db.document("config/engine").get().update_time
    followed = changed + timedelta(seconds=settings.SETTINGS_CACHE_SECONDS)
    while clock.now() < followed:
        time.sleep((followed - clock.now()).total_seconds())

    def one(n: int) -> str:
        try:
            data = {"chatId": "ab", "clientMessageId": str(ULID()), "text": f"m{n}"}
            call_retrying(alice_client, "pack427_sendMessage", data)
            return "accepted"
        except ResourceExhausted as limited:
            assert 0 < limited.retry_after_s <= 60
            return "limited"

    def cold_start(_: int) -> None:  # workers up first: refused at validation, counted nowhere
        with pytest.raises(InvalidArgument):
            alice_client.call("pack427_sendMessage", {"chatId": "ab"})

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(cold_start, range(6)))
        started = time.monotonic()
        outcomes = Counter(pool.map(one, range(limit + 1)))
    took = time.monotonic() - started
    assert took < 55, f"{limit + 1} sends took {took:.0f} s: the window slid, the machine is too slow for this scenario"
    assert outcomes == {"accepted": limit, "limited": 1}
    assert len(list(suite_db.collection("chats/ab/messages").stream())) == limit


# S6 -----------------------------------------------------------------------
def test_s06_spam_the_same_text_to_many_chats_is_refused_and_shown_failed(suite_db, device):
    alice = device("alice")
    make_user(suite_db, alice.user_id)
    for n in range(6):
        make_user(suite_db, f"friend{n}")
        make_chat(suite_db, f"c{n}", [alice.user_id, f"friend{n}"])

    outcomes = [alice.send_message(f"c{n}", "CLICK HERE for free coins").status for n in range(6)]
    assert outcomes == [OutboxStatus.SENT] * 5 + [OutboxStatus.FAILED]
    failed = alice.store.outbox(alice.user_id, OutboxStatus.FAILED)
    assert alice.failed_messages_count == 1 and "FAILED_PRECONDITION" in failed[0].last_error
    assert not list(suite_db.collection("chats/c5/messages").stream())


# S7 -----------------------------------------------------------------------
def test_s07_cross_region_delivery_lands_in_the_recipients_region(suite_db, device):
    alice, kenji = device("alice"), device("kenji")
    make_user(suite_db, alice.user_id, region="EU")
    make_user(suite_db, kenji.user_id, region="APAC")
    make_chat(suite_db, "ak", [alice.user_id, kenji.user_id])

    sent = alice.send_message("ak", "konnichiwa")
    # In kenji's inbox, in his region, as the send returned: no queue entry, no trigger.
    entry = suite_db.document(f"users/{kenji.user_id}/inbox/{sent.message_id}").get().to_dict()
    assert (entry["region"], entry["via"]) == ("APAC", "send")
    assert not suite_db.document(f"regions/APAC/messageQueue/{sent.message_id}_{kenji.user_id}").get().exists
    assert texts(kenji.sync_messages()) == ["konnichiwa"]


# S8 -----------------------------------------------------------------------
def test_s08_typing_is_throttled_shown_by_name_and_stops_by_itself(suite_db, app_user):
    (alice, alice_client), (bob, bob_client) = app_user("alice"), app_user("bob")
    make_user(suite_db, alice)
    make_user(suite_db, bob)
    make_chat(suite_db, "ab", [alice, bob])
    names = {alice: "Alice", bob: "Bob"}
    # Warm both functions' workers first: a cold start takes longer than the auto-stop.
    alice_client.call("pack427_updateTypingState", {"chatId": "ab", "isTyping": False})
    bob_client.call("pack427_getTypingUsers", {"chatId": "ab"})
    typing = RealtimeSignals(alice_client, user_id=alice, chat_id="ab", display_names=names, auto_stop_s=10)
    watching = RealtimeSignals(bob_client, user_id=bob, chat_id="ab", display_names=names)

    for _ in range(30):
        typing.start_typing()
    assert typing.typing_calls == 1  # 30 keystrokes within the throttle: one call
    watching.refresh_typing()
    assert (watching.is_anyone_typing, watching.typing_text) == (True, "Alice is typing")
    deadline = time.monotonic() + 60
    # Until the indicator is gone and the timer's own call was made (the 10 s TTL may clear it first).
    while (watching.refresh_typing() or typing.typing_calls < 2) and time.monotonic() < deadline:
        time.sleep(0.5)  # the auto-stop timer (10 s) sends "stopped" without any call from the app
    assert (watching.is_anyone_typing, watching.typing_text, typing.typing_calls) == (False, "", 2)


# S9 -----------------------------------------------------------------------
def test_s09_read_receipts_go_sent_delivered_read(suite_db, device, app_user):
    alice, bob = device("alice"), device("bob")
    make_user(suite_db, alice.user_id)
    make_user(suite_db, bob.user_id)
    make_chat(suite_db, "ab", [alice.user_id, bob.user_id])

    def receipt() -> str:
        return alice.client.call("pack427_getChatList", {})["chats"][0]["lastMessageStatus"][bob.user_id]

    alice.send_message("ab", "did you get this?")
    wait_for(inbox_seq(suite_db, bob.user_id), lambda d: d["seq"] == 1, FUNCTION_WAIT_S)
    assert receipt() == "sent"
    bob.sync_messages()  # stores, then acks
    assert receipt() == "delivered"
    bob_signals = RealtimeSignals(bob.client, user_id=bob.user_id, chat_id="ab", store=bob.store)
    assert bob_signals.mark_chat_as_read() == 0
    assert receipt() == "read"


# S10 ----------------------------------------------------------------------
def test_s10_unread_counters_follow_messages_and_drift_is_repaired(suite_db, device):
    alice, bob = device("alice"), device("bob")
    make_user(suite_db, alice.user_id)
    make_user(suite_db, bob.user_id)
    make_chat(suite_db, "ab", [alice.user_id, bob.user_id])
    make_chat(suite_db, "ab2", [alice.user_id, bob.user_id])
    signals = RealtimeSignals(bob.client, user_id=bob.user_id, store=bob.store)

    for chat_id, n in (("ab", 3), ("ab2", 2)):
        for i in range(n):
            alice.send_message(chat_id, f"{chat_id} {i}")
    head = inbox_seq(suite_db, bob.user_id)  # what every device of bob listens to
    counts = wait_for(head, lambda d: d["seq"] == 5, FUNCTION_WAIT_S)["chats"]
    assert (counts["ab"]["unread"], counts["ab2"]["unread"]) == (3, 2)
    assert signals.refresh_unread_counts() == {"ab": 3, "ab2": 2} and signals.total_unread == 5

    head.update({"chats.ab.unread": 42})  # drift, as a bug or a manual edit would leave it
    assert signals.refresh_unread_counts()["ab"] == 42
    repaired = bob.client.call("pack427_recalculateUnreadCounters", {})
    assert [(c["chatId"], c["before"], c["after"]) for c in repaired["changes"]] == [("ab", 42, 3)]
    bob.sync_messages()
    assert signals.mark_chat_as_read("ab") == 0
    assert signals.refresh_unread_counts() == {"ab": 0, "ab2": 2} and signals.get_unread_count("ab2") == 2


# S11 ----------------------------------------------------------------------
def test_s11_a_send_whose_reply_was_lost_is_repeated_and_stored_once(suite_db, app_user):
    alice, alice_client = app_user("alice")
    bob, _ = app_user("bob")
    make_user(suite_db, alice)
    make_user(suite_db, bob)
    make_chat(suite_db, "ab", [alice, bob])

    data = {"chatId": "ab", "clientMessageId": str(ULID()), "text": "only once"}
    first, again = alice_client.call("pack427_sendMessage", data), alice_client.call("pack427_sendMessage", data)
    assert (again["messageId"], first["duplicate"], again["duplicate"]) == (first["messageId"], False, True)
    with pytest.raises(InvalidArgument):  # the same key for other content is a client bug, not a resend
        alice_client.call("pack427_sendMessage", data | {"text": "something else"})
    assert len(list(suite_db.collection("chats/ab/messages").stream())) == 1
    assert len(list(suite_db.collection(f"users/{bob}/inbox").stream())) == 1


# S12 ----------------------------------------------------------------------
WORKER = """
from datetime import datetime
from google.cloud import firestore
from pack427.workers import processor
from pack427.models import Region
from pack427.delivering.notifier import EmulatorNotifier
db = firestore.Client(project={project!r})
now = datetime.fromisoformat({now!r})
while processor.process_batch(db, Region.EU, EmulatorNotifier(), actor={actor!r}, now=now, limit=10).attempted:
    pass
"""


def _worker(project: str, now, actor: str) -> subprocess.Popen:
    code = WORKER.format(project=project, now=now.isoformat(), actor=actor)
    return subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT / "functions")})


def test_s12_a_worker_killed_mid_batch_loses_and_duplicates_nothing(suite_db, suite, device):
    """60 retries wait in the queue (their first attempts failed); a worker
    process is SIGKILLed after its first deliveries; the next worker finishes."""
    bob = device("bob")
    make_user(suite_db, "alice")
    make_user(suite_db, bob.user_id)
    retry_at = clock.now() + timedelta(minutes=5)  # not due for the trigger: only a worker at retry_at takes them
    entries = []
    for n in range(60):
        chat_id = f"c{n:02d}"  # one chat each: one commit each, so the kill lands mid-batch
        make_chat(suite_db, chat_id, ["alice", bob.user_id])
        entry = make_entry(bob.user_id, region=Region.EU, created=clock.now(), chat=chat_id,
                           status=QueueStatus.FAILED, next_attempt_at=retry_at)
        entries.append(entry.model_copy(update={"attempts": 1, "text": f"retry {n}"}))
    enqueue(suite_db, *entries)
    expected = [e.message_id for e in entries]

    doomed = _worker(suite["PACK427_PROJECT"], retry_at, "worker-1")
    head = inbox_seq(suite_db, bob.user_id)
    wait_for(head, lambda d: d["seq"] >= 3, FUNCTION_WAIT_S)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(30)
    at_kill = head.get().to_dict()["seq"]
    assert 3 <= at_kill < 60, f"the kill should land mid-run, it landed after {at_kill} of 60"

    survivor = _worker(suite["PACK427_PROJECT"], retry_at, "worker-2")
    assert survivor.wait(FUNCTION_WAIT_S * 2) == 0
    received = bob.sync_messages()
    assert sorted(m.message_id for m in received) == sorted(expected) and len(received) == 60
    assert head.get().to_dict()["seq"] == 60
    assert {e["status"] for e in queue_entries(suite_db)} == {"DELIVERED"}


# S13 ----------------------------------------------------------------------
def test_s13_nobody_reads_or_changes_what_is_not_theirs(suite_db, device, app_user, suite):
    from pack427_client import CallableClient

    alice, bob = device("alice"), device("bob")
    mallory, mallory_client = app_user("mallory")
    for uid in (alice.user_id, bob.user_id, mallory):
        make_user(suite_db, uid)
    make_chat(suite_db, "ab", [alice.user_id, bob.user_id])
    sent = alice.send_message("ab", "private")
    wait_for(inbox_seq(suite_db, bob.user_id), lambda d: d["seq"] == 1, FUNCTION_WAIT_S)
    before = {d.reference.path: d.update_time for d in suite_db.collection_group("inbox").stream()}

    for name, data in [
        ("pack427_sendMessage", {"chatId": "ab", "clientMessageId": str(ULID()), "text": "let me in"}),
        ("pack427_resyncChat", {"chatId": "ab"}),
        ("pack427_markAsRead", {"chatId": "ab", "readUpToMessageId": sent.message_id}),
        ("pack427_updateTypingState", {"chatId": "ab", "isTyping": True}),
        ("pack427_getTypingUsers", {"chatId": "ab"}),
    ]:
        with pytest.raises(PermissionDenied):
            mallory_client.call(name, data)
    # Acking Bob's message does nothing for Mallory: it is not in her inbox.
    assert mallory_client.call("pack427_ackMessages", {"messageIds": [sent.message_id]})["acknowledgedCount"] == 0
    assert mallory_client.call("pack427_syncMessages", {"deviceId": "m"})["messages"] == []
    with pytest.raises(Unauthenticated):
        CallableClient(suite["PACK427_FUNCTIONS_URL"]).call("pack427_syncMessages", {"deviceId": "x"})
    after = {d.reference.path: d.update_time for d in suite_db.collection_group("inbox").stream()}
    assert after == before and not list(suite_db.collection("chats/ab/messages").where("text", "==", "let me in").stream())


# S14 ----------------------------------------------------------------------
def test_s14_blocked_and_unverified_senders_are_refused_with_a_reason(suite_db, device):
    alice, bob, teen = device("alice"), device("bob"), device("teen")
    make_user(suite_db, alice.user_id)
    make_user(suite_db, bob.user_id, blocked=[alice.user_id])
    make_user(suite_db, teen.user_id, adult=False)
    make_chat(suite_db, "ab", [alice.user_id, bob.user_id])
    make_chat(suite_db, "tb", [teen.user_id, alice.user_id])

    for sender, chat_id in ((alice, "ab"), (teen, "tb")):
        outcome = sender.send_message(chat_id, "hi")
        assert outcome.status is OutboxStatus.FAILED and "FAILED_PRECONDITION" in outcome.last_error
        assert sender.failed_messages_count == 1
    assert not queue_entries(suite_db)
    with pytest.raises(FailedPrecondition):
        alice.client.call("pack427_sendMessage", {"chatId": "ab", "clientMessageId": str(ULID()), "text": "x"})
    # Unblocked, the failed message goes on retry.
    suite_db.document(f"users/{bob.user_id}").update({"blockedUsers": []})
    assert alice.retry_failed_messages() == 1 and alice.failed_messages_count == 0
    wait_for(inbox_seq(suite_db, bob.user_id), lambda d: d["seq"] == 1, FUNCTION_WAIT_S)
    assert texts(bob.sync_messages()) == ["hi"]


# S15 ----------------------------------------------------------------------
def test_s15_a_forced_resync_restores_a_wiped_device(suite_db, device, app_user):
    alice, bob = device("alice"), device("bob")
    make_user(suite_db, alice.user_id)
    make_user(suite_db, bob.user_id)
    make_chat(suite_db, "ab", [alice.user_id, bob.user_id])
    for n in range(3):
        alice.send_message("ab", f"m{n}")
    bob.send_message("ab", "mine")
    wait_for(inbox_seq(suite_db, bob.user_id), lambda d: d["seq"] == 3, FUNCTION_WAIT_S)
    assert texts(bob.sync_messages()) == ["m0", "m1", "m2"]

    wiped = device("bob", "reinstalled")  # a new install: empty store
    restored = wiped.refresh_chat("ab")
    assert texts(restored) == ["m0", "m1", "m2", "mine"]
    assert wiped.refresh_chat("ab") == []  # de-duplicated by id
    assert texts(wiped.messages("ab")) == ["m0", "m1", "m2", "mine"]
