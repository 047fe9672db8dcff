"""Offline sync: devices, paging the inbox by cursor, acks, and chat resync.

A device's position is a seq of the user's inbox (see inbox): a page is "the
next SYNC_BATCH_SIZE entries after seq k", and its cursor is the seq of its
last entry. Because seq n+1 becomes visible only after seq n, no page can
skip an entry: not two with the same timestamp, not one whose delivery was
retried and landed after newer ones were synced, not across a change of the
user's home region (the inbox is per user, not per region). Each device keeps
its own position, so every device gets every message once.

A cursor names what the device has been sent, not what it stored: a client
that loses a reply asks again with the cursor it has, and gets the same page.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from google.cloud.firestore import Client, DocumentReference
from google.cloud.firestore_v1.base_query import FieldFilter

from . import audit, chat_core, clock, constants, cursors, inbox, paths, policy, queue, sending
from .errors import Aborted, InvalidArgument
from .models import (
    DUE_STATUSES,
    AckMessagesRequest,
    AckMessagesResult,
    ChatMessage,
    DeviceSyncState,
    InboxEntry,
    QueuedMessage,
    QueueStatus,
    Region,
    RegisterDeviceRequest,
    RegisterDeviceResult,
    ResyncChatRequest,
    ResyncChatResult,
    SyncedMessage,
    SyncMessagesRequest,
    SyncMessagesResult,
)
from .queue import LoadedEntry

INBOX_CURSOR = "inbox"
CHAT_CURSOR = "chat"

ACK_RETRIES = 20
"""Rounds of an ack whose queue entries keep changing under it (deliveries, other acks)."""

ACK_CHUNK = 200
"""Queue entries updated per commit by an ack (with their audit events, well under 500 writes)."""

_READS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="sync-read")
"""Reads a sync page makes side by side (shared by the instance's requests)."""


def register_device(
    db: Client, uid: str, request: RegisterDeviceRequest, *, now: datetime | None = None
) -> RegisterDeviceResult:
    """Create or update the device's sync state in the user's home region.

    Re-registering changes only platform and app version; a device whose state
    is in another region (the user moved) keeps its position.
    """
    now = now or clock.now()
    home, state, stale = _device_state(db, uid, request.deviceId)
    fields = {"platform": request.platform, "app_version": request.appVersion, "last_region": home, "updated_at": now}
    state = state.model_copy(update=fields) if state else _new_state(uid, request.deviceId, home, now, **fields)
    _save_state(db, home, state, stale)
    return RegisterDeviceResult(success=True, region=home)


def sync_messages(
    db: Client, uid: str, request: SyncMessagesRequest, *, now: datetime | None = None
) -> SyncMessagesResult:
    """The next page of the caller's inbox for one device, oldest first.

    The position is the request's cursor, else the first message delivered
    after `since`, else the device's stored position, else the beginning.
    A device that never registered is registered on its first sync.
    """
    started = time.monotonic()
    now = now or clock.now()
    if request.cursor is not None:
        # The position is known: the page is read while the device state is (one round trip fewer).
        position = _inbox_position(uid, request.cursor)
        reading = _READS.submit(inbox.after, db, uid, position, limit=constants.SYNC_BATCH_SIZE + 1)
        home, state, stale = _device_state(db, uid, request.deviceId)
        page = reading.result()
    else:
        home, state, stale = _device_state(db, uid, request.deviceId)
        if request.since is not None:
            since = datetime.fromtimestamp(request.since / 1000, UTC)
            position = inbox.seq_before_delivered_after(db, uid, since)
        else:
            position = _stored_position(uid, state)
        page = inbox.after(db, uid, position, limit=constants.SYNC_BATCH_SIZE + 1)
    has_more = len(page) > constants.SYNC_BATCH_SIZE
    page = page[: constants.SYNC_BATCH_SIZE]
    cursor = cursors.encode(INBOX_CURSOR, uid, {"seq": page[-1].seq if page else position})

    fields = {
        "cursor": cursor,
        "last_region": home,
        "last_sync_at": now,
        "last_sync_duration_ms": round((time.monotonic() - started) * 1000),
        "updated_at": now,
    }
    state = state.model_copy(update=fields) if state else _new_state(uid, request.deviceId, home, now, **fields)
    _save_state(db, home, state, stale)
    return SyncMessagesResult(messages=[_from_inbox(e) for e in page], hasMore=has_more, cursor=cursor)


def ack_messages(
    db: Client, uid: str, request: AckMessagesRequest, *, now: datetime | None = None
) -> AckMessagesResult:
    """Record that a device of the caller has the messages; idempotent.

    Ids that are not in the caller's inbox are ignored, whether they exist or
    not. The first ack of a message records its delivery receipt (time and
    device) on the queue entry; an entry still retrying its push becomes
    DELIVERED, since the device has the message.
    """
    now = now or clock.now()
    found = inbox.entries(db, uid, list(dict.fromkeys(request.messageIds)))
    refs = [paths.queue_entry(db, e.region, QueuedMessage.entry_id(e.message_id, uid)) for e in found]
    actor = f"device:{uid}/{request.deviceId}" if request.deviceId else f"user:{uid}"
    for start in range(0, len(refs), ACK_CHUNK):
        _record_receipts(db, refs[start : start + ACK_CHUNK], request.deviceId, actor, now)
    return AckMessagesResult(success=True, acknowledgedCount=len(found))


def resync_chat(
    db: Client, uid: str, request: ResyncChatRequest, *, now: datetime | None = None
) -> ResyncChatResult:
    """One page of every message of a chat, oldest first, for a participant.

    For a device that lost its local store: the chat's own record, the
    caller's sent messages included.
    """
    policy.participant_chat(db, request.chatId, uid)
    query = paths.chat_messages(db, request.chatId).order_by("id")
    if request.cursor is not None:
        position = cursors.decode(CHAT_CURSOR, uid, request.cursor)
        if position.get("chatId") != request.chatId or not isinstance(position.get("after"), str):
            raise InvalidArgument("cursor belongs to another chat's resync")
        query = query.where(filter=FieldFilter("id", ">", position["after"]))
    page = [ChatMessage.model_validate(s.to_dict()) for s in query.limit(constants.SYNC_BATCH_SIZE + 1).stream()]
    has_more = len(page) > constants.SYNC_BATCH_SIZE
    page = page[: constants.SYNC_BATCH_SIZE]
    cursor = cursors.encode(CHAT_CURSOR, uid, {"chatId": request.chatId, "after": page[-1].id}) if page else None
    return ResyncChatResult(
        success=True, messages=[_from_chat(db, m) for m in page], hasMore=has_more, cursor=cursor or request.cursor
    )


# ------------------------------------------------------------------ details


def _inbox_position(uid: str, cursor: str) -> int:
    seq = cursors.decode(INBOX_CURSOR, uid, cursor).get("seq")
    if not isinstance(seq, int) or seq < 0:
        raise InvalidArgument("cursor is not a cursor this service returned")
    return seq


def _stored_position(uid: str, state: DeviceSyncState | None) -> int:
    """The device's recorded position; the beginning if it has none or it no longer
    verifies (the cursor key changed): a repeat is safe, a skip would not be."""
    if state is None or state.cursor is None:
        return 0
    try:
        return _inbox_position(uid, state.cursor)
    except InvalidArgument:
        return 0


def _device_state(
    db: Client, uid: str, device_id: str
) -> tuple[Region, DeviceSyncState | None, DocumentReference | None]:
    """The user's home region, the device's state, and where it was if it must move there.

    The state lives in the home region; after the user moved, it is found in
    an old one (the third value) and moved by `_save_state`. One round trip:
    the user document and the state's place in every region are read together.
    """
    states = [paths.device_sync_state(db, region, uid, device_id) for region in Region]
    profiles, found = chat_core.load_users_with(db, [uid], states)
    home = chat_core.home_region(profiles[uid])
    by_region = {region: found[ref.path] for region, ref in zip(Region, states, strict=True)}
    if by_region[home].exists:
        return home, DeviceSyncState.model_validate(by_region[home].to_dict()), None
    for snapshot in by_region.values():
        if snapshot.exists:
            return home, DeviceSyncState.model_validate(snapshot.to_dict()), snapshot.reference
    return home, None, None


def _new_state(uid: str, device_id: str, home: Region, now: datetime, **fields) -> DeviceSyncState:
    return DeviceSyncState(user_id=uid, device_id=device_id, registered_at=now, **({"last_region": home} | fields))


def _save_state(db: Client, home: Region, state: DeviceSyncState, stale: DocumentReference | None) -> None:
    batch = db.batch()
    batch.set(paths.device_sync_state(db, home, state.user_id, state.device_id), state.to_firestore())
    if stale is not None:
        batch.delete(stale)
    batch.commit()


def _record_receipts(
    db: Client, refs: list[DocumentReference], device_id: str | None, actor: str, now: datetime
) -> None:
    """Set the delivery receipt on each entry that has none; retried while entries change under it."""
    for _ in range(ACK_RETRIES):
        unacked = [
            LoadedEntry.from_snapshot(s) for s in db.get_all(refs) if s.exists and s.get("ackedAt") is None
        ]
        if not unacked:
            return
        batch = db.batch()
        for loaded in unacked:
            _add_receipt(db, batch, loaded, device_id, actor, now)
        if queue.commit_if_unchanged(batch):
            return
        refs = [paths.queue_entry(db, e.entry.target_region, e.entry.id) for e in unacked]
    raise Aborted("the messages kept changing while their acks were recorded; retry the ack")


def _add_receipt(db: Client, batch, loaded: LoadedEntry, device_id: str | None, actor: str, now: datetime) -> None:
    entry = loaded.entry
    fields = {"ackedAt": now, "ackedBy": device_id, "updatedAt": now}
    if entry.status in (*DUE_STATUSES, QueueStatus.DROPPED):
        # The device has the message: a push still being retried has nothing left to do.
        fields |= {"status": QueueStatus.DELIVERED.value, "awaitingInbox": False, "deliveredAt": now, "lastError": None}
        audit.record(
            db, batch, entry, actor=actor, from_status=entry.status, to_status=QueueStatus.DELIVERED,
            attempts=entry.attempts, at=now, details={"acknowledged": True},
        )
    batch.update(
        paths.queue_entry(db, entry.target_region, entry.id),
        fields,
        option=db.write_option(last_update_time=loaded.update_time),
    )


def _millis(at: datetime | None) -> int | None:
    return None if at is None else round(at.timestamp() * 1000)


def _from_inbox(entry: InboxEntry) -> SyncedMessage:
    return SyncedMessage(
        messageId=entry.message_id,
        chatId=entry.chat_id,
        senderId=entry.sender_id,
        senderName=entry.sender_name,
        text=entry.text,
        contentRef=entry.content_ref,
        createdAt=_millis(entry.created_at),
        deliveredAt=_millis(entry.delivered_at),
    )


def _from_chat(db: Client, message: ChatMessage) -> SyncedMessage:
    return SyncedMessage(
        messageId=message.id,
        chatId=message.chat_id,
        senderId=message.sender_id,
        senderName=message.sender_name,
        text=message.text,
        contentRef=sending.content_ref(db, message),
        createdAt=_millis(message.created_at),
        deliveredAt=None,
    )
