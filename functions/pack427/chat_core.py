"""Reads of the chat core's documents (`chats/{chatId}`, `users/{uid}`).

The chat core owns these documents; this engine only reads them, except the
chat's `lastMessage`, which each send writes. Their shape is documented in
README.md.

An instance remembers the participants of the small chats it read
(`known_participants`), so that a send can read the chat and what it needs of
its participants in one round trip: a guess, always checked against the chat
as read in that same round trip (see sending).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from firebase_functions import logger
from google.cloud.firestore import Client, DocumentReference
from google.cloud.firestore_v1 import DocumentSnapshot
from pydantic import ValidationError

from . import clock, paths, store
from .errors import FailedPrecondition, NotFound
from .models import Chat, ChatMessage, LastMessage, UserProfile, is_document_id, problems, salvage

CHAT_DOCUMENT_ODD = "CHAT_DOCUMENT_ODD"


@dataclass(frozen=True)
class LoadedChat:
    """A chat as read, with the update time a conditional write of it needs."""

    chat: Chat
    update_time: datetime


def load_chat(db: Client, chat_id: str) -> LoadedChat:
    """The chat, or NotFound."""
    return chat_of(chat_id, store.Read.of(paths.chat(db, chat_id).get()))


KNOWN_CHATS = 10_000
"""Chats whose participants one instance remembers (least recently read forgotten first)."""
KNOWN_PARTICIPANTS = 51
"""Only chats of at most this many participants are remembered (a send reads a larger one's
recipients chunk by chunk, in its fan-out)."""

_known: OrderedDict[tuple[str, str], tuple[tuple[str, ...], bool]] = OrderedDict()
"""(project, chat id) -> participants, and whether the chat had a message in fan-out."""
_known_lock = threading.Lock()


def known_participants(db: Client, chat_id: str) -> tuple[str, ...] | None:
    """The participants of `chat_id` when this instance last read it (None: not known here)."""
    with _known_lock:
        found = _known.get((db.project, chat_id))
        if found is not None:
            _known.move_to_end((db.project, chat_id))
        return found[0] if found is not None else None


def known_fanning_out(db: Client, chat_id: str) -> bool:
    """Whether `chat_id` had a message in fan-out (Chat.fan_out_pending) when this instance last read it."""
    with _known_lock:
        found = _known.get((db.project, chat_id))
        return found is not None and found[1]


def note_fanning_out(db: Client, chat_id: str) -> None:
    """This instance's commit started a fan-out of `chat_id`: its next send knows without a read."""
    with _known_lock:
        found = _known.get((db.project, chat_id))
        if found is not None:
            _known[(db.project, chat_id)] = found[0], True


def remember(db: Client, loaded: LoadedChat, chat_id: str) -> LoadedChat:
    """Note the participants of `loaded` (a small chat) for `known_participants`, and whether it is
    fanning out for `known_fanning_out`; returns `loaded`."""
    participants, key = tuple(loaded.chat.participants), (db.project, chat_id)
    with _known_lock:
        if len(participants) <= KNOWN_PARTICIPANTS:
            _known[key] = participants, loaded.chat.fan_out_pending
            _known.move_to_end(key)
            while len(_known) > KNOWN_CHATS:
                _known.popitem(last=False)
        else:
            _known.pop(key, None)
    return loaded


def chat_of(chat_id: str, doc: store.Read) -> LoadedChat:
    """The chat `chat_id` from its document as read (NotFound if it did not exist), see `parse_chat`.

    Raises:
        NotFound: no such chat.
        FailedPrecondition: the chat document has no participants list.
    """
    if not doc.exists:
        raise NotFound(f"chat {chat_id!r} does not exist")
    return LoadedChat(parse_chat(chat_id, doc.data), doc.time)


def parse_chat(chat_id: str, data: dict) -> Chat:
    """A `chats/{chatId}` document as the engine uses it, whatever else the chat core wrote.

    Participants that cannot key a document (not strings, "a/b", "..") are left out: the others
    get the message. Any other odd field takes its default, except the engine's own flags, which
    are taken as set (the safe side: a send asks the queue once, a fan-out worker clears them),
    and a `lastMessage` the engine did not write, of which what is usable is kept. Logged
    (CHAT_DOCUMENT_ODD), never refused.

    Raises:
        FailedPrecondition: no participants list at all.
    """
    participants = data.get("participants")
    if not isinstance(participants, list):
        raise FailedPrecondition(f"chat {chat_id!r} has no valid participants list")
    usable = list(dict.fromkeys(p for p in participants if isinstance(p, str) and is_document_id(p)))
    chat, odd = salvage(Chat, data, keep={"participants": usable})
    flags: dict[str, object] = {field: True for name, field in (("deliveryQueued", "delivery_queued"),
                                                                ("fanOutPending", "fan_out_pending")) if name in odd}
    last = data.get("lastMessage")
    if "lastMessage" in odd and isinstance(last, dict):
        flags["last_message"] = _salvaged_last(last)
    if odd or len(usable) < len(participants):
        logger.warn(f"chat {chat_id}: the engine reads around {sorted(odd)} and {len(participants) - len(usable)}"
                    " participant ids that cannot key a document", event=CHAT_DOCUMENT_ODD, chatId=chat_id,
                    fields=sorted(odd))
    return chat.model_copy(update=flags)


def _salvaged_last(stored: dict) -> LastMessage:
    """What can be used of a lastMessage the engine did not write: its id if it can key a document
    (else none: the next send takes the ULID of its time), its sender and text if strings."""
    def text(name: str) -> str | None:
        value = stored.get(name)
        return value if isinstance(value, str) else None

    created_at = stored.get("createdAt")
    return LastMessage(
        message_id=stored["messageId"] if is_document_id(stored.get("messageId")) else "",
        sender_id=text("senderId") or "", text=text("text"), has_content=stored.get("hasContent") is True,
        created_at=created_at if isinstance(created_at, datetime) else clock.EPOCH)


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
    return salvage(UserProfile, data)[0]


def message_of(snapshot: DocumentSnapshot) -> ChatMessage | None:
    """A chat's message as stored (`chats/{chatId}/messages/{id}`); None, logged, for one the chat
    core or a hand left unusable: a history read (resync) goes on past it."""
    try:
        return ChatMessage.model_validate(snapshot.to_dict())
    except ValidationError as err:
        logger.warn(f"message {snapshot.reference.path} is unusable and left out: {problems(err)[:300]}",
                    event="CHAT_MESSAGE_UNUSABLE", path=snapshot.reference.path)
        return None
