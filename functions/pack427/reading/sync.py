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
A device without a cursor starts after the last page served to it; so that a
lost reply to that request is not skipped, its retry carries the request's
syncId, and a sync with the device's last syncId starts where that one did.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from firebase_functions import logger
from google.cloud import firestore
from google.cloud.firestore import Client, DocumentReference
from google.cloud.firestore_v1.base_query import FieldFilter
from pydantic import ValidationError

from .. import chat_core, clock, constants, inbox, paths, routing
from ..delivering import placing
from ..errors import InvalidArgument
from ..guarding import policy
from ..models import (
    AckMessagesRequest,
    AckMessagesResult,
    ChatMessage,
    DeviceSyncState,
    InboxEntry,
    Region,
    RegisterDeviceRequest,
    RegisterDeviceResult,
    ResyncChatRequest,
    ResyncChatResult,
    SyncedMessage,
    SyncMessagesRequest,
    SyncMessagesResult,
)
from . import cursors

INBOX_CURSOR = "inbox"
CHAT_CURSOR = "chat"

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
    if state is not None and stale is None:
        _merge_state(db, home, uid, request.deviceId, fields)
    else:
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

    Cost of a page with a cursor this service gave the device: the page
    query and the user's profile (side by side), and one write of the
    device's state. The cursor names the region the state was written to;
    while that is still the user's home, the state is updated in place
    without being read. Otherwise (no cursor, a cursor from before, the user
    moved) the state is looked up in every region and moved home.
    """
    started = time.monotonic()
    now = now or clock.now()
    at_home = False
    if request.cursor is not None:
        # The position is known: the page is read while the user's region is (one round trip fewer).
        position, written_in = _inbox_position(uid, request.cursor, request.deviceId)
        reading = _READS.submit(inbox.page_after, db, uid, position, limit=constants.SYNC_BATCH_SIZE)
        if written_in is not None:
            home = routing.home_region(uid, chat_core.load_users(db, [uid])[uid])
            at_home = written_in == home
        if not at_home:
            home, state, stale = _device_state(db, uid, request.deviceId)
        page, has_more = reading.result()
    else:
        home, state, stale = _device_state(db, uid, request.deviceId)
        if request.since is not None:
            since = datetime.fromtimestamp(request.since / 1000, UTC)
            position = inbox.seq_before_delivered_after(db, uid, since)
        else:
            position = _stored_position(uid, request.deviceId, state, request.syncId)
        page, has_more = inbox.page_after(db, uid, position, limit=constants.SYNC_BATCH_SIZE)
    cursor = cursors.encode(
        INBOX_CURSOR, uid, {"seq": page[-1].seq if page else position, "device": request.deviceId, "region": home}
    )

    fields = {
        **({"last_sync_id": request.syncId, "last_sync_from": position}
           if request.cursor is None and request.since is None and request.syncId is not None else {}),
        "cursor": cursor,
        "last_region": home,
        "last_sync_at": now,
        "last_sync_duration_ms": round((time.monotonic() - started) * 1000),
        "updated_at": now,
    }
    if at_home:
        _merge_state(db, home, uid, request.deviceId, fields)
    else:
        state = state.model_copy(update=fields) if state else _new_state(uid, request.deviceId, home, now, **fields)
        _save_state(db, home, state, stale)
    return SyncMessagesResult(messages=[_from_inbox(e) for e in page], hasMore=has_more, cursor=cursor)


def ack_messages(
    db: Client, uid: str, request: AckMessagesRequest, *, now: datetime | None = None
) -> AckMessagesResult:
    """Record that a device of the caller has the messages; idempotent.

    Ids that are not in the caller's inbox are ignored, whether they exist or
    not. The delivery receipt is a position: `users/{uid}/inboxHead/acks`
    (InboxAcks) moves to the furthest acknowledged entry (never back: a
    maximum), and every entry up to it counts as delivered (chat list
    statuses; a push still being retried for one of them is not sent again).
    One write, which no other ack or delivery has to wait for: it is not the
    inbox head, so a delivery racing it does not lose its commit.
    """
    found = inbox.entries(db, uid, list(dict.fromkeys(request.messageIds)))
    if found:
        paths.inbox_acks(db, uid).set({"ackedSeq": firestore.Maximum(max(e.seq for e in found))}, merge=True)
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
    found = list(query.limit(constants.SYNC_BATCH_SIZE + 1).stream())
    has_more = len(found) > constants.SYNC_BATCH_SIZE
    found = found[: constants.SYNC_BATCH_SIZE]
    # The page's position is the last document read, usable or not, so that no page repeats forever.
    cursor = cursors.encode(CHAT_CURSOR, uid, {"chatId": request.chatId, "after": found[-1].get("id")}) \
        if found and isinstance(found[-1].get("id"), str) else None
    page = [m for m in map(chat_core.message_of, found) if m is not None]
    return ResyncChatResult(
        success=True, messages=[_from_chat(db, m) for m in page], hasMore=has_more, cursor=cursor or request.cursor
    )



# ------------------------------------------------------------------ details


def _inbox_position(uid: str, cursor: str, device_id: str) -> tuple[int, Region | None]:
    """The seq a cursor names, and the region the device's state was written to when the
    cursor was made (None if the cursor does not say, or was made for another device)."""
    position = cursors.decode(INBOX_CURSOR, uid, cursor)
    seq = position.get("seq")
    if not isinstance(seq, int) or seq < 0:
        raise InvalidArgument("cursor is not a cursor this service returned")
    region = position.get("region")
    if position.get("device") != device_id or region not in set(Region):
        return seq, None
    return seq, Region(region)


def _stored_position(uid: str, device_id: str, state: DeviceSyncState | None, sync_id: str | None = None) -> int:
    """The device's recorded position; the beginning if it has none or it no longer
    verifies (the cursor key changed): a repeat is safe, a skip would not be. A retry of the
    last sync without a cursor (its `sync_id`) starts where that sync started: its answer may
    have been lost after the state moved past its page."""
    if state is not None and sync_id is not None and state.last_sync_id == sync_id and state.last_sync_from is not None:
        return state.last_sync_from
    if state is None or state.cursor is None:
        return 0
    try:
        return _inbox_position(uid, state.cursor, device_id)[0]
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
    home = routing.home_region(uid, profiles[uid])
    by_region = {region: found[ref.path] for region, ref in zip(Region, states, strict=True)}
    for region in (home, *(r for r in Region if r is not home)):
        snapshot = by_region[region]
        if not snapshot.exists:
            continue
        try:
            state = DeviceSyncState.model_validate(snapshot.to_dict())
        except ValidationError:
            # A hand-edited state: the device is taken as new (it syncs from its own cursor, or from
            # the start; the client drops what it has by id), and the state is written afresh.
            logger.warn(f"device state {snapshot.reference.path} is unusable; the device starts afresh",
                        event="DEVICE_STATE_UNUSABLE", uid=uid, deviceId=device_id)
            return home, None, None if region is home else snapshot.reference
        return home, state, None if region is home else snapshot.reference
    return home, None, None


def _new_state(uid: str, device_id: str, home: Region, now: datetime, **fields) -> DeviceSyncState:
    return DeviceSyncState(user_id=uid, device_id=device_id, registered_at=now, **({"last_region": home} | fields))


def _merge_state(db: Client, home: Region, uid: str, device_id: str, fields: dict) -> None:
    """Set the given fields (snake_case) of a device's state in its home region, without reading it."""
    state = DeviceSyncState.model_validate({"user_id": uid, "device_id": device_id, **fields})
    data = state.model_dump(include={"user_id", "device_id", *fields})
    paths.device_sync_state(db, home, uid, device_id).set(data, merge=True)


def _save_state(db: Client, home: Region, state: DeviceSyncState, stale: DocumentReference | None) -> None:
    batch = db.batch()
    batch.set(paths.device_sync_state(db, home, state.user_id, state.device_id), state.to_firestore())
    if stale is not None:
        batch.delete(stale)
    batch.commit()


def _millis(at: datetime) -> int:
    return round(at.timestamp() * 1000)


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
        systemNudge=entry.system_nudge,
    )


def _from_chat(db: Client, message: ChatMessage) -> SyncedMessage:
    return SyncedMessage(
        messageId=message.id,
        chatId=message.chat_id,
        senderId=message.sender_id,
        senderName=message.sender_name,
        text=message.text,
        contentRef=placing.content_ref(db, message),
        createdAt=_millis(message.created_at),
        deliveredAt=None,
        systemNudge=message.system_nudge,
    )
