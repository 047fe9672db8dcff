"""The chat list: newest first, paged, with unread counts and the last message's receipts."""

from __future__ import annotations

import sys
from datetime import timedelta

import pytest
from support.chatcore import make_chat, make_user
from support.emulator import ROOT
from support.entries import T0
from ulid import ULID

from pack427 import constants, inbox, settings
from pack427.accepting import sending
from pack427.delivering import fan_out
from pack427.delivering.notifier import EmulatorNotifier
from pack427.errors import InvalidArgument
from pack427.models import (
    AckMessagesRequest,
    EngineSettings,
    GetChatListRequest,
    MarkAsReadRequest,
    Region,
    SendMessageRequest,
)
from pack427.reading import chat_list, sync, unread
from pack427.workers import processor

sys.path.insert(0, str(ROOT / "scripts"))
from benchmarks import opcount  # noqa: E402  the bench's counter of Firestore RPCs


def send(db, uid: str, chat: str, text: str, at) -> str:
    request = SendMessageRequest(chatId=chat, clientMessageId=str(ULID()), text=text)
    return sending.send_message(db, uid, request, now=at).messageId


def process(db, at):
    for region in Region:
        processor.process_batch(db, region, EmulatorNotifier(), now=at)


@pytest.fixture
def chats(db):
    make_user(db, "alice", region="EU")
    make_user(db, "bob", region="US")
    make_user(db, "carol", region="APAC", online=False, tokens=["fail-always"])
    make_chat(db, "c1", ["alice", "bob"])
    make_chat(db, "c2", ["alice", "bob", "carol"])
    make_chat(db, "c3", ["bob", "carol"])
    make_chat(db, "empty", ["alice", "bob"])
    return db


def test_newest_first_with_unread_counts_and_paging(chats):
    db = chats
    send(db, "bob", "c1", "hi alice", T0)
    send(db, "bob", "c1", "are you there?", T0 + timedelta(seconds=1))
    send(db, "carol", "c2", "hello group", T0 + timedelta(seconds=2))
    send(db, "bob", "c3", "not for alice", T0 + timedelta(seconds=3))
    process(db, T0 + timedelta(seconds=5))
    unread.recalculate(db, "alice")

    page = chat_list.get_chat_list(db, "alice", GetChatListRequest())
    assert [c.chatId for c in page.chats] == ["c2", "c1"]  # no c3 (not hers), no chat without messages
    assert [c.unreadCount for c in page.chats] == [1, 2] and page.totalUnread == 3
    c1 = page.chats[1]
    assert c1.lastMessage.text == "are you there?" and c1.lastMessage.senderId == "bob"
    assert c1.lastMessageStatus is None  # the last message is not alice's
    assert not page.hasMore

    first = chat_list.get_chat_list(db, "alice", GetChatListRequest(limit=1))
    second = chat_list.get_chat_list(db, "alice", GetChatListRequest(limit=1, cursor=first.cursor))
    assert ([c.chatId for c in first.chats], first.hasMore) == (["c2"], True)
    assert ([c.chatId for c in second.chats], second.hasMore) == (["c1"], False)
    with pytest.raises(InvalidArgument):
        chat_list.get_chat_list(db, "bob", GetChatListRequest(cursor=first.cursor))


def status_of(db, chat: str) -> dict[str, str]:
    page = chat_list.get_chat_list(db, "alice", GetChatListRequest())
    return {c.chatId: c.lastMessageStatus for c in page.chats}[chat]


def test_receipts_of_the_callers_last_message_move_pending_sent_delivered_read(chats, monkeypatch):
    db = chats
    monkeypatch.setattr(constants, "INLINE_ATTEMPTS", 0)  # through the queue: there is a pending
    message = send(db, "alice", "c1", "ping", T0)
    assert status_of(db, "c1") == {"bob": "pending"}
    process(db, T0 + timedelta(seconds=1))
    assert status_of(db, "c1") == {"bob": "sent"}
    sync.ack_messages(db, "bob", AckMessagesRequest(messageIds=[message], deviceId="phone"))
    assert status_of(db, "c1") == {"bob": "delivered"}
    unread.mark_as_read(db, "bob", MarkAsReadRequest(chatId="c1", readUpToMessageId=message))
    assert status_of(db, "c1") == {"bob": "read"}


def test_a_message_the_send_placed_is_sent_at_once_and_delivered_once_a_later_one_is_acknowledged(chats):
    db = chats
    first = send(db, "alice", "c2", "to the group", T0)
    assert status_of(db, "c2") == {"bob": "sent", "carol": "sent"}  # carol is offline: in her inbox, push queued
    later = send(db, "bob", "c1", "something else", T0 + timedelta(seconds=1))
    sync.ack_messages(db, "alice", AckMessagesRequest(messageIds=[later]))  # alice's own acks change nothing here
    sync.ack_messages(db, "bob", AckMessagesRequest(messageIds=[first]))
    assert status_of(db, "c2") == {"bob": "delivered", "carol": "sent"}
    unread.mark_as_read(db, "carol", MarkAsReadRequest(chatId="c2", readUpToMessageId=first))
    assert status_of(db, "c2") == {"bob": "delivered", "carol": "read"}


