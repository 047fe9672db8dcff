"""Operator commands against the emulator: requeue, resync, history, stats, recalc, process."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from support.chatcore import make_chat, make_user
from support.emulator import UNIT_PROJECT
from support.entries import T0, enqueue, load, make_entry
from ulid import ULID

from pack427 import audit, clock, constants, inbox, paths, settings
from pack427.accepting import sending
from pack427.delivering import delivery, queue
from pack427.delivering.notifier import EmulatorNotifier
from pack427.models import QueueStatus, Region, SendMessageRequest
from pack427.operating import cli, heatmap, metrics, ops


@pytest.fixture(autouse=True)
def fresh_settings():
    settings.forget()
    yield
    settings.forget()


def broken_inbox(monkeypatch):
    """Make every delivery fail before the message reaches the inbox."""

    def fail(*args, **kwargs):
        raise RuntimeError("injected: inbox unavailable")

    monkeypatch.setattr(inbox, "place", fail)


def drop(db, entry, monkeypatch, *, start=T0):
    """Fail `entry` MAX_ATTEMPTS times: a dead letter that never reached the inbox."""
    with monkeypatch.context() as m:
        broken_inbox(m)
        for attempt in range(5):
            delivery.deliver(db, load(db, entry), EmulatorNotifier(), actor="test", now=start + timedelta(seconds=attempt))
    assert load(db, entry).entry.status is QueueStatus.DROPPED


def test_requeue_dropped_puts_dead_letters_back_marks_placed_ones_delivered_and_is_idempotent(db, monkeypatch):
    make_chat(db, "c1", ["alice", "bob"])
    lost = make_entry("bob", chat="c1")
    pushed = make_entry("carol", chat="c2", tokens=["fail-always"])  # placed in the inbox, its push kept failing
    elsewhere = make_entry("dave", chat="c3", region=Region.EU)
    enqueue(db, lost, pushed, elsewhere)
    drop(db, lost, monkeypatch)
    drop(db, elsewhere, monkeypatch)
    for attempt in range(5):
        delivery.deliver(db, load(db, pushed), EmulatorNotifier(), actor="test", now=T0 + timedelta(seconds=attempt))
    assert load(db, pushed).entry.status is QueueStatus.DROPPED
    now = T0 + timedelta(minutes=10)

    report = ops.requeue_dropped(db, regions=(Region.US,), now=now)

    assert (report.requeued, report.markedDelivered) == ([lost.id], [pushed.id])
    again = load(db, lost).entry
    assert (again.status, again.attempts, again.requeues, again.awaiting_inbox, again.next_attempt_at) == (
        QueueStatus.PENDING, 0, 1, True, now)
    assert load(db, pushed).entry.status is QueueStatus.DELIVERED
    assert load(db, elsewhere).entry.status is QueueStatus.DROPPED  # another region: untouched
    # The requeued message waits for its inbox again: the chat's next sends must queue behind it.
    assert db.document("chats/c1").get().get("deliveryQueued") is True
    assert ops.requeue_dropped(db, regions=(Region.US,), now=now).model_dump() == {
        "requeued": [], "markedDelivered": []}

    # A new round of failures keeps its own audit events, then the delivery lands once.
    with monkeypatch.context() as m:
        broken_inbox(m)
        assert delivery.deliver(db, load(db, lost), EmulatorNotifier(), actor="test", now=now) is delivery.Outcome.FAILED
    assert delivery.deliver(db, load(db, lost), EmulatorNotifier(), actor="test", now=now) is delivery.Outcome.DELIVERED
    actions = [e.action for e in audit.history(db, lost.chat_id, lost.message_id)]
    assert actions == ["ENQUEUED", "FAILED", "FAILED", "FAILED", "FAILED", "DROPPED", "REQUEUED", "FAILED", "DELIVERED"]
    assert len(list(paths.inbox(db, "bob").stream())) == 1
    assert len(list(paths.inbox(db, "carol").stream())) == 1


def send(db, sender, chat, text, now):
    return sending.send_message(
        db, sender, SendMessageRequest(chatId=chat, clientMessageId=str(ULID.from_datetime(now)), text=text), now=now,
    ).messageId


def test_resync_brings_every_message_of_the_chat_into_the_inbox_in_order(db, monkeypatch):
    monkeypatch.setattr(constants, "INLINE_ATTEMPTS", 0)  # through the queue, where they can fail
    make_user(db, "alice", region="US")
    make_user(db, "bob", region="US")
    make_chat(db, "c1", ["alice", "bob"])
    ids = [send(db, "alice", "c1", f"m{i}", T0 + timedelta(seconds=i)) for i in range(4)]
    own = send(db, "bob", "c1", "mine", T0 + timedelta(seconds=5))
    entries = {m: queue.load(db, Region.US, f"{m}_bob") for m in ids}
    delivery.deliver(db, entries[ids[0]], EmulatorNotifier(), actor="test", now=T0)
    drop(db, entries[ids[1]].entry, monkeypatch)
    with monkeypatch.context() as m:  # one failed attempt: retried in 2 s (but 1 h later in real life)
        broken_inbox(m)
        delivery.deliver(db, queue.load(db, Region.US, f"{ids[2]}_bob"), EmulatorNotifier(), actor="test", now=T0)
    queue.defer(db, queue.load(db, Region.US, f"{ids[2]}_bob"), until=T0 + timedelta(hours=1), now=T0)
    lines = []

    report = ops.resync(db, "bob", "c1", EmulatorNotifier(), now=T0 + timedelta(minutes=1), progress=lines.append)

    assert (report.checked, report.missing, report.requeued, report.retried) == (4, 3, [ids[1]], [ids[2]])
    assert (report.stillMissing, report.unqueued) == ([], [])
    placed = sorted((e.seq, e.message_id) for e in inbox.after(db, "bob", 0, limit=100))
    assert [m for _, m in placed] == ids and own not in ids  # each once, in chat order
    assert lines and "missing" in lines[0]
    assert ops.resync(db, "bob", "c1", EmulatorNotifier()).missing == 0


def run_ops(capsys, *args) -> str:
    capsys.readouterr()
    assert cli.main(["--project", UNIT_PROJECT, *args]) == 0
    return capsys.readouterr().out


def test_cli_history_stats_recalc_and_process(db, capsys, monkeypatch):
    entry = make_entry("bob", chat="c1", created=T0)
    enqueue(db, entry)
    drop(db, entry, monkeypatch)
    out = run_ops(capsys, "history", entry.chat_id, entry.message_id)
    assert [line.split()[3] for line in out.splitlines()[1:]] == ["ENQUEUED", *["FAILED"] * 4, "DROPPED"]
    assert "injected: inbox unavailable" in out

    out = run_ops(capsys, "stats")
    us = next(line for line in out.splitlines() if line.startswith("US "))
    assert us.split()[1:5] == ["0", "0", "0", "1"] and "ERROR DROPPED_MESSAGES" in us

    db.document("users/bob/inboxHead/current").set({"seq": 0, "chats": {"c1": {"unread": 7}}})
    make_chat(db, "c1", ["alice", "bob"])
    result = json.loads(_json_tail(run_ops(capsys, "recalc-unread", "bob")))
    assert (result["recalculated"], result["changes"]) == (1, [{"chatId": "c1", "before": 7, "after": 0}])

    enqueue(db, *[make_entry(f"u{i}", chat=f"p{i}") for i in range(3)])
    out = run_ops(capsys, "process")
    assert "US: depth 3 (normal), batches 2, delivered 3" in out
    assert "waiting now: EU 0, US 0, APAC 0" in out


def _json_tail(out: str) -> str:
    """The JSON object a command printed last (log lines may come before it)."""
    return out[out.index("{\n"):]


def test_cli_heatmap_renders_the_stored_statistics_as_a_png(db, capsys, tmp_path):
    now = clock.now()
    entries = [make_entry("bob", chat=f"h{i}", created=now - timedelta(seconds=30 + i)) for i in range(4)]
    enqueue(db, *entries)
    for entry in entries:  # delivered 250 ms after it was sent
        delivery.deliver(db, load(db, entry), EmulatorNotifier(), actor="test",
                         now=entry.created_at + timedelta(milliseconds=250))
    metrics.export_queue_stats(db, now=now)
    out = tmp_path / "heat.png"

    printed = run_ops(capsys, "heatmap", "--days", "1", "--out", str(out))

    assert f"{out}: 3 stored snapshots" in printed  # one per region
    import matplotlib.image
    image = matplotlib.image.imread(out)
    assert image.shape[0] > 300 and image.shape[1] > 1000  # a real PNG: three rows of two heatmaps
    cell = heatmap.grids(heatmap.load(db, now - timedelta(days=1)))[Region.US]["p50"][now.weekday()][now.hour]
    assert cell == 250


def test_set_expiry_gives_what_was_written_before_the_ttl_policies_their_expiry_once(db, capsys):
    """After an upgrade from the cleanup functions: delivered entries and idempotency records
    written without `expiresAt` would never be deleted by TTL; `scripts/ops set-expiry` dates them."""
    old = make_entry("bob", chat="c1", created=T0)
    waiting = make_entry("carol", chat="c1", created=T0)
    enqueue(db, old, waiting)
    delivery.deliver(db, load(db, old), EmulatorNotifier(), actor="test", now=T0)
    entry_ref = paths.queue_entry(db, old.target_region, old.id)
    entry_ref.update({"expiresAt": None})  # as an entry delivered before the TTL field existed
    records = paths.idempotency_keys(db)
    records.document("alice_legacy").set({"messageId": "m1", "chatId": "c1", "senderId": "alice",
                                          "payloadHash": "h", "createdAt": T0})
    records.document("alice_scheduled").set({"messageId": "m2", "chatId": "c1", "senderId": "alice",
                                             "payloadHash": "h", "scheduled": True, "createdAt": T0})
    records.document("alice_new").set({"messageId": "m3", "chatId": "c1", "senderId": "alice",
                                       "payloadHash": "h", "createdAt": T0, "expiresAt": T0})
    records.document("system_weekly").set({"messageId": "m4", "chatId": "n", "senderId": "system",
                                           "payloadHash": "h", "createdAt": T0})

    out = run_ops(capsys, "set-expiry")
    assert json.loads(out.splitlines()[-1]) == {"messageQueue": 1, "idempotencyKeys": 2}
    retention = timedelta(days=constants.IDEMPOTENCY_RETENTION_DAYS)
    assert entry_ref.get().get("expiresAt") == T0 + timedelta(days=constants.DELIVERED_RETENTION_DAYS)
    assert records.document("alice_legacy").get().get("expiresAt") == T0 + retention
    assert records.document("alice_scheduled").get().get("expiresAt") == (
        T0 + timedelta(days=constants.MAX_SCHEDULE_DAYS) + retention)
    assert records.document("alice_new").get().get("expiresAt") == T0  # had one: left alone
    assert records.document("system_weekly").get().to_dict().get("expiresAt") is None  # a nudge's key is for good
    assert load(db, waiting).entry.expires_at is None  # not delivered: no expiry

    assert ops.set_expiry(db) == {"messageQueue": 0, "idempotencyKeys": 0}  # a second run changes nothing
