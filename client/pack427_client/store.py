"""The client's local state in SQLite: outgoing queue, received messages, sync cursors.

Everything the app must not lose across a restart is here, written before it
acts on the network: a message is in the outbox before its first send; a
synced page's messages and the cursor after them are stored in one
transaction, before the page is acknowledged. One file can hold several
users (every row names its user).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class OutboxStatus(StrEnum):
    QUEUED = "queued"
    """Waiting to be sent (or re-sent with the same clientMessageId)."""
    SENT = "sent"
    """The engine accepted it (`message_id` is set)."""
    FAILED = "failed"
    """Refused for good, or out of attempts; retry_failed_messages queues it again."""


@dataclass(frozen=True)
class OutgoingMessage:
    """A message the user wrote, in the outbox.

    Attributes:
        client_message_id: the ULID the client gave it: the idempotency key of every send of it.
        chat_id, text, content_ref: what was written where.
        created_at: Unix seconds when the user wrote it.
        status: queued, sent or failed.
        attempts: sends tried so far.
        message_id: the engine's id once accepted.
        last_error: why the last send failed ("STATUS: message").
    """

    client_message_id: str
    chat_id: str
    text: str | None
    content_ref: str | None
    created_at: float
    status: OutboxStatus
    attempts: int
    message_id: str | None
    last_error: str | None


@dataclass(frozen=True)
class ReceivedMessage:
    """A message synced from the engine (times are Unix ms, as the engine sends them)."""

    message_id: str
    chat_id: str
    sender_id: str
    sender_name: str | None
    text: str | None
    content_ref: str
    created_at: int
    delivered_at: int | None

    @classmethod
    def from_wire(cls, data: dict) -> ReceivedMessage:
        return cls(data["messageId"], data["chatId"], data["senderId"], data.get("senderName"), data.get("text"),
                   data.get("contentRef") or "", data["createdAt"], data.get("deliveredAt"))


SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    client_message_id TEXT NOT NULL UNIQUE,
    chat_id TEXT NOT NULL,
    text TEXT,
    content_ref TEXT,
    created_at REAL NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    message_id TEXT,
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS messages (
    user_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    chat_id TEXT NOT NULL,
    sender_id TEXT NOT NULL,
    sender_name TEXT,
    text TEXT,
    content_ref TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    delivered_at INTEGER,
    acked INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, message_id)
);
CREATE INDEX IF NOT EXISTS messages_by_chat ON messages (user_id, chat_id, message_id);
CREATE TABLE IF NOT EXISTS cursors (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    cursor TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);
"""

_OUTBOX_COLUMNS = "client_message_id, chat_id, text, content_ref, created_at, status, attempts, message_id, last_error"
_MESSAGE_COLUMNS = "message_id, chat_id, sender_id, sender_name, text, content_ref, created_at, delivered_at"


