"""Priority lanes: under a backlog the processor takes paid and VIP messages first, and the
normal lane is never starved; the priority is the server's decision, never the client's."""

from __future__ import annotations

from datetime import timedelta

import pytest
from support.chatcore import make_chat, make_user, queue_entries
from support.entries import T0, enqueue, load, make_entry
from ulid import ULID

from pack427 import constants
from pack427.accepting import sending
from pack427.delivering.notifier import EmulatorNotifier
from pack427.errors import InvalidArgument
from pack427.guarding import admission, callables
from pack427.models import QueueStatus, Region, SendMessageRequest
from pack427.workers import processor


def entry(n: int, *, priority: bool = False):
    made = make_entry(f"r{n:03d}", chat=f"c{n:03d}", created=T0 + timedelta(milliseconds=n))
    return made.model_copy(update={"priority": priority})


def rounds_until_delivered(db, entries) -> dict[str, int]:
    """Drain the US queue; the round in which each of `entries` was delivered."""
    delivered_in: dict[str, int] = {}
    rounds = [0]

    def after_round(region, totals):
        rounds[0] += 1
        for e in entries:
            if e.id not in delivered_in and load(db, e).entry.status is QueueStatus.DELIVERED:
                delivered_in[e.id] = rounds[0]

    processor.drain(db, EmulatorNotifier(), regions=(Region.US,), time_budget_s=120, progress=after_round)
    return delivered_in


def test_under_a_normal_backlog_a_priority_message_goes_in_the_first_round(db, monkeypatch):
    monkeypatch.setattr(constants, "BATCH_SIZE", 5)
    backlog = [entry(n) for n in range(30)]
    paid = entry(100, priority=True)  # the newest of all
    enqueue(db, *backlog, paid)
    delivered_in = rounds_until_delivered(db, [paid, backlog[-1]])
    assert delivered_in[paid.id] == 1
    assert delivered_in[backlog[-1].id] == 6  # 30 normal ones, 5 a round, oldest first
    assert {e["status"] for e in queue_entries(db)} == {"DELIVERED"}


def test_a_flood_of_priority_messages_never_starves_the_normal_lane(db, monkeypatch):
    monkeypatch.setattr(constants, "BATCH_SIZE", 5)
    waiting = [entry(n) for n in range(3)]  # older than the flood
    flood = [entry(10 + n, priority=True) for n in range(40)]
    enqueue(db, *waiting, *flood)
    delivered_in = rounds_until_delivered(db, waiting)
    # Every round also takes a batch of every due entry, oldest first: the normal ones go in round 1.
    assert set(delivered_in.values()) == {1}


@pytest.fixture
def paid_chat(db):
    for uid in ("alice", "bob"):
        make_user(db, uid)
    make_chat(db, "paid", ["alice", "bob"], billing={"priority": True, "plan": "paid"})
    make_chat(db, "free", ["alice", "bob"])
    return db


def send(db, chat_id: str, **extra):
    return sending.send_message(db, "alice", SendMessageRequest(
        chatId=chat_id, clientMessageId=str(ULID()), text="hi", **extra))


def test_the_chats_billing_state_decides_the_lane(paid_chat, monkeypatch):
    monkeypatch.setattr(constants, "INLINE_ATTEMPTS", 0)  # through the queue
    send(paid_chat, "paid")
    send(paid_chat, "free")
    lanes = {e["chatId"]: e["priority"] for e in queue_entries(paid_chat)}
    assert lanes == {"paid": True, "free": False}


def test_the_paid_chat_engines_hook_decides_when_it_ranks(paid_chat, monkeypatch):
    class VipSenders(admission.AdmitAll):
        name = "vip-senders"

        def priority(self, attempt, billing_state):
            return attempt.sender_id == "alice" and attempt.chat_id == "free"

    monkeypatch.setattr(constants, "INLINE_ATTEMPTS", 0)
    previous = admission.install(VipSenders())
    try:
        send(paid_chat, "paid")
        send(paid_chat, "free")
    finally:
        admission.install(previous)
    assert {e["chatId"]: e["priority"] for e in queue_entries(paid_chat)} == {"paid": False, "free": True}


def test_a_client_cannot_ask_for_priority(paid_chat):
    with pytest.raises(InvalidArgument, match="priority"):
        callables.parse(SendMessageRequest,
                        {"chatId": "free", "clientMessageId": str(ULID()), "text": "me first", "priority": True})
