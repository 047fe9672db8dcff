"""The pure decisions of accepting a message, apart from its reads and writes (sending).

- : its id, after the chat's last one (per-chat order);
- : what the chat keeps of it for chat lists;
- : whom the send places in their inboxes itself, and whom it queues.

Unit-tested without the emulator (tests/unit).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ulid import ULID

from .. import clock, constants
from ..errors import FailedPrecondition, InvalidArgument
from ..models import Chat, ChatMessage, LastMessage


@dataclass(frozen=True)
class DeliveryPlan:
    """How one send reaches its recipients.

    Attributes:
        placed: recipients whose inbox entries the send's commit creates.
        queued: recipients who get a queue entry awaiting their inbox.
        chat_queued: the chat's `deliveryQueued` after the send.
        queue_clear: no older message of the chat waits in a queue: the queued
            ones can go to their inboxes at once, without asking the queue.
    """

    placed: list[str]
    queued: list[str]
    chat_queued: bool
    queue_clear: bool


def plan_delivery(
    chat: Chat,
    recipients: list[str],
    *,
    place: bool,
    queue_checked_empty: bool,
    needs_read_position: set[str],
) -> DeliveryPlan:
    """Decide which recipients the send places in their inboxes itself (see the module docstring).

    Args:
        chat: the chat as the send read it.
        recipients: the message's recipients (after blocks).
        place: this attempt may place (one of the first INLINE_ATTEMPTS, at most INLINE_MAX_RECIPIENTS recipients).
        queue_checked_empty: the send asked the queue and no message of the chat waits there.
        needs_read_position: recipients whose head needs a read receipt to count
            the message (a pruned chat, see inbox): they go through the queue.
    """
    queue_clear = not chat.delivery_queued or queue_checked_empty
    if not (place and queue_clear and len(recipients) <= constants.INLINE_MAX_RECIPIENTS):
        return DeliveryPlan(placed=[], queued=list(recipients), chat_queued=bool(recipients) or not queue_clear,
                            queue_clear=queue_clear)
    placed = [uid for uid in recipients if uid not in needs_read_position]
    queued = [uid for uid in recipients if uid in needs_read_position]
    return DeliveryPlan(placed=placed, queued=queued, chat_queued=bool(queued), queue_clear=True)


def next_message_id(chat: Chat, now: datetime) -> str:
    """A ULID of `now`, or the successor of the chat's last id if that is not greater.

    A last id that is not a ULID (a chat core's own scheme, see chat_core_intake), or the last
    ULID there is, cannot be succeeded: the ULID of `now` is taken, and order between the two
    schemes is the core's affair.
    """
    candidate = ULID.from_datetime(now)
    if chat.last_message is not None:
        try:
            last = ULID.from_str(chat.last_message.message_id)
        except ValueError:
            return str(candidate)
        if int(candidate) <= int(last) < _LAST_ULID:
            candidate = ULID.from_int(int(last) + 1)
    return str(candidate)


_LAST_ULID = 2**128 - 1


def last_message(message: ChatMessage) -> LastMessage:
    """What the chat keeps of its newest message, for chat lists."""
    text = message.text[: constants.LAST_MESSAGE_PREVIEW_LENGTH] if message.text is not None else None
    return LastMessage(
        message_id=message.id,
        sender_id=message.sender_id,
        text=text,
        has_content=message.content_ref is not None,
        created_at=message.created_at,
    )


def record_expiry(sent_at: datetime, deliver_at: datetime | None = None) -> datetime:
    """When a send's idempotency record may go (its `expiresAt`, a TTL field):
    IDEMPOTENCY_RETENTION_DAYS after the send, or after its deliverAt when scheduled."""
    return max(sent_at, deliver_at or sent_at) + timedelta(days=constants.IDEMPOTENCY_RETENTION_DAYS)


def check_client_message_id_age(client_message_id: str, now: datetime) -> None:
    """FailedPrecondition (reason client_message_id_expired) if `client_message_id` (a ULID) was
    made more than CLIENT_MESSAGE_ID_MAX_AGE_DAYS before `now`.

    Asked only when no record of it was found: a send that old may be a retry whose record
    its TTL deleted, and accepting it could deliver the message twice. A client clock up to a
    day ahead of the server's is covered (see constants)."""
    made = ULID.from_str(client_message_id).datetime
    if made < now - timedelta(days=constants.CLIENT_MESSAGE_ID_MAX_AGE_DAYS):
        raise FailedPrecondition(
            f"clientMessageId {client_message_id} was made on {made:%Y-%m-%d}, more than"
            f" {constants.CLIENT_MESSAGE_ID_MAX_AGE_DAYS} days ago: a send that old may be a retry the"
            " engine no longer remembers; send it again with a new clientMessageId if it is still wanted",
            {"reason": "client_message_id_expired", "maxAgeDays": constants.CLIENT_MESSAGE_ID_MAX_AGE_DAYS})


def check_deliver_at(deliver_at_ms: int, now: datetime) -> None:
    """InvalidArgument unless `deliver_at_ms` (Unix ms) is after `now` and at most MAX_SCHEDULE_DAYS ahead."""
    if deliver_at_ms <= clock.to_millis(now):
        raise InvalidArgument("deliverAt: must be in the future (Unix ms)")
    if deliver_at_ms > clock.to_millis(now + timedelta(days=constants.MAX_SCHEDULE_DAYS)):
        raise InvalidArgument(f"deliverAt: must be at most {constants.MAX_SCHEDULE_DAYS} days ahead")


SCHEDULE_MINUTE_FULL = "schedule_minute_full"


def schedule_minute(deliver_at_ms: int) -> datetime:
    """The UTC minute a message scheduled for `deliver_at_ms` (Unix ms) falls due in: its start."""
    return clock.from_millis(deliver_at_ms - deliver_at_ms % 60_000)


def check_schedule_minute(scheduled: int, limit: int, minute: datetime) -> None:
    """FailedPrecondition (reason schedule_minute_full) if the sender has `limit` messages falling due
    in `minute` already.

    Args:
        scheduled: the sender's messages scheduled for that minute so far (cancelled ones too).
        limit: the rate limit in force (MAX_MESSAGES_PER_MINUTE): what a sender may send in a minute.
        minute: the minute's start (schedule_minute).
    """
    if scheduled >= limit:
        raise FailedPrecondition(
            f"deliverAt: you have {limit} messages scheduled for {minute:%Y-%m-%d %H:%M} UTC already, the most "
            f"that may fall due in one minute (the rate limit: {limit} a minute); choose another minute",
            {"reason": SCHEDULE_MINUTE_FULL, "limit": limit, "minute": clock.to_millis(minute)})
