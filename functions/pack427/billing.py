"""The billing seam (the seed's PACK 273). This engine never bills.

Accepting a message asks the billing system, once, to charge for it: a
`billingRequests/{messageId}` document written in the same atomic batch that
creates the message, which the billing system consumes. The document id makes
a second request for the same message impossible; the batch makes a message
without its request (or a request without its message) impossible.
"""

from __future__ import annotations

from typing import Any

from google.cloud.firestore import Client, WriteBatch

from . import paths
from .models import ChatMessage


def add_billing_request(db: Client, batch: WriteBatch, message: ChatMessage, billing_state: dict[str, Any]) -> None:
    """Add the one billing request for `message` to `batch`.

    Args:
        billing_state: the chat core's billing state for the chat, passed on
            unchanged (this engine never reads or changes what it means).
    """
    batch.create(
        paths.billing_request(db, message.id),
        {
            "messageId": message.id,
            "chatId": message.chat_id,
            "senderId": message.sender_id,
            "billingState": billing_state,
            "createdAt": message.created_at,
        },
    )
