"""Recurring series (issue 31), against the emulator: each occurrence delivered at its local time as
a scheduled message is, exactly once and in chat order, the next one armed in the same commit;
cancelling one occurrence or the whole series; racing processors, a failed commit and a replay;
the rate limit at each delivery; a sender who can no longer send stops the series. The processor's
clock is moved as for scheduled messages: `deliver_due(now=...)`, or `clock.now` for a whole run."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from google.api_core import exceptions as gexc
from support.chatcore import all_documents, inbox, make_chat, make_user
from ulid import ULID

from pack427 import clock, settings, store
from pack427.accepting import scheduling, sending
from pack427.delivering.notifier import EmulatorNotifier
from pack427.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from pack427.models import CancelScheduledMessageRequest, Recurrence, SendMessageRequest
from pack427.workers import processor


@pytest.fixture
def chat(db):
    for uid in ("alice", "bob"):
        make_user(db, uid)
    make_chat(db, "c1", ["alice", "bob"])
    return db


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def start_series(db, rule: str, zone: str, deliver_at: datetime, *, at: datetime, text: str = "standup",
                 client_id: str | None = None):
    """alice's series in c1, sent at `at` (its clientMessageId made then)."""
    request = SendMessageRequest(chatId="c1", clientMessageId=client_id or str(ULID.from_datetime(at)), text=text,
                                 deliverAt=clock.to_millis(deliver_at), recurrence=Recurrence(rrule=rule, timeZone=zone))
    return sending.send_message(db, "alice", request, now=at)


def series_doc(db, scheduled_id: str) -> dict:
    return db.document(f"scheduledMessages/alice_{scheduled_id}").get().to_dict()


def messages(db) -> list[dict]:
    """c1's messages, in chat order."""
    return [s.to_dict() for s in sorted(db.collection("chats/c1/messages").stream(), key=lambda s: s.id)]


def texts(db, uid: str = "bob") -> list[str]:
    return [e["text"] for e in inbox(db, uid)]


def at_once(*calls) -> list:
    """Run `calls` in threads released together; what each returned, in order."""
    barrier, results = threading.Barrier(len(calls)), [None] * len(calls)

    def run(n: int) -> None:
        barrier.wait()
        results[n] = calls[n]()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


# ------------------------------------------------------------ local time across daylight-saving changes


CASES = {  # rule, zone, sent at, deliverAt, the occurrences (UTC) the rule must give
    "weekly Berlin": ("FREQ=WEEKLY;BYDAY=MO;BYHOUR=9;BYMINUTE=0;COUNT=3", "Europe/Berlin",  # CEST from 2027-03-28
                      utc(2027, 3, 15, 12), utc(2027, 3, 22),
                      [utc(2027, 3, 22, 8), utc(2027, 3, 29, 7), utc(2027, 4, 5, 7)]),
    "weekly New York": ("FREQ=WEEKLY;BYDAY=FR;BYHOUR=18;BYMINUTE=30;COUNT=3", "America/New_York",  # EDT from 03-14
                        utc(2027, 3, 1), utc(2027, 3, 5),
                        [utc(2027, 3, 5, 23, 30), utc(2027, 3, 12, 23, 30), utc(2027, 3, 19, 22, 30)]),
    "daily Berlin": ("FREQ=DAILY;BYHOUR=9;BYMINUTE=0;UNTIL=20271101T090000", "Europe/Berlin",  # CET from 10-31
                     utc(2027, 10, 25), utc(2027, 10, 30),
                     [utc(2027, 10, 30, 7), utc(2027, 10, 31, 8), utc(2027, 11, 1, 8)]),
    "daily New York": ("FREQ=DAILY;BYHOUR=9;BYMINUTE=0;COUNT=4", "America/New_York",  # EDT from 2027-03-14
                       utc(2027, 3, 10), utc(2027, 3, 12),
                       [utc(2027, 3, 12, 14), utc(2027, 3, 13, 14), utc(2027, 3, 14, 13), utc(2027, 3, 15, 13)]),
}


