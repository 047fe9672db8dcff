"""Read receipts: how far each participant has read a chat; they only move forward.

`chats/{chatId}/readReceipts/{uid}` is shared by all the user's devices. A
move is a write conditional on the receipt being unchanged since it was read
(or on its absence), so two devices marking different positions at once
cannot overwrite each other backwards: the loser reads again and keeps the
further of the two. Message ids are ULIDs that increase with send order
within a chat, so "further" is plain string order.
"""

from __future__ import annotations

from datetime import datetime

from google.api_core import exceptions as gexc
from google.cloud.firestore import Client
from pydantic import ValidationError
from ulid import ULID

from . import constants, paths
from .errors import Aborted
from .models import ReadReceipt


def read_position(db: Client, chat_id: str, uid: str) -> ReadReceipt | None:
    """The user's read receipt of the chat; None if they have read nothing (or it is unreadable).

    Args:
        chat_id: the chat.
        uid: the reader.
    """
    snapshot = paths.read_receipt(db, chat_id, uid).get()
    return _receipt(snapshot.to_dict()) if snapshot.exists else None


def read_up_to(db: Client, chat_id: str, uid: str) -> str | None:
    """The id of the newest message the user has read in the chat, or None."""
    receipt = read_position(db, chat_id, uid)
    return receipt.read_up_to_message_id if receipt else None


def advance(db: Client, chat_id: str, uid: str, message_id: str, *, now: datetime) -> bool:
    """Move the user's read position to `message_id` unless it is already there or further.

    Args:
        chat_id: the chat.
        uid: the reader.
        message_id: a message of the chat (the caller checked).
        now: stored as `readAt`.

    Returns:
        True if this call moved the receipt; False if it was at `message_id`
        or further (an older position is ignored, never written).

    Raises:
        Aborted: other writers kept changing the receipt for UNREAD_WRITE_RETRIES attempts.
    """
    ref = paths.read_receipt(db, chat_id, uid)
    receipt = ReadReceipt(
        chat_id=chat_id,
        user_id=uid,
        read_up_to_message_id=message_id,
        read_up_to_timestamp=ULID.from_str(message_id).datetime,
        read_at=now,
    ).to_firestore()
    for _ in range(constants.UNREAD_WRITE_RETRIES):
        snapshot = ref.get()
        current = _receipt(snapshot.to_dict()) if snapshot.exists else None
        if current is not None and current.read_up_to_message_id >= message_id:
            return False
        try:
            if snapshot.exists:
                ref.update(receipt, option=db.write_option(last_update_time=snapshot.update_time))
            else:
                ref.create(receipt)
            return True
        except (gexc.FailedPrecondition, gexc.AlreadyExists, gexc.Aborted):
            continue  # another device moved it meanwhile: compare with theirs
    raise Aborted(f"the read receipt of chat {chat_id!r} is changing too fast; try again")


def _receipt(data: dict | None) -> ReadReceipt | None:
    # A receipt this engine did not write (or a damaged one) counts as nothing read.
    try:
        return ReadReceipt.model_validate(data or {})
    except ValidationError:
        return None
