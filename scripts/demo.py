"""A scripted conversation on the emulator suite (run by scripts/demo).

Users sign up in the Auth emulator, send messages through the
`pack427_sendMessage` callable over HTTP, and the `pack427_onMessageEnqueued`
trigger delivers them. Two recipients are offline with push tokens that fail:
one delivery succeeds on its third attempt, the other is dropped after five.
The emulator suite runs no scheduler, so this script plays the one-minute
`pack427_processMessageQueue` for the retries.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "functions"))

from google.cloud import firestore  # noqa: E402
from pack427 import audit, clock, delivery, paths, queue  # noqa: E402
from pack427.models import DUE_STATUSES, Region  # noqa: E402
from pack427.notifier import EmulatorNotifier  # noqa: E402
from pack427_client import CallableClient, sign_up  # noqa: E402
from ulid import ULID  # noqa: E402

AUTH = os.environ["FIREBASE_AUTH_EMULATOR_HOST"]
FUNCTIONS = os.environ["PACK427_FUNCTIONS_URL"]
db = firestore.Client(project=os.environ["PACK427_PROJECT"])


def say(text: str = "") -> None:
    print(text, flush=True)


def person(name: str, region: str, *, online: bool = True, tokens: list[str] | None = None):
    user = sign_up(AUTH, f"{name.lower()}@example.com")
    paths.user(db, user.uid).set(
        {"displayName": name, "region": region, "online": online, "fcmTokens": tokens or [], "ageVerified18Plus": True}
    )
    state = "online" if online else f"offline, push tokens {tokens}"
    say(f"  {name:<6} uid={user.uid}  home region {region}, {state}")
    return user.uid, CallableClient(FUNCTIONS, user.id_token)


def wait_in_inbox(uid: str, message_id: str, timeout_s: float) -> float:
    """Seconds until the message shows up in the inbox (real-time listener, backed by reads)."""
    ref = paths.inbox_entry(db, uid, message_id)
    arrived = threading.Event()
    started = time.monotonic()
    watch = ref.on_snapshot(lambda snaps, _c, _t: arrived.set() if any(s.exists for s in snaps) else None)
    try:
        while not arrived.wait(0.25) and not ref.get().exists:
            if time.monotonic() - started > timeout_s:
                raise SystemExit(f"message {message_id} did not reach the inbox within {timeout_s} s")
    finally:
        watch.unsubscribe()
    return time.monotonic() - started


def send(client: CallableClient, chat_id: str, text: str, client_id: str | None = None) -> dict:
    result = client.call(
        "pack427_sendMessage", {"chatId": chat_id, "clientMessageId": client_id or str(ULID()), "text": text}
    )
    flag = "  (duplicate: the first result again)" if result["duplicate"] else ""
    say(f"  sent {text!r} to {chat_id}: messageId={result['messageId']} status={result['status']}{flag}")
    return result


def play_scheduler(entries: list[tuple[Region, str]], timeout_s: float = 60) -> None:
    """Run the queue processor whenever one of `entries` is due, until none is left to try."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        waiting = [queue.load(db, region, entry_id) for region, entry_id in entries]
        due_times = [e.entry.next_attempt_at for e in waiting if e.entry.status in DUE_STATUSES]
        if not due_times:
            return
        pause = (min(due_times) - clock.now()).total_seconds()
        if pause > 0:
            time.sleep(pause)
        for region in {region for region, _ in entries}:
            report = delivery.process_batch(db, region, EmulatorNotifier())
            if report.attempted:
                say(f"  scheduler run in {region.value}: {dict(report.outcomes)}")
    raise SystemExit("retries did not finish in time")


def show_entry(region: Region, entry_id: str) -> None:
    entry = queue.load(db, region, entry_id).entry
    error = f", last error: {entry.last_error}" if entry.last_error else ""
    say(f"  {entry.target_region.value}/{entry.id}: {entry.status.value}, attempts={entry.attempts}{error}")


def show_history(message_id: str) -> None:
    for event in audit.history(db, message_id):
        say(f"    {event.at:%H:%M:%S.%f}"[:-3] + f"  {event.action:<9} by {event.actor:<9} attempts={event.attempts}")


