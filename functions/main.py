"""Deployed functions of the PACK 427 delivery engine: a table, nothing more.

Each function parses its input, calls the service package `pack427` and maps
errors; the logic lives in the package.
"""

import os

from firebase_admin import initialize_app
from firebase_functions import firestore_fn, https_fn, options, scheduler_fn

from pack427 import db
from pack427.accepting import chat_core_intake, scheduling
from pack427.accepting.sending import send_message
from pack427.delivering import delivery, fan_out
from pack427.delivering.notifier import default_notifier
from pack427.guarding import callables
from pack427.models import (
    AckMessagesRequest,
    CancelScheduledMessageRequest,
    GetChatListRequest,
    GetTypingUsersRequest,
    MarkAsReadRequest,
    RecalculateUnreadCountersRequest,
    RegisterDeviceRequest,
    ResyncChatRequest,
    SendMessageRequest,
    SyncMessagesRequest,
    UpdateTypingStateRequest,
)
from pack427.operating import metrics
from pack427.paths import CHAT_MESSAGE_TRIGGER_DOCUMENT, FAN_OUT_TRIGGER_DOCUMENT, QUEUE_TRIGGER_DOCUMENT
from pack427.reading import chat_list, cursors, sync, typing_state, unread
from pack427.workers import processor

initialize_app()
# Every function's options are explicit (docs/CAPACITY.md, "Function options", gives the reasons;
# scripts/deploy --check verifies them). The default is the callables': I/O-bound requests, 40 at
# once on one CPU; max_instances is a cost ceiling, raise it with traffic.
options.set_global_options(memory=options.MemoryOption.MB_512, cpu=1, concurrency=40, timeout_sec=60,
                           min_instances=0, max_instances=100)
# The workers that run long, CPU-bound batches: one at a time per instance.
BATCH_WORKER = {"memory": options.MemoryOption.GB_1, "concurrency": 1}
SCHEDULED_JOB = {"concurrency": 1, "max_instances": 1}


@https_fn.on_call()
def pack427_sendMessage(req: https_fn.CallableRequest) -> dict:
    return callables.handle(req, SendMessageRequest, send_message)


@https_fn.on_call()
def pack427_cancelScheduledMessage(req: https_fn.CallableRequest) -> dict:
    return callables.handle(req, CancelScheduledMessageRequest, scheduling.cancel)


@https_fn.on_call()
def pack427_listScheduledMessages(req: https_fn.CallableRequest) -> dict:
    return callables.handle_without_arguments(req, scheduling.list_scheduled)


@https_fn.on_call()
def pack427_registerDevice(req: https_fn.CallableRequest) -> dict:
    return callables.handle(req, RegisterDeviceRequest, sync.register_device)


@https_fn.on_call(secrets=[cursors.SECRET])  # signs and checks cursors
def pack427_syncMessages(req: https_fn.CallableRequest) -> dict:
    return callables.handle(req, SyncMessagesRequest, sync.sync_messages)


@https_fn.on_call()
def pack427_ackMessages(req: https_fn.CallableRequest) -> dict:
    return callables.handle(req, AckMessagesRequest, sync.ack_messages)


@https_fn.on_call(secrets=[cursors.SECRET])  # signs and checks cursors
def pack427_getChatList(req: https_fn.CallableRequest) -> dict:
    return callables.handle(req, GetChatListRequest, chat_list.get_chat_list)


@https_fn.on_call(secrets=[cursors.SECRET])  # signs and checks cursors
def pack427_resyncChat(req: https_fn.CallableRequest) -> dict:
    return callables.handle(req, ResyncChatRequest, sync.resync_chat)


@firestore_fn.on_document_created(document=QUEUE_TRIGGER_DOCUMENT)
def pack427_onMessageEnqueued(event: firestore_fn.Event[firestore_fn.DocumentSnapshot | None]) -> None:
    delivery.on_enqueued(db.client(), event.data, default_notifier())


# A 10,000-member group is 67 chunks; the processor resumes a job whose worker timed out.
@firestore_fn.on_document_created(document=FAN_OUT_TRIGGER_DOCUMENT, timeout_sec=540, max_instances=20, **BATCH_WORKER)
def pack427_onFanOut(event: firestore_fn.Event[firestore_fn.DocumentSnapshot | None]) -> None:
    fan_out.on_created(db.client(), event.data)


# Chat-core mode only (README, "Where messages come from"): deployed when functions/.env says so.
if os.environ.get("PACK427_MESSAGE_SOURCE") == chat_core_intake.INTAKE:

    @firestore_fn.on_document_created(document=CHAT_MESSAGE_TRIGGER_DOCUMENT)
    def pack427_onChatCoreMessage(event: firestore_fn.Event[firestore_fn.DocumentSnapshot | None]) -> None:
        chat_core_intake.on_created(db.client(), event.data)


# Drains for up to PROCESSOR_TIME_BUDGET_SECONDS (50 s); the timeout leaves room for the last batch.
@scheduler_fn.on_schedule(schedule="every 1 minutes", timeout_sec=120, max_instances=1, **BATCH_WORKER)
def pack427_processMessageQueue(event: scheduler_fn.ScheduledEvent) -> None:
    processor.drain(db.client(), default_notifier())


@scheduler_fn.on_schedule(schedule="every 5 minutes", timeout_sec=120, **SCHEDULED_JOB)
def pack427_exportQueueStats(event: scheduler_fn.ScheduledEvent) -> None:
    metrics.export_queue_stats(db.client())


# ------------------------------------------------------------ real-time signals

@https_fn.on_call()
def pack427_updateTypingState(req: https_fn.CallableRequest) -> dict:
    return callables.handle(req, UpdateTypingStateRequest, typing_state.update_typing_state)


@https_fn.on_call()
def pack427_getTypingUsers(req: https_fn.CallableRequest) -> dict:
    return callables.handle(req, GetTypingUsersRequest, typing_state.get_typing_users)


@https_fn.on_call()
def pack427_markAsRead(req: https_fn.CallableRequest) -> dict:
    return callables.handle(req, MarkAsReadRequest, unread.mark_as_read)


@https_fn.on_call()
def pack427_getUnreadCounts(req: https_fn.CallableRequest) -> dict:
    return callables.handle_without_arguments(req, unread.unread_counts)


@https_fn.on_call(secrets=[cursors.SECRET])  # signs and checks cursors
def pack427_recalculateUnreadCounters(req: https_fn.CallableRequest) -> dict:
    return callables.handle(req, RecalculateUnreadCountersRequest, unread.recalculate_for_caller)

