"""Sync and delivery helpers shared by the sync tests: pages as an app reads them, entries
delivered by the processor until none waits."""

from __future__ import annotations

from datetime import timedelta

from pack427 import constants
from pack427.delivering import backlog
from pack427.delivering.notifier import EmulatorNotifier
from pack427.models import SyncMessagesRequest
from pack427.reading import sync
from pack427.workers import processor
from support.entries import T0, enqueue


def sync_page(db, uid: str, device: str, cursor: str | None = None, **kw):
    return sync.sync_messages(db, uid, SyncMessagesRequest(deviceId=device, cursor=cursor, **kw))


def sync_all(db, uid: str, device: str, cursor: str | None = None) -> tuple[list[dict], str]:
    """Pages until hasMore is false, as an app does; returns every message received and the last cursor."""
    received: list[dict] = []
    while True:
        page = sync_page(db, uid, device, cursor)
        assert len(page.messages) <= 100
        received += [m.model_dump() for m in page.messages]
        cursor = page.cursor
        if not page.hasMore:
            return received, cursor


def deliver_all(db, *entries, now=None):
    """Enqueue `entries` and process until every one is delivered.

    An attempt can fail on a busy emulator (a deadline, the inbox head busy for
    50 rounds): the engine records it and retries after its back-off, so the
    processor is run again an hour later until nothing waits (the failures are printed).
    """
    enqueue(db, *entries)
    at = now or T0 + timedelta(hours=1)
    for region in {e.target_region for e in entries}:
        for _ in range(constants.MAX_ATTEMPTS):
            while processor.process_batch(db, region, EmulatorNotifier(), now=at).found:
                pass
            if not backlog.depth(db, region):
                break
            waiting = [e.entry for e in backlog.due_entries(db, region, now=at + timedelta(days=1), limit=10)]
            print(f"deliver_all: {len(waiting)} attempts failed, retried later: {[e.last_error for e in waiting]}")
            at += timedelta(hours=1)
