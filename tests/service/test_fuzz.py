"""Hostile input at every callable: generated payloads, in-process, against the emulator.

Each callable gets FUZZ_EXAMPLES payloads (env PACK427_FUZZ_EXAMPLES,
default 50; CI runs 650 in all) built by hypothesis from valid values, values that are almost
valid, and junk: wrong types, missing and extra fields, huge strings and
lists, Unicode edge cases (lone surrogates, NUL, RTL, combining marks,
emoji), ids of other users' chats, devices and messages, cursors issued to
another user or for another listing, edited and forged cursors, recurrence
rules and time zones (sendRecurringMessage: sends with deliverAt and a
recurrence, parts of the RRULE subset and beyond it put together at random,
rules that never fire, fire too often or run past the horizon). Callers are
alice, a user who is in no chat, nobody, and uids that are not usable as
document ids.

For every payload:
- the answer is 200 or a 4xx HttpsError, never INTERNAL or UNKNOWN (500);
- a refused call (4xx) wrote nothing: all documents of the project, with
  their update times, are compared before and after the call (one
  collection-group query over everything, so the check is per payload);
- an accepted call (200) had valid input (the request model accepts it) and
  changed only what that caller may change (its own device state, typing
  event, read receipt, counters, or, for a send, a chat it is in).

The figures (payloads per callable, answers by code) are printed (-s).
"""

from __future__ import annotations

import base64
import collections
import json
import os
import re
from datetime import timedelta

import main  # noqa: E402  (test_callables set up the environment)
import pytest
import requests
from google.cloud import firestore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from support.callables import call
from support.chatcore import make_chat, make_user
from support.emulator import UNIT_PROJECT, clear_project
from ulid import ULID

from pack427 import clock, constants
from pack427 import db as service_db
from pack427.accepting import sending
from pack427.delivering.notifier import EmulatorNotifier
from pack427.models import Recurrence, SendMessageRequest, SyncMessagesRequest
from pack427.reading import cursors, sync
from pack427.workers import processor

FUZZ_EXAMPLES = int(os.environ.get("PACK427_FUZZ_EXAMPLES", "50"))
FIGURES: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)

FUZZ_SETTINGS = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ------------------------------------------------------------------ the world


class World:
    """Users, chats, delivered messages and cursors for the fuzzer to aim at."""

    def __init__(self, db):
        self.db = db
        for uid in ("alice", "bob", "carol", "mallory"):
            make_user(db, uid)
        make_chat(db, "c1", ["alice", "bob"])
        make_chat(db, "c2", ["bob", "carol"])  # not alice's
        make_chat(db, "g3", ["alice", "bob", "carol"])
        self.to_alice = [self._send("bob", "c1", f"to alice {n}") for n in range(3)]
        self.to_carol = [self._send("bob", "c2", "to carol")]
        later = clock.to_millis(clock.now() + timedelta(days=1))
        self.scheduled = [  # alice's, then bob's: cancelling bob's as alice must be not-found
            sending.send_message(db, uid, SendMessageRequest(chatId="c1", clientMessageId=str(ULID()), text="later",
                                                             deliverAt=later)).messageId
            for uid in ("alice", "alice", "bob")]
        series = sending.send_message(db, "alice", SendMessageRequest(
            chatId="c1", clientMessageId=str(ULID()), text="every day", deliverAt=later,
            recurrence=Recurrence(rrule="FREQ=DAILY;COUNT=5", timeZone="Europe/Berlin")))
        self.scheduled.append(series.messageId)  # a series of alice's: its occurrences can be cancelled one by one
        self.occurrences = [clock.to_millis(at) for at in db.document(
            f"scheduledMessages/alice_{series.messageId}").get().get("occurrences")]
        processor.drain(db, EmulatorNotifier(), actor="test", time_budget_s=60)
        page = sync.sync_messages(db, "alice", SyncMessagesRequest(deviceId="alicephone"))
        bob_page = sync.sync_messages(db, "bob", SyncMessagesRequest(deviceId="bobphone"))
        self.cursors = {
            "alice-sync": page.cursor,
            "bob-sync": bob_page.cursor,
            "alice-chats": cursors.encode("chats", "alice", {"at": "2026-01-01T00:00:00+00:00", "chatId": "c1"}),
            "alice-resync-c1": cursors.encode("chat", "alice", {"chatId": "c1", "after": self.to_alice[0]}),
            "alice-resync-c2": cursors.encode("chat", "alice", {"chatId": "c2", "after": self.to_carol[0]}),
            "forged": _forge({"seq": 0}),
            "edited": page.cursor[:-2] + ("AA" if not page.cursor.endswith("AA") else "BB"),
            "negative-seq": cursors.encode("inbox", "alice", {"seq": -5}),
            "wrong-type-seq": cursors.encode("inbox", "alice", {"seq": "1"}),
            "list-position": cursors.encode("chats", "alice", {"at": [], "chatId": None}),
        }

    def _send(self, uid, chat_id, text):
        request = SendMessageRequest(chatId=chat_id, clientMessageId=str(ULID()), text=text)
        return sending.send_message(self.db, uid, request).messageId


