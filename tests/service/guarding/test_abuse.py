"""Who may send, and how much: age verification, blocks, the rate limit, the spam hook.

Against the Firestore emulator, with an injected clock (no sleeps).
"""

from __future__ import annotations

import collections
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from support.chatcore import all_documents, billing_requests, inbox, make_chat, make_user
from ulid import ULID

from pack427 import constants, settings
from pack427.accepting import sending
from pack427.errors import EngineError, FailedPrecondition, PermissionDenied, ResourceExhausted
from pack427.guarding import fraud
from pack427.models import EngineMode, SendMessageRequest

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def send(db, uid, chat_id="c1", text="hello there", client_id=None, at=T0, **kwargs):
    request = SendMessageRequest(chatId=chat_id, clientMessageId=client_id or str(ULID()), text=text)
    return sending.send_message(db, uid, request, now=at, **kwargs)


def messages(db, chat_id="c1") -> int:
    return len(list(db.collection(f"chats/{chat_id}/messages").stream()))


@pytest.fixture
def pair(db):
    make_user(db, "alice")
    make_user(db, "bob", region="US")
    make_chat(db, "c1", ["alice", "bob"])
    return db


# ------------------------------------------------------------------ age


@pytest.mark.parametrize("profile", [
    None,                                      # no users/{uid} at all
    {"region": "EU"},                          # no field
    {"ageVerified18Plus": False},
    {"ageVerified18Plus": "true"},             # only the boolean true counts
    {"ageVerified18Plus": 1},
])
def test_a_sender_without_age_verification_cannot_send(pair, profile):
    db = pair
    ref = db.document("users/alice")
    ref.delete() if profile is None else ref.set(profile)
    before = all_documents(db)
    with pytest.raises(FailedPrecondition) as refused:
        send(db, "alice")
    assert refused.value.details == {"reason": "age_verification_required"}
    assert "18 or older" in refused.value.message
    assert all_documents(db) == before


def test_recipients_need_no_age_verification_to_receive(pair):
    db = pair
    make_user(db, "bob", adult=False)
    assert send(db, "alice").status == "QUEUED"


# ------------------------------------------------------------------ blocks


@pytest.mark.parametrize(("blocker", "blocked"), [("bob", "alice"), ("alice", "bob")])
def test_no_direct_message_passes_a_block_either_way(pair, blocker, blocked):
    db = pair
    make_user(db, blocker, blocked=[blocked, "someone-else"])
    before = all_documents(db)
    for sender in ("alice", "bob"):
        with pytest.raises(FailedPrecondition) as refused:
            send(db, sender)
        assert refused.value.details == {"reason": "blocked"}
    assert all_documents(db) == before
    assert len(billing_requests(db)) == 0


def test_a_group_send_skips_members_on_either_side_of_a_block(db):
    make_user(db, "alice", blocked=["dave"])
    make_user(db, "bob", blocked=["alice"])
    make_user(db, "carol", blocked=[42, "alice2"])  # a damaged entry voids nothing else
    make_user(db, "dave")
    make_chat(db, "g", ["alice", "bob", "carol", "dave"])
    result = send(db, "alice", chat_id="g")
    # Bob blocked alice, alice blocked dave: only carol gets it.
    assert [uid for uid in ("bob", "carol", "dave") if inbox(db, uid)] == ["carol"]
    assert db.document(f"chats/g/messages/{result.messageId}").get().exists
    # Bob still reaches dave and carol; alice is skipped (bob blocked her).
    send(db, "bob", chat_id="g", text="from bob")
    from_bob = [uid for uid in ("alice", "carol", "dave") if any(e["senderId"] == "bob" for e in inbox(db, uid))]
    assert from_bob == ["carol", "dave"]


def test_a_retry_of_an_accepted_send_still_gets_its_result_after_a_block(pair):
    db = pair
    client_id = str(ULID())
    first = send(db, "alice", client_id=client_id)
    make_user(db, "bob", blocked=["alice"])
    again = send(db, "alice", client_id=client_id)
    assert (again.messageId, again.duplicate) == (first.messageId, True)


def test_participation_is_still_checked_first(pair):
    make_user(pair, "mallory")
    with pytest.raises(PermissionDenied):
        send(pair, "mallory")