@pytest.mark.parametrize("case", CASES)
def test_each_occurrence_is_delivered_once_at_its_local_time_across_a_daylight_saving_change(chat, case):
    db = chat
    rule, zone, sent_at, deliver_at, expected = CASES[case]
    series = start_series(db, rule, zone, deliver_at, at=sent_at)
    assert (series.status, series.duplicate) == ("SCHEDULED", False)
    [listed] = scheduling.list_scheduled(db, "alice").messages
    assert (listed.rrule, listed.timeZone, listed.nextOccurrenceAt, listed.occurrencesLeft) == (
        rule, zone, clock.to_millis(expected[0]), len(expected))
    assert listed.upcoming == [clock.to_millis(at) for at in expected]
    assert messages(db) == [] and texts(db) == []

    for n, due in enumerate(expected):
        # Not a second early; at its time, once, however often the processor runs then.
        assert scheduling.deliver_due(db, now=due - timedelta(seconds=1))["delivered"] == 0
        assert scheduling.deliver_due(db, now=due)["delivered"] == 1
        assert scheduling.deliver_due(db, now=due + timedelta(seconds=30))["delivered"] == 0
        assert texts(db) == ["standup"] * (n + 1)
        stored = series_doc(db, series.messageId)
        assert stored["deliveredCount"] == n + 1
        if n + 1 < len(expected):  # the next occurrence armed by the commit that sent this one
            assert (stored["status"], stored["deliverAt"]) == ("SCHEDULED", expected[n + 1])

    sent = messages(db)
    assert [m["createdAt"] for m in sent] == expected
    local_times = {m["createdAt"].astimezone(ZoneInfo(zone)).strftime("%H:%M") for m in sent}
    assert len(local_times) == 1  # the same wall time on both sides of the change
    assert series_doc(db, series.messageId)["status"] == "DELIVERED"
    assert series_doc(db, series.messageId)["messageId"] == sent[-1]["id"]
    assert scheduling.list_scheduled(db, "alice").messages == []
    assert scheduling.deliver_due(db, now=expected[-1] + timedelta(days=30))["delivered"] == 0


def test_the_processor_run_delivers_the_occurrence_due_at_its_moved_clock(chat, monkeypatch):
    db = chat
    rule, zone, sent_at, deliver_at, expected = CASES["daily New York"]
    start_series(db, rule, zone, deliver_at, at=sent_at)
    for n, due in enumerate(expected[:3]):
        monkeypatch.setattr(clock, "now", lambda due=due: due + timedelta(seconds=20))
        processor.drain(db, EmulatorNotifier(), time_budget_s=20)
        assert [m["createdAt"] for m in messages(db)] == [at + timedelta(seconds=20) for at in expected[:n + 1]]


def test_a_retry_of_the_series_send_is_answered_and_reusing_its_id_for_another_rule_is_refused(chat):
    db = chat
    rule, zone, sent_at, deliver_at, _ = CASES["weekly Berlin"]
    first = start_series(db, rule, zone, deliver_at, at=sent_at)
    again = start_series(db, rule, zone, deliver_at, at=sent_at + timedelta(minutes=1), client_id=first.messageId)
    assert (again.messageId, again.status, again.duplicate) == (first.messageId, "SCHEDULED", True)
    with pytest.raises(InvalidArgument, match="already used for a different message"):
        start_series(db, rule.replace("COUNT=3", "COUNT=4"), zone, deliver_at, at=sent_at, client_id=first.messageId)
    assert len(list(db.collection("scheduledMessages").stream())) == 1


