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

from pack427 import clock, constants, paths  # noqa: E402
from pack427 import db as service_db  # noqa: E402
from pack427.accepting import sending  # noqa: E402
from pack427.models import QueueStatus, Region, SendMessageRequest

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


def test_the_stats_export_stores_a_snapshot_per_region(project):
    assert run_schedule(main.pack427_exportQueueStats) == 200
    assert all(len(list(paths.queue_stats(project, region).stream())) == 1 for region in Region)
