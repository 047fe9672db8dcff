"""The rollback path: mode direct delivers in the send's own request (see settings).

The seed's rollback lets direct delivery take over while the queue drains;
here the send hands what it queued to `deliver_now`, and the processor,
which keeps draining in mode direct, retries what fails.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from google.cloud.firestore import Client
from google.cloud.firestore_v1.base_query import FieldFilter

from . import queue
from .delivery import PARALLEL_DELIVERIES, Outcome, deliver, deliver_in_order
from .notifier import Notifier
from .queue import LoadedEntry


def deliver_now(
    db: Client, chat_id: str, message_id: str, notifier: Notifier, *, now: datetime | None = None
) -> dict[str, Outcome]:
    """Deliver what one message left in the queues, in the caller's request (rollback: mode direct).

    Entries awaiting the inbox go through `deliver_in_order`, as the trigger
    does: the recipient's older undelivered messages of the chat go first, so
    inbox seq and per-chat order hold. Push-only entries (the send placed the
    message) are pushed. A failure is recorded on the entry, and the
    processor, which keeps draining in mode direct, retries it.

    Args:
        chat_id: the message's chat.
        now: the attempts' time (default: the clock).

    Returns:
        The outcome of each entry attempted.
    """
    query = db.collection_group("messageQueue").where(filter=FieldFilter("messageId", "==", message_id))
    entries = queue.usable(db, query.stream(), actor="direct")

    def attempt(loaded: LoadedEntry) -> dict[str, Outcome]:
        entry = loaded.entry
        if entry.awaiting_inbox:
            return deliver_in_order(db, chat_id, entry.recipient_id, notifier, actor="direct", now=now,
                                    up_to=message_id)
        return {entry.id: deliver(db, loaded, notifier, actor="direct", now=now)}

    outcomes: dict[str, Outcome] = {}
    with ThreadPoolExecutor(max_workers=PARALLEL_DELIVERIES) as pool:
        for result in pool.map(attempt, entries):
            outcomes.update(result)
    return outcomes
