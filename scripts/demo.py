"""A scripted conversation on the emulator suite (run by scripts/demo).

Users sign up in the Auth emulator and use the Python client (client/,
pack427_client) as an app does: messages go into the client's SQLite outbox,
out through the `pack427_sendMessage` callable over HTTP, which places them
in the recipients' inboxes in its own commit; devices sync and ack with the
client, which keeps its cursor; typing and unread go through the signals.
Two recipients are offline with push tokens that fail: the
`pack427_onMessageEnqueued` trigger pushes, one push succeeds on its third
attempt, the other is dropped after five.
The emulator suite runs no scheduler, so this script plays the one-minute
`pack427_processMessageQueue` for the retries.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "functions"))

from google.cloud import firestore  # noqa: E402

from pack427 import audit, clock, paths  # noqa: E402
from pack427.delivering import backlog, queue  # noqa: E402
from pack427.delivering.notifier import EmulatorNotifier  # noqa: E402
from pack427.models import DUE_STATUSES, Region  # noqa: E402
from pack427.operating import heatmap, metrics  # noqa: E402
from pack427.workers import processor  # noqa: E402
from pack427_client import (  # noqa: E402
    CallableClient,
    LocalStore,
    OfflineAwareChat,
    PasswordAuth,
    RealtimeSignals,
)

AUTH = os.environ["FIREBASE_AUTH_EMULATOR_HOST"]
FUNCTIONS = os.environ["PACK427_FUNCTIONS_URL"]
db = firestore.Client(project=os.environ["PACK427_PROJECT"])
DEVICE_DATA = Path(tempfile.mkdtemp(prefix="pack427-demo-"))
"""Where the apps keep their SQLite state (outbox, messages, cursors)."""


def say(text: str = "") -> None:
    print(text, flush=True)


@dataclass
class App:
    """One person's app: the signed-in client, its offline-aware chat on one device, its signals."""

    name: str
    uid: str
    client: CallableClient
    chat: OfflineAwareChat

    def device(self, device_id: str) -> OfflineAwareChat:
        """The chat as another device of the same user (its own store, its own cursor)."""
        store = LocalStore(DEVICE_DATA / f"{self.uid}-{device_id}.db")
        return OfflineAwareChat(self.client, store, user_id=self.uid, device_id=device_id)

    def signals(self, chat_id: str, names: dict[str, str]) -> RealtimeSignals:
        return RealtimeSignals(self.client, user_id=self.uid, chat_id=chat_id, display_names=names,
                               store=self.chat.store)


def person(name: str, region: str, *, online: bool = True, tokens: list[str] | None = None) -> App:
    auth = PasswordAuth.sign_up(f"{name.lower()}@example.com", "password123", emulator_host=AUTH)
    paths.user(db, auth.uid).set(
        {"displayName": name, "region": region, "online": online, "fcmTokens": tokens or [], "ageVerified18Plus": True}
    )
    state = "online" if online else f"offline, push tokens {tokens}"
    say(f"  {name:<6} uid={auth.uid}  home region {region}, {state}")
    client = CallableClient(FUNCTIONS, auth, timeout_s=300)
    app = App(name, auth.uid, client, None)  # type: ignore[arg-type]
    app.chat = app.device("phone")
    return app


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


def wait_first_attempt(region: Region, entry_id: str, timeout_s: float) -> None:
    """Wait until the trigger has made the entry's first attempt (its worker may be starting)."""
    deadline = time.monotonic() + timeout_s
    while queue.load(db, region, entry_id).entry.attempts == 0:
        if time.monotonic() > deadline:
            raise SystemExit(f"the trigger made no attempt of {entry_id} within {timeout_s} s")
        time.sleep(0.1)


def send(app: App, chat_id: str, text: str) -> dict:
    message = app.chat.send_message(chat_id, text)
    say(f"  {app.name} sent {text!r} to {chat_id}: {message.status.value}, messageId={message.message_id}")
    return {"messageId": message.message_id}


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
            report = processor.process_batch(db, region, EmulatorNotifier())
            if report.attempted:
                say(f"  scheduler run in {region.value}: {dict(report.outcomes)}")
    raise SystemExit("retries did not finish in time")


def show_entry(region: Region, entry_id: str) -> None:
    entry = queue.load(db, region, entry_id).entry
    error = f", last error: {entry.last_error}" if entry.last_error else ""
    say(f"  {entry.target_region.value}/{entry.id}: {entry.status.value}, attempts={entry.attempts}{error}")


