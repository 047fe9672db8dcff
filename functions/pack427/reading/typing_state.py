"""Typing indicators: fast to show, cheap to keep alive, unable to get stuck.

A user typing in a chat is one document, `regions/{region}/typingEvents/
{chatId}_{userId}` in the user's home region, with `expiresAt` = the last
refresh + TYPING_TTL_SECONDS. Readers take an event whose `expiresAt` has
passed as "not typing", so a lost "stopped" (app killed, network gone) ends
the indicator within 10 s. Firestore's TTL policy on `expiresAt` deletes expired
events (within a day): nothing depends on it sooner, since every reader, the
engine's and the apps' listeners, goes by `expiresAt`, and a user has at most one
event per chat, so what waits for deletion stays bounded.

Write cost: clients send "typing" on keystrokes, many a second. An update
rewrites the event only when less than TYPING_REFRESH_SECONDS of its TTL is
left, so a continuous burst costs one write per 5 s (and one read per call);
"stopped" deletes the event (one write, none if there is none).

The event carries the chat's participants, so security rules can let exactly
them read it (a collection-group query on `chatId` and `participants`).
Event ids join chat and user ids with "_": ids that themselves contain "_"
could meet (chat "a_b" + user "c", chat "a" + user "b_c"); the stored
`chatId` and `userId` tell them apart when reading.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from google.cloud.firestore import Client
from google.cloud.firestore_v1 import DocumentSnapshot
from google.cloud.firestore_v1.base_query import FieldFilter

from .. import chat_core, clock, constants, paths, routing
from ..guarding import policy
from ..models import (
    GetTypingUsersRequest,
    GetTypingUsersResult,
    Region,
    TypingEvent,
    TypingUser,
    UpdateTypingStateRequest,
    UpdateTypingStateResult,
)

TTL = timedelta(seconds=constants.TYPING_TTL_SECONDS)
REFRESH_MARGIN = timedelta(seconds=constants.TYPING_REFRESH_SECONDS)


def update_typing_state(
    db: Client, uid: str, request: UpdateTypingStateRequest, *, now: datetime | None = None
) -> UpdateTypingStateResult:
    """`pack427_updateTypingState`: the caller started (or goes on) typing, or stopped.

    Args:
        uid: the authenticated caller.
        request: the chat and isTyping.
        now: the time of the keystroke (default: the clock).

    Raises:
        NotFound: no such chat.
        PermissionDenied: the caller is not a participant.
    """
    now = now or clock.now()
    chat = policy.participant_chat(db, request.chatId, uid).chat
    region = routing.home_region(uid, chat_core.load_users(db, [uid])[uid])
    ref = paths.typing_event(db, region, request.chatId, uid)
    snapshot = ref.get()
    current = _event(snapshot, request.chatId, uid)
    if not request.isTyping:
        if current is not None:
            ref.delete()
        return UpdateTypingStateResult(success=True)
    active = current if current is not None and current.is_typing and current.expires_at > now else None
    if active is not None and active.expires_at - now > REFRESH_MARGIN:
        return UpdateTypingStateResult(success=True)  # still fresh: no write
    event = TypingEvent(
        id=ref.id,
        chat_id=request.chatId,
        user_id=uid,
        is_typing=True,
        region=region,
        participants=chat.participants,
        expires_at=now + TTL,
        created_at=active.created_at if active is not None else now,
        updated_at=now,
    )
    ref.set(event.to_firestore())
    return UpdateTypingStateResult(success=True)


def typing_users(
    db: Client, chat_id: str, *, now: datetime | None = None, exclude: str | None = None
) -> list[TypingEvent]:
    """Events of users typing in the chat at `now` (expired ones are not typing).

    Looks in every region: participants' home regions differ.

    Args:
        chat_id: the chat.
        now: the reader's time (default: the clock).
        exclude: leave this user out (the reader).

    Returns:
        One event per user (the latest-expiring if a move of region left
        two), ordered by user id.
    """
    now = now or clock.now()
    found: dict[str, TypingEvent] = {}
    for region in Region:
        query = paths.typing_events(db, region).where(filter=FieldFilter("chatId", "==", chat_id))
        for snapshot in query.stream():
            event = _event(snapshot, chat_id)
            if event is None or not event.is_typing or event.expires_at <= now or event.user_id == exclude:
                continue
            if event.user_id not in found or found[event.user_id].expires_at < event.expires_at:
                found[event.user_id] = event
    return [found[user_id] for user_id in sorted(found)]


def get_typing_users(
    db: Client, uid: str, request: GetTypingUsersRequest, *, now: datetime | None = None
) -> GetTypingUsersResult:
    """`pack427_getTypingUsers`: the other participants typing in the chat now.

    Raises:
        NotFound: no such chat.
        PermissionDenied: the caller is not a participant.
    """
    policy.participant_chat(db, request.chatId, uid)
    events = typing_users(db, request.chatId, now=now, exclude=uid)
    return GetTypingUsersResult(typingUsers=[TypingUser(userId=e.user_id, expiresAt=e.expires_at) for e in events])


def _event(snapshot: DocumentSnapshot, chat_id: str, uid: str | None = None) -> TypingEvent | None:
    """The event if it is one of ours for this chat (and user); else None."""
    if not snapshot.exists:
        return None
    try:
        event = TypingEvent.model_validate(snapshot.to_dict())
    except ValueError:
        return None
    if event.chat_id != chat_id or (uid is not None and event.user_id != uid):
        return None
    return event
