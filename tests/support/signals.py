"""Test data for read receipts and unread counts: chat messages, and inbox
entries placed the way delivery places them, and the truth a count must equal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.api_core import exceptions as gexc
from google.cloud import firestore
from ulid import ULID

from pack427 import inbox
from pack427.models import InboxEntry, Region

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

    def deliver(self, message_id: str, sender: str, recipient: str) -> bool:
        """Place the message in the recipient's inbox as delivery does (`inbox.place`: the entry
        and the head's move, seq and unread count, in one conditional commit).

        Returns:
            False if the message was in the inbox already (a duplicated delivery).
        """
        entry = InboxEntry(
            seq=0, message_id=message_id, chat_id=self.id, sender_id=sender, text="x",
            content_ref=f"chats/{self.id}/messages/{message_id}", region=Region.EU, created_at=T0, delivered_at=T0,
        )
        try:
            inbox.place(self.db, recipient, [entry], lambda batch, numbered: None, now=T0)
        except gexc.AlreadyExists:
            return False
        return True

    def send(self, sender: str) -> str:
        """A message delivered to every other participant; its id."""
        message_id = self.message(sender)
        for uid in self.participants:
            if uid != sender:
                self.deliver(message_id, sender, uid)
        return message_id


def counter(db: firestore.Client, uid: str, chat_id: str) -> dict | None:
    """What the user's inbox head holds for the chat (unread, readUpTo, last); None if nothing."""
    snapshot = db.document(f"users/{uid}/inboxHead/current").get()
    return (snapshot.to_dict() or {}).get("chats", {}).get(chat_id) if snapshot.exists else None


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
