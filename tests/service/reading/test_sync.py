"""Offline sync: every device gets every message, once, in per-chat order, whatever the timing."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from google.cloud import firestore
from support.chatcore import all_documents, make_chat, make_user
from support.entries import T0, enqueue, load, make_entry
from support.syncing import deliver_all, sync_all, sync_page
from ulid import ULID

from pack427 import inbox, paths
from pack427.accepting import sending
from pack427.delivering import delivery
from pack427.delivering.notifier import EmulatorNotifier
from pack427.errors import InvalidArgument, NotFound, PermissionDenied
from pack427.models import (
    AckMessagesRequest,
    QueueStatus,
    Region,
    RegisterDeviceRequest,
    ResyncChatRequest,
    SendMessageRequest,
)
from pack427.reading import cursors, sync
from pack427.workers import processor


def assert_once_in_chat_order(received: list[dict], expected_ids: set[str]) -> None:
    ids = [m["messageId"] for m in received]
    duplicates = [i for i, n in Counter(ids).items() if n > 1]
    assert not duplicates, f"{len(duplicates)} messages received twice"
    assert set(ids) == expected_ids, f"missing {len(expected_ids - set(ids))}, unexpected {len(set(ids) - expected_ids)}"
    by_chat: dict[str, list[str]] = {}
    for m in received:
        by_chat.setdefault(m["chatId"], []).append(m["messageId"])
    for chat, chat_ids in by_chat.items():
        assert chat_ids == sorted(chat_ids), f"chat {chat} received out of order"


@pytest.fixture
def bob(db):
    make_user(db, "bob", region="US")
    make_user(db, "alice", region="EU", name="Alice")
    return db


# ------------------------------------------------------------ registration


def test_register_creates_state_in_home_region_and_reregistering_keeps_position(bob):
    db = bob
    result = sync.register_device(db, "bob", RegisterDeviceRequest(deviceId="phone", platform="ios", appVersion="1.0"))
    assert result.region == "US"
    deliver_all(db, make_entry("bob"))
    first = sync_page(db, "bob", "phone")
    ref = paths.device_sync_state(db, Region.US, "bob", "phone")
    stored = ref.get().to_dict()
    assert stored["cursor"] == first.cursor and stored["platform"] == "ios" and stored["lastRegion"] == "US"
    assert stored["lastSyncDurationMs"] >= 0 and stored["lastSyncAt"] is not None

    sync.register_device(db, "bob", RegisterDeviceRequest(deviceId="phone", platform="ios", appVersion="1.1"))
    again = ref.get().to_dict()
    assert again["cursor"] == first.cursor and again["appVersion"] == "1.1"
    assert again["registeredAt"] == stored["registeredAt"]
    # The stored position is where a cursor-less sync resumes: nothing new.
    assert sync_page(db, "bob", "phone").messages == []


def test_a_user_who_moved_region_keeps_the_device_position_and_gets_the_rest(bob):
    db = bob
    sync.register_device(db, "bob", RegisterDeviceRequest(deviceId="phone", platform="android", appVersion="2"))
    before = make_entry("bob", region=Region.US, created=T0)
    deliver_all(db, before)
    received, _ = sync_all(db, "bob", "phone")
    assert [m["messageId"] for m in received] == [before.message_id]

    make_user(db, "bob", region="EU")  # the chat core moves bob to the EU
    after = make_entry("bob", region=Region.EU, created=T0 + timedelta(seconds=1))
    deliver_all(db, after)
    result = sync.register_device(db, "bob", RegisterDeviceRequest(deviceId="phone", platform="android", appVersion="2"))
    assert result.region == "EU"
    assert not paths.device_sync_state(db, Region.US, "bob", "phone").get().exists
    moved = paths.device_sync_state(db, Region.EU, "bob", "phone").get().to_dict()
    assert moved["lastRegion"] == "EU"
    page = sync_page(db, "bob", "phone")  # no cursor: the moved state's position
    assert [m.messageId for m in page.messages] == [after.message_id]


def test_a_sync_with_a_cursor_moves_the_state_of_a_user_who_moved_region(bob):
    db = bob
    deliver_all(db, make_entry("bob", region=Region.US, created=T0))
    page = sync_page(db, "bob", "phone")
    assert paths.device_sync_state(db, Region.US, "bob", "phone").get().exists
    # Where the user's home is unchanged, the state is updated in place (the cursor says where).
    page = sync_page(db, "bob", "phone", page.cursor)
    registered = paths.device_sync_state(db, Region.US, "bob", "phone").get().get("registeredAt")

    make_user(db, "bob", region="APAC")
    after = make_entry("bob", region=Region.APAC, created=T0 + timedelta(seconds=1))
    deliver_all(db, after)
    page = sync_page(db, "bob", "phone", page.cursor)
    assert [m.messageId for m in page.messages] == [after.message_id]
    assert not paths.device_sync_state(db, Region.US, "bob", "phone").get().exists
    moved = paths.device_sync_state(db, Region.APAC, "bob", "phone").get().to_dict()
    assert (moved["cursor"], moved["lastRegion"], moved["registeredAt"]) == (page.cursor, "APAC", registered)
    # Another device's cursor says nothing of this device's state: it is looked up.
    sync_page(db, "bob", "tablet", page.cursor)
    assert paths.device_sync_state(db, Region.APAC, "bob", "tablet").get().exists


# ------------------------------------------------------------------ paging


def test_pages_of_100_with_has_more_and_everything_an_app_renders(bob):
    db = bob
    entries = [make_entry("bob", created=T0 + timedelta(milliseconds=i)) for i in range(250)]
    deliver_all(db, *entries)

    pages = []
    cursor = None
    while True:
        page = sync_page(db, "bob", "tablet", cursor)
        pages.append(page)
        cursor = page.cursor
        if not page.hasMore:
            break
    assert [len(p.messages) for p in pages] == [100, 100, 50]
    assert [p.hasMore for p in pages] == [True, True, False]
    first = pages[0].messages[0]
    assert first.messageId == entries[0].message_id and first.chatId == "c1" and first.senderId == "alice"
    assert first.text == "hello" and first.contentRef == entries[0].content_ref
    assert first.createdAt == round(T0.timestamp() * 1000) and first.deliveredAt is not None
    # Nothing new: the same cursor comes back, and so does an empty page.
    empty = sync_page(db, "bob", "tablet", cursor)
    assert empty.messages == [] and not empty.hasMore and empty.cursor == cursor


def test_replaying_a_page_request_returns_the_same_page(bob):
    db = bob
    deliver_all(db, *[make_entry("bob", created=T0 + timedelta(milliseconds=i)) for i in range(150)])
    first = sync_page(db, "bob", "phone")
    second = sync_page(db, "bob", "phone", first.cursor)
    # The reply was lost: the client asks again with the cursor it has.
    assert sync_page(db, "bob", "phone", first.cursor) == second


def test_a_sync_without_a_cursor_whose_answer_was_lost_is_served_again_on_its_retry(bob):
    db = bob
    deliver_all(db, *[make_entry("bob", created=T0 + timedelta(milliseconds=i)) for i in range(150)])
    first = sync_page(db, "bob", "phone")
    assert first.hasMore and len(first.messages) == 100
    # Without a syncId, a request without a cursor starts after the last page served: a device
    # that lost that answer and asked again would skip it (the fault run found 2 such devices).
    assert len(sync_page(db, "bob", "phone").messages) == 50
    lost = sync_page(db, "bob", "tablet", syncId="s-1")
    # The answer was lost; the state moved past the page. The retry carries the same syncId.
    retried = sync_page(db, "bob", "tablet", syncId="s-1")
    assert retried.messages == lost.messages and retried.cursor == lost.cursor
    # A new request (another syncId) continues after the page served, and so does the cursor.
    rest = sync_page(db, "bob", "tablet", syncId="s-2")
    assert [m.messageId for m in rest.messages] == [m.messageId for m in sync_page(db, "bob", "tablet", lost.cursor).messages]
    assert len(rest.messages) == 50 and not rest.hasMore
    received, _ = sync_all(db, "bob", "tablet", lost.cursor)
    everything = {m["messageId"] for m in sync_all(db, "bob", "laptop")[0]}
    assert len(everything) == 150
    assert_once_in_chat_order([m.model_dump() for m in retried.messages] + received, everything)


def test_many_messages_with_the_same_millisecond_are_all_synced(bob):
    db = bob
    # 300 messages in 3 chats, all created and delivered at the same instant.
    entries = [make_entry("bob", created=T0, chat=f"c{i % 3}") for i in range(300)]
    deliver_all(db, *entries, now=T0)
    received, _ = sync_all(db, "bob", "phone")
    assert_once_in_chat_order(received, {e.message_id for e in entries})
    assert {m["deliveredAt"] for m in received} == {round(T0.timestamp() * 1000)}


def test_a_message_delivered_on_its_third_attempt_after_newer_ones_were_synced(bob, monkeypatch):
    db = bob
    late = make_entry("bob", created=T0, chat="c1")
    newer = [make_entry("bob", created=T0 + timedelta(seconds=1 + i), chat="c2") for i in range(5)]
    at = T0 + timedelta(seconds=10)
    add_placement = inbox.add_placement

    def flaky_placement(db_, batch, head, moved, numbered):
        # Placing the late message fails on the first two processor runs (every attempt of a run).
        if late.message_id in {e.message_id for e in numbered} and moved.head.updated_at < at + timedelta(seconds=3):
            raise ConnectionError("inbox unreachable")
        return add_placement(db_, batch, head, moved, numbered)

    monkeypatch.setattr(inbox, "add_placement", flaky_placement)
    enqueue(db, late, *newer)
    processor.process_batch(db, Region.US, EmulatorNotifier(), now=at)
    assert load(db, late).entry.status == "FAILED"
    first, cursor = sync_all(db, "bob", "phone")
    assert [m["messageId"] for m in first] == [e.message_id for e in newer]

    processor.process_batch(db, Region.US, EmulatorNotifier(), now=at + timedelta(seconds=1))  # 2nd attempt fails
    processor.process_batch(db, Region.US, EmulatorNotifier(), now=at + timedelta(seconds=3))  # 3rd succeeds
    stored = load(db, late).entry
    assert (stored.status, stored.attempts) == ("DELIVERED", 3)
    second, _ = sync_all(db, "bob", "phone", cursor)
    assert [m["messageId"] for m in second] == [late.message_id]


def test_a_thousand_missed_messages_page_to_completion_without_gap_or_duplicate(bob):
    db = bob
    # 1,000 messages in 10 chats, delivered by the processor's 32 racing threads.
    entries = [make_entry("bob", created=T0 + timedelta(milliseconds=i // 10), chat=f"c{i % 10}") for i in range(1000)]
    deliver_all(db, *entries)
    seqs = sorted(s.get("seq") for s in paths.inbox(db, "bob").stream())
    assert seqs == list(range(1, 1001))
    received, _ = sync_all(db, "bob", "phone")
    assert_once_in_chat_order(received, {e.message_id for e in entries})


# ------------------------------------------------------- races and devices


def test_devices_syncing_while_messages_are_delivered_each_get_every_message_once(bob):
    db = bob
    batches = [
        [make_entry("bob", created=T0 + timedelta(milliseconds=100 * b + i), chat=f"c{i % 4}") for i in range(40)]
        for b in range(8)
    ]
    delivered = threading.Event()
    errors: list[BaseException] = []

    def deliverer():
        try:
            for batch in batches:
                deliver_all(db, *batch)
        except BaseException as err:  # noqa: BLE001 - reported by the test
            errors.append(err)
        finally:
            delivered.set()

    results: dict[str, list[dict]] = {}

    def device(name: str):
        received: list[dict] = []
        cursor = None
        try:
            while True:
                finished = delivered.is_set()
                page = sync_page(db, "bob", name, cursor)
                received += [m.model_dump() for m in page.messages]
                cursor = page.cursor
                if finished and not page.hasMore:
                    break
        except BaseException as err:  # noqa: BLE001
            errors.append(err)
        results[name] = received

    threads = [threading.Thread(target=deliverer)] + [
        threading.Thread(target=device, args=(name,)) for name in ("phone", "tablet", "web")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    expected = {e.message_id for batch in batches for e in batch}
    for name in ("phone", "tablet", "web"):
        assert_once_in_chat_order(results[name], expected)


def test_concurrent_sends_to_one_chat_get_increasing_ids_in_commit_order(bob):
    db = bob
    make_user(db, "carol", region="APAC")
    make_chat(db, "g", ["alice", "bob", "carol"])
    results: dict[str, list[str]] = {"alice": [], "carol": []}

    def sender(uid: str):
        for _ in range(15):
            request = SendMessageRequest(chatId="g", clientMessageId=str(ULID()), text=f"from {uid}")
            results[uid].append(sending.send_message(db, uid, request, now=T0).messageId)

    threads = [threading.Thread(target=sender, args=(uid,)) for uid in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    # Every send happened "at" the same instant, yet each sender's messages are in send order.
    for ids in results.values():
        assert ids == sorted(ids) and len(set(ids)) == 15
    everything = results["alice"] + results["carol"]
    assert len(set(everything)) == 30
    chat = db.document("chats/g").get().to_dict()
    assert chat["lastMessage"]["messageId"] == max(everything)
    # bob's inbox gets them in id order: the chat's order.
    for region in Region:
        while processor.process_batch(db, region, EmulatorNotifier(), now=T0 + timedelta(seconds=5)).found:
            pass
    received, _ = sync_all(db, "bob", "phone")
    assert_once_in_chat_order(received, set(everything))


# ----------------------------------------------------------------- cursors


def test_a_cursor_of_another_user_a_tampered_or_a_foreign_one_is_invalid_argument(bob):
    db = bob
    deliver_all(db, make_entry("bob"), make_entry("alice"))
    alice_cursor = sync_page(db, "alice", "laptop").cursor
    bob_cursor = sync_page(db, "bob", "phone").cursor
    body, mac = bob_cursor.split(".")
    forged_body = cursors._b64(b'{"seq":0}')
    chat_cursor = cursors.encode(sync.CHAT_CURSOR, "bob", {"chatId": "c1", "after": "0"})
    before = all_documents(db)
    for bad in [alice_cursor, f"{forged_body}.{mac}", f"{body}.{mac[:-2]}xx", "not-a-cursor", "a.b.c", chat_cursor]:
        with pytest.raises(InvalidArgument):
            sync_page(db, "bob", "phone", bad)
    assert all_documents(db) == before


def test_since_starts_at_the_first_message_delivered_after_it(bob):
    db = bob
    old = make_entry("bob", created=T0)
    deliver_all(db, old, now=T0)
    new = make_entry("bob", created=T0 + timedelta(seconds=5), chat="c2")
    deliver_all(db, new, now=T0 + timedelta(seconds=10))
    since = round((T0 + timedelta(seconds=1)).timestamp() * 1000)
    page = sync_page(db, "bob", "web", since=since)
    assert [m.messageId for m in page.messages] == [new.message_id]


# -------------------------------------------------------------------- acks


def acked_seq(db, uid: str) -> int:
    return (paths.inbox_acks(db, uid).get().to_dict() or {}).get("ackedSeq", 0)


def test_acks_are_idempotent_count_own_messages_only_and_move_the_receipt_position(bob):
    db = bob
    mine = [make_entry("bob", created=T0 + timedelta(milliseconds=i)) for i in range(3)]
    not_mine = make_entry("alice", region=Region.EU)
    deliver_all(db, *mine, not_mine)
    ids = [e.message_id for e in mine]
    unknown = str(ULID())

    first = sync.ack_messages(db, "bob", AckMessagesRequest(messageIds=[*ids, not_mine.message_id, unknown], deviceId="phone"))
    assert (first.success, first.acknowledgedCount) == (True, 3)
    assert acked_seq(db, "bob") == 3  # the furthest of bob's entries acknowledged
    assert acked_seq(db, "alice") == 0

    before = all_documents(db)
    again = sync.ack_messages(db, "bob", AckMessagesRequest(messageIds=ids[:2], deviceId="tablet"))
    assert again.acknowledgedCount == 2
    assert all_documents(db) == before  # an ack behind the position changes nothing
    assert sync.ack_messages(db, "bob", AckMessagesRequest(messageIds=[unknown])).acknowledgedCount == 0


def test_racing_acks_from_three_devices_leave_the_furthest_position(bob):
    db = bob
    entries = [make_entry("bob", created=T0 + timedelta(milliseconds=i)) for i in range(20)]
    deliver_all(db, *entries)
    ids = [e.message_id for e in entries]
    # Each device has got to its own place in the inbox.
    devices = {"phone": ids[:5], "tablet": ids[:17], "web": ids[3:9]}
    barrier = threading.Barrier(len(devices))
    counts = []

    def ack(device: str):
        barrier.wait()
        counts.append(sync.ack_messages(db, "bob", AckMessagesRequest(messageIds=devices[device], deviceId=device)))

    threads = [threading.Thread(target=ack, args=(d,)) for d in devices]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(c.acknowledgedCount for c in counts) == [5, 6, 17]
    assert acked_seq(db, "bob") == 17
    # A later ack of older messages leaves the position where it is.
    before = all_documents(db)
    sync.ack_messages(db, "bob", AckMessagesRequest(messageIds=ids[:10], deviceId="web"))
    assert all_documents(db) == before


def test_an_ack_completes_a_delivery_whose_push_is_being_retried(bob):
    db = bob
    entry = make_entry("bob", tokens=["fail-always"])
    enqueue(db, entry)
    processor.process_batch(db, Region.US, EmulatorNotifier(), now=T0)
    assert load(db, entry).entry.status == "FAILED"  # in the inbox, push failed
    sync.ack_messages(db, "bob", AckMessagesRequest(messageIds=[entry.message_id], deviceId="phone"))
    # The retry finds the message acknowledged: no push (it would fail again), delivered.
    report = processor.process_batch(db, Region.US, EmulatorNotifier(), now=T0 + timedelta(hours=1))
    assert report.outcomes["delivered"] == 1
    stored = load(db, entry).entry
    assert (stored.status, stored.attempts, stored.history[-1].details) == (QueueStatus.DELIVERED, 2, {"acknowledged": True})
    assert processor.process_batch(db, Region.US, EmulatorNotifier(), now=T0 + timedelta(hours=2)).attempted == 0


# ------------------------------------------------------------------ resync


def test_resync_pages_the_whole_chat_for_participants_only(bob):
    db = bob
    make_chat(db, "c1", ["alice", "bob"])
    sent = []
    for i in range(130):
        uid = "alice" if i % 2 else "bob"
        request = SendMessageRequest(chatId="c1", clientMessageId=str(ULID()), text=f"m{i}")
        # A second apart: each sender stays within MAX_MESSAGES_PER_MINUTE.
        sent.append(sending.send_message(db, uid, request, now=T0 + timedelta(seconds=i)).messageId)

    first = sync.resync_chat(db, "bob", ResyncChatRequest(chatId="c1"))
    second = sync.resync_chat(db, "bob", ResyncChatRequest(chatId="c1", cursor=first.cursor))
    assert (len(first.messages), first.hasMore, len(second.messages), second.hasMore) == (100, True, 30, False)
    assert [m.messageId for m in first.messages + second.messages] == sent
    assert second.messages[-1].text == "m129" and first.messages[1].senderName == "Alice"

    with pytest.raises(PermissionDenied):
        sync.resync_chat(db, "mallory", ResyncChatRequest(chatId="c1"))
    with pytest.raises(NotFound):
        sync.resync_chat(db, "bob", ResyncChatRequest(chatId="nope"))
    make_chat(db, "c2", ["alice", "bob"])
    with pytest.raises(InvalidArgument):
        sync.resync_chat(db, "bob", ResyncChatRequest(chatId="c2", cursor=first.cursor))
    with pytest.raises(InvalidArgument):
        sync.resync_chat(db, "alice", ResyncChatRequest(chatId="c1", cursor=first.cursor))


def test_inbox_entries_without_a_head_race_to_distinct_seqs(db: firestore.Client):
    # Twenty deliveries to a user who has no inbox yet, all at once.
    entries = [make_entry("dave", created=T0 + timedelta(milliseconds=i), chat=f"c{i}") for i in range(20)]
    enqueue(db, *entries)
    threads = [
        threading.Thread(target=delivery.deliver, args=(db, load(db, e), EmulatorNotifier()), kwargs={"actor": "t"})
        for e in entries
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    seqs = sorted(s.get("seq") for s in paths.inbox(db, "dave").stream())
    assert seqs == list(range(1, 21))
    assert paths.inbox_head(db, "dave").get().get("seq") == 20


def test_a_page_read_with_a_gap_is_read_again_and_never_skips_the_missing_entry(bob, monkeypatch):
    db = bob
    entries = [make_entry("bob", created=T0 + timedelta(seconds=n), chat="c1") for n in range(5)]
    deliver_all(db, *entries)
    after = inbox.after
    gapped_reads = [2, 2]  # the first two reads miss seq 3, as a read that saw a later commit but not an earlier one

    def read_with_a_gap(db_, uid, seq, *, limit):
        found = after(db_, uid, seq, limit=limit)
        if gapped_reads and gapped_reads.pop():
            return [e for e in found if e.seq != 3]
        return found

    monkeypatch.setattr(inbox, "after", read_with_a_gap)
    first = sync_page(db, "bob", "phone")
    assert [m.messageId for m in first.messages] == [e.message_id for e in entries[:2]] and first.hasMore
    rest = sync_page(db, "bob", "phone", first.cursor)
    assert [m.messageId for m in rest.messages] == [e.message_id for e in entries[2:]] and not rest.hasMore


def test_a_page_read_once_with_a_gap_comes_whole_from_the_second_read(bob, monkeypatch):
    db = bob
    entries = [make_entry("bob", created=T0 + timedelta(seconds=n), chat="c1") for n in range(5)]
    deliver_all(db, *entries)
    after = inbox.after
    reads = []

    def first_read_with_a_gap(db_, uid, seq, *, limit):
        found = after(db_, uid, seq, limit=limit)
        reads.append(seq)
        return [e for e in found if e.seq != 3] if len(reads) == 1 else found

    monkeypatch.setattr(inbox, "after", first_read_with_a_gap)
    page = sync_page(db, "bob", "phone")
    assert [m.messageId for m in page.messages] == [e.message_id for e in entries] and not page.hasMore
    assert reads == [0, 0]


def test_an_ack_never_moves_the_inbox_head_so_a_delivery_racing_it_keeps_its_commit(bob, monkeypatch):
    """A busy recipient's devices ack while messages arrive: each ack used to move the head that
    every placement is conditional on, so deliveries lost their race to acks and went again."""
    db = bob
    first = make_entry("bob", created=T0)
    deliver_all(db, first)
    head_before = paths.inbox_head(db, "bob").get()
    sync.ack_messages(db, "bob", AckMessagesRequest(messageIds=[first.message_id], deviceId="phone"))
    head_after = paths.inbox_head(db, "bob").get()
    assert head_after.update_time == head_before.update_time and head_after.to_dict() == head_before.to_dict()
    assert acked_seq(db, "bob") == 1

    second = make_entry("bob", created=T0 + timedelta(seconds=1))
    enqueue(db, second)
    read_heads, reads = inbox.heads, []

    def acking_meanwhile(db_, uids):
        found = read_heads(db_, uids)
        reads.append(True)  # between the delivery's read of the head and its commit, the phone acks
        sync.ack_messages(db, "bob", AckMessagesRequest(messageIds=[first.message_id], deviceId="tablet"))
        return found

    monkeypatch.setattr(inbox, "heads", acking_meanwhile)
    snapshot = paths.queue_entry(db, second.target_region, second.id).get()
    assert delivery.on_enqueued(db, snapshot, EmulatorNotifier(), now=T0 + timedelta(seconds=1)) == "delivered"
    monkeypatch.setattr(inbox, "heads", read_heads)
    assert len(reads) == 1  # one read of the head, one commit: no race lost to the ack
    assert [m["messageId"] for m in sync_all(db, "bob", "phone")[0]] == [first.message_id, second.message_id]