def _forge(position: dict) -> str:
    body = base64.urlsafe_b64encode(json.dumps(position).encode()).rstrip(b"=").decode()
    return f"{body}.{base64.urlsafe_b64encode(b'0' * 16).rstrip(b'=').decode()}"


@pytest.fixture(scope="module")
def world(firestore_emulator):
    """One world for every callable (the fuzzing changes it only as accepted calls may)."""
    clear_project(firestore_emulator, UNIT_PROJECT)
    db = firestore.Client(project=UNIT_PROJECT)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(service_db, "client", lambda: db)
        yield World(db)


def snapshot() -> dict[str, str]:
    """Every document of the test project with its update time: one kindless query."""
    url = (f"http://{os.environ['FIRESTORE_EMULATOR_HOST']}/v1/projects/{UNIT_PROJECT}"
           "/databases/(default)/documents:runQuery")
    query = {"structuredQuery": {"from": [{"allDescendants": True}], "select": {"fields": [{"fieldPath": "__name__"}]}}}
    # "owner" is the emulator's admin token: under the suite the emulator applies firestore.rules to every project.
    response = requests.post(url, json=query, headers={"Authorization": "Bearer owner"}, timeout=60)
    response.raise_for_status()
    return {r["document"]["name"].split("/documents/", 1)[1]: r["document"]["updateTime"]
            for r in response.json() if "document" in r}


# ------------------------------------------------------------------ strategies

SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
EDGE_TEXT = st.sampled_from([
    "", " ", "\x00", "a\x00b", "\u202eevil\u202c", "e\u0301\u0301\u0301", "👩‍👩‍👧‍👦", "\ufeff", "\u200b" * 10,
    "../../users/bob", "c1/messages/x", ".", "..", "__name__", "__x__", "${jndi:ldap://x}", "<script>", "' OR 1=1",
    "ZZZZZZZZZZZZZZZZZZZZZZZZZZ", "8ZZZZZZZZZZZZZZZZZZZZZZZZZ", "00000000000000000000000000",
    "🙂" * 128, "é" * 129, "\n", "null", "NaN",
])
TEXT = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.one_of(st.characters(), SURROGATES), max_size=20),
    EDGE_TEXT,
    st.integers(100, 20_000).map(lambda n: "x" * n),  # the largest limit is 4,000 characters
    st.integers(1, 10_000).map(lambda n: "🙂" * n),
)
JUNK = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
ULIDS = st.builds(lambda: str(ULID()))

