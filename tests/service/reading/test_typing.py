"""Typing indicators: cheap to keep alive, gone 10 s after the last update, cleaned up later."""

from __future__ import annotations

from datetime import timedelta

import pytest
from support.chatcore import make_chat, make_user
from support.signals import T0

from pack427.errors import NotFound, PermissionDenied
from pack427.models import GetTypingUsersRequest, UpdateTypingStateRequest
from pack427.reading import typing_state


def typing(db, uid: str, is_typing: bool = True, *, at, chat: str = "c1"):
    return typing_state.update_typing_state(db, uid, UpdateTypingStateRequest(chatId=chat, isTyping=is_typing), now=at)


def who(db, uid: str = "bob", *, at, chat: str = "c1") -> list[str]:
    result = typing_state.get_typing_users(db, uid, GetTypingUsersRequest(chatId=chat), now=at)
    return [u.userId for u in result.typingUsers]


def event_ref(db, uid: str = "alice", region: str = "EU", chat: str = "c1"):
    return db.document(f"regions/{region}/typingEvents/{chat}_{uid}")


@pytest.fixture
def chat(db):
    make_user(db, "alice", region="EU")
    make_user(db, "bob", region="US")
    make_user(db, "carol", region="APAC")
    make_user(db, "mallory")
    make_chat(db, "c1", ["alice", "bob", "carol"])
    return db


def test_typing_writes_an_event_in_the_typists_home_region(chat):
    assert typing(chat, "bob", at=T0).success is True

    stored = event_ref(chat, "bob", "US").get().to_dict()
    assert stored == {
        "id": "c1_bob", "chatId": "c1", "userId": "bob", "isTyping": True, "region": "US",
        "participants": ["alice", "bob", "carol"], "expiresAt": T0 + timedelta(seconds=10),
        "createdAt": T0, "updatedAt": T0,
    }
    assert not event_ref(chat, "bob", "EU").get().exists


def test_a_burst_of_fifty_updates_in_ten_seconds_costs_two_writes(chat):
    writes = []
    last = None
    for n in range(50):
        at = T0 + timedelta(milliseconds=200 * n)  # 0 s to 9.8 s
        typing(chat, "alice", at=at)
        update_time = event_ref(chat).get().update_time
        if update_time != last:
            writes.append(at)
            last = update_time

    # One write to start, one refresh when less than 5 s of the TTL was left.
    assert writes == [T0, T0 + timedelta(seconds=5)]
    stored = event_ref(chat).get().to_dict()
    assert stored["expiresAt"] == T0 + timedelta(seconds=15) and stored["createdAt"] == T0
    # Readers never saw a gap during the burst.
    assert who(chat, at=T0 + timedelta(seconds=14.9)) == ["alice"]


def test_an_event_without_stopped_disappears_for_readers_after_ten_seconds(chat):
    typing(chat, "alice", at=T0)
    typing(chat, "carol", at=T0 + timedelta(seconds=3))

    assert who(chat, at=T0 + timedelta(seconds=9.999)) == ["alice", "carol"]
    assert who(chat, at=T0 + timedelta(seconds=10)) == ["carol"]
    assert who(chat, at=T0 + timedelta(seconds=13)) == []
    # The reader's own typing is not listed; the event is still stored (cleanup removes it).
    assert who(chat, "alice", at=T0 + timedelta(seconds=5)) == ["carol"]
    assert event_ref(chat).get().exists
    assert [e.user_id for e in typing_state.typing_users(chat, "c1", now=T0 + timedelta(seconds=5))] == ["alice", "carol"]


def test_typing_again_after_expiry_writes_a_fresh_event(chat):
    typing(chat, "alice", at=T0)
    typing(chat, "alice", at=T0 + timedelta(seconds=30))
    stored = event_ref(chat).get().to_dict()
    assert stored["createdAt"] == T0 + timedelta(seconds=30)
    assert stored["expiresAt"] == T0 + timedelta(seconds=40)


def test_stopped_removes_the_event_at_once_and_costs_nothing_when_there_is_none(chat):
    typing(chat, "alice", at=T0)
    typing(chat, "alice", False, at=T0 + timedelta(seconds=1))
    assert not event_ref(chat).get().exists
    assert who(chat, at=T0 + timedelta(seconds=1)) == []

    typing(chat, "alice", False, at=T0 + timedelta(seconds=2))
    assert list(chat.collection_group("typingEvents").stream()) == []


def test_only_participants_may_type_or_ask_who_is_typing(chat):
    with pytest.raises(PermissionDenied):
        typing(chat, "mallory", at=T0)
    with pytest.raises(PermissionDenied):
        who(chat, "mallory", at=T0)
    with pytest.raises(NotFound):
        typing(chat, "alice", at=T0, chat="nope")
    with pytest.raises(NotFound):
        who(chat, "alice", at=T0, chat="nope")
    assert list(chat.collection_group("typingEvents").stream()) == []
