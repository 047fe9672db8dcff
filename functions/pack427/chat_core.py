"""Reads of the chat core's documents (`chats/{chatId}`, `users/{uid}`).

The chat core owns these documents; this engine only reads them, except the
chat's `lastMessage`, which each send writes. Their shape is documented in
README.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from google.cloud.firestore import Client, DocumentReference
from google.cloud.firestore_v1 import DocumentSnapshot
from pydantic import ValidationError

from . import paths, store
from .errors import FailedPrecondition, NotFound
from .models import Chat, UserProfile


@dataclass(frozen=True)
class LoadedChat:
    """A chat as read, with the update time a conditional write of it needs."""

    chat: Chat
    update_time: datetime


def load_chat(db: Client, chat_id: str) -> LoadedChat:
    """The chat, or NotFound."""
    return chat_of(chat_id, store.Read.of(paths.chat(db, chat_id).get()))


def chat_of(chat_id: str, doc: store.Read) -> LoadedChat:
    """The chat `chat_id` from its document as read (NotFound if it did not exist).

    Raises:
        NotFound: no such chat.
        FailedPrecondition: the chat document has no valid participants list.
    """
    if not doc.exists:
        raise NotFound(f"chat {chat_id!r} does not exist")
    try:
        return LoadedChat(Chat.model_validate(doc.data), doc.time)
    except ValidationError:
        raise FailedPrecondition(f"chat {chat_id!r} has no valid participants list") from None


def load_users(db: Client, uids: Iterable[str]) -> dict[str, UserProfile]:
    """Profiles of `uids` in one round trip; a user without a document gets defaults.

    A field of the wrong type in a user document falls back to the default
    rather than failing the send: the chat core's data is not the caller's fault.
    """
    return load_users_with(db, uids, [])[0]


def load_users_with(
    db: Client, uids: Iterable[str], also: list[DocumentReference]
) -> tuple[dict[str, UserProfile], dict[str, DocumentSnapshot]]:
    """Profiles of `uids` (as `load_users`) and the documents `also`, in one round trip.

    A send reads the sender's rate window this way: one round trip fewer on
    the request path.

    Returns:
        The profiles, and the snapshots of `also` by document path (existing or not).
    """
    refs = [paths.user(db, uid) for uid in dict.fromkeys(uids)]
    profiles = {ref.id: UserProfile() for ref in refs}
    user_paths = {ref.path for ref in refs}
    others: dict[str, DocumentSnapshot] = {}
    for snapshot in db.get_all(refs + also):
        if snapshot.reference.path not in user_paths:
            others[snapshot.reference.path] = snapshot
        elif snapshot.exists:
            profiles[snapshot.id] = _lenient_profile(snapshot.to_dict())
    return profiles, others


def profile_of(doc: store.Read) -> UserProfile:
    """The profile in a `users/{uid}` document as read (as `load_users` gives it; defaults if absent)."""
    return _lenient_profile(doc.data) if doc.exists else UserProfile()


def _lenient_profile(data: dict) -> UserProfile:
    fields = {}
    for name, value in data.items():
        try:
            UserProfile.model_validate({name: value})
        except ValueError:
            continue
        fields[name] = value
    return UserProfile.model_validate(fields)
