"""Commits sized by their bytes and writes, not only by members: a fan-out chunk and a processor's
bulk delivery to recipients whose inbox heads are large (close to their 256 KiB bound) are cut into
commits under COMMIT_MAX_BYTES, and every recipient still gets the message exactly once. Against
the emulator, with the shipped bounds (a chunk of up to 150 members; 60 heads of 200 KB are 12 MB)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from support.chatcore import head, inbox, make_chat, make_user
from support.entries import enqueue, make_entry
from ulid import ULID

from pack427 import constants, store
from pack427.accepting import sending
from pack427.delivering import fan_out
from pack427.delivering.notifier import EmulatorNotifier
from pack427.inbox import head_size
from pack427.models import ChatInbox, InboxHead, Region, SendMessageRequest
from pack427.workers import processor

MEMBERS = 60
CHAT_ID_CHARS = 1_000
HEAD_CHATS = 190


def large_heads(db, uids: list[str]) -> int:
    """Give each of `uids` a head of about 200 KB (190 fully read chats with ids of 1,000 characters);
    the bytes of one."""
    at = ULID.from_datetime(processor.clock.now() - timedelta(days=1))
    chats = {f"{n:03}" + "x" * (CHAT_ID_CHARS - 3): ChatInbox(unread=0, read_up_to=str(at), last=str(at))
             for n in range(HEAD_CHATS)}
    seeded = InboxHead(seq=0, chats=chats)
    for start in range(0, len(uids), 10):  # the emulator takes requests of up to 4 MiB
        batch = db.batch()
        for uid in uids[start:start + 10]:
            batch.set(db.document(f"users/{uid}/inboxHead/current"), seeded.to_firestore())
        batch.commit()
    return head_size(uids[0], seeded)


@pytest.fixture
def sized(monkeypatch):
    """Records each split store.commits makes: (units, commits, their bytes together)."""
    made: list[tuple[int, int, int]] = []
    commits = store.commits

    def recording(costs, **kwargs):
        groups = commits(costs, **kwargs)
        made.append((len(costs), len(groups), sum(c.bytes for c in costs)))
        return groups

    monkeypatch.setattr(store, "commits", recording)
    return made


def test_a_fan_out_to_members_with_large_heads_is_cut_by_bytes_and_delivers_exactly_once_each(db, monkeypatch):
    members = [f"m{n:02}" for n in range(MEMBERS + 1)]
    for uid in members:
        make_user(db, uid)
    make_chat(db, "big", members)
    one = large_heads(db, members[1:])
    assert MEMBERS * one > constants.COMMIT_MAX_BYTES  # one commit of the whole chunk could not be
    assert one <= constants.INBOX_HEAD_MAX_BYTES and MEMBERS <= constants.FAN_OUT_CHUNK
    commit_chunk, taken = fan_out._commit_chunk, []

    def recording(*args, **kwargs):
        moved, n = commit_chunk(*args, **kwargs)
        taken.append(n)
        return moved, n

    monkeypatch.setattr(fan_out, "_commit_chunk", recording)
    sent = sending.send_message(db, "m00", SendMessageRequest(chatId="big", clientMessageId=str(ULID()), text="hi"))
    fan_out.run_chat(db, "big")  # the trigger's run, in process

    assert sum(taken) == MEMBERS and len(taken) >= 2 and max(taken) * one <= constants.COMMIT_MAX_BYTES
    for uid in members[1:]:
        assert [e["messageId"] for e in inbox(db, uid)] == [sent.messageId], uid
        stored = head(db, uid)
        assert stored["chats"]["big"]["unread"] == 1 and stored["seq"] == 1
        assert head_size(uid, InboxHead.model_validate(stored)) <= constants.INBOX_HEAD_MAX_BYTES
    assert fan_out.run_chat(db, "big") == 0  # a replayed event finds nothing left
    assert all(len(inbox(db, uid)) == 1 for uid in members[1:])


def test_a_bulk_delivery_to_recipients_with_large_heads_is_cut_by_bytes_and_delivers_each_once(db, sized, monkeypatch):
    def not_one_by_one(*args, **kwargs):
        raise AssertionError("a bulk commit fell back to the one-by-one path")

    monkeypatch.setattr(processor, "deliver_in_order", not_one_by_one)
    recipients = [f"r{n:02}" for n in range(MEMBERS)]
    one = large_heads(db, recipients)
    entries = [make_entry(uid, region=Region.EU, chat=f"c-{uid}") for uid in recipients]
    enqueue(db, *entries)
    later = entries[0].created_at + timedelta(minutes=1)

    report = processor.process_batch(db, Region.EU, EmulatorNotifier(), now=later)

    assert report.outcomes["delivered"] == MEMBERS
    [(units, commits, total)] = [s for s in sized if s[0] == MEMBERS]
    assert total > constants.COMMIT_MAX_BYTES and commits >= 2 and total / commits >= one
    for entry in entries:
        assert [e["messageId"] for e in inbox(db, entry.recipient_id)] == [entry.message_id]
        assert head(db, entry.recipient_id)["chats"][entry.chat_id]["unread"] == 1
