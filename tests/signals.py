"""Test data for read receipts and unread counters: chat messages and inbox
entries in the shape the engine writes them, and the truth a counter must equal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.cloud import firestore
from ulid import ULID

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


class Chat:
    """One chat's messages with ids that increase in send order, as the engine makes them."""

    def __init__(self, db: firestore.Client, chat_id: str, participants: list[str]):
        self.db, self.id, self.participants = db, chat_id, participants
        self.sent = 0
        db.collection("chats").document(chat_id).set({"participants": participants})

    def message(self, sender: str) -> str:
        """Store a message of `sender` in the chat (not yet in any inbox); its id."""
        at = T0 + timedelta(milliseconds=self.sent)
        self.sent += 1
        message_id = str(ULID.from_datetime(at))
        self.db.document(f"chats/{self.id}/messages/{message_id}").set(
            {"id": message_id, "chatId": self.id, "senderId": sender, "clientMessageId": str(ULID()),
             "text": f"m{self.sent}", "createdAt": at}
        )
        return message_id

    def deliver(self, message_id: str, sender: str, recipient: str) -> firestore.DocumentSnapshot:
        """Create the recipient's inbox entry (as delivery does); its snapshot, as the trigger gets it."""
        ref = self.db.document(f"users/{recipient}/inbox/{message_id}")
        ref.create({
            "messageId": message_id, "chatId": self.id, "senderId": sender, "text": "x",
            "contentRef": f"chats/{self.id}/messages/{message_id}", "region": "EU",
            "createdAt": T0, "deliveredAt": T0,
        })
        return ref.get()

    def send(self, sender: str) -> tuple[str, list[firestore.DocumentSnapshot]]:
        """A message delivered to every other participant: its id and the inbox snapshots."""
        message_id = self.message(sender)
        return message_id, [self.deliver(message_id, sender, uid) for uid in self.participants if uid != sender]


def counter(db: firestore.Client, uid: str, chat_id: str) -> dict | None:
    snapshot = db.document(f"users/{uid}/unreadCounters/{chat_id}").get()
    return snapshot.to_dict() if snapshot.exists else None


def receipt(db: firestore.Client, uid: str, chat_id: str) -> dict | None:
    snapshot = db.document(f"chats/{chat_id}/readReceipts/{uid}").get()
    return snapshot.to_dict() if snapshot.exists else None


def truth(db: firestore.Client, uid: str, chat_id: str) -> int:
    """The unread count computed from scratch: every inbox entry read in Python, no query filters."""
    stored = receipt(db, uid, chat_id)
    read_up_to = stored["readUpToMessageId"] if stored else ""
    return sum(
        1
        for s in db.collection(f"users/{uid}/inbox").stream()
        if s.get("chatId") == chat_id and s.get("senderId") != uid and s.get("messageId") > read_up_to
    )