@pytest.mark.parametrize(("rule", "zone", "problem"), [
    ("FREQ=MINUTELY;COUNT=5", "UTC", "more often than once an hour"),
    ("FREQ=DAILY", "UTC", "give exactly one of COUNT"),
    ("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30;COUNT=2", "UTC", "never fires"),
    ("FREQ=DAILY;UNTIL=20290101T000000Z", "UTC", "runs past the horizon"),
    ("DTSTART:20270101T000000Z\nRRULE:FREQ=DAILY;COUNT=2", "UTC", "DTSTART"),
    ("FREQ=DAILY;COUNT=2", "Nowhere/Special", "not an IANA time zone"),
])
def test_a_hostile_rule_is_refused_and_writes_nothing(chat, rule, zone, problem):
    before = all_documents(chat)
    with pytest.raises(InvalidArgument, match=problem):
        start_series(chat, rule, zone, utc(2027, 3, 22), at=utc(2027, 3, 15))
    assert all_documents(chat) == before


def test_recurrence_without_deliver_at_is_refused_by_the_request_model():
    with pytest.raises(ValueError, match="recurrence requires deliverAt"):
        SendMessageRequest.model_validate({"chatId": "c1", "clientMessageId": str(ULID()), "text": "x",
                                           "recurrence": {"rrule": "FREQ=DAILY;COUNT=2", "timeZone": "UTC"}})


# ------------------------------------------------------------ cancel one occurrence, or the series


DAILY_5 = ("FREQ=DAILY;BYHOUR=9;BYMINUTE=0;COUNT=5", "UTC")
T_SENT, T_START = utc(2027, 5, 1), utc(2027, 5, 3)
DAYS = [utc(2027, 5, 3 + n, 9) for n in range(5)]


def cancel(db, scheduled_id: str, occurrence: datetime | None = None):
    return scheduling.cancel(db, "alice", CancelScheduledMessageRequest(
        scheduledId=scheduled_id, occurrenceAt=None if occurrence is None else clock.to_millis(occurrence)))


def test_cancelling_one_occurrence_skips_it_and_the_series_goes_on(chat):
    db = chat
    series = start_series(db, *DAILY_5, T_START, at=T_SENT)
    # A later one (day 3), then the one due next (day 1): the series moves on to day 2.
    assert cancel(db, series.messageId, DAYS[2]).nextOccurrenceAt == clock.to_millis(DAYS[0])
    result = cancel(db, series.messageId, DAYS[0])
    assert (result.status, result.nextOccurrenceAt) == ("CANCELLED", clock.to_millis(DAYS[1]))
    assert cancel(db, series.messageId, DAYS[0]).status == "CANCELLED"  # again: nothing changes
    [listed] = scheduling.list_scheduled(db, "alice").messages
    assert listed.upcoming == [clock.to_millis(d) for d in (DAYS[1], DAYS[3], DAYS[4])]
    assert (listed.deliverAt, listed.occurrencesLeft) == (clock.to_millis(DAYS[1]), 3)

    for day in DAYS:
        scheduling.deliver_due(db, now=day)
    assert [m["createdAt"] for m in messages(db)] == [DAYS[1], DAYS[3], DAYS[4]]
    assert texts(db) == ["standup"] * 3
    assert series_doc(db, series.messageId)["status"] == "DELIVERED"


def test_an_occurrence_delivered_or_not_of_the_series_cannot_be_cancelled(chat):
    db = chat
    series = start_series(db, *DAILY_5, T_START, at=T_SENT)
    scheduling.deliver_due(db, now=DAYS[0])
    with pytest.raises(FailedPrecondition) as delivered:
        cancel(db, series.messageId, DAYS[0])
    assert delivered.value.details["reason"] == "already_delivered"
    with pytest.raises(InvalidArgument, match="not an occurrence"):
        cancel(db, series.messageId, DAYS[1] + timedelta(minutes=1))
    one_off = sending.send_message(db, "alice", SendMessageRequest(
        chatId="c1", clientMessageId=str(ULID.from_datetime(T_SENT)), text="once",
        deliverAt=clock.to_millis(DAYS[1])), now=T_SENT)
    with pytest.raises(InvalidArgument, match="does not recur"):
        cancel(db, one_off.messageId, DAYS[1])


