"""Pydantic models of every document and every request and response.

Python code uses snake_case attributes; documents and the wire use the seed's
camelCase names (aliases generated from the attribute names).
"""

from __future__ import annotations

import re
import zlib
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    computed_field,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from ulid import ULID

from . import constants


class Region(StrEnum):
    EU = "EU"
    US = "US"
    APAC = "APAC"


class QueueStatus(StrEnum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"
    DROPPED = "DROPPED"


DUE_STATUSES = (QueueStatus.PENDING, QueueStatus.FAILED)
"""Statuses a processor may still deliver."""


class Document(BaseModel):
    """Base of stored documents: camelCase in Firestore, snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        frozen=True,
    )

    def to_firestore(self) -> dict[str, Any]:
        """The document's fields as Firestore stores them (datetimes kept)."""
        return self.model_dump()


# ---------------------------------------------------------------- chat core


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
            was accepted (blocks are applied chunk by chunk).
        next: index in `recipients` of the first one not yet handled; every
            chunk's commit moves it, conditional on the job as read.
        origin: the sender's home region.
    """

    chat_id: str
    message: ChatMessage
    recipients: list[str]
    next: int = 0
    origin: Region
    created_at: datetime
    updated_at: datetime


# ------------------------------------------------------------------- queue


class TransportMetadata(Document):
    """How to reach the recipient, fixed when the entry is enqueued.

    Attributes:
        push_tokens: FCM tokens to notify; empty when the recipient was online.
        sender_name: display name shown in the push notification.
    """

    push_tokens: list[str] = Field(default_factory=list)
    sender_name: str | None = None


class QueueEvent(Document):
    """One state change of a queue entry, kept in the entry's `history` (the
    seed's PACK 296 audit integration): written in the same write as the change.

    Attributes:
        actor: who made the change: `user:{uid}`, `trigger`, `scheduler`, `ops`...
        action: ENQUEUED, DELIVERED, FAILED, DROPPED or REQUEUED.
        from_status: status before the change (None when enqueued).
        to_status: status after it.
        attempts: the entry's attempts after the change.
        details: error text, back-off, as the action needs.
    """

    actor: str
    action: str
    from_status: QueueStatus | None = None
    to_status: QueueStatus
    attempts: int
    at: datetime
    details: dict[str, Any] = Field(default_factory=dict)


class QueuedMessage(Document):
    """`regions/{targetRegion}/messageQueue/{messageId}_{recipientId}`.

    One entry per (message, recipient): the id makes a second one impossible.
    `region` is where the message was sent from (the sender's home region),
    `target_region` the recipient's home region, whose queue holds the entry.
    `awaiting_inbox` is true until the message is in the recipient's inbox (or
    dropped): while it is, newer messages of the same chat wait behind it.
    An entry whose message the send placed in the inbox itself only carries
    the push to an offline recipient (`awaiting_inbox` false from the start).
    """

    id: str
    message_id: str
    chat_id: str
    sender_id: str
    recipient_id: str
    region: Region
    target_region: Region
    content_ref: str
    text: str | None = None
    status: QueueStatus = QueueStatus.PENDING
    awaiting_inbox: bool = True
    attempts: int = 0
    next_attempt_at: datetime
    last_error: str | None = None
    billing_state: dict[str, Any] = Field(default_factory=dict)
    transport_metadata: TransportMetadata = Field(default_factory=TransportMetadata)
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None = None
    inbox_seq: int | None = None
    """The message's seq in the recipient's inbox, once placed."""
    last_failed_at: datetime | None = None
    """The time of the latest failed attempt (metrics count failures by it)."""
    placed_by_send: bool = False
    """The writer that made this entry (the send, or a fan-out chunk) placed the
    message in the inbox itself: the entry carries only the push."""
    system_nudge: bool = False
    """A nudge of the engine's own (see nudges): marked so in the inbox."""
    requeues: int = 0
    """Times an operator put the entry back on the queue after it was dropped
    (`attempts` starts again at 0 each time)."""
    history: list[QueueEvent] = Field(default_factory=list)
    """Every state change of the entry, oldest first (see QueueEvent)."""

    @staticmethod
    def entry_id(message_id: str, recipient_id: str) -> str:
        return f"{message_id}_{recipient_id}"

    @computed_field  # type: ignore[prop-decorator]  # pydantic's documented pattern; mypy does not follow it
    @property
    def shard(self) -> int:
        """Slice of the queue a fanned-out processor worker takes (see delivery.drain):
        a hash of (chat, recipient), so each of their entries is in one slice."""
        return zlib.crc32(f"{self.chat_id}\0{self.recipient_id}".encode()) % constants.QUEUE_SHARDS


class InboxEntry(Document):
    """`users/{uid}/inbox/{messageId}`: a delivered message, ready to render.

    Attributes:
        seq: the entry's place in the user's inbox: 1, 2, 3 ... in the order
            entries became visible (see InboxHead). Sync cursors are seqs.
        region: the recipient's home region when the message was sent (its
            queue, had it needed one); metrics count deliveries by it.
        via: `send` if the send's own commit created the entry, `fanOut` if
            a fan-out chunk did (see fan_out), `queue` if a delivery from the
            queue did.
        delivered_at: when the entry was created; equal to created_at when
            the send placed it.
    """

    seq: int
    message_id: str
    chat_id: str
    sender_id: str
    sender_name: str | None = None
    text: str | None = None
    content_ref: str
    region: Region
    via: str = "queue"
    system_nudge: bool = False
    created_at: datetime
    delivered_at: datetime


class ChatInbox(Document):
    """What a user's inbox head knows of one chat.

    Attributes:
        unread: the user's inbox entries of the chat newer than `read_up_to`
            (none is the user's own: senders are never their own recipients).
        read_up_to: the user's read position in the chat (None: nothing read).
        last: the newest message of the chat in the inbox (None: none yet).
    """

    unread: Annotated[int, Field(ge=0)] = 0
    read_up_to: str | None = None
    last: str | None = None

    @field_validator("unread", mode="before")
    @classmethod
    def _never_negative(cls, value: Any) -> Any:
        # A damaged count reads as 0 (recalculation repairs it); it must not block the inbox.
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


class InboxHead(Document):
    """`users/{uid}/inboxHead/current`: the state of the user's inbox, in one document.

    Every inbox entry is created in the same commit as the head moves to its
    seq, conditional on the head being unchanged since it was read. Seq n+1
    is therefore only ever assigned after seq n is visible, and a reader that
    has seen n+1 has seen every entry before it. The same commit counts the
    entry as unread in its chat; markAsRead moves a chat's read position and
    recounts in a commit conditional on the head too. So every change to the
    inbox and to the read positions is serialised on this document, and the
    unread counts are exact at every moment (see inbox).

    Attributes:
        seq: the seq of the newest entry (0: none yet).
        message_id: the newest entry's message.
        chats: per chat with entries in the inbox, its unread count, read
            position and newest message; fully read chats beyond
            MAX_TRACKED_CHATS are pruned, oldest first.
        pruned: chats were pruned: a chat not tracked may have a read
            position, in its read receipt.
        acked_seq: the furthest position a device of the user acknowledged
            (ackMessages): the delivery receipt of every entry up to it.
    """

    model_config = ConfigDict(extra="ignore")

    seq: int = 0
    message_id: str | None = None
    chats: dict[str, ChatInbox] = Field(default_factory=dict)
    pruned: bool = False
    acked_seq: int = 0
    updated_at: datetime | None = None


class AuditEvent(QueueEvent):
    """A QueueEvent with the entry it belongs to, as `ops history` lists a message's events."""

    entry_id: str
    message_id: str
    region: Region


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
    created_at: datetime


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


class Platform(StrEnum):
    IOS = "ios"
    ANDROID = "android"
    WEB = "web"


class DeviceSyncState(Document):
    """`regions/{region}/deviceSyncStates/{userId}_{deviceId}`, in the user's home region.

    Attributes:
        cursor: the position after the last page served (opaque, see cursors);
            None until the first sync.
        last_region: the user's home region when the device last registered
            or synced; a device that finds its state in another region moves it.
        platform, app_version: as registered; None for a device that synced
            without registering.
        last_sync_duration_ms: how long the last sync call took.
    """

    user_id: str
    device_id: str
    platform: Platform | None = None
    app_version: str | None = None
    cursor: str | None = None
    last_region: Region
    last_sync_at: datetime | None = None
    last_sync_duration_ms: int | None = None
    registered_at: datetime | None = None
    """None for a device whose first write was a sync that found no state (see sync)."""
    updated_at: datetime


class RegionQueueStats(Document):
    """Counts of one region's queue, by status, at `at`."""

    region: Region
    at: datetime
    pending: int
    failed: int
    delivered: int
    dropped: int

    @property
    def depth(self) -> int:
        """Entries still waiting for delivery."""
        return self.pending + self.failed


# ----------------------------------------------------------- API (callables)


def _check_unicode(value: Any, where: str = "data", depth: int = 0) -> None:
    """Refuse strings Firestore cannot store (lone surrogates: not UTF-8) anywhere in `value`.

    Args:
        value: the request data, or a part of it.
        where: the field path of `value`, for the error message.
        depth: nesting level; deeper values are left to the type checks
            (no request field nests more than one list).
    """
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{where}: must be valid Unicode (no lone surrogates)") from None
    elif depth < 4 and isinstance(value, dict):
        for key, item in value.items():
            _check_unicode(key, where, depth + 1)
            _check_unicode(item, key if depth == 0 and isinstance(key, str) else where, depth + 1)
    elif depth < 4 and isinstance(value, list):
        # Longer lists are refused by the field's length limit anyway.
        for index, item in enumerate(value[: constants.MAX_ACK_IDS + 1]):
            _check_unicode(item, f"{where}.{index}", depth + 1)


class Request(BaseModel):
    """Base of callable requests: exact types, no unknown fields, valid Unicode only."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        _check_unicode(data)
        return data


class Response(BaseModel):
    model_config = ConfigDict(frozen=True)


_DOC_ID = re.compile(r"^(?!\.\.?\Z)(?!__.*__\Z)[^/]+\Z", re.DOTALL)


class DocumentIdError(ValueError):
    pass


def check_document_id(value: object) -> str:
    """`value` if it can be a Firestore document id of ours; DocumentIdError otherwise.

    A non-empty string of at most MAX_ID_LENGTH characters, valid Unicode,
    without '/', other than '.' and '..', not of the reserved form `__x__`.
    """
    if not isinstance(value, str) or not 0 < len(value) <= constants.MAX_ID_LENGTH:
        raise DocumentIdError(f"must be a string of 1 to {constants.MAX_ID_LENGTH} characters")
    if not _DOC_ID.match(value):
        raise DocumentIdError("must be a valid document id (no '/', not '.', '..' or '__name__')")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise DocumentIdError("must be valid Unicode") from None
    return value


def _firestore_id(value: str) -> str:
    check_document_id(value)
    return value


def _ulid(value: str) -> str:
    try:
        ULID.from_str(value)
    except ValueError:
        raise ValueError("must be a ULID (26 characters of Crockford base32)") from None
    return value.upper()


DocumentId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=constants.MAX_ID_LENGTH),
    AfterValidator(_firestore_id),
]
UlidString = Annotated[str, StringConstraints(min_length=26, max_length=26), AfterValidator(_ulid)]


class SendMessageRequest(Request):
    """`pack427_sendMessage` data.

    Attributes:
        chatId: the chat; the caller must be a participant.
        clientMessageId: ULID made by the client; the idempotency key.
        text: message text, 1 to MAX_TEXT_LENGTH characters.
        contentRef: reference to content stored elsewhere (media); at least
            one of text and contentRef is required.
    """

    chatId: DocumentId
    clientMessageId: UlidString
    text: Annotated[str, StringConstraints(min_length=1, max_length=constants.MAX_TEXT_LENGTH)] | None = None
    contentRef: Annotated[
        str, StringConstraints(min_length=1, max_length=constants.MAX_CONTENT_REF_LENGTH)
    ] | None = None

    @model_validator(mode="after")
    def _has_content(self) -> SendMessageRequest:
        if self.text is None and self.contentRef is None:
            raise ValueError("text or contentRef is required")
        if self.text is not None and not self.text.strip():
            raise ValueError("text must not be blank")
        return self


class SendMessageResult(Response):
    messageId: str
    status: str
    duplicate: bool


DeviceId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=constants.MAX_DEVICE_ID_LENGTH),
    AfterValidator(_firestore_id),
]
Cursor = Annotated[str, StringConstraints(min_length=1, max_length=constants.MAX_CURSOR_LENGTH)]


class RegisterDeviceRequest(Request):
    """`pack427_registerDevice` data.

    Attributes:
        deviceId: chosen by the app, stable per installation.
        platform: ios, android or web.
        appVersion: the app's version string.
    """

    deviceId: DeviceId
    platform: Annotated[Platform, Strict(False)]
    appVersion: Annotated[str, StringConstraints(min_length=1, max_length=constants.MAX_APP_VERSION_LENGTH)]


class RegisterDeviceResult(Response):
    success: bool
    region: Region


class SyncMessagesRequest(Request):
    """`pack427_syncMessages` data.

    Attributes:
        deviceId: the syncing device.
        cursor: the `cursor` of the previous page; default: the position the
            device's sync state records (its last page served).
        since: Unix ms, for seed clients: start at the first message delivered
            after it. Ignored when a cursor is given.
    """

    deviceId: DeviceId
    cursor: Cursor | None = None
    since: Annotated[int, Field(ge=0, le=constants.MAX_UNIX_MS)] | None = None


class SyncedMessage(Response):
    """A message as sync and resync return it: everything an app renders.

    Times are Unix ms. `deliveredAt` is when the message reached the caller's
    inbox (None in a chat resync for the caller's own messages).
    """

    messageId: str
    chatId: str
    senderId: str
    senderName: str | None
    text: str | None
    contentRef: str
    createdAt: int
    deliveredAt: int | None
    systemNudge: bool = False
    """A message of the engine's own (a retention nudge, see nudges), not of a person."""


class SyncMessagesResult(Response):
    messages: list[SyncedMessage]
    hasMore: bool
    cursor: str


class AckMessagesRequest(Request):
    """`pack427_ackMessages` data.

    Attributes:
        messageIds: 1 to MAX_ACK_IDS message ids the device has stored.
        region: accepted from seed clients; the engine knows each message's
            queue region itself.
        deviceId: the acknowledging device, recorded in the delivery receipt.
    """

    messageIds: Annotated[list[UlidString], Field(min_length=1, max_length=constants.MAX_ACK_IDS)]
    region: Annotated[Region, Strict(False)] | None = None
    deviceId: DeviceId | None = None


class AckMessagesResult(Response):
    success: bool
    acknowledgedCount: int


class ResyncChatRequest(Request):
    """`pack427_resyncChat` data: one page of a whole chat, oldest first."""

    chatId: DocumentId
    cursor: Cursor | None = None


class ResyncChatResult(Response):
    success: bool
    messages: list[SyncedMessage]
    hasMore: bool
    cursor: str | None


# ------------------------------------------------------------ real-time signals


class TypingEvent(Document):
    """`regions/{region}/typingEvents/{chatId}_{userId}`, in the typing user's home region.

    A "stopped" deletes the event; one that never gets a "stopped" is treated
    as not typing once `expires_at` has passed, and cleanup deletes it later.

    Attributes:
        participants: the chat's members when the event was written, so that
            security rules can let exactly them read it.
        created_at: when this spell of typing began (kept across refreshes).
        updated_at: the last write (a refresh moves `expires_at`).
    """

    model_config = ConfigDict(extra="ignore")

    id: str
    chat_id: str
    user_id: str
    is_typing: bool
    region: Region
    participants: list[str]
    expires_at: datetime
    created_at: datetime
    updated_at: datetime


class ReadReceipt(Document):
    """`chats/{chatId}/readReceipts/{userId}`: how far the user has read the chat.

    Attributes:
        read_up_to_message_id: the newest message read; only ever moves forward.
        read_up_to_timestamp: that message's time (from its ULID).
        read_at: when it last moved.
    """

    model_config = ConfigDict(extra="ignore")

    chat_id: str
    user_id: str
    read_up_to_message_id: str
    read_up_to_timestamp: datetime
    read_at: datetime


class UpdateTypingStateRequest(Request):
    """`pack427_updateTypingState` data.

    Attributes:
        chatId: the chat; the caller must be a participant.
        isTyping: true on keystrokes (repeat as often as you like), false when
            the user stops; a boolean, nothing else.
    """

    chatId: DocumentId
    isTyping: bool


class UpdateTypingStateResult(Response):
    success: bool


class GetTypingUsersRequest(Request):
    """`pack427_getTypingUsers` data: the chat (the caller must be a participant)."""

    chatId: DocumentId


class TypingUser(Response):
    userId: str
    expiresAt: datetime


class GetTypingUsersResult(Response):
    """Participants other than the caller who are typing now (not expired)."""

    typingUsers: list[TypingUser]


class MarkAsReadRequest(Request):
    """`pack427_markAsRead` data.

    Attributes:
        chatId: the chat; the caller must be a participant.
        readUpToMessageId: a message of that chat (a ULID); everything up to it
            is read. An older position than the stored one is accepted and ignored.
    """

    chatId: DocumentId
    readUpToMessageId: UlidString


class MarkAsReadResult(Response):
    success: bool
    unreadCount: int


class NoArgumentsRequest(Request):
    """Data of callables that take none (`{}` or null); anything else is refused."""


class UnreadCountsResult(Response):
    """Unread messages per chat (every chat with a counter) and their sum."""

    unreadCounts: dict[str, int]
    totalUnread: int


class CounterChange(Response):
    chatId: str
    before: int | None
    """The stored count (None: no counter, or not a valid count)."""
    after: int


class RecalculateUnreadCountersResult(Response):
    """`recalculated` counters changed out of `checked`; `changes` says which and how."""

    success: bool
    recalculated: int
    checked: int
    changes: list[CounterChange]


# -------------------------------------------------------------- chat list


class GetChatListRequest(Request):
    """`pack427_getChatList` data.

    Attributes:
        limit: chats per page, 1 to MAX_CHAT_LIST_LIMIT (default 20).
        cursor: the `cursor` of the previous page.
    """

    limit: Annotated[int, Field(ge=1, le=constants.MAX_CHAT_LIST_LIMIT)] = constants.DEFAULT_CHAT_LIST_LIMIT
    cursor: Cursor | None = None


class ReceiptStatus(StrEnum):
    """How far one recipient has got with a message, in the order it can only advance."""

    PENDING = "pending"
    """Queued, not in the recipient's inbox yet."""
    SENT = "sent"
    """In the recipient's inbox."""
    DELIVERED = "delivered"
    """A device of the recipient acknowledged it (ackMessages)."""
    READ = "read"
    """The recipient's read position is at or past it (markAsRead)."""
    FAILED = "failed"
    """Dropped after MAX_ATTEMPTS; an operator can requeue it."""


class ChatListLastMessage(Response):
    messageId: str
    senderId: str
    text: str | None
    hasContent: bool
    createdAt: int


class ChatListItem(Response):
    """One chat of the caller's list.

    `lastMessageStatus` is set when the caller sent the last message: each
    other participant's receipt status for it.
    """

    chatId: str
    participants: list[str]
    lastMessage: ChatListLastMessage
    unreadCount: int
    lastMessageStatus: dict[str, ReceiptStatus] | None


class GetChatListResult(Response):
    chats: list[ChatListItem]
    totalUnread: int
    hasMore: bool
    cursor: str | None
# ------------------------------------------------------------- operability


class LatencyPercentiles(Document):
    """Send-to-inbox latency (createdAt to deliveredAt) of a sample of deliveries, in ms.

    Attributes:
        samples: deliveries measured (None percentiles when there were none).
    """

    samples: int
    p50_ms: int | None = None
    p95_ms: int | None = None
    p99_ms: int | None = None


class RegionMetrics(Document):
    """`regions/{region}/queueStats/{yyyymmddTHHMMSS}`: one region's figures at `at`.

    Counts (`pending` ... `depth`) are the whole queue at `at`; the rest cover
    the window [`at` - `window_seconds`, `at`).

    Attributes:
        depth: entries waiting for delivery (PENDING + FAILED).
        delivered_in_window: messages that reached an inbox of the region
            (by the send itself or from the queue).
        placed_by_send_in_window: of those, placed by the send's own commit
            (no queue, no latency).
        failed_in_window, dropped_in_window: delivery attempts that ended so,
            from the queue entries' histories (a FAILED attempt is retried
            later; a DROPPED one was the last).
        lost_in_window: of the dropped, those whose message never reached the
            inbox (the others only lost their push notification).
        delivery_success_rate: of the messages whose fate was settled in the
            window, the share that reached the inbox: delivered / (delivered
            + lost); None when none was settled.
        failed_delivery_rate: of the attempts in the window, the share that
            failed: (failed + dropped) / (delivered + failed + dropped).
        latency_same_region, latency_cross_region: entries delivered from the
            queue in the window whose sender is in this region, or in another.
        syncs_in_window: devices of this region whose last sync was in the window.
        sync_avg_ms, sync_max_ms: their sync durations; slow_syncs: how many
            took longer than the alert threshold.
    """

    region: Region
    at: datetime
    window_seconds: int
    pending: int
    failed: int
    delivered: int
    dropped: int
    depth: int
    delivered_in_window: int
    placed_by_send_in_window: int = 0
    failed_in_window: int
    dropped_in_window: int
    lost_in_window: int = 0
    delivery_success_rate: float | None
    failed_delivery_rate: float | None
    latency_same_region: LatencyPercentiles
    latency_cross_region: LatencyPercentiles
    syncs_in_window: int
    sync_avg_ms: float | None
    sync_max_ms: int | None
    slow_syncs: int


class EngineMode(StrEnum):
    QUEUE = "queue"
    """Normal operation: the trigger and the processor deliver from the queues."""
    DIRECT = "direct"
    """Rollback: the trigger stands still and pack427_sendMessage delivers what it queues in the
    request; the processor still drains what was queued before, and retries."""


class EngineSettings(Document):
    """`config/engine`: runtime settings the functions read without a redeploy.

    Attributes:
        mode: queue (default, also when the document is missing) or direct.
        max_messages_per_minute: sends allowed per user in any 60 seconds
            (default MAX_MESSAGES_PER_MINUTE; raised for bots and load tests).
        updated_by: who last changed it (`ops:{user}`).
        reason: why, as the operator said.
    """

    model_config = ConfigDict(extra="ignore")

    mode: EngineMode = EngineMode.QUEUE
    max_messages_per_minute: Annotated[int, Field(ge=1, le=constants.MAX_RATE_LIMIT)] = (
        constants.MAX_MESSAGES_PER_MINUTE)
    updated_at: datetime | None = None
    updated_by: str | None = None
    reason: str | None = None


class RequeueReport(Response):
    """What `ops requeue-dropped` did: entry ids back to PENDING, and dropped
    entries whose message was in the inbox already (a push that kept failing),
    now marked DELIVERED."""

    requeued: list[str]
    markedDelivered: list[str]


class ChatRepairReport(Response):
    """What `ops resync USER CHAT` did for the chat's messages missing from the user's inbox.

    Attributes:
        checked: messages of the chat sent by others.
        missing: of those, not in the inbox before the repair.
        requeued: dropped entries put back on the queue.
        retried: waiting entries made due at once.
        stillMissing: message ids not in the inbox after the repair (a failed
            attempt, retried by the processor; or never queued for the user:
            see `unqueued`).
        unqueued: message ids with no queue entry for the user (sent before
            they joined, or their entry was cleaned up): reported, not invented.
    """

    checked: int
    missing: int
    requeued: list[str]
    retried: list[str]
    stillMissing: list[str]
    unqueued: list[str]
