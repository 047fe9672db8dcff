"""Test data in the shape the chat core writes (`users/{uid}`, `chats/{chatId}`),
and read-backs of what the engine stored."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from google.cloud import firestore


def make_user(
    db: firestore.Client,
    uid: str,
    *,
    region: str = "EU",
    online: bool = True,
    tokens: list[str] | None = None,
    name: str | None = None,
    adult: bool = True,
    blocked: list[str] | None = None,
) -> None:
    """`users/{uid}` as the chat core keeps it; age-verified 18+ unless `adult=False`."""
    data: dict[str, Any] = {"region": region, "online": online, "fcmTokens": tokens or [], "displayName": name or uid}
    if adult:
        data["ageVerified18Plus"] = True
    if blocked is not None:
        data["blockedUsers"] = blocked
    db.collection("users").document(uid).set(data)


def make_chat(db: firestore.Client, chat_id: str, participants: list[str], billing: dict | None = None) -> None:
    data: dict[str, Any] = {"participants": participants}
    if billing is not None:
        data["billing"] = billing
    db.collection("chats").document(chat_id).set(data)


def all_documents(db: firestore.Client) -> dict[str, Any]:
    """Every document of the project: path to update time.

    One query: a collection group with an empty id is the API's kindless,
    all-descendants query from the database root (what the SDKs' recursive
    delete asks for). Walking the collections instead costs two round trips
    per document, and "changes nothing" is asserted all over the suite.
    """
    return {s.reference.path: s.update_time for s in db.collection_group("").stream()}


def queue_entries(db: firestore.Client) -> list[dict]:
    return [s.to_dict() | {"_path": s.reference.path} for s in db.collection_group("messageQueue").stream()]


def inbox(db: firestore.Client, uid: str) -> list[dict]:
    """The user's inbox entries, in seq order."""
    entries = [s.to_dict() for s in db.collection("users").document(uid).collection("inbox").stream()]
    return sorted(entries, key=lambda e: e["seq"])


def billing_requests(db: firestore.Client) -> list[str]:
    """Ids of the billing requests: message documents carrying the chat's billing state."""
    return [s.id for s in db.collection_group("messages").stream() if "billingState" in (s.to_dict() or {})]


def head(db: firestore.Client, uid: str) -> dict:
    """The user's inbox head (seq, per-chat unread counts...), {} if there is none."""
    snapshot = db.document(f"users/{uid}/inboxHead/current").get()
    return snapshot.to_dict() if snapshot.exists else {}


def count(db: firestore.Client, collection: str) -> int:
    return db.collection(collection).count().get()[0][0].value


def wait_for(ref: firestore.DocumentReference, predicate: Callable[[dict], bool], timeout_s: float) -> dict:
    """Wait until the document exists and satisfies `predicate`.

    A real-time listener wakes the wait at once; a read every half second
    backs it up, so a listener that reconnects cannot stall the test.
    """
    seen: dict = {}
    changed = threading.Event()

    def check(snapshot) -> bool:
        if snapshot.exists and predicate(snapshot.to_dict()):
            seen.update(snapshot.to_dict())
            return True
        return False

    watch = ref.on_snapshot(lambda snapshots, _changes, _time: changed.set() if any(map(check, snapshots)) else None)
    deadline = time.monotonic() + timeout_s
    try:
        while not changed.wait(0.5):
            if check(ref.get()):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{ref.path} did not reach the expected state within {timeout_s} s")
    finally:
        watch.unsubscribe()
    return seen