class LocalStore:
    """SQLite-backed client state for one or more users.

    Args:
        path: the database file (created if missing), or ":memory:" for
            state that dies with the process (default).
    """

    def __init__(self, path: str | Path = ":memory:"):
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a queued message survives a power cut
        self._db.executescript(SCHEMA)
        self._lock = threading.RLock()

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------ outbox

    def enqueue(self, user_id: str, client_message_id: str, chat_id: str, text: str | None,
                content_ref: str | None) -> OutgoingMessage:
        """Put a new message at the end of the user's outbox (durable when this returns)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO outbox (user_id, client_message_id, chat_id, text, content_ref, created_at, status)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (user_id, client_message_id, chat_id, text, content_ref, time.time(), OutboxStatus.QUEUED),
            )
            return self.outgoing(client_message_id)

    def outgoing(self, client_message_id: str) -> OutgoingMessage:
        with self._lock:
            row = self._db.execute(f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE client_message_id = ?",
                                   (client_message_id,)).fetchone()
        return _outgoing(row)

    def outbox(self, user_id: str, *statuses: OutboxStatus) -> list[OutgoingMessage]:
        """The user's outbox in the order written, only `statuses` if given."""
        query = f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE user_id = ?"
        args: list = [user_id]
        if statuses:
            query += f" AND status IN ({', '.join('?' * len(statuses))})"
            args += list(statuses)
        with self._lock:
            return [_outgoing(row) for row in self._db.execute(query + " ORDER BY seq", args)]

    def record_attempt(self, client_message_id: str, *, error: str | None = None,
                       status: OutboxStatus = OutboxStatus.QUEUED, message_id: str | None = None) -> None:
        """Count one send attempt and its outcome."""
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET attempts = attempts + 1, status = ?, last_error = ?,"
                " message_id = COALESCE(?, message_id) WHERE client_message_id = ?",
                (status, error, message_id, client_message_id),
            )

    def requeue_failed(self, user_id: str) -> int:
        """Failed messages back to queued with their attempts reset; how many."""
        with self._lock:
            return self._db.execute(
                "UPDATE outbox SET status = ?, attempts = 0 WHERE user_id = ? AND status = ?",
                (OutboxStatus.QUEUED, user_id, OutboxStatus.FAILED),
            ).rowcount

    # ------------------------------------------------------------ received

    def store_page(self, user_id: str, messages: Iterable[ReceivedMessage], *,
                   device_id: str | None = None, cursor: str | None = None) -> list[ReceivedMessage]:
        """Store synced messages and (if given) the device's cursor after them, in one transaction.

        Returns the messages that were new (a message already stored, by id, is skipped).
        """
        new: list[ReceivedMessage] = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for m in messages:
                    inserted = self._db.execute(
                        f"INSERT OR IGNORE INTO messages (user_id, {_MESSAGE_COLUMNS})"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (user_id, m.message_id, m.chat_id, m.sender_id, m.sender_name, m.text, m.content_ref,
                         m.created_at, m.delivered_at),
                    ).rowcount
                    if inserted:
                        new.append(m)
                if cursor is not None and device_id is not None:
                    self._db.execute("INSERT OR REPLACE INTO cursors (user_id, device_id, cursor) VALUES (?, ?, ?)",
                                     (user_id, device_id, cursor))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return new

    def cursor(self, user_id: str, device_id: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT cursor FROM cursors WHERE user_id = ? AND device_id = ?",
                                   (user_id, device_id)).fetchone()
        return row[0] if row else None

    def forget_cursor(self, user_id: str, device_id: str) -> None:
        """Drop the device's cursor (the engine refused it): the next sync starts without one."""
        with self._lock:
            self._db.execute("DELETE FROM cursors WHERE user_id = ? AND device_id = ?", (user_id, device_id))

    def messages(self, user_id: str, chat_id: str | None = None) -> list[ReceivedMessage]:
        """Stored messages of the user (of one chat if given), oldest first (message ids are per-chat ordered)."""
        query = f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE user_id = ?"
        args: list = [user_id]
        if chat_id is not None:
            query += " AND chat_id = ?"
            args.append(chat_id)
        with self._lock:
            return [ReceivedMessage(*row) for row in self._db.execute(query + " ORDER BY message_id", args)]

    def unacked(self, user_id: str, limit: int) -> list[str]:
        """Ids of stored messages from others not acknowledged yet, oldest first."""
        with self._lock:
            return [row[0] for row in self._db.execute(
                "SELECT message_id FROM messages WHERE user_id = ? AND acked = 0 AND sender_id != ?"
                " ORDER BY message_id LIMIT ?", (user_id, user_id, limit))]

    def mark_acked(self, user_id: str, message_ids: Iterable[str]) -> None:
        with self._lock:
            self._db.executemany("UPDATE messages SET acked = 1 WHERE user_id = ? AND message_id = ?",
                                 [(user_id, m) for m in message_ids])


def _outgoing(row: tuple) -> OutgoingMessage:
    (client_message_id, chat_id, text, content_ref, created_at, status, attempts, message_id, last_error) = row
    return OutgoingMessage(client_message_id, chat_id, text, content_ref, created_at, OutboxStatus(status),
                           attempts, message_id, last_error)
