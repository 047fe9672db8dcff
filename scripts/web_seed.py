"""Seeds the web chat's demo on the emulator suite, and plays the scheduler (run by scripts/web
and by the browser tests, examples/web-chat/test).

    web_seed.py seed --config OUT [--reset] [--conversation]
    web_seed.py scheduler          # the one-minute pack427_processMessageQueue, every 15 s, until stopped

seed: Auth emulator accounts with passwords (Ann, Bea, Cy, Dan, Eve, Fay, and member01..member55,
the other members of the Town square), their users/{uid} profiles (displayName,
ageVerified18Plus, except Fay's, region, online), and five chats: Ann and Bea (1:1), Cy and Dan
(1:1), Team (the five), Town square (60, delivered by fan-out), Ann and Fay (1:1). Each chat document also
carries what the app shows: `title` and `memberNames` (the chat core's fields; the engine
ignores them). --conversation: a few messages through pack427_sendMessage, as apps send
them. Then it calls the callables the app uses once, so that their function workers are
started before the first person clicks. Writes the app's /config.json to OUT.

--reset clears the suite's Firestore and Auth emulators first (the browser tests do).
The suite runs no scheduler, so scheduled messages are delivered by `scheduler`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "functions"))

from google.cloud import firestore  # noqa: E402
from ulid import ULID  # noqa: E402

from pack427 import paths  # noqa: E402
from pack427.delivering.notifier import EmulatorNotifier  # noqa: E402
from pack427.workers import processor  # noqa: E402
from pack427_client import CallableClient, PasswordAuth  # noqa: E402
from pack427_client.errors import CallableError  # noqa: E402

PROJECT = os.environ["PACK427_PROJECT"]
AUTH = os.environ["FIREBASE_AUTH_EMULATOR_HOST"]
FIRESTORE = os.environ["FIRESTORE_EMULATOR_HOST"]
FUNCTIONS = os.environ["PACK427_FUNCTIONS_URL"]
PASSWORD = "password123"
NAMED = ["Ann", "Bea", "Cy", "Dan", "Eve"]
UNVERIFIED = "Fay"
"""Not verified 18+ (ageVerified18Plus false): the engine refuses her sends, which the app shows as
failed with a Retry button; once her profile says 18+, Retry sends them."""
MEMBERS = [f"Member {i:02d}" for i in range(1, 56)]
CHATS = {
    "ann-bea": ("Ann and Bea", ["Ann", "Bea"]),
    "cy-dan": ("Cy and Dan", ["Cy", "Dan"]),
    "team": ("Team", NAMED),
    "town-square": ("Town square", NAMED + MEMBERS),
    "ann-fay": ("Ann and Fay", ["Ann", UNVERIFIED]),
}


def email_of(name: str) -> str:
    return name.lower().replace(" ", "") + "@example.com"


def account(name: str) -> PasswordAuth:
    """The person's account: created, or signed in when a run before created it."""
    try:
        return PasswordAuth.sign_up(email_of(name), PASSWORD, emulator_host=AUTH)
    except Exception:  # noqa: BLE001 - EMAIL_EXISTS on a second run
        return PasswordAuth.sign_in(email_of(name), PASSWORD, emulator_host=AUTH)


def reset() -> None:
    for url in (
        f"http://{FIRESTORE}/emulator/v1/projects/{PROJECT}/databases/(default)/documents",
        f"http://{AUTH}/emulator/v1/projects/{PROJECT}/accounts",
    ):
        urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=30).read()


def send(client: CallableClient, chat_id: str, text: str) -> None:
    client.call("pack427_sendMessage", {"chatId": chat_id, "clientMessageId": str(ULID()), "text": text})
    time.sleep(0.05)  # distinct times in the chat list