def test_cancelling_the_last_occurrences_one_by_one_ends_the_series(chat):
    db = chat
    series = start_series(db, "FREQ=DAILY;BYHOUR=9;BYMINUTE=0;COUNT=2", "UTC", T_START, at=T_SENT)
    scheduling.deliver_due(db, now=DAYS[0])
    assert cancel(db, series.messageId, DAYS[1]).nextOccurrenceAt is None
    assert series_doc(db, series.messageId)["status"] == "DELIVERED"  # one was delivered, none is left
    untouched = start_series(db, "FREQ=DAILY;BYHOUR=9;BYMINUTE=0;COUNT=1", "UTC", T_START, at=T_SENT,
                             client_id=str(ULID.from_datetime(T_SENT)))
    cancel(db, untouched.messageId, DAYS[0])
    assert series_doc(db, untouched.messageId)["status"] == "CANCELLED"
    assert scheduling.deliver_due(db, now=DAYS[4])["delivered"] == 0
    assert len(messages(db)) == 1


def test_cancelling_the_series_stops_every_occurrence_left(chat):
    db = chat
    series = start_series(db, *DAILY_5, T_START, at=T_SENT)
    scheduling.deliver_due(db, now=DAYS[0])
    assert cancel(db, series.messageId).status == "CANCELLED"
    assert cancel(db, series.messageId).status == "CANCELLED"  # again: nothing changes
    assert cancel(db, series.messageId, DAYS[3]).status == "CANCELLED"  # an occurrence of a cancelled series too
    for day in DAYS[1:]:
        assert scheduling.deliver_due(db, now=day)["delivered"] == 0
    assert len(messages(db)) == 1 and scheduling.list_scheduled(db, "alice").messages == []


def test_a_cancel_between_the_deliverys_read_and_its_commit_wins_and_the_series_goes_on(chat, monkeypatch):
    db = chat
    series = start_series(db, *DAILY_5, T_START, at=T_SENT)
    send_message = sending.send_message
    cancels: list = []

    def with_a_cancel_in_between(db_, sender, request, *, now, admitted):
        def read_then_cancel(batch, message_id):
            admitted.add_writes(batch, message_id)  # reads the series and adds its conditional move on
            if not cancels:
                cancels.append(cancel(db, series.messageId, DAYS[0]).nextOccurrenceAt)
        return send_message(db_, sender, request, now=now, admitted=sending.AdmittedEarlier(
            admitted.priority, read_then_cancel, rate_limited=admitted.rate_limited))

    monkeypatch.setattr(scheduling.sending, "send_message", with_a_cancel_in_between)
    assert scheduling.deliver_due(db, now=DAYS[0]) == {"delivered": 0, "failed": 0, "skipped": 1}
    assert cancels == [clock.to_millis(DAYS[1])]
    assert messages(db) == [] and texts(db) == []
    monkeypatch.setattr(scheduling.sending, "send_message", send_message)
    assert scheduling.deliver_due(db, now=DAYS[1])["delivered"] == 1
    assert [m["createdAt"] for m in messages(db)] == [DAYS[1]]


def test_a_racing_cancel_of_the_series_and_a_delivery_leave_exactly_one_outcome(chat):
    db = chat
    outcomes = set()
    for round_ in range(4):
        series = start_series(db, *DAILY_5, T_START, at=T_SENT, text=f"race {round_}",
                              client_id=str(ULID.from_datetime(T_SENT)))
        _, cancelled = at_once(lambda: scheduling.deliver_due(db, now=DAYS[0]),
                               lambda scheduled_id=series.messageId: cancel(db, scheduled_id).status)
        stored = series_doc(db, series.messageId)
        sent = texts(db).count(f"race {round_}")
        assert cancelled == "CANCELLED" and stored["status"] == "CANCELLED"
        assert sent == stored.get("deliveredCount", 0) <= 1  # delivered before the cancel, or never
        outcomes.add(sent)
        assert scheduling.deliver_due(db, now=DAYS[4])["delivered"] == 0
        assert texts(db).count(f"race {round_}") == sent
    print(f"occurrences delivered before the cancel, over 4 races: {sorted(outcomes)}")