# Recurrence rules (issue 31): parts of the subset and beyond it, put together at random, and whole
# hostile rules; every one must be accepted or refused as invalid-argument, never INTERNAL.
RULE_PARTS = st.sampled_from([
    "FREQ=DAILY", "FREQ=WEEKLY", "FREQ=MONTHLY", "FREQ=YEARLY", "FREQ=MINUTELY", "FREQ=SECONDLY", "FREQ=HOURLY",
    "FREQ=", "COUNT=3", "COUNT=0", "COUNT=401", "COUNT=-1", "COUNT=99999999999999999999", "UNTIL=20270101T000000Z",
    "UNTIL=99991231T235959Z", "UNTIL=00010101T000000", "UNTIL=2026", "UNTIL=20261332T256199", "BYHOUR=9",
    "BYHOUR=9,10", "BYHOUR=-1", "BYMINUTE=0,30", "BYMINUTE=0,59", "BYMONTH=2", "BYMONTH=0", "BYMONTHDAY=30",
    "BYMONTHDAY=-31", "BYMONTHDAY=0", "BYDAY=MO,-1FR", "BYDAY=53MO", "BYDAY=+2TU", "BYDAY=", "BYDAY=MO,,TU",
    "BYSETPOS=1", "BYYEARDAY=100", "BYWEEKNO=1", "BYSECOND=0", "BYEASTER=0", "INTERVAL=0", "INTERVAL=400",
    "INTERVAL=2", "INTERVAL=1,2", "DTSTART=20260101T000000", "WKST=SU", "X-NAME=1", "", "=", "freq=daily",
])
RULES = st.one_of(
    st.lists(RULE_PARTS, max_size=7).map(";".join),
    st.sampled_from([
        "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9;BYMINUTE=0;COUNT=10", "RRULE:FREQ=DAILY;COUNT=2",
        "DTSTART:20260101T090000Z\nRRULE:FREQ=DAILY;COUNT=2", "FREQ=DAILY;COUNT=2\nEXDATE:20260601T090000Z",
        "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30;COUNT=3", "FREQ=DAILY;INTERVAL=7;BYDAY=TU;COUNT=3",
        "FREQ=MONTHLY;BYDAY=4MO;BYMONTHDAY=1;COUNT=3", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29;COUNT=2",
        "FREQ=DAILY;BYHOUR=2,3;BYMINUTE=30;COUNT=20", "FREQ=DAILY;BYHOUR=8,20;UNTIL=20991231T000000Z",
        "FREQ=DAILY;" * 80 + "COUNT=2", "RRULE:" * 3, ";" * 400,
    ]),
    TEXT,
)
ZONES = st.sampled_from(["Europe/Berlin", "America/New_York", "UTC", "Etc/GMT+14", "EST5EDT", "Mars/Base", "",
                         "../../etc/passwd", "/etc/localtime", "localtime", "+01:00", "europe/berlin", "Z" * 65])
VALID_RECURRENCES = st.fixed_dictionaries({
    "rrule": st.sampled_from(["FREQ=WEEKLY;BYDAY=MO;BYHOUR=9;BYMINUTE=0;COUNT=10", "FREQ=DAILY;COUNT=3",
                              "RRULE:FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=17;BYMINUTE=0;COUNT=6"]),
    "timeZone": st.sampled_from(["Europe/Berlin", "America/New_York", "UTC"])})
RECURRENCES = VALID_RECURRENCES | st.fixed_dictionaries({"rrule": RULES, "timeZone": ZONES | TEXT})


def field(valid, hostile=JUNK):
    """A value for a known field: mostly plausible, often hostile."""
    return st.one_of(valid, valid, hostile, TEXT)


EXTRA = st.dictionaries(st.one_of(st.sampled_from(["billingState", "senderId", "uid", "__proto__", "userId"]),
                                  st.text(max_size=10)), JUNK, min_size=1, max_size=3)


def payload(fields: dict, valid: dict):
    """Payloads for one callable.

    Args:
        fields: field name to a strategy of plausible and hostile values.
        valid: field name to a strategy of valid values (the required fields
            and some optional ones), for payloads that are valid but for one
            field: those reach past validation to the service's own checks.
    """
    names = sorted(fields)
    chosen = st.fixed_dictionaries({}, optional={name: fields[name] for name in names})
    with_extra = st.tuples(chosen, EXTRA).map(lambda pair: pair[1] | pair[0])
    base = st.fixed_dictionaries(valid)
    one_changed = st.tuples(base, st.sampled_from(names or ["x"]), JUNK | TEXT).map(
        lambda t: t[0] | {t[1]: t[2]}) if names else base
    one_missing = st.tuples(base, st.sampled_from(sorted(valid) or ["x"])).map(
        lambda t: {k: v for k, v in t[0].items() if k != t[1]})
    return st.one_of(chosen, with_extra, base, one_changed, one_missing,
                     st.tuples(base, EXTRA).map(lambda t: t[1] | t[0]), JUNK, st.none())


UIDS = st.sampled_from(["alice"] * 6 + ["mallory", "mallory", None, "bob/inbox", "..", "__admin__", "u" * 129])


