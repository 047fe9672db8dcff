"""The callables' requests and responses (the wire), validated strictly.
"""

from __future__ import annotations

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
    model_validator,
)

from .. import constants
from .base import Region
from .ids import DocumentId, MessageId, UlidString, _firestore_id
from .presence import Platform


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


class Recurrence(Request):
    """`recurrence` of `pack427_sendMessage`: the message recurs (see recurrence).

    Attributes:
        rrule: an RFC 5545 RRULE value of the accepted subset (README, "Recurring messages"),
            e.g. FREQ=WEEKLY;BYDAY=MO;BYHOUR=9;BYMINUTE=0;COUNT=10.
        timeZone: the IANA time zone of its local wall times, e.g. Europe/Berlin.
    """

    rrule: Annotated[str, StringConstraints(min_length=1, max_length=constants.RECURRENCE_MAX_RULE_LENGTH)]
    timeZone: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class SendMessageRequest(Request):
    """`pack427_sendMessage` data.

    Attributes:
        chatId: the chat; the caller must be a participant.
        clientMessageId: ULID made by the client; the idempotency key.
        text: message text, 1 to MAX_TEXT_LENGTH characters.
        contentRef: reference to content stored elsewhere (media); at least
            one of text and contentRef is required.
        deliverAt: Unix ms: schedule the message for then (at most
            MAX_SCHEDULE_DAYS ahead; see scheduling); default: now.
        recurrence: with deliverAt, the message recurs: a series whose first occurrence is the
            rule's first instance at or after deliverAt (see recurrence); default: once.
    """

    chatId: DocumentId
    clientMessageId: UlidString
    text: Annotated[str, StringConstraints(min_length=1, max_length=constants.MAX_TEXT_LENGTH)] | None = None
    contentRef: Annotated[
        str, StringConstraints(min_length=1, max_length=constants.MAX_CONTENT_REF_LENGTH)
    ] | None = None
    deliverAt: Annotated[int, Field(ge=0, le=constants.MAX_UNIX_MS)] | None = None
    recurrence: Recurrence | None = None

    @model_validator(mode="after")
    def _has_content(self) -> SendMessageRequest:
        if self.text is None and self.contentRef is None:
            raise ValueError("text or contentRef is required")
        if self.text is not None and not self.text.strip():
            raise ValueError("text must not be blank")
        if self.recurrence is not None and self.deliverAt is None:
            raise ValueError("recurrence requires deliverAt (the series' start)")
        return self


class SendMessageResult(Response):
    """`messageId` is the message's id; for a scheduled message (`status` SCHEDULED) it is
    the scheduled id (the clientMessageId) until it is delivered (see scheduling)."""

    messageId: str
    status: str
    duplicate: bool


class CancelScheduledMessageRequest(Request):
    """`pack427_cancelScheduledMessage` data.

    Attributes:
        scheduledId: the scheduled id (the clientMessageId it was sent with).
        occurrenceAt: Unix ms of one occurrence of a recurring series (its `nextOccurrenceAt` or one
            of its `upcoming`, as listed): cancel that occurrence only, the series goes on;
            default: cancel the whole series (or the one scheduled message).
    """

    scheduledId: UlidString
    occurrenceAt: Annotated[int, Field(ge=0, le=constants.MAX_UNIX_MS)] | None = None


class CancelScheduledMessageResult(Response):
    success: bool
    status: str
    """CANCELLED (now, or before: cancelling is idempotent): the message, the series, or the occurrence."""
    nextOccurrenceAt: int | None = None
    """Of a series whose one occurrence was cancelled: its next occurrence now (None: none is left)."""


