"""Hostile stored documents: what the chat core (or a hand in the console) writes, then every callable.

Each example writes, through admin access, odd versions of the documents other systems own:
`chats/{chatId}` (participants with ids that cannot key a document, duplicates and junk; odd
billing, flags and a lastMessage the engine did not write, ids at the end of the ULID space or of
another scheme), `users/{uid}` (every field of the wrong type), sometimes a damaged inbox head,
and one or two of the documents the engine writes itself edited by hand (a chat message, a read
receipt, a device state, a typing event, the send's idempotency record, a scheduled message, the
rate window, config/engine, an inbox entry). Then alice and bob call every callable on that chat. The answer is 200 or a 4xx HttpsError,
never INTERNAL or UNKNOWN; and a send that was accepted reached every valid member the blocks allow.

PACK427_FUZZ_DOCUMENTS sets the examples (default 40). The answers are printed (-s).
"""

from __future__ import annotations

import collections
import os
from datetime import UTC, datetime

import main  # noqa: F401  (test_callables set up the environment)
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.callables import call
from support.chatcore import inbox
from support.emulator import UNIT_PROJECT, clear_project
from ulid import ULID

from pack427 import db as service_db
from pack427.delivering import fan_out

EXAMPLES = int(os.environ.get("PACK427_FUZZ_DOCUMENTS", "40"))
ANSWERS: collections.Counter = collections.Counter()

# A map key Firestore takes: not empty, not of the reserved form __x__.
KEY = st.text(min_size=1, max_size=8).filter(lambda k: not (k.startswith("__") and k.endswith("__")))
SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=True),
    st.text(max_size=20), st.datetimes(timezones=st.just(UTC)),
    st.sampled_from(["", "a/b", "..", "__x__", "EU", "DIRECT", "7ZZZZZZZZZZZZZZZZZZZZZZZZZ", "x" * 200]),
)
# Firestore stores no array directly inside an array: lists hold scalars, maps hold either.
VALUE = st.one_of(SCALAR, st.lists(SCALAR, max_size=4),
                  st.dictionaries(KEY, st.one_of(SCALAR, st.lists(SCALAR, max_size=3)), max_size=4))
UID = st.sampled_from(["alice", "bob", "carol", "a/b", "..", "__x__", "", "u" * 129, "bob"])
MESSAGE_ID = st.one_of(st.sampled_from(["7ZZZZZZZZZZZZZZZZZZZZZZZZZ", "core-000042", "00000000000000000000000000",
                                        "a/b", ""]), st.builds(lambda: str(ULID())), SCALAR)


def maybe(strategy):
    return st.one_of(strategy, VALUE)


CHAT = st.fixed_dictionaries(
    {"participants": st.one_of(
        st.lists(UID, max_size=6).map(lambda ids: ["alice", "bob", *ids]),  # alice sends, bob receives
        st.lists(st.one_of(UID, SCALAR), max_size=6).map(lambda ids: ["alice", *ids]))},
    optional={
        "billing": maybe(st.dictionaries(st.sampled_from(["plan", "priority"]), SCALAR, max_size=2)),
        "deliveryQueued": maybe(st.booleans()),
        "fanOutPending": maybe(st.booleans()),
        "lastMessage": maybe(st.fixed_dictionaries({}, optional={
            "messageId": MESSAGE_ID, "senderId": maybe(UID), "text": maybe(st.text(max_size=10)),
            "createdAt": maybe(st.datetimes(timezones=st.just(UTC)))})),
    },
)
USER = st.fixed_dictionaries({
    "ageVerified18Plus": st.one_of(st.just(True), st.just(True), st.just(True), VALUE),  # mostly sends that go
}, optional={
    "region": maybe(st.sampled_from(["EU", "US", "APAC"])),
    "online": maybe(st.booleans()),
    "fcmTokens": maybe(st.lists(st.text(max_size=10), max_size=2)),
    "displayName": maybe(st.text(max_size=10)),
    "blockedUsers": maybe(st.lists(UID, max_size=3)),
})
FIELDS = st.one_of(st.sampled_from(["id", "chatId", "senderId", "status", "seq", "text", "createdAt", "deliverAt",
                                    "expiresAt", "readUpToMessageId", "cursor", "userId", "messageId", "sends",
                                    "mode", "maxMessagesPerMinute", "participants", "payloadHash"]),
                   KEY)
ODD_DOCUMENT = st.dictionaries(FIELDS, VALUE, max_size=6)
# Documents the engine writes, edited by a hand or another system (one or two an example).
OTHER_PATHS = ["chats/c/messages/{new}", "chats/c/readReceipts/bob", "regions/EU/deviceSyncStates/bob_phone",
               "regions/EU/typingEvents/c_alice", "idempotencyKeys/alice_{first}", "scheduledMessages/alice_{later}",
               "rateLimits/alice", "config/engine", "users/bob/inbox/{sent}"]
