"""Typing indicators and unread counters: the Python port of the seed's `useRealtimeSignals` hook.

    signals = RealtimeSignals(client, user_id=uid, chat_id="c1", display_names={"u2": "Bea"})
    signals.start_typing()            # on each keystroke; throttled, stops by itself
    signals.refresh_typing()          # who else is typing: signals.typing_text == "Bea is typing"
    signals.refresh_unread_counts()   # signals.unread_counts, signals.total_unread
    signals.mark_chat_as_read()       # up to the newest message this device has

The JS hook listens to Firestore; a Python app polls these callables (the
engine's answers are the same). Typing: start_typing tells the engine at
most once per `throttle_s` (the engine keeps an event for 10 s), and if no
start_typing comes for `auto_stop_s` the client says it stopped, as the
hook's timer does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

from .callable import CallableClient
from .store import LocalStore

THROTTLE_S = 3.0
"""At most one "typing" call per this many seconds while the user keeps typing."""

AUTO_STOP_S = 5.0
"""Typing stops by itself after this long without a keystroke."""


class RealtimeSignals:
    """One user's typing and unread state, optionally focused on one chat.

    Args:
        client: the signed-in user's CallableClient.
        user_id: the signed-in user's uid.
        chat_id: the chat typing and mark_chat_as_read refer to by default (default none).
        display_names: uid -> name for typing_text (default: the uids).
        store: the device's LocalStore, for mark_chat_as_read to find the newest message.
        throttle_s: see THROTTLE_S.  auto_stop_s: see AUTO_STOP_S.
        clock: monotonic seconds (default time.monotonic; tests may pass their own).
    """

    def __init__(
        self,
        client: CallableClient,
        *,
        user_id: str,
        chat_id: str | None = None,
        display_names: Mapping[str, str] | None = None,
        store: LocalStore | None = None,
        throttle_s: float = THROTTLE_S,
        auto_stop_s: float = AUTO_STOP_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.client = client
        self.user_id = user_id
        self.chat_id = chat_id
        self.display_names = dict(display_names or {})
        self.store = store
        self.throttle_s = throttle_s
        self.auto_stop_s = auto_stop_s
        self._clock = clock
        self._lock = threading.Lock()
        self._typing_chat: str | None = None
        self._last_typing_call = float("-inf")
        self._stop_timer: threading.Timer | None = None
        # updateTypingState calls go out in the order they were decided (tickets taken under _lock):
        # a stop decided while its start is still in flight waits for it, or it could land first
        # and leave the user shown typing.
        self._sends = threading.Condition()
        self._next_ticket = 0
        self._now_serving = 0
        self.typing_calls = 0
        """updateTypingState calls made (what throttling saves is visible here)."""
        self.typing_users: list[str] = []
        """Uids of the others typing in the chat, as of the last refresh_typing."""
        self.unread_counts: dict[str, int] = {}
        """chatId -> unread messages, as of the last refresh (or mark_as_read)."""

    # ------------------------------------------------------------ typing

    def start_typing(self, chat_id: str | None = None) -> None:
        """A keystroke in `chat_id` (default the signals' chat): tell the engine, throttled."""
        chat_id = self._chat(chat_id)
        with self._lock:
            now = self._clock()
            due = self._typing_chat != chat_id or now - self._last_typing_call >= self.throttle_s
            if due:
                self._typing_chat, self._last_typing_call = chat_id, now
                ticket = self._take_ticket()
            self._restart_stop_timer()
        if due:
            self._update_typing(chat_id, True, ticket)

    def stop_typing(self) -> None:
        """The user stopped (sent, cleared the field, left): tell the engine, once."""
        with self._lock:
            chat_id, self._typing_chat = self._typing_chat, None
            self._last_typing_call = float("-inf")
            if self._stop_timer:
                self._stop_timer.cancel()
                self._stop_timer = None
            if chat_id is not None:
                ticket = self._take_ticket()
        if chat_id is not None:
            self._update_typing(chat_id, False, ticket)

    def refresh_typing(self, chat_id: str | None = None) -> list[str]:
        """Ask who else is typing in the chat now; returns and keeps their uids."""
        result = self.client.call("pack427_getTypingUsers", {"chatId": self._chat(chat_id)})
        self.typing_users = [u["userId"] for u in result["typingUsers"] if u["userId"] != self.user_id]
        return self.typing_users

    @property
    def is_anyone_typing(self) -> bool:
        return bool(self.typing_users)

    @property
    def typing_text(self) -> str:
        """"Bea is typing", "Bea and Cy are typing", "Bea, Cy and 2 others are typing", or ""."""
        names = [self.display_names.get(uid, uid) for uid in self.typing_users]
        match names:
            case []:
                return ""
            case [one]:
                return f"{one} is typing"
            case [first, second]:
                return f"{first} and {second} are typing"
            case [first, second, *rest]:
                return f"{first}, {second} and {len(rest)} other{'s' if len(rest) > 1 else ''} are typing"
        raise AssertionError("unreachable: the cases cover every list")

    def _take_ticket(self) -> int:
        """The next place in the order of typing calls; the caller holds _lock."""
        ticket, self._next_ticket = self._next_ticket, self._next_ticket + 1
        return ticket

    def _update_typing(self, chat_id: str, is_typing: bool, ticket: int) -> None:
        with self._sends:
            self._sends.wait_for(lambda: self._now_serving == ticket)
        try:
            self.client.call("pack427_updateTypingState", {"chatId": chat_id, "isTyping": is_typing})
            self.typing_calls += 1
        finally:
            with self._sends:
                self._now_serving += 1
                self._sends.notify_all()

    def _restart_stop_timer(self) -> None:
        if self._stop_timer:
            self._stop_timer.cancel()
        self._stop_timer = threading.Timer(self.auto_stop_s, self.stop_typing)
        self._stop_timer.daemon = True
        self._stop_timer.start()

    # ------------------------------------------------------------ unread

    @property
    def total_unread(self) -> int:
        return sum(self.unread_counts.values())

    def get_unread_count(self, chat_id: str) -> int:
        return self.unread_counts.get(chat_id, 0)

    def refresh_unread_counts(self) -> dict[str, int]:
        """Fetch every chat's unread count; returns and keeps them."""
        result = self.client.call("pack427_getUnreadCounts", {})
        self.unread_counts = dict(result["unreadCounts"])
        return self.unread_counts

    def mark_as_read(self, chat_id: str, up_to_message_id: str) -> int:
        """Everything in `chat_id` up to `up_to_message_id` is read; returns the chat's unread count left."""
        result = self.client.call("pack427_markAsRead", {"chatId": chat_id, "readUpToMessageId": up_to_message_id})
        self.unread_counts[chat_id] = result["unreadCount"]
        return result["unreadCount"]

    def mark_chat_as_read(self, chat_id: str | None = None) -> int:
        """Read up to the newest message of the chat this device has (needs `store`); returns the count left."""
        chat_id = self._chat(chat_id)
        if self.store is None:
            raise ValueError("mark_chat_as_read needs the device's LocalStore (store=...)")
        stored = self.store.messages(self.user_id, chat_id)
        if not stored:
            return self.get_unread_count(chat_id)
        return self.mark_as_read(chat_id, stored[-1].message_id)

    def _chat(self, chat_id: str | None) -> str:
        chat_id = chat_id or self.chat_id
        if chat_id is None:
            raise ValueError("no chat: pass chat_id, or give RealtimeSignals a chat_id")
        return chat_id

    def close(self) -> None:
        """Stop typing (if typing) and cancel the auto-stop timer."""
        self.stop_typing()