def strategies(world: World) -> dict[str, st.SearchStrategy]:
    chat_ids = st.sampled_from(["c1", "g3", "c2", "nope", "c1 ", "C1", "c" * 128, "c" * 129, "a/b", ".."])
    message_ids = st.sampled_from(world.to_alice + world.to_carol) | ULIDS
    cursor_values = st.sampled_from(list(world.cursors.values())) | st.text(max_size=30) | \
        st.integers(1, 2000).map(lambda n: "A" * n + "." + "B" * n)
    device_ids = st.sampled_from(["alicephone", "bobphone", "phone", "a/b", "..", "__x__", "d" * 129])
    chats = st.sampled_from(["c1", "g3", "c2", "nope"])  # alice's direct chat, her group, bob's, none
    devices = st.sampled_from(["alicephone", "bobphone", "tablet"])
    some_cursor = st.sampled_from(list(world.cursors.values()))
    return {
        "sendMessage": payload({
            "chatId": field(chat_ids),
            "clientMessageId": field(ULIDS | st.sampled_from(["8ZZZZZZZZZZZZZZZZZZZZZZZZZ", str(ULID()).lower()])),
            "text": field(st.text(min_size=1, max_size=50) | st.just("x" * constants.MAX_TEXT_LENGTH)
                          | st.just("x" * (constants.MAX_TEXT_LENGTH + 1))),
            "contentRef": field(st.sampled_from(["gs://bucket/a.jpg", "users/bob/inbox/x", "r" * 1025])),
            "deliverAt": field(st.sampled_from([
                clock.to_millis(clock.now() + timedelta(hours=1)), clock.to_millis(clock.now() - timedelta(hours=1)),
                clock.to_millis(clock.now() + timedelta(days=31)), -1, 0, constants.MAX_UNIX_MS + 1])),
        }, {"chatId": chats, "clientMessageId": ULIDS, "text": st.sampled_from(["hi", "hello there", "🙂 ok"])}),
        # A send with deliverAt and a recurrence (issue 31): hostile rules and zones reach the service's checks.
        "sendRecurringMessage": payload({
            "chatId": field(chat_ids),
            "deliverAt": field(st.sampled_from([clock.to_millis(clock.now() + timedelta(hours=1)),
                                                clock.to_millis(clock.now() + timedelta(days=29))])),
            "recurrence": field(RECURRENCES),
        }, {"chatId": chats, "clientMessageId": ULIDS, "text": st.sampled_from(["every week"]),
            "deliverAt": st.just(clock.to_millis(clock.now() + timedelta(hours=2))), "recurrence": VALID_RECURRENCES}),
        "cancelScheduledMessage": payload({
            "scheduledId": field(st.sampled_from(world.scheduled) | ULIDS),
            "occurrenceAt": field(st.sampled_from(world.occurrences) | st.integers(-1, constants.MAX_UNIX_MS + 1)),
        }, {"scheduledId": st.sampled_from(world.scheduled)}),
        "listScheduledMessages": payload({}, {}),
        "registerDevice": payload({
            "deviceId": field(device_ids),
            "platform": field(st.sampled_from(["ios", "android", "web", "IOS", "symbian"])),
            "appVersion": field(st.sampled_from(["1.0", "v" * 64, "v" * 65])),
        }, {"deviceId": devices, "platform": st.sampled_from(["ios", "web"]), "appVersion": st.just("2.1")}),
        "syncMessages": payload({
            "deviceId": field(device_ids),
            "cursor": field(cursor_values),
            "since": field(st.integers(-(2**65), 2**65) | st.sampled_from([0, constants.MAX_UNIX_MS,
                                                                          constants.MAX_UNIX_MS + 1])),
        }, {"deviceId": devices, "cursor": some_cursor}),
        "ackMessages": payload({
            "messageIds": field(st.lists(message_ids, min_size=1, max_size=5)
                                | st.integers(400, 3000).map(lambda n: [str(ULID())] * n)),
            "deviceId": field(device_ids),
            "region": field(st.sampled_from(["EU", "US", "APAC", "eu", "MARS"])),
        }, {"messageIds": st.lists(message_ids, min_size=1, max_size=5)}),
        "getChatList": payload({"limit": field(st.integers(-5, 60) | st.just(2**64)),
                                "cursor": field(cursor_values)},
                               {"limit": st.integers(1, 50), "cursor": some_cursor}),
        "resyncChat": payload({"chatId": field(chat_ids), "cursor": field(cursor_values)},
                              {"chatId": chats, "cursor": some_cursor}),
        "updateTypingState": payload({"chatId": field(chat_ids), "isTyping": field(st.booleans())},
                                     {"chatId": chats, "isTyping": st.booleans()}),
        "getTypingUsers": payload({"chatId": field(chat_ids)}, {"chatId": chats}),
        "markAsRead": payload({"chatId": field(chat_ids), "readUpToMessageId": field(message_ids)},
                              {"chatId": chats, "readUpToMessageId": message_ids}),
        "getUnreadCounts": payload({}, {}),
        "recalculateUnreadCounters": payload({"cursor": field(cursor_values)}, {"cursor": some_cursor}),
    }