# ------------------------------------------------------------------ rate limit


def test_sixty_a_minute_then_resource_exhausted_with_the_wait_and_nothing_written(pair):
    db = pair
    for n in range(constants.MAX_MESSAGES_PER_MINUTE):
        send(db, "alice", text=f"m{n}", at=T0 + timedelta(milliseconds=500 * n))  # 60 in 29.5 s
    before = all_documents(db)
    at = T0 + timedelta(seconds=40)
    with pytest.raises(ResourceExhausted) as refused:
        send(db, "alice", text="one more", at=at)
    # The oldest send (T0) leaves the window at T0 + 60 s: 20 s from now.
    assert refused.value.details == {
        "reason": "rate_limited", "retryAfterMs": 20_000, "limit": 60, "windowSeconds": 60,
    }
    assert all_documents(db) == before
    assert len(billing_requests(db)) == 60
    # Another user is not affected; alice can send again once her oldest send left the window.
    assert send(db, "bob", at=at).status == "QUEUED"
    assert send(db, "alice", text="later", at=T0 + timedelta(seconds=60, milliseconds=1)).status == "QUEUED"
    with pytest.raises(ResourceExhausted):  # ... one slot only: the second was sent at T0 + 0.5 s
        send(db, "alice", text="later 2", at=T0 + timedelta(seconds=60, milliseconds=2))


def test_the_window_slides_a_minute_boundary_does_not_reset_it(pair):
    db = pair
    edge = datetime(2026, 3, 2, 12, 0, 59, tzinfo=UTC)
    for n in range(60):
        send(db, "alice", text=f"m{n}", at=edge + timedelta(milliseconds=n))
    with pytest.raises(ResourceExhausted):
        send(db, "alice", at=edge + timedelta(seconds=2))  # a new calendar minute, same 60 s


def test_duplicates_of_accepted_sends_are_answered_even_when_limited(pair):
    db = pair
    client_ids = [str(ULID()) for _ in range(60)]
    first = [send(db, "alice", text=f"m{n}", client_id=c) for n, c in enumerate(client_ids)]
    again = send(db, "alice", text="m7", client_id=client_ids[7], at=T0 + timedelta(seconds=1))
    assert (again.messageId, again.duplicate) == (first[7].messageId, True)


def test_refused_sends_are_not_counted(pair):
    db = pair
    make_user(db, "bob", blocked=["alice"])
    for _ in range(70):
        with pytest.raises(FailedPrecondition):
            send(db, "alice")
    make_user(db, "bob")
    assert send(db, "alice").status == "QUEUED"


def test_sixty_one_concurrent_sends_by_one_user_exactly_sixty_accepted(pair):
    """The race the limit must win: 61 sends at once, to one chat, with real
    concurrency against the emulator. Each accepted send is in the window."""
    db = pair

    def one(n):
        try:
            return send(db, "alice", text=f"race {n}", at=T0 + timedelta(milliseconds=n)).status
        except EngineError as err:
            return err.code

    started = time.monotonic()
    with ThreadPoolExecutor(61) as pool:
        outcomes = collections.Counter(pool.map(one, range(61)))
    elapsed = time.monotonic() - started
    print(f"\n61 concurrent sends: {dict(outcomes)} in {elapsed:.1f} s")
    assert outcomes == {"QUEUED": 60, "resource-exhausted": 1}
    assert messages(db) == 60 and len(billing_requests(db)) == 60 and len(inbox(db, "bob")) == 60
    assert len(db.document("rateLimits/alice").get().get("sends")) == 60


# ------------------------------------------------------------------ spam hook


