"""Python client of the PACK 427 delivery engine: what a mobile app does, for Python apps, bots and tests.

    auth = PasswordAuth.sign_in("ann@example.com", "secret!", api_key=KEY)
    client = CallableClient("https://us-central1-PROJECT.cloudfunctions.net", auth)
    chat = OfflineAwareChat(client, LocalStore("ann.db"), user_id=auth.uid, device_id="laptop")
    chat.send_message("c1", "hello")
    chat.sync_messages()
    signals = RealtimeSignals(client, user_id=auth.uid, chat_id="c1", store=chat.store)

Modules: callable (the protocol), auth (ID tokens), errors (typed errors),
transport (HTTP, and a fault-injecting one for tests), store (SQLite
state), chat (offline-aware chat), signals (typing and unread).
"""

from .auth import PasswordAuth, StaticToken, TokenSource
from .callable import CallableClient
from .chat import OfflineAwareChat, RetryPolicy
from .errors import CallableError, ClientError, TransportError
from .signals import RealtimeSignals
from .store import LocalStore, OutboxStatus, OutgoingMessage, ReceivedMessage
from .transport import FaultyTransport, HttpTransport, Transport

__all__ = [
    "CallableClient", "CallableError", "ClientError", "FaultyTransport", "HttpTransport", "LocalStore",
    "OfflineAwareChat", "OutboxStatus", "OutgoingMessage", "PasswordAuth", "RealtimeSignals", "ReceivedMessage",
    "RetryPolicy", "StaticToken", "TokenSource", "Transport", "TransportError",
]
