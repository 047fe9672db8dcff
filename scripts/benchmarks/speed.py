"""How fast this machine's CPU runs the engine's kind of work: the yardstick beside every absolute time.

The stall probe (stalls.py) sees a CPU that is taken away; it cannot see a CPU
that is there but slow. These machines differ by more than two times from one
session to the next (the same bench on nearly the same engine: 19 and 47 ms of
the engine's CPU a message at 20/s, sessions 13 and 14, the stall probe at 1-3%
in both), so a time measured today and one on the page
compare only beside how long this machine took for the same fixed work.

The work: what the engine's process spends most of its CPU on under load
(py-spy, session 14: the Firestore client's encoding and decoding of
documents, proto-plus messages, pydantic): encoding and decoding an inbox
entry and an inbox head REPEAT times, in a process of its own (so the bench's
threads do not count), best of ROUNDS (the rounds a stall slowed are dropped
by taking the best).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime

REPEAT = 400
ROUNDS = 5


class Speed:
    """Measures the yardstick now (in a child process); `ms` is the best round's milliseconds."""

    def __init__(self) -> None:
        out = subprocess.run([sys.executable, __file__], capture_output=True, text=True, check=True).stdout
        self.ms: float = json.loads(out)["ms"]


def ratio_line(now_ms: float, then_ms: float | None) -> str:
    """How this run's machine compares with the one a page was rendered on, for the compare section."""
    if not then_ms:
        return f"this machine's yardstick: {now_ms:.0f} ms (the page's run did not measure one)"
    ratio = now_ms / then_ms
    pace = "slower" if ratio > 1 else "faster"
    return (f"this machine's yardstick: {now_ms:.0f} ms, the page's run's {then_ms:.0f} ms: this CPU is"
            f" {max(ratio, 1 / ratio):.2f} times {pace}, and its times should be about {ratio:.2f} times theirs"
            " for the same code")


def _work() -> None:
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "functions"))
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore
    from google.cloud.firestore_v1 import _helpers

    from pack427.models import InboxEntry

    db = firestore.Client(project="demo-speed", credentials=AnonymousCredentials())  # nothing is sent
    at = datetime(2026, 12, 1, tzinfo=UTC)
    entry = {"seq": 41, "messageId": "01KB5ZVW9Z0000000000000000", "chatId": "chat-0001", "senderId": "user-0001",
             "text": "a message of ordinary length, about sixty characters long.", "contentRef": "chats/chat-0001/"
             "messages/01KB5ZVW9Z0000000000000000", "region": "EU", "via": "send", "createdAt": at, "deliveredAt": at}
    head = {"seq": 41, "unread": 3, "chats": {f"chat-{i:04d}": {"unread": i % 3, "readUpTo": "01KB5ZVW9Z00000000000000",
                                                                "last": "01KB5ZVW9Z00000000000001"} for i in range(12)}}
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(REPEAT):
            for doc in (entry, head):
                encoded = _helpers.encode_dict(doc)
                _helpers.decode_dict(encoded, db)
            InboxEntry.model_validate(entry)
        best = min(best, time.perf_counter() - started)
    print(json.dumps({"ms": best * 1000}))


if __name__ == "__main__":
    _work()