def main() -> None:
    say("== PACK 427 on the Firebase emulator suite ==")
    say("\nPeople (Auth emulator users; users/{uid} as the chat core keeps them):")
    alice, alice_app = person("Alice", "EU")
    bob, bob_app = person("Bob", "US")
    dave, _ = person("Dave", "US", online=False, tokens=["fail-first-2"])
    carol, _ = person("Carol", "APAC", online=False, tokens=["fail-always"])
    for chat_id, members in {"alice-bob": [alice, bob], "alice-dave": [alice, dave], "alice-carol": [alice, carol]}.items():
        paths.chat(db, chat_id).set({"participants": members})

    say("\n1. Alice (EU) writes to Bob (US); the trigger delivers at once, no scheduler involved:")
    first = send(alice_app, "alice-bob", "Hi Bob! Lunch tomorrow?")
    say(f"  in Bob's inbox after {wait_in_inbox(bob, first['messageId'], 90):.2f} s (first call starts the function workers)")
    reply = send(bob_app, "alice-bob", "Sure, noon works.")
    say(f"  in Alice's inbox after {wait_in_inbox(alice, reply['messageId'], 30):.2f} s")
    again = send(alice_app, "alice-bob", "See you then", client_id=(cid := str(ULID())))
    say(f"  in Bob's inbox after {wait_in_inbox(bob, again['messageId'], 30):.2f} s")
    say("  Alice's app retries that last send (same clientMessageId):")
    send(alice_app, "alice-bob", "See you then", client_id=cid)

    say("\n2. Offline recipients get a push; these pushes fail (emulated FCM tokens):")
    to_dave = send(alice_app, "alice-dave", "Dave, are you coming?")
    to_carol = send(alice_app, "alice-carol", "Carol, are you there?")
    dave_entry = (Region.US, f"{to_dave['messageId']}_{dave}")
    carol_entry = (Region.APAC, f"{to_carol['messageId']}_{carol}")
    wait_in_inbox(dave, to_dave["messageId"], 30)
    say("  the trigger's first attempts failed; retries follow the back-off (1 s, 2 s, 4 s, 8 s):")
    play_scheduler([dave_entry, carol_entry])

    say("\n3. Queue entries:")
    for message, region in ((first, Region.US), (reply, Region.EU), (again, Region.US)):
        recipient = alice if message is reply else bob
        show_entry(region, f"{message['messageId']}_{recipient}")
    show_entry(*dave_entry)
    show_entry(*carol_entry)

    say("\n4. Audit trail of the retried message (to Dave) and of the dropped one (to Carol):")
    show_history(to_dave["messageId"])
    say("    --")
    show_history(to_carol["messageId"])

    say("\n5. Inboxes:")
    for name, uid in (("Alice", alice), ("Bob", bob), ("Dave", dave), ("Carol", carol)):
        messages = sorted((s.to_dict() for s in paths.inbox(db, uid).stream()), key=lambda m: m["messageId"])
        say(f"  {name}: " + (", ".join(repr(m["text"]) for m in messages) or "(empty)"))
    say("  (Carol's push failed five times and raised the MESSAGE_DROPPED alert above;")
    say("   the message itself was placed in her inbox before the push, so it is not lost.)")

    say("\n6. Queue figures by region:")
    for region in Region:
        s = queue.stats(db, region)
        say(f"  {region.value:<5} pending={s.pending} failed={s.failed} delivered={s.delivered} dropped={s.dropped}")

    say("\n7. Bob's phone and tablet come online and sync (pages of 100, opaque cursors), then ack:")
    for device, platform in (("bob-phone", "ios"), ("bob-tablet", "android")):
        registered = bob_app.call("pack427_registerDevice", {"deviceId": device, "platform": platform, "appVersion": "1.0"})
        page = bob_app.call("pack427_syncMessages", {"deviceId": device})
        say(f"  {device} (home region {registered['region']}): {len(page['messages'])} messages, "
            f"hasMore={page['hasMore']}: " + ", ".join(repr(m["text"]) for m in page["messages"]))
        again = bob_app.call("pack427_syncMessages", {"deviceId": device, "cursor": page["cursor"]})
        say(f"  {device} syncs again with its cursor: {len(again['messages'])} new")
    ids = [m["messageId"] for m in page["messages"]]
    acked = bob_app.call("pack427_ackMessages", {"messageIds": ids, "deviceId": "bob-tablet"})
    say(f"  ack from bob-tablet: acknowledgedCount={acked['acknowledgedCount']}")
    for chat in alice_app.call("pack427_getChatList", {})["chats"]:
        status = chat["lastMessageStatus"] or "(last message is not Alice's)"
        say(f"  Alice's chat list: {chat['chatId']:<12} last {chat['lastMessage']['text']!r}, receipts {status}")


if __name__ == "__main__":
    main()