def seed(config_out: Path, *, conversation: bool) -> None:
    db = firestore.Client(project=PROJECT)
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        people = NAMED + [UNVERIFIED] + MEMBERS
        auths = dict(zip(people, pool.map(account, people), strict=True))
    uid = {name: auth.uid for name, auth in auths.items()}
    batch = db.batch()
    for name, user_id in uid.items():
        batch.set(paths.user(db, user_id), {"displayName": name, "ageVerified18Plus": name != UNVERIFIED, "region": "EU",
                                            "online": True})
    batch.commit()
    for chat_id, (title, people) in CHATS.items():
        # merge: the engine's own fields (lastMessage, deliveryQueued...) stay on a second run.
        paths.chat(db, chat_id).set(
            {"participants": [uid[p] for p in people], "title": title, "memberNames": {uid[p]: p for p in people}},
            merge=True,
        )
    clients = {name: CallableClient(FUNCTIONS, auths[name], timeout_s=120) for name in NAMED}
    # Start the function workers the app calls (each one's first call starts a Python worker).
    warm = [
        ("pack427_updateTypingState", {"chatId": "team", "isTyping": False}),
        ("pack427_getUnreadCounts", {}),
        ("pack427_listScheduledMessages", {}),
        ("pack427_getChatList", {"limit": 1}),
        ("pack427_registerDevice", {"deviceId": "web-seed", "platform": "web", "appVersion": "seed"}),
        ("pack427_syncMessages", {"deviceId": "web-seed"}),
        ("pack427_ackMessages", {"messageIds": []}),
        ("pack427_resyncChat", {"chatId": "team"}),
    ]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda call: call_quietly(clients["Eve"], *call), warm))
    if conversation:
        send(clients["Ann"], "ann-bea", "Hi Bea! This is the web chat on PACK 427.")
        send(clients["Bea"], "ann-bea", "Hi Ann. Try going offline: what you write waits in the outbox.")
        send(clients["Cy"], "cy-dan", "Dan, lunch at one?")
        send(clients["Cy"], "team", "Welcome to the team chat, everyone.")
        send(clients["Ann"], "town-square", "Hello, Town square: 60 people, delivered by fan-out.")
    functions = urlparse(FUNCTIONS)
    firestore_host, firestore_port = FIRESTORE.rsplit(":", 1)
    config = {
        "projectId": PROJECT,
        "apiKey": "demo-api-key",
        "authUrl": f"http://{AUTH}",
        "firestoreHost": firestore_host,
        "firestorePort": int(firestore_port),
        "functionsHost": functions.hostname,
        "functionsPort": functions.port,
        "region": functions.path.rstrip("/").rsplit("/", 1)[-1],
        "accounts": [{"email": email_of(n), "password": PASSWORD, "name": n, "uid": uid[n],
                      **({"note": "not verified 18+: her messages are refused"} if n == UNVERIFIED else {})}
                     for n in NAMED + [UNVERIFIED]],
        "otherAccounts": f"The Town square's other 55 members: member01@example.com to member55@example.com, password {PASSWORD}.",
    }
    config_out.write_text(json.dumps(config, indent=2))
    print(f"web-seed: {len(uid)} accounts, {len(CHATS)} chats in {time.monotonic() - started:.1f} s", flush=True)


def call_quietly(client: CallableClient, name: str, data: dict) -> None:
    try:
        client.call(name, data)
    except CallableError:
        pass  # a refusal still started the worker


def scheduler() -> None:
    """What the deployed every-minute processor does (due scheduled messages, retries), every 15 s."""
    db = firestore.Client(project=PROJECT)
    while True:
        try:
            processor.drain(db, EmulatorNotifier(), actor="scheduler", time_budget_s=10)
        except Exception as error:  # noqa: BLE001 - the emulator going away at the end
            print(f"web-seed scheduler: {error!r}", file=sys.stderr, flush=True)
        time.sleep(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("seed")
    s.add_argument("--config", type=Path, required=True)
    s.add_argument("--reset", action="store_true")
    s.add_argument("--conversation", action="store_true")
    sub.add_parser("scheduler")
    args = parser.parse_args()
    if args.command == "seed":
        if args.reset:
            reset()
        seed(args.config, conversation=args.conversation)
    else:
        scheduler()


if __name__ == "__main__":
    main()
