"""Pydantic models of every document and every request and response, one module per kind:

- base: the Document base, Region, QueueStatus;
- ids: document ids and ULIDs as requests take them;
- chats: the chat core's documents, messages, fan-out jobs, idempotency records, rate windows, refusals;
- queue_entries: queue entries and their history;
- inboxes: inbox entries, inbox heads, read receipts;
- presence: device sync states, typing events;
- operability: queue figures, settings, repair reports;
- api: the callables' requests and responses.

Import them from here (`from .models import Chat`).
"""

from .api import (
    AckMessagesRequest,
    AckMessagesResult,
    ChatListItem,
    ChatListLastMessage,
    CounterChange,
    Cursor,
    DeviceId,
    GetChatListRequest,
    GetChatListResult,
    GetTypingUsersRequest,
    GetTypingUsersResult,
    MarkAsReadRequest,
    MarkAsReadResult,
    NoArgumentsRequest,
    RecalculateUnreadCountersResult,
    ReceiptStatus,
    RegisterDeviceRequest,
    RegisterDeviceResult,
    Request,
    Response,
    ResyncChatRequest,
    ResyncChatResult,
    SendMessageRequest,
    SendMessageResult,
    SyncedMessage,
    SyncMessagesRequest,
    SyncMessagesResult,
    TypingUser,
    UnreadCountsResult,
    UpdateTypingStateRequest,
    UpdateTypingStateResult,
)
from .base import DUE_STATUSES, Document, QueueStatus, Region
from .chats import (
    Chat,
    ChatMessage,
    FanOut,
    IdempotencyRecord,
    LastMessage,
    RateWindow,
    SendRecord,
    SendRejection,
    UserProfile,
)
from .ids import DocumentId, DocumentIdError, UlidString, check_document_id
from .inboxes import ChatInbox, InboxEntry, InboxHead, ReadReceipt
from .operability import ChatRepairReport, EngineMode, EngineSettings, LatencyPercentiles, RegionMetrics, RequeueReport
from .presence import DeviceSyncState, Platform, TypingEvent
from .queue_entries import AuditEvent, QueuedMessage, QueueEvent, RegionQueueStats, TransportMetadata

__all__ = [
    "Region",
    "QueueStatus",
    "DUE_STATUSES",
    "Document",
    "DocumentIdError",
    "check_document_id",
    "DocumentId",
    "UlidString",
    "UserProfile",
    "LastMessage",
    "Chat",
    "ChatMessage",
    "FanOut",
    "IdempotencyRecord",
    "SendRecord",
    "RateWindow",
    "SendRejection",
    "TransportMetadata",
    "QueueEvent",
    "QueuedMessage",
    "AuditEvent",
    "RegionQueueStats",
    "InboxEntry",
    "ChatInbox",
    "InboxHead",
    "ReadReceipt",
    "Platform",
    "DeviceSyncState",
    "TypingEvent",
    "LatencyPercentiles",
    "RegionMetrics",
    "EngineMode",
    "EngineSettings",
    "RequeueReport",
    "ChatRepairReport",
    "Request",
    "Response",
    "SendMessageRequest",
    "SendMessageResult",
    "DeviceId",
    "Cursor",
    "RegisterDeviceRequest",
    "RegisterDeviceResult",
    "SyncMessagesRequest",
    "SyncedMessage",
    "SyncMessagesResult",
    "AckMessagesRequest",
    "AckMessagesResult",
    "ResyncChatRequest",
    "ResyncChatResult",
    "UpdateTypingStateRequest",
    "UpdateTypingStateResult",
    "GetTypingUsersRequest",
    "TypingUser",
    "GetTypingUsersResult",
    "MarkAsReadRequest",
    "MarkAsReadResult",
    "NoArgumentsRequest",
    "UnreadCountsResult",
    "CounterChange",
    "RecalculateUnreadCountersResult",
    "GetChatListRequest",
    "ReceiptStatus",
    "ChatListLastMessage",
    "ChatListItem",
    "GetChatListResult",
]