OTHERS = st.dictionaries(st.sampled_from(OTHER_PATHS), ODD_DOCUMENT, max_size=2)
HEAD = st.one_of(st.none(), st.fixed_dictionaries({}, optional={
    "seq": maybe(st.integers(0, 5)), "chats": VALUE, "ackedSeq": VALUE, "pruned": VALUE, "messageId": VALUE}))


@pytest.fixture(scope="module")
def fuzz_db(firestore_emulator):
    from google.cloud import firestore

    db = firestore.Client(project=UNIT_PROJECT)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(service_db, "client", lambda: db)
        yield db


def answer(function, data, uid) -> tuple[int, dict]:
    status, body = call(function, data, uid=uid)
    code = body["error"]["status"] if "error" in body else "OK"
    reason = (body["error"].get("details") or {}).get("reason", "") if "error" in body else ""
    ANSWERS[f"{function.__name__.removeprefix('pack427_')} {code} {reason}".rstrip()] += 1
    assert status != 500 and code not in ("INTERNAL", "UNKNOWN"), (function.__name__, uid, repr(data)[:200], body)
    assert status == 200 or 400 <= status < 500, (status, body)
    return status, body


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(chat=CHAT, alice=USER, bob=USER, bob_head=HEAD, others=OTHERS)
def run_example(db, chat, alice, bob, bob_head, others):
    clear_project(os.environ["FIRESTORE_EMULATOR_HOST"], UNIT_PROJECT)
    db.document("users/alice").set(alice)
    db.document("users/bob").set(bob)
    db.document("users/carol").set({"ageVerified18Plus": True})
    db.document("chats/c").set(chat)
    if bob_head is not None:
        db.document("users/bob/inboxHead/current").set(bob_head)

    first = {"chatId": "c", "clientMessageId": str(ULID()), "text": "hi"}
    status, body = answer(main.pack427_sendMessage, first, "alice")
    if status == 200:
        fan_out.run_chat(db, "c")  # a chat taken as fanning out (an odd fanOutPending)
    later = {"chatId": "c", "clientMessageId": str(ULID()), "text": "later",
             "deliverAt": int(datetime.now(UTC).timestamp() * 1000) + 3_600_000}
    answer(main.pack427_sendMessage, later, "alice")
    names = {"new": str(ULID()), "sent": body.get("result", {}).get("messageId") or first["clientMessageId"],
             "first": first["clientMessageId"], "later": later["clientMessageId"]}
    for path, document in others.items():
        db.document(path.format(**names)).set(document)
    answer(main.pack427_sendMessage, first, "alice")  # a retry, over whatever was edited
    answer(main.pack427_cancelScheduledMessage, {"scheduledId": later["clientMessageId"]}, "alice")
    for uid in ("alice", "bob"):
        answer(main.pack427_registerDevice, {"deviceId": "phone", "platform": "web", "appVersion": "1"}, uid)
        _, synced = answer(main.pack427_syncMessages, {"deviceId": "phone"}, uid)
        ids = [m["messageId"] for m in synced.get("result", {}).get("messages", [])]
        if ids:
            answer(main.pack427_ackMessages, {"messageIds": ids, "deviceId": "phone"}, uid)
            answer(main.pack427_markAsRead, {"chatId": "c", "readUpToMessageId": ids[-1]}, uid)
        answer(main.pack427_getChatList, {}, uid)
        answer(main.pack427_resyncChat, {"chatId": "c"}, uid)
        answer(main.pack427_updateTypingState, {"chatId": "c", "isTyping": True}, uid)
        answer(main.pack427_getTypingUsers, {"chatId": "c"}, uid)
        answer(main.pack427_getUnreadCounts, {}, uid)
        answer(main.pack427_recalculateUnreadCounters, {}, uid)
        answer(main.pack427_listScheduledMessages, {}, uid)
    if status == 200 and body["result"]["status"] == "QUEUED" and "config/engine" not in others:
        # Carol, a valid member with a plain profile, has it (unless a block of alice's names her).
        blocked = alice.get("blockedUsers") if isinstance(alice.get("blockedUsers"), list) else []
        if "carol" in chat["participants"] and "carol" not in blocked:
            from pack427.delivering.notifier import EmulatorNotifier
            from pack427.workers import processor
            processor.drain(db, EmulatorNotifier(), actor="fuzz", time_budget_s=10)
            assert [e["text"] for e in inbox(db, "carol")] == ["hi"]


def test_hostile_stored_documents_never_make_a_callable_answer_internal(fuzz_db):
    run_example(fuzz_db)
    print(f"\nfuzz of stored documents: {EXAMPLES} examples, {sum(ANSWERS.values())} calls, "
          f"{dict(sorted(ANSWERS.items()))}")
    assert sum(ANSWERS.values()) >= EXAMPLES * 20
