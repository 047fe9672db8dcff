"""Documents of chats and of accepting messages: what the chat core writes
(`users/{uid}`, `chats/{chatId}`), the messages, their fan-out jobs, the
idempotency records, rate windows and refusals.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    ConfigDict,
    Field,
    Strict,
    field_validator,
)

from .base import Document, Region


class UserProfile(Document):
    """`users/{uid}`, written by the chat core; the fields this engine reads.

    Attributes:
        region: home region; unknown or missing means the configured default.
        online: presence flag kept by the app; offline users get a push.
        fcm_tokens: FCM registration tokens of the user's devices.
        display_name: shown in push notifications.
        age_verified_18_plus: `ageVerified18Plus`, set by the chat core once
            the user proved they are 18 or older; only `true` lets them send.
        blocked_users: `blockedUsers`, uids this user blocked: no message
            passes between them and the user, either way (see policy).
    """

    model_config = ConfigDict(extra="ignore")

    region: Region | None = None
    online: bool = False
    fcm_tokens: list[str] = Field(default_factory=list)
    display_name: str | None = None
    age_verified_18_plus: Annotated[bool, Strict()] = False
    blocked_users: list[str] = Field(default_factory=list)

    @field_validator("blocked_users", mode="before")
    @classmethod
    def _uids_only(cls, value: Any) -> Any:
        # A damaged entry must not void the whole list: keep every uid that is a string.
        return [uid for uid in value if isinstance(uid, str)] if isinstance(value, list) else value


class LastMessage(Document):
    """The newest message of a chat, kept on the chat for chat lists.

    Attributes:
        text: the message text cut to LAST_MESSAGE_PREVIEW_LENGTH characters.
        has_content: the message carries a contentRef (media).
    """

    message_id: str
    sender_id: str
    text: str | None = None
    has_content: bool = False
    created_at: datetime


class Chat(Document):
    """`chats/{chatId}`, written by the chat core, except `lastMessage` and `deliveryQueued`.

    Attributes:
        participants: user ids of the members.
        billing: the chat core's billing state for messages of this chat,
            copied onto every message and queue entry, never changed by this engine.
        last_message: written by each send, conditional on the chat being
            unchanged since it was read; this is what orders a chat's message
            ids (see sending).
        delivery_queued: some message of this chat may still wait in a queue
            for a recipient's inbox; while it may, no send places a message
            of the chat in an inbox directly (it would overtake). Written by
            each send, with `lastMessage` (see sending).
        fan_out_pending: a message of this chat may still be in fan-out
            (see fan_out); while it may, every message of the chat goes
            through fan-out too, after it. Set by the send that starts a
            fan-out, cleared by the fan-out worker that finds none left.
    """

    model_config = ConfigDict(extra="ignore")

    participants: list[str]
    billing: dict[str, Any] = Field(default_factory=dict)
    last_message: LastMessage | None = None
    delivery_queued: bool = False
    fan_out_pending: bool = False


class ChatMessage(Document):
    """`chats/{chatId}/messages/{messageId}`: the message as the chat stores it.

    It is also the message's one billing request (the seed's PACK 273): the
    billing system takes each new message document, with `billingState`, the
    chat's billing state at the send, passed on unchanged. Created in the
    send's atomic commit, it cannot exist without the message nor twice.
    (Chat members read it: what only the engine may know of a send, such as
    who received it, is in its IdempotencyRecord.)
    """

    id: str
    chat_id: str
    sender_id: str
    client_message_id: str
    sender_name: str | None = None
    text: str | None = None
    content_ref: str | None = None
    system_nudge: bool = False
    billing_state: dict[str, Any] = Field(default_factory=dict)
    priority: bool = False
    """Delivered in the processor's priority lane under a backlog (a paid or VIP message),
    decided on the server at acceptance (admission.priority_of), never by the client."""
    intake: str = "send"
    """How the message entered delivery: `send` (pack427_sendMessage), `nudge`,
    or `chatCore` (a message the chat core created, taken by its trigger, see
    chat_core_intake). The chat-core trigger leaves alone a message that has one."""
    created_at: datetime


class FanOut(Document):
    """`chats/{chatId}/fanOuts/{messageId}`: a message's delivery to a large group, under way (see fan_out).

    Attributes:
        message: the message as accepted (what every inbox entry is made of).
        recipients: the chat's participants but the sender, as the message
            was accepted (blocks are applied chunk by chunk): the first of them,
            as many as FAN_OUT_INLINE_BYTES hold; the others in `parts` part
            documents (FanOutPart), so that no document nears 1 MiB whatever the ids.
        parts: how many part documents follow `recipients` (0: they are all here).
        next: index, in `recipients` followed by the parts' recipients, of the first
            one not yet handled; every chunk's commit moves it, conditional on the job as read.
        origin: the sender's home region.
    """

    chat_id: str
    message: ChatMessage
    recipients: list[str]
    parts: Annotated[int, Field(ge=0)] = 0
    next: int = 0
    origin: Region
    created_at: datetime
    updated_at: datetime


class FanOutPart(Document):
    """`chats/{chatId}/fanOuts/{messageId}/parts/{k}` (k = 1, 2, ...): the next of a fan-out job's
    recipients, at most FAN_OUT_PART_BYTES of ids. Written with the job, never changed, deleted
    with it by its last chunk's commit."""

    recipients: list[str]


