"""Authorization: who may do what. The one place every callable's checks live.

Rules, in the order a request meets them:

1. Signed in (callables.handle): no auth is `unauthenticated`.
2. A usable uid (`caller_uid`): the uid becomes part of document paths
   (`users/{uid}/inbox`, `{uid}_{deviceId}`...), so one that is not a valid
   document id ("a/b", "..", "__x__", over 128 characters) is refused before
   any path is built. Firebase Auth uids made by the app are never like that;
   a custom token could be.
3. Own data only: callables take no user id. Every user-scoped read and
   write is keyed by the caller's uid (inbox, devices, counters, receipts);
   acks count only ids in the caller's inbox; cursors are HMAC-bound to the
   caller (cursors.py). There is no parameter through which another user's
   data can be named, so there is nothing to check beyond this.
4. Chat participation (`participant_chat`): every callable that names a chat
   (sendMessage, resyncChat, updateTypingState, getTypingUsers, markAsRead)
   loads it here: an unknown chat is `not-found`, a chat the caller is not in
   is `permission-denied`.
5. Sending (`require_adult`, `deliverable_recipients`): the sender's
   `users/{uid}.ageVerified18Plus` must be `true`, else `failed-precondition`
   (reason `age_verification_required`). Blocks (`users/{uid}.blockedUsers`)
   work both ways: in a direct chat (two participants) a send between a
   user and someone who blocked them, or whom they blocked, is
   `failed-precondition` (reason `blocked`); in a group the message is
   delivered to every other member except those (no inbox entry, no push, no
   unread count for them), as group messengers do, so that nobody learns
   from a group send who blocked them.

Rate limits and the spam hook are not authorization; they are in
rate_limit.py and fraud.py, and sending applies them after these checks.
"""

from __future__ import annotations

from collections.abc import Mapping

from google.cloud.firestore import Client

from .. import chat_core
from ..errors import FailedPrecondition, PermissionDenied
from ..models import DocumentIdError, UserProfile, check_document_id

AGE_VERIFICATION_REQUIRED = "age_verification_required"
BLOCKED = "blocked"


def caller_uid(uid: str) -> str:
    """`uid` if it can key the caller's documents; PermissionDenied otherwise.

    Args:
        uid: the uid of the verified ID token.
    """
    try:
        return check_document_id(uid)
    except DocumentIdError:
        raise PermissionDenied("this account's user id cannot be used with this service") from None


def participant_chat(db: Client, chat_id: str, uid: str) -> chat_core.LoadedChat:
    """The chat if `uid` takes part in it.

    Args:
        chat_id: the chat the request names.
        uid: the caller.

    Raises:
        NotFound: no such chat.
        PermissionDenied: the caller is not a participant.
        FailedPrecondition: the chat document has no valid participants list.
    """
    return require_participant(chat_core.load_chat(db, chat_id), chat_id, uid)


def require_participant(loaded: chat_core.LoadedChat, chat_id: str, uid: str) -> chat_core.LoadedChat:
    """`loaded` if `uid` takes part in it; PermissionDenied otherwise."""
    if uid not in loaded.chat.participants:
        raise PermissionDenied(f"you are not a participant of chat {chat_id!r}")
    return loaded


def require_adult(sender: UserProfile) -> None:
    """FailedPrecondition unless the sender's profile shows age verification 18+.

    Args:
        sender: the sender's `users/{uid}` (defaults when there is none: not verified).
    """
    if sender.age_verified_18_plus is not True:
        raise FailedPrecondition(
            "You need to verify that you are 18 or older before you can send messages.",
            {"reason": AGE_VERIFICATION_REQUIRED},
        )


def blocked_between(a_id: str, a: UserProfile, b_id: str, b: UserProfile) -> bool:
    """Whether either user blocked the other."""
    return b_id in a.blocked_users or a_id in b.blocked_users


def deliverable_recipients(
    sender_id: str, recipients: list[str], users: Mapping[str, UserProfile]
) -> list[str]:
    """The recipients a message of `sender_id` may reach, after blocks.

    Args:
        sender_id: the sender.
        recipients: the chat's other participants, in order, without duplicates.
        users: profiles of the sender and every recipient.

    Returns:
        `recipients` without those who blocked the sender or whom the sender
        blocked (a group chat).

    Raises:
        FailedPrecondition: a direct chat (one recipient) where either blocked the other.
    """
    sender = users[sender_id]
    allowed = [uid for uid in recipients if not blocked_between(sender_id, sender, uid, users[uid])]
    if len(recipients) == 1 and not allowed:
        raise FailedPrecondition("You can't send messages to this person.", {"reason": BLOCKED})
    return allowed