def test_the_same_text_to_a_sixth_chat_within_a_minute_is_refused_and_audited(db):
    make_user(db, "alice")
    for n in range(7):
        make_user(db, f"u{n}")
        make_chat(db, f"c{n}", ["alice", f"u{n}"])
    spam = "Win a FREE phone: visit example.com now"
    for n in range(5):
        send(db, "alice", chat_id=f"c{n}", text=spam, at=T0 + timedelta(seconds=n))
    send(db, "alice", chat_id="c0", text=spam, at=T0 + timedelta(seconds=6))  # the same chat again is fine
    before = len(billing_requests(db))
    client_id = str(ULID())
    with pytest.raises(FailedPrecondition) as refused:
        send(db, "alice", chat_id="c5", text="  win a free PHONE:   visit example.com now ",
             client_id=client_id, at=T0 + timedelta(seconds=7))
    assert refused.value.details == {"reason": "spam_suspected", "rule": "same-text-to-many-chats"}
    assert len(billing_requests(db)) == before and messages(db, "c5") == 0
    event = db.document(f"auditLog/rejected_alice_{client_id}").get().to_dict()
    assert event["action"] == "SEND_REJECTED" and event["reason"] == "spam_suspected"
    assert event["chatId"] == "c5" and event["actor"] == "user:alice"
    # Short texts, and a minute later, pass.
    send(db, "alice", chat_id="c5", text="ok", at=T0 + timedelta(seconds=8))
    send(db, "alice", chat_id="c6", text=spam, at=T0 + timedelta(seconds=61))


def test_an_integration_can_refuse_sends_and_its_outage_fails_open(pair):
    db = pair

    class Blocklist:
        name = "pack302"

        def review(self, attempt):
            if "forbidden" in (attempt.text or ""):
                return fraud.Verdict("fraud_suspected", "This message can't be sent.", {"score": 0.99})
            return None

    class Down:
        name = "down"

        def review(self, attempt):
            raise TimeoutError("fraud service unreachable")

    with pytest.raises(FailedPrecondition) as refused:
        send(db, "alice", text="a forbidden thing", fraud_checker=Blocklist())
    assert refused.value.details == {"reason": "fraud_suspected", "rule": "pack302"}
    assert send(db, "alice", text="fine", fraud_checker=Blocklist()).status == "QUEUED"
    assert send(db, "alice", text="anything", fraud_checker=Down()).status == "QUEUED"

    previous = fraud.install(Blocklist())
    try:
        with pytest.raises(FailedPrecondition):
            send(db, "alice", text="forbidden again")
    finally:
        fraud.install(previous)


def test_without_the_local_locks_the_conditional_window_write_alone_holds_the_limit(db, monkeypatch):
    """As between instances, where no local lock serialises anything: 14 racing
    sends to 14 chats against a limit of 10 (set small to keep the race short)."""
    import contextlib

    from pack427 import locks

    monkeypatch.setattr(locks, "held", lambda *keys: contextlib.nullcontext())
    settings.set_rate_limit(db, 10, actor="test")
    make_user(db, "alice")
    for n in range(14):
        make_user(db, f"u{n}")
        make_chat(db, f"c{n}", ["alice", f"u{n}"])

    def one(n):
        try:
            return send(db, "alice", chat_id=f"c{n}", text=f"race {n}", at=T0 + timedelta(milliseconds=n)).status
        except EngineError as err:
            return err.code

    with ThreadPoolExecutor(14) as pool:
        outcomes = collections.Counter(pool.map(one, range(14)))
    assert outcomes == {"QUEUED": 10, "resource-exhausted": 4}
    assert len(billing_requests(db)) == 10


def test_an_operator_can_change_the_limit_and_it_holds_exactly(pair):
    """config/engine.maxMessagesPerMinute: raised to 70, the 71st send is refused;
    lowered to 5 with 70 sends in the window, the next is refused too."""
    db = pair
    settings.set_rate_limit(db, 70, actor="test", reason="bot account")
    for n in range(70):
        assert send(db, "alice", text=f"m{n}", at=T0 + timedelta(milliseconds=n)).status == "QUEUED"
    with pytest.raises(ResourceExhausted) as limited:
        send(db, "alice", text="one too many", at=T0 + timedelta(seconds=1))
    assert limited.value.details["limit"] == 70
    settings.set_rate_limit(db, 5, actor="test")
    with pytest.raises(ResourceExhausted):
        send(db, "alice", text="still too many", at=T0 + timedelta(seconds=2))
    assert len(billing_requests(db)) == 70
    stored = settings.current(db, max_age_s=0)
    assert (stored.mode, stored.max_messages_per_minute, stored.updated_by) == (EngineMode.QUEUE, 5, "test")