# ------------------------------------------------------------------ the oracle

REQUEST_MODELS = {
    name: model for name, model in [
        ("sendMessage", "SendMessageRequest"), ("registerDevice", "RegisterDeviceRequest"),
        ("syncMessages", "SyncMessagesRequest"), ("ackMessages", "AckMessagesRequest"),
        ("getChatList", "GetChatListRequest"), ("resyncChat", "ResyncChatRequest"),
        ("updateTypingState", "UpdateTypingStateRequest"), ("getTypingUsers", "GetTypingUsersRequest"),
        ("markAsRead", "MarkAsReadRequest"), ("getUnreadCounts", "NoArgumentsRequest"),
        ("recalculateUnreadCounters", "RecalculateUnreadCountersRequest"),
        ("cancelScheduledMessage", "CancelScheduledMessageRequest"),
        ("sendRecurringMessage", "SendMessageRequest"),
        ("listScheduledMessages", "NoArgumentsRequest"),
    ]
}


def may_write(name: str, uid: str, data: dict, path: str, world: World) -> bool:
    """Whether an accepted call of `name` by `uid` may have changed `path`."""
    u = re.escape(uid)
    own = {
        "registerDevice": [rf"regions/\w+/deviceSyncStates/{u}_[^/]+"],
        "syncMessages": [rf"regions/\w+/deviceSyncStates/{u}_[^/]+"],
        "ackMessages": [rf"users/{u}/inboxHead/acks"],
        "updateTypingState": [rf"regions/\w+/typingEvents/[^/]+_{u}"],
        "markAsRead": [rf"chats/[^/]+/readReceipts/{u}", rf"users/{u}/inboxHead/current"],
        "recalculateUnreadCounters": [rf"users/{u}/inboxHead/current", rf"recalculationWindows/{u}"],
        "cancelScheduledMessage": [rf"scheduledMessages/{u}_[^/]+"],
    }
    if name in ("sendMessage", "sendRecurringMessage"):  # a message fans out to the chat's members' inboxes and queues: only from a member
        return uid in world.db.document(f"chats/{data['chatId']}").get().get("participants")
    return any(re.fullmatch(pattern, path) for pattern in own.get(name, []))


CALLABLE = {"sendRecurringMessage": "sendMessage"}
"""Payload kinds that go to another callable than their name's."""


def check(name: str, world: World, uid, data, before: dict) -> dict:
    """Call, and hold the answer and the database to the rules in the module docstring."""
    status, body = call(getattr(main, f"pack427_{CALLABLE.get(name, name)}"), data, uid=uid)
    after = snapshot()
    changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
    code = body["error"]["status"] if "error" in body else "OK"
    FIGURES[name][code] += 1
    assert status != 500 and code not in ("INTERNAL", "UNKNOWN"), (name, uid, repr(data)[:300], body)
    if status == 200:
        model = getattr(__import__("pack427.models", fromlist=["x"]), REQUEST_MODELS[name])
        try:
            model.model_validate(data or {})
        except ValidationError as err:
            raise AssertionError(f"{name} accepted invalid input {data!r:.300}: {err}") from None
        bad = sorted(p for p in changed if not may_write(name, uid, data, p, world))
        assert not bad, f"{name} by {uid} changed {bad}"
    else:
        assert 400 <= status < 500, (status, body)
        assert not changed, f"{name} refused ({code}) but changed {sorted(changed)[:5]}"
    return after


def fuzz(name: str):
    @FUZZ_SETTINGS
    @given(data=st.data())
    def run(world, data):
        payload_value = data.draw(world.strategies[name], label="data")
        uid = data.draw(UIDS, label="uid")
        world.before = check(name, world, uid, payload_value, world.before)

    def test(world):
        world.strategies = strategies(world)
        world.before = snapshot()
        run(world)
        counts = FIGURES[name]
        print(f"\nfuzz {name}: {sum(counts.values())} payloads, {dict(sorted(counts.items()))}")
    test.__name__ = f"test_fuzz_{name}"
    return test


for _name in REQUEST_MODELS:
    globals()[f"test_fuzz_{_name}"] = fuzz(_name)