class ScheduledMessageItem(Response):
    """One of the caller's scheduled messages or recurring series.

    Attributes:
        deliverAt: Unix ms of its delivery; of a series, its next occurrence (of a stopped one,
            the occurrence that could not be sent).
        status: SCHEDULED, or STOPPED: a series whose sender could no longer send there (`reason`:
            blocked, not a participant, age_verification_required...); cancelling it removes it.
        rrule, timeZone: a series' rule and zone (None: a one-off message).
        nextOccurrenceAt: a scheduled series' next occurrence (None: a one-off message, or stopped).
        upcoming: a series' next occurrences, the next first (at most RECURRENCE_LISTED_UPCOMING).
        occurrencesLeft: of a series, the occurrences still to be delivered (cancelled ones left out).
        occurrencesDelivered: of a series, the occurrences delivered so far.
        lastMessageId: the message of its last delivered occurrence.
    """

    scheduledId: str
    chatId: str
    text: str | None
    contentRef: str | None
    deliverAt: int
    createdAt: int
    status: str = "SCHEDULED"
    reason: str | None = None
    rrule: str | None = None
    timeZone: str | None = None
    nextOccurrenceAt: int | None = None
    upcoming: list[int] = []
    occurrencesLeft: int | None = None
    occurrencesDelivered: int = 0
    lastMessageId: str | None = None


class ListScheduledMessagesResult(Response):
    """The caller's messages still scheduled and series scheduled or stopped, soonest first (at most
    MAX_LISTED_SCHEDULED; a stopped series by the occurrence it stopped at)."""

    messages: list[ScheduledMessageItem]
    hasMore: bool = False


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
        syncId: for a sync without a cursor: an id the client makes for this request and
            sends again on its retries (any string of 1 to 128 characters, a ULID say). A
            retry with the device's last syncId is served from where that request started,
            so a first page whose answer was lost is served again, not skipped. Default:
            none (a retry without a cursor starts after the last page served).
    """

    deviceId: DeviceId
    cursor: Cursor | None = None
    since: Annotated[int, Field(ge=0, le=constants.MAX_UNIX_MS)] | None = None
    syncId: Annotated[str, StringConstraints(min_length=1, max_length=constants.MAX_ID_LENGTH)] | None = None


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

    messageIds: Annotated[list[MessageId], Field(min_length=1, max_length=constants.MAX_ACK_IDS)]
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
        readUpToMessageId: a message of that chat (the engine's ULID, or a chat core's own
            id); everything up to it is read. An older position than the stored one is
            accepted and ignored.
    """

    chatId: DocumentId
    readUpToMessageId: MessageId


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


class RecalculateUnreadCountersRequest(Request):
    """`pack427_recalculateUnreadCounters` data.

    Attributes:
        cursor: the `cursor` of the previous call, to recount the next RECALCULATE_PAGE chats
            (default: from the first chat).
    """

    cursor: Cursor | None = None


class RecalculateUnreadCountersResult(Response):
    """`recalculated` counters changed out of the `checked` chats of this call; `changes` says which
    and how. `hasMore`: the user is in more chats than one call recounts; call again with `cursor`."""

    success: bool
    recalculated: int
    checked: int
    changes: list[CounterChange]
    hasMore: bool = False
    cursor: str | None = None


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


class ReceiptSummary(Response):
    """The receipts of a last message to a large group, counted rather than read member by member.

    Attributes:
        recipients: the chat's other participants now.
        reachedInbox: inbox entries of the message (it reached that many inboxes: sent,
            delivered or read; a member who left since still counts).
        read: read receipts of the chat at or past it (the sender's own left out).
    """

    recipients: int
    reachedInbox: int
    read: int


class ChatListItem(Response):
    """One chat of the caller's list.

    `participants` holds the first CHAT_LIST_PARTICIPANTS ids, `participantCount` all of them.
    When the caller sent the last message: `lastMessageStatus`, each other participant's
    receipt status for it, for a chat of at most RECEIPT_DETAIL_MAX_RECIPIENTS recipients
    (within the page's RECEIPT_DETAIL_BUDGET); else `lastMessageReceipts`, their summary.
    """

    chatId: str
    participants: list[str]
    participantCount: int
    lastMessage: ChatListLastMessage
    unreadCount: int
    lastMessageStatus: dict[str, ReceiptStatus] | None
    lastMessageReceipts: ReceiptSummary | None = None


class GetChatListResult(Response):
    chats: list[ChatListItem]
    totalUnread: int
    hasMore: bool
    cursor: str | None