def show_history(chat_id: str, message_id: str) -> None:
    for event in audit.history(db, chat_id, message_id):
        how = " (placed by the send)" if event.details.get("placedBySend") else ""
        say(f"    {event.at:%H:%M:%S.%f}"[:-3] + f"  {event.action:<9} by {event.actor:<9} attempts={event.attempts}{how}")


def main() -> None:
    say("== PACK 427 on the Firebase emulator suite ==")
    say("\nPeople (Auth emulator users; users/{uid} as the chat core keeps them):")
    alice_app, bob_app = person("Alice", "EU"), person("Bob", "US")
    dave_app, carol_app = person("Dave", "US", online=False, tokens=["fail-first-2"]), \
        person("Carol", "APAC", online=False, tokens=["fail-always"])
    alice, bob, dave, carol = (a.uid for a in (alice_app, bob_app, dave_app, carol_app))
    names = {alice: "Alice", bob: "Bob"}
    for chat_id, members in {"alice-bob": [alice, bob], "alice-dave": [alice, dave], "alice-carol": [alice, carol]}.items():
        paths.chat(db, chat_id).set({"participants": members})

    say("\n1. Alice (EU) writes to Bob (US); the send places it in Bob's inbox itself, no trigger, no scheduler:")
    first = send(alice_app, "alice-bob", "Hi Bob! Lunch tomorrow?")
    say(f"  in Bob's inbox {wait_in_inbox(bob, first['messageId'], 90):.2f} s after the call returned")
    reply = send(bob_app, "alice-bob", "Sure, noon works.")
    say(f"  in Alice's inbox after {wait_in_inbox(alice, reply['messageId'], 30):.2f} s")

    say("\n   Alice goes offline (a tunnel) and writes two more; they wait in her app's SQLite outbox:")
    alice_app.chat.set_online(False)
    for text in ("See you then", "I'll book a table"):
        message = alice_app.chat.send_message("alice-bob", text)
        say(f"  {text!r}: {message.status.value} (clientMessageId {message.client_message_id})")
    say("   her app is killed and restarted; the outbox is still there, and back online it goes out in order:")
    alice_app.chat = alice_app.device("phone")
    say(f"  after restart: {len(alice_app.chat.queued_messages)} queued")
    alice_app.chat.flush()
    sent = alice_app.chat.store.outbox(alice)
    say("  " + ", ".join(f"{m.text!r} {m.status.value}" for m in sent))
    again = {"messageId": sent[-1].message_id}
    say(f"  in Bob's inbox after {wait_in_inbox(bob, again['messageId'], 30):.2f} s")

    say("\n2. Offline recipients get the message in their inbox and a push, queued; these pushes fail (emulated FCM tokens):")
    to_dave = send(alice_app, "alice-dave", "Dave, are you coming?")
    to_carol = send(alice_app, "alice-carol", "Carol, are you there?")
    dave_entry = (Region.US, f"{to_dave['messageId']}_{dave}")
    carol_entry = (Region.APAC, f"{to_carol['messageId']}_{carol}")
    say(f"  in Dave's inbox {wait_in_inbox(dave, to_dave['messageId'], 30):.2f} s after the call returned")
    for entry in (dave_entry, carol_entry):
        wait_first_attempt(*entry, 90)
    say("  the trigger's first push attempts failed; retries follow the back-off (1 s, 2 s, 4 s, 8 s):")
    play_scheduler([dave_entry, carol_entry])

    say("\n3. Queue entries: only the pushes were queued (the online messages never needed a queue):")
    show_entry(*dave_entry)
    show_entry(*carol_entry)

    say("\n4. Audit trail of the first message, of the retried push (to Dave) and of the dropped one (to Carol):")
    show_history("alice-bob", first["messageId"])
    say("    --")
    show_history("alice-dave", to_dave["messageId"])
    say("    --")
    show_history("alice-carol", to_carol["messageId"])

    say("\n5. Inboxes:")
    for name, uid in (("Alice", alice), ("Bob", bob), ("Dave", dave), ("Carol", carol)):
        messages = sorted((s.to_dict() for s in paths.inbox(db, uid).stream()), key=lambda m: m["messageId"])
        say(f"  {name}: " + (", ".join(repr(m["text"]) for m in messages) or "(empty)"))
    say("  (Carol's push failed five times and raised the MESSAGE_DROPPED alert above;")
    say("   the message itself was in her inbox before the push, so it is not lost.)")

    say("\n6. Queue figures by region:")
    for region in Region:
        s = backlog.stats(db, region)
        say(f"  {region.value:<5} pending={s.pending} failed={s.failed} delivered={s.delivered} dropped={s.dropped}")

    say("\n7. Bob's phone and tablet sync (pages of 100, cursor kept by the client), storing, then acking:")
    for device in (bob_app.chat, bob_app.device("tablet")):
        got = device.sync_messages()
        say(f"  {device.device_id}: {len(got)} new: " + ", ".join(repr(m.text) for m in got))
        say(f"  {device.device_id} syncs again: {len(device.sync_messages())} new")
    for chat in alice_app.client.call("pack427_getChatList", {})["chats"]:
        status = chat["lastMessageStatus"] or "(last message is not Alice's)"
        say(f"  Alice's chat list: {chat['chatId']:<12} last {chat['lastMessage']['text']!r}, receipts {status}")

    say("\n8. Typing and unread (the signals):")
    bob_signals, alice_signals = bob_app.signals("alice-bob", names), alice_app.signals("alice-bob", names)
    # The emulator starts a function's Python worker on its first call (seconds on a busy
    # machine): warm both, or Bob's 5 s auto-stop could run out during Alice's first poll.
    bob_app.client.call("pack427_updateTypingState", {"chatId": "alice-bob", "isTyping": False})
    alice_signals.refresh_typing()
    for _ in range(20):
        bob_signals.start_typing()  # twenty keystrokes...
    say(f"  Bob typed 20 keystrokes: {bob_signals.typing_calls} updateTypingState call(s) (throttled to one per 3 s)")
    alice_signals.refresh_typing()
    say(f"  Alice sees: {alice_signals.typing_text!r}")
    bob_signals.stop_typing()
    alice_signals.refresh_typing()
    say(f"  Bob stops; Alice sees: {alice_signals.typing_text or 'nobody typing'!r}")
    bob_signals.refresh_unread_counts()
    say(f"  Bob's unread: {bob_signals.unread_counts}, total {bob_signals.total_unread}")
    left = bob_signals.mark_chat_as_read()
    receipts = {c["chatId"]: c["lastMessageStatus"] for c in alice_app.client.call("pack427_getChatList", {})["chats"]}
    say(f"  Bob reads the chat: {left} unread left; Alice's receipts for alice-bob: {receipts['alice-bob']}")
    say("\n9. A group of 60 (over the 50 a send places itself): one send, its fan-out trigger places it in every inbox:")
    members = [f"demo-member-{n:02d}" for n in range(60)]
    for n, uid in enumerate(members):
        paths.user(db, uid).set({"region": ("EU", "US", "APAC")[n % 3], "online": True, "displayName": uid})
    paths.chat(db, "demo-group").set({"participants": [alice, *members]})
    started = time.monotonic()
    big = send(alice_app, "demo-group", "Hello, everyone!")
    say(f"  accepted in {(time.monotonic() - started) * 1000:.0f} ms; the last member has it after "
        f"{wait_in_inbox(members[-1], big['messageId'], 120):.2f} s more")
    reached = sum(paths.inbox_entry(db, uid, big["messageId"]).get().exists for uid in members)
    say(f"  {reached} of {len(members)} members have it, each once")

    say("\n10. Delivery-time heatmap (scripts/ops heatmap), from the queue statistics this run stored:")
    snapshots = [s for s in metrics.export_queue_stats(db) if s.latency_all.samples]
    for s in snapshots:
        say(f"  {s.region.value}: {s.latency_all.samples} deliveries, send-to-inbox p50 {s.latency_all.p50_ms} ms,"
            f" p95 {s.latency_all.p95_ms} ms")
    stored = heatmap.load(db, clock.now() - timedelta(days=28))
    image = heatmap.render(heatmap.grids(stored), DEVICE_DATA / "delivery-heatmap.png",
                           title=f"PACK 427 demo run: delivery latency, {len(stored)} stored snapshots")
    say(f"  {image}")
    say(f"\n(App state of this run: {DEVICE_DATA})")


if __name__ == "__main__":
    main()
