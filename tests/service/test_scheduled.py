"""The scheduled functions of functions/main.py, called as Cloud Scheduler calls them:
an HTTP request to the deployed wrapper, which must answer 200 and do its job."""

from __future__ import annotations

import os
from datetime import timedelta

import flask
import pytest
from support.chatcore import inbox, make_chat, make_user
from support.entries import enqueue, load, make_entry
from ulid import ULID

os.environ.setdefault("GCLOUD_PROJECT", "demo-pack427")

import main  # noqa: E402

from pack427 import clock, constants, delivery, paths, sending, typing_state  # noqa: E402
from pack427 import db as service_db  # noqa: E402
from pack427.models import (  # noqa: E402
    QueueStatus,
    Region,
    SendMessageRequest,
    UpdateTypingStateRequest,
)
from pack427.notifier import EmulatorNotifier  # noqa: E402

app = flask.Flask(__name__)


def run_schedule(function) -> int:
    """Call a scheduled function's wrapper as Cloud Scheduler does; its HTTP status."""
    headers = {"X-CloudScheduler-JobName": function.__name__,
               "X-CloudScheduler-ScheduleTime": clock.now().isoformat().replace("+00:00", "Z")}
    with app.test_request_context("/", method="POST", headers=headers):
        return function(flask.request).status_code


@pytest.fixture
def project(db, monkeypatch):
    monkeypatch.setattr(service_db, "client", lambda: db)
    return db


def test_the_processor_delivers_what_is_due_and_resumes_a_stalled_fan_out(project, monkeypatch):
    db = project
    now = clock.now()
    due = make_entry("bob", created=now - timedelta(seconds=5), chat="queued")
    enqueue(db, due)
    members = [f"m{n}" for n in range(4)]
    for uid in members:
        make_user(db, uid)
    make_chat(db, "big", members)
    monkeypatch.setattr(constants, "INLINE_MAX_RECIPIENTS", 2)
    # A large group's message whose fan-out worker died two minutes ago, before its first chunk.
    sent = sending.send_message(db, "m0", SendMessageRequest(chatId="big", clientMessageId=str(ULID()), text="hi"),
                                now=now - timedelta(minutes=2))

    assert run_schedule(main.pack427_processMessageQueue) == 200

    assert load(db, due).entry.status is QueueStatus.DELIVERED
    assert [e["messageId"] for e in inbox(db, "bob")] == [due.message_id]
    assert all([e["messageId"] for e in inbox(db, uid)] == [sent.messageId] for uid in members[1:])


def test_the_daily_cleanup_deletes_delivered_entries_older_than_7_days_only(project):
    db = project
    now = clock.now()
    old, recent, dead = (make_entry(uid, created=now - timedelta(days=days), chat=uid)
                         for uid, days in (("old", 8), ("recent", 6), ("dead", 9)))
    enqueue(db, old, recent, dead)
    for entry in (old, recent):
        delivery.deliver(db, load(db, entry), EmulatorNotifier(), actor="test", now=entry.created_at)
    dropped = dead.model_copy(update={"status": QueueStatus.DROPPED})
    paths.queue_entry(db, dropped.target_region, dropped.id).set(dropped.to_firestore())

    assert run_schedule(main.pack427_cleanupMessages) == 200

    assert load(db, old) is None
    assert load(db, recent).entry.status is QueueStatus.DELIVERED
    assert load(db, dead).entry.status is QueueStatus.DROPPED  # a dead letter waits for an operator


def test_the_stats_export_stores_a_snapshot_per_region(project):
    assert run_schedule(main.pack427_exportQueueStats) == 200
    assert all(len(list(paths.queue_stats(project, region).stream())) == 1 for region in Region)


def test_the_typing_cleanup_removes_expired_events_only(project):
    db = project
    make_user(db, "alice")
    make_user(db, "bob")
    make_chat(db, "c1", ["alice", "bob"])
    make_chat(db, "c2", ["alice", "bob"])
    typing = UpdateTypingStateRequest(chatId="c1", isTyping=True)
    typing_state.update_typing_state(db, "alice", typing, now=clock.now() - timedelta(minutes=1))
    typing_state.update_typing_state(db, "bob", typing.model_copy(update={"chatId": "c2"}))

    assert run_schedule(main.pack427_cleanupTypingEvents) == 200

    left = [s.id for s in paths.typing_events(db, Region.EU).stream()]
    assert left == ["c2_bob"]