# ------------------------------------------------------------ racing processors, a failed commit, a replay


def test_racing_processors_deliver_each_occurrence_once(chat):
    db = chat
    start_series(db, *DAILY_5, T_START, at=T_SENT)
    for day in DAYS[:3]:
        at_once(*[lambda day=day: scheduling.deliver_due(db, now=day)] * 3)
    assert [m["createdAt"] for m in messages(db)] == DAYS[:3]
    assert texts(db) == ["standup"] * 3


def test_a_failed_commit_sends_nothing_and_loses_nothing_and_a_replay_sends_nothing_twice(chat, monkeypatch):
    db = chat
    series = start_series(db, *DAILY_5, T_START, at=T_SENT)
    armed, window = series_doc(db, series.messageId), db.document("rateLimits/alice").get().to_dict()
    send_message = sending.send_message

    def crashing_commit(db_, sender, request, *, now, admitted):
        def add_then_fail(batch, message_id):
            admitted.add_writes(batch, message_id)

            def lost(*args, **kwargs):
                raise gexc.ServiceUnavailable("the instance died before its commit landed")
            batch.commit = lost
        return send_message(db_, sender, request, now=now, admitted=sending.AdmittedEarlier(
            admitted.priority, add_then_fail, rate_limited=admitted.rate_limited))

    monkeypatch.setattr(scheduling.sending, "send_message", crashing_commit)
    assert scheduling.deliver_due(db, now=DAYS[0]) == {"delivered": 0, "failed": 0, "skipped": 1}
    # Nothing of it written: no message, the occurrence still due with its key, no rate-window entry.
    assert messages(db) == [] and series_doc(db, series.messageId) == armed
    assert db.document("rateLimits/alice").get().to_dict() == window
    monkeypatch.setattr(scheduling.sending, "send_message", send_message)

    # The next run, a minute later: the occurrence once, the next one armed in the same commit.
    stale = store.Read.of(db.document(f"scheduledMessages/alice_{series.messageId}").get())
    late = DAYS[0] + timedelta(minutes=1)
    assert scheduling.deliver_due(db, now=late)["delivered"] == 1
    moved_on = series_doc(db, series.messageId)
    assert (moved_on["deliverAt"], moved_on["deliveredCount"]) == (DAYS[1], 1)
    assert moved_on["deliveryKey"] != armed["deliveryKey"]

    # A replay of that delivery (a processor that read the series before it, a duplicated run):
    # it finds the message's record, or the series moved on, and sends nothing.
    scheduling.deliver(db, stale, now=late + timedelta(seconds=5))
    assert len(messages(db)) == 1 and texts(db) == ["standup"]
    assert series_doc(db, series.messageId) == moved_on
    assert scheduling.deliver_due(db, now=DAYS[1])["delivered"] == 1
    assert [m["createdAt"] for m in messages(db)] == [late, DAYS[1]]


# ------------------------------------------------------------ the rate limit, and a sender who can no longer send


def test_each_occurrence_counts_against_the_rate_limit_when_it_is_delivered(chat):
    db = chat
    start_series(db, *DAILY_5, T_START, at=T_SENT)
    settings.set_rate_limit(db, 1, actor="test")
    try:
        day = DAYS[0]
        live = sending.send_message(db, "alice", SendMessageRequest(
            chatId="c1", clientMessageId=str(ULID.from_datetime(day)), text="live"), now=day - timedelta(seconds=10))
        assert live.status == "QUEUED"
        # The window is full: the occurrence waits for the next run, nothing is sent or stopped.
        assert scheduling.deliver_due(db, now=day) == {"delivered": 0, "failed": 0, "skipped": 1}
        assert texts(db) == ["live"]
        assert scheduling.deliver_due(db, now=day + timedelta(minutes=1))["delivered"] == 1
        assert texts(db) == ["live", "standup"]
        window = db.document("rateLimits/alice").get().to_dict()
        assert [s["at"] for s in window["sends"]][-1] == day + timedelta(minutes=1)
        # ... and the occurrence now fills the window: a live send is refused.
        with pytest.raises(ResourceExhausted):
            sending.send_message(db, "alice", SendMessageRequest(
                chatId="c1", clientMessageId=str(ULID.from_datetime(day)), text="too soon"),
                now=day + timedelta(minutes=1, seconds=5))
    finally:  # the limit lives in config/engine and each instance's cache: leave neither behind
        settings.set_rate_limit(db, 60, actor="test")
        settings.forget()