class IdempotencyRecord(Document):
    """`idempotencyKeys/{senderId}_{clientMessageId}`: the first accepted send, and what it did.

    Attributes:
        placed_by_send: recipients whose inbox entry the send's own commit
            created (see sending); the others went through their queue. Kept
            here, where no client reads, not on the message: in a group it
            would tell members who blocked whom.
    """

    model_config = ConfigDict(extra="ignore")

    message_id: str
    chat_id: str
    sender_id: str
    payload_hash: str
    placed_by_send: list[str] = Field(default_factory=list)
    scheduled: bool = False
    """The send was scheduled (`deliverAt`): `message_id` is its scheduled id (see scheduling)."""
    created_at: datetime
    expires_at: datetime | None = None
    """When Firestore's TTL policy may delete the record (IDEMPOTENCY_RETENTION_DAYS after the send,
    or after its deliverAt). None on records written before the retention existed: kept for good."""


class SendRecord(Document):
    """One accepted send in a user's rate window.

    Attributes:
        at: when the send was accepted.
        chat_id: the chat it went to.
        content_hash: a short hash of the normalised text (or contentRef), for
            the spam rule that spots one text flooded to many chats.
    """

    at: datetime
    chat_id: str
    content_hash: str


class RateWindow(Document):
    """`rateLimits/{uid}`: the user's sends of the last minute (a sliding log).

    Written in the same atomic batch as each accepted send, conditional on
    being unchanged since the send read it: see rate_limit.

    Attributes:
        sends: accepted sends younger than RATE_WINDOW_SECONDS, oldest first;
            never more than MAX_MESSAGES_PER_MINUTE.
        expires_at: when the newest send leaves the window; a TTL policy on it
            deletes idle windows.
    """

    model_config = ConfigDict(extra="ignore")

    user_id: str
    sends: list[SendRecord] = Field(default_factory=list)
    updated_at: datetime
    expires_at: datetime


class CallWindow(Document):
    """`recalculationWindows/{uid}`: the user's pack427_recalculateUnreadCounters calls of the last
    minute (a sliding log; rate_limit.admit_recalculation).

    Attributes:
        calls: their times, oldest first; never more than MAX_RECALCULATIONS_PER_MINUTE.
        expires_at: when the newest call leaves the window; a TTL policy on it deletes idle windows.
    """

    model_config = ConfigDict(extra="ignore")

    user_id: str
    calls: list[datetime] = Field(default_factory=list)
    updated_at: datetime
    expires_at: datetime


class SendRejection(Document):
    """`auditLog/rejected_{senderId}_{clientMessageId}`: a send that a policy refused.

    Attributes:
        action: always SEND_REJECTED (queue events carry their status instead).
        actor: `user:{uid}`, the sender.
        reason: the rule's code, e.g. `spam_suspected`.
        rule: which checker refused it (the default rule or an integration).
        details: what the rule saw, for a reviewer.
    """

    action: str = "SEND_REJECTED"
    actor: str
    sender_id: str
    chat_id: str
    client_message_id: str
    reason: str
    rule: str
    at: datetime
    details: dict[str, Any] = Field(default_factory=dict)


class ScheduledStatus(StrEnum):
    SCHEDULED = "SCHEDULED"
    DELIVERED = "DELIVERED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"
    """At its time the sender could no longer send there (left the chat, blocked, not 18+)."""
    STOPPED = "STOPPED"
    """A recurring series whose sender could no longer send there at an occurrence's time (`reason`):
    no further occurrence is delivered; listed until the sender cancels it."""


class ScheduleSlot(Document):
    """`scheduleSlots/{senderId}_{YYYYMMDDTHHMM}`: the sender's messages falling due in one UTC minute.

    Written in the commit that accepts each scheduled message, conditional on it as read (sending):
    never more than the rate limit in force when it was written.

    Attributes:
        minute: the minute's start.
        scheduled: messages accepted for it (a cancelled one keeps its place).
        expires_at: the minute's end; a TTL policy on it deletes past slots.
    """

    model_config = ConfigDict(extra="ignore")

    sender_id: str
    minute: datetime
    scheduled: Annotated[int, Field(ge=0)] = 0
    updated_at: datetime
    expires_at: datetime


class ScheduledMessage(Document):
    """`scheduledMessages/{senderId}_{clientMessageId}`: a message accepted now for delivery at `deliver_at`
    (see scheduling).

    Attributes:
        delivery_key: the clientMessageId its delivery is sent with (a ULID made at
            acceptance): two processors delivering it make one message.
        message_id: the delivered message's id (status DELIVERED; of a series, its last delivered occurrence's).
        reason: why it failed (status FAILED) or its series stopped (STOPPED).
        rrule, time_zone: a recurring series' rule and zone (None: a one-off message; see recurrence).
        occurrences: a series' occurrences, all of them, computed at acceptance; `deliver_at` is the
            one due next (the delivery of each moves it to the next, in the same commit).
        cancelled_occurrences: occurrences cancelled one by one.
        delivered_count: a series' occurrences delivered so far.
    """

    sender_id: str
    chat_id: str
    client_message_id: str
    text: str | None = None
    content_ref: str | None = None
    deliver_at: datetime
    delivery_key: str
    priority: bool = False
    """Decided at acceptance (see ChatMessage.priority); its delivery keeps it."""
    status: ScheduledStatus = ScheduledStatus.SCHEDULED
    message_id: str | None = None
    reason: str | None = None
    rrule: str | None = None
    time_zone: str | None = None
    occurrences: list[datetime] = []
    cancelled_occurrences: list[datetime] = []
    delivered_count: Annotated[int, Field(ge=0)] = 0
    created_at: datetime
    updated_at: datetime