def test_a_dropped_message_is_failed_unless_it_reached_the_inbox(chats, monkeypatch):
    db = chats
    make_user(db, "dave", region="EU")
    make_chat(db, "c5", ["alice", "carol", "dave"])
    add_placement = inbox.add_placement

    def unreachable_for_dave(db_, batch, head, *args, **kwargs):
        if head.uid == "dave":
            raise ConnectionError("dave's inbox is unreachable")
        return add_placement(db_, batch, head, *args, **kwargs)

    monkeypatch.setattr(inbox, "add_placement", unreachable_for_dave)
    monkeypatch.setattr(constants, "INLINE_ATTEMPTS", 0)  # per recipient, through the queue
    send(db, "alice", "c5", "to the group", T0)
    at = T0 + timedelta(seconds=1)
    for _ in range(5):  # five failed attempts each: carol's push, dave's inbox
        process(db, at)
        at += timedelta(hours=1)
    # Both dropped; carol has the message in her inbox all the same, dave does not.
    assert chat_list.get_chat_list(db, "alice", GetChatListRequest()).chats[0].lastMessageStatus == {
        "carol": "sent", "dave": "failed"
    }


def reads_of(work) -> tuple[object, int]:
    """What `work` returns, and the documents (and aggregation pages) it read, as Firestore bills them."""
    counter = opcount.install()
    before = counter.snapshot()
    result = work()
    return result, (counter.snapshot() - before)["reads"]


def test_a_large_groups_last_message_gets_a_summary_and_the_lists_reads_stay_bounded(db, monkeypatch):
    """Member by member, a 10,000-member group would cost 30,000 reads on every refresh; counted,
    its receipts cost two aggregations, whatever its size. The item carries a bounded id list."""
    monkeypatch.setattr(settings, "current", lambda db_, **_: EngineSettings())  # not what this counts
    make_user(db, "alice")
    reads = {}
    for size in (60, 120):
        members = [f"g{size}-{n:03d}" for n in range(size)]
        for uid in members:
            make_user(db, uid)
        chat_id = f"group{size}"
        make_chat(db, chat_id, ["alice", *members])
        at = T0 + timedelta(seconds=size)  # the newer group comes first in the list
        message = send(db, "alice", chat_id, "to everyone", at)
        fan_out.run_chat(db, chat_id, now=at)
        for uid in members[:7]:  # seven have read it
            unread.mark_as_read(db, uid, MarkAsReadRequest(chatId=chat_id, readUpToMessageId=message), now=at)
        unread.mark_as_read(db, "alice", MarkAsReadRequest(chatId=chat_id, readUpToMessageId=message), now=at)
        page, reads[size] = reads_of(lambda: chat_list.get_chat_list(db, "alice", GetChatListRequest(limit=1)))
        [item] = page.chats
        assert item.chatId == chat_id and item.lastMessageStatus is None
        assert item.lastMessageReceipts.model_dump() == {"recipients": size, "reachedInbox": size, "read": 7}
        assert item.participantCount == size + 1
        assert item.participants == ["alice", *members][:constants.CHAT_LIST_PARTICIPANTS]
    # The page's chats (limit + 1 to know hasMore), the head, the sender's receipt, two counts: under 10
    # reads for either, where member by member they would be 3 a member (180 and 360).
    assert max(reads.values()) < 10, reads


def test_a_page_reads_at_most_its_budget_of_recipients_member_by_member(db, monkeypatch):
    monkeypatch.setattr(constants, "RECEIPT_DETAIL_BUDGET", 5)
    make_user(db, "alice")
    for chat_id, others in (("three", ["b1", "b2", "b3"]), ("two", ["c1", "c2"]), ("one", ["d1"])):
        for uid in others:
            make_user(db, uid)
        make_chat(db, chat_id, ["alice", *others])
    for n, chat_id in enumerate(["one", "two", "three"]):  # "three" newest, then "two", then "one"
        send(db, "alice", chat_id, "hi", T0 + timedelta(seconds=n))
    page = chat_list.get_chat_list(db, "alice", GetChatListRequest())
    by_id = {c.chatId: c for c in page.chats}
    assert by_id["three"].lastMessageStatus == {"b1": "sent", "b2": "sent", "b3": "sent"}
    assert by_id["two"].lastMessageStatus == {"c1": "sent", "c2": "sent"}  # 3 + 2: the budget is spent
    assert by_id["one"].lastMessageStatus is None
    assert by_id["one"].lastMessageReceipts.model_dump() == {"recipients": 1, "reachedInbox": 1, "read": 0}