@pytest.mark.parametrize(("change", "reason"), [
    (lambda db: make_user(db, "bob", blocked=["alice"]), "blocked"),
    (lambda db: make_chat(db, "c1", ["bob", "carol"]), None),
    (lambda db: make_user(db, "alice", adult=False), "age_verification_required"),
], ids=["blocked", "left the chat", "lost age verification"])
def test_a_sender_who_can_no_longer_send_there_stops_the_series_visibly(chat, change, reason):
    db = chat
    series = start_series(db, *DAILY_5, T_START, at=T_SENT)
    assert scheduling.deliver_due(db, now=DAYS[0])["delivered"] == 1
    change(db)
    assert scheduling.deliver_due(db, now=DAYS[1]) == {"delivered": 0, "failed": 1, "skipped": 0}
    stored = series_doc(db, series.messageId)
    assert stored["status"] == "STOPPED" and stored["reason"] == (reason or stored["reason"]) and stored["reason"]
    [listed] = scheduling.list_scheduled(db, "alice").messages
    assert (listed.status, listed.reason, listed.nextOccurrenceAt, listed.occurrencesDelivered) == (
        "STOPPED", stored["reason"], None, 1)
    for day in DAYS[2:]:
        assert scheduling.deliver_due(db, now=day)["delivered"] == 0
    assert texts(db) == ["standup"]
    assert cancel(db, series.messageId).status == "CANCELLED"  # dismissed: no longer listed
    assert scheduling.list_scheduled(db, "alice").messages == []


def test_a_one_off_scheduled_message_is_stored_and_listed_as_before(chat):
    db = chat
    one_off = sending.send_message(db, "alice", SendMessageRequest(
        chatId="c1", clientMessageId=str(ULID.from_datetime(T_SENT)), text="once",
        deliverAt=clock.to_millis(DAYS[0])), now=T_SENT)
    stored = db.document(f"scheduledMessages/alice_{one_off.messageId}").get().to_dict()
    assert not {"rrule", "timeZone", "occurrences", "cancelledOccurrences", "deliveredCount"} & stored.keys()
    [listed] = scheduling.list_scheduled(db, "alice").messages
    assert (listed.rrule, listed.nextOccurrenceAt, listed.upcoming, listed.status) == (None, None, [], "SCHEDULED")
    # Its rate window entry was written when it was accepted; its delivery writes none.
    sends = len(db.document("rateLimits/alice").get().to_dict()["sends"])
    assert scheduling.deliver_due(db, now=DAYS[0])["delivered"] == 1
    assert len(db.document("rateLimits/alice").get().to_dict()["sends"]) == sends


def test_occurrences_missed_while_the_processor_was_down_go_late_once_each_in_order(chat):
    db = chat
    start_series(db, *DAILY_5, T_START, at=T_SENT)
    back = DAYS[2] + timedelta(hours=3)  # the processor ran last before the first: three are due
    runs = [scheduling.deliver_due(db, now=back + timedelta(minutes=n))["delivered"] for n in range(4)]
    assert runs == [1, 1, 1, 0]  # one a run, none skipped, none twice
    assert [m["createdAt"] for m in messages(db)] == [back, back + timedelta(minutes=1), back + timedelta(minutes=2)]
    [listed] = scheduling.list_scheduled(db, "alice").messages
    assert (listed.nextOccurrenceAt, listed.occurrencesDelivered) == (clock.to_millis(DAYS[3]), 3)
    assert scheduling.deliver_due(db, now=DAYS[3])["delivered"] == 1
