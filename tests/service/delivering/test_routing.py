"""Region routing: a router decides each user's home region; moving a user strands nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from support.chatcore import inbox, make_chat, make_user, queue_entries
from ulid import ULID

from pack427 import constants, paths, routing
from pack427.accepting import sending
from pack427.delivering.notifier import EmulatorNotifier
from pack427.models import Region, RegisterDeviceRequest, SendMessageRequest, SyncMessagesRequest
from pack427.reading import sync
from pack427.workers import processor

T0 = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)


class Table:
    """A router that answers from a table of its own (the profiles say EU), else the profile."""

    name = "table"

    def __init__(self, homes: dict[str, Region], *, broken: bool = False):
        self.homes, self.broken = homes, broken

    def home_region(self, uid, profile):
        if self.broken:
            raise TimeoutError("routing service down")
        return self.homes.get(uid) or routing.ProfileRegion().home_region(uid, profile)


@pytest.fixture
def router():
    table = Table({})
    previous = routing.install(table)
    yield table
    routing.install(previous)


def send(db, uid, text, at):
    request = SendMessageRequest(chatId="c1", clientMessageId=str(ULID()), text=text)
    return sending.send_message(db, uid, request, now=at).messageId


def test_the_router_decides_where_a_users_entries_and_devices_live(db, router):
    make_user(db, "alice", region="EU")
    make_user(db, "bob", region="EU", online=False, tokens=["tok"])
    make_chat(db, "c1", ["alice", "bob"])
    router.homes["bob"] = Region.APAC

    message = send(db, "alice", "hi", T0)

    [entry] = inbox(db, "bob")
    assert entry["region"] == "APAC"
    [push] = queue_entries(db)
    assert push["_path"] == f"regions/APAC/messageQueue/{message}_bob" and push["region"] == "EU"
    assert sync.register_device(db, "bob", RegisterDeviceRequest(deviceId="p", platform="ios", appVersion="1")).region == "APAC"


def test_moving_a_user_keeps_their_undelivered_messages_and_their_devices_positions(db, router, monkeypatch):
    monkeypatch.setattr(constants, "INLINE_ATTEMPTS", 0)  # queued, so that some wait when bob moves
    make_user(db, "alice", region="EU")
    make_user(db, "bob", region="EU")
    make_chat(db, "c1", ["alice", "bob"])
    first = send(db, "alice", "one", T0)
    processor.process_batch(db, Region.EU, EmulatorNotifier(), now=T0 + timedelta(seconds=1))
    page = sync.sync_messages(db, "bob", SyncMessagesRequest(deviceId="phone"))
    assert [m.messageId for m in page.messages] == [first]
    waiting = [send(db, "alice", f"waits {n}", T0 + timedelta(seconds=2 + n)) for n in range(2)]

    router.homes["bob"] = Region.US  # the router moves bob while two messages wait in the EU queue
    after = send(db, "alice", "after the move", T0 + timedelta(seconds=10))
    assert {e["_path"].split("/")[1] for e in queue_entries(db) if e["messageId"] in waiting} == {"EU"}
    assert [e["_path"].split("/")[1] for e in queue_entries(db) if e["messageId"] == after] == ["US"]

    # The US processor alone cannot overtake them (per-chat order); each region's processor runs.
    for region in (Region.US, Region.EU, Region.US):
        processor.process_batch(db, region, EmulatorNotifier(), now=T0 + timedelta(seconds=20))
    assert [e["messageId"] for e in inbox(db, "bob")] == [first, *waiting, after]

    # The device resumes from its position; its state moves to the new home with it.
    again = sync.sync_messages(db, "bob", SyncMessagesRequest(deviceId="phone", cursor=page.cursor))
    assert [m.messageId for m in again.messages] == [*waiting, after]
    assert not paths.device_sync_state(db, Region.EU, "bob", "phone").get().exists
    assert paths.device_sync_state(db, Region.US, "bob", "phone").get().get("cursor") == again.cursor


def test_a_failing_router_falls_back_to_the_profile(db):
    make_user(db, "alice", region="EU")
    make_user(db, "bob", region="US")
    make_chat(db, "c1", ["alice", "bob"])
    previous = routing.install(Table({}, broken=True))
    try:
        send(db, "alice", "still delivered", T0)
    finally:
        routing.install(previous)
    [entry] = inbox(db, "bob")
    assert entry["region"] == "US"
