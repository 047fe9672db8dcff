"""The one place that knows Firestore paths.

Every other module asks here for a reference; none spells a path itself.
"""

from __future__ import annotations

from datetime import datetime

from google.cloud.firestore import Client, CollectionReference, DocumentReference

from .models import Region


def user(db: Client, uid: str) -> DocumentReference:
    return db.collection("users").document(uid)


def inbox(db: Client, uid: str) -> CollectionReference:
    return user(db, uid).collection("inbox")


def inbox_entry(db: Client, uid: str, message_id: str) -> DocumentReference:
    return db.document(inbox_entry_name(uid, message_id))


def inbox_entry_name(uid: str, message_id: str) -> str:
    """An inbox entry's document name (for the size of a commit that writes it)."""
    return f"users/{uid}/inbox/{message_id}"


def inbox_head(db: Client, uid: str) -> DocumentReference:
    """`users/{uid}/inboxHead/current`: seq, unread counts and read positions (see InboxHead)."""
    return db.document(inbox_head_name(uid))


def inbox_head_name(uid: str) -> str:
    """The inbox head's document name (its Firestore size counts toward its bound, see inbox)."""
    return f"users/{uid}/inboxHead/current"


def inbox_chats(db: Client, uid: str) -> CollectionReference:
    """`users/{uid}/inboxChats`: the chats parked out of the inbox head (see ParkedChat)."""
    return user(db, uid).collection("inboxChats")


def inbox_chat(db: Client, uid: str, chat_id: str) -> DocumentReference:
    """`users/{uid}/inboxChats/{chatId}`: one parked chat's unread count and read position."""
    return db.document(inbox_chat_name(uid, chat_id))


def inbox_chat_name(uid: str, chat_id: str) -> str:
    """A parked chat's document name (for the size of a commit that writes it)."""
    return f"users/{uid}/inboxChats/{chat_id}"


def inbox_acks(db: Client, uid: str) -> DocumentReference:
    """`users/{uid}/inboxHead/acks`: the furthest position a device acknowledged (see InboxAcks)."""
    return user(db, uid).collection("inboxHead").document("acks")


def chat(db: Client, chat_id: str) -> DocumentReference:
    return chats(db).document(chat_id)


def chat_messages(db: Client, chat_id: str) -> CollectionReference:
    return chat(db, chat_id).collection("messages")


def chat_message(db: Client, chat_id: str, message_id: str) -> DocumentReference:
    return chat_messages(db, chat_id).document(message_id)


def fan_outs(db: Client, chat_id: str) -> CollectionReference:
    """`chats/{chatId}/fanOuts`: the chat's messages whose fan-out is under way (see fan_out)."""
    return chat(db, chat_id).collection("fanOuts")


def fan_out(db: Client, chat_id: str, message_id: str) -> DocumentReference:
    return fan_outs(db, chat_id).document(message_id)


def fan_out_part(db: Client, chat_id: str, message_id: str, k: int) -> DocumentReference:
    """`chats/{chatId}/fanOuts/{messageId}/parts/{k}`: the k-th part (from 1) of a job's recipients (FanOutPart)."""
    return fan_out(db, chat_id, message_id).collection("parts").document(str(k))


def quarantined_fan_out(db: Client, chat_id: str, message_id: str) -> DocumentReference:
    """`chats/{chatId}/quarantinedFanOuts/{messageId}`: a fan-out job set aside as unusable (fan_out)."""
    return chat(db, chat_id).collection("quarantinedFanOuts").document(message_id)


FAN_OUT_TRIGGER_DOCUMENT = "chats/{chatId}/fanOuts/{messageId}"
"""The fan-out job path as a trigger pattern (for `pack427_onFanOut`)."""

CHAT_MESSAGE_TRIGGER_DOCUMENT = "chats/{chatId}/messages/{messageId}"
"""The chat message path as a trigger pattern (for `pack427_onChatCoreMessage`, chat-core mode)."""


def chats(db: Client) -> CollectionReference:
    return db.collection("chats")


def region(db: Client, name: Region) -> DocumentReference:
    return db.collection("regions").document(name.value)


def queue(db: Client, name: Region) -> CollectionReference:
    return region(db, name).collection("messageQueue")


def queue_entry(db: Client, name: Region, entry_id: str) -> DocumentReference:
    return queue(db, name).document(entry_id)


QUEUE_TRIGGER_DOCUMENT = "regions/{region}/messageQueue/{entryId}"
"""The queue entry path as a trigger pattern (for `pack427_onMessageEnqueued`)."""


def queue_stats(db: Client, name: Region) -> CollectionReference:
    return region(db, name).collection("queueStats")


def device_sync_state(db: Client, name: Region, uid: str, device_id: str) -> DocumentReference:
    return device_sync_states(db, name).document(f"{uid}_{device_id}")


def idempotency_keys(db: Client) -> CollectionReference:
    return db.collection("idempotencyKeys")


def idempotency_key(db: Client, sender_id: str, client_message_id: str) -> DocumentReference:
    return idempotency_keys(db).document(f"{sender_id}_{client_message_id}")


def scheduled_messages(db: Client) -> CollectionReference:
    """`scheduledMessages`: messages accepted for later delivery (see scheduling)."""
    return db.collection("scheduledMessages")


def scheduled_message(db: Client, sender_id: str, client_message_id: str) -> DocumentReference:
    return scheduled_messages(db).document(f"{sender_id}_{client_message_id}")


def schedule_slot(db: Client, sender_id: str, minute: datetime) -> DocumentReference:
    """`scheduleSlots/{senderId}_{YYYYMMDDTHHMM}`: how many of the sender's messages fall due in that
    UTC minute (sending; the suffix has a fixed length, so no two senders' slots share an id)."""
    return db.collection("scheduleSlots").document(f"{sender_id}_{minute:%Y%m%dT%H%M}")


def audit_log(db: Client) -> CollectionReference:
    """`auditLog`: refused sends (queue state changes live on the entries, see audit)."""
    return db.collection("auditLog")


def rate_window(db: Client, uid: str) -> DocumentReference:
    """`rateLimits/{uid}`: the user's sends of the last minute (see rate_limit)."""
    return db.collection("rateLimits").document(uid)


def recalculation_window(db: Client, uid: str) -> DocumentReference:
    """`recalculationWindows/{uid}`: the user's recount calls of the last minute (rate_limit.admit_recalculation)."""
    return db.collection("recalculationWindows").document(uid)


# ------------------------------------------------------------ real-time signals


def typing_events(db: Client, name: Region) -> CollectionReference:
    return region(db, name).collection("typingEvents")


def typing_event(db: Client, name: Region, chat_id: str, uid: str) -> DocumentReference:
    """`regions/{region}/typingEvents/{chatId}_{userId}`, in the typing user's home region."""
    return typing_events(db, name).document(f"{chat_id}_{uid}")


def read_receipts(db: Client, chat_id: str) -> CollectionReference:
    return chat(db, chat_id).collection("readReceipts")


def read_receipt(db: Client, chat_id: str, uid: str) -> DocumentReference:
    return read_receipts(db, chat_id).document(uid)


# ------------------------------------------------------------- operability


def device_sync_states(db: Client, name: Region) -> CollectionReference:
    return region(db, name).collection("deviceSyncStates")


def engine_settings(db: Client) -> DocumentReference:
    """`config/engine`: the runtime switch (see settings)."""
    return db.collection("config").document("engine")


def intake_sweep(db: Client) -> DocumentReference:
    """`config/intakeSweep`: how far the processor has swept the chat core's messages (chat_core_intake.sweep)."""
    return db.collection("config").document("intakeSweep")


# ------------------------------------------------------------- indexes and TTL

TTL_FIELDS: dict[str, str] = {
    "messageQueue": "expiresAt",  # DELIVERED entries (queue.delivered_expiry)
    "idempotencyKeys": "expiresAt",  # after IDEMPOTENCY_RETENTION_DAYS (send_plan.record_expiry)
    "rateLimits": "expiresAt",  # idle windows (rate_limit)
    "typingEvents": "expiresAt",  # expired events (typing_state)
    "recalculationWindows": "expiresAt",  # idle recount windows (rate_limit)
    "scheduleSlots": "expiresAt",  # minutes of deliverAt past (scheduling)
}
"""Collection group -> the field Firestore's TTL policy deletes its documents by
(firestore.indexes.json, `ttl: true`; `scripts/deploy --check` holds the two together).
Deletion comes within a day after the time: nothing in the engine depends on it sooner."""

INDEX_EXEMPTIONS: dict[str, tuple[str, ...]] = {
    "idempotencyKeys": ("createdAt", "messageId", "expiresAt"),
    "rateLimits": ("updatedAt", "expiresAt", "sends"),
    "chats": ("lastMessage",),
    "scheduledMessages": ("createdAt", "updatedAt", "occurrences", "cancelledOccurrences"),
    "messageQueue": ("createdAt", "updatedAt", "expiresAt"),
    "deviceSyncStates": ("updatedAt", "registeredAt"),
    "typingEvents": ("createdAt", "updatedAt", "expiresAt"),
    "inboxHead": ("chats",),
    "recalculationWindows": ("calls", "updatedAt", "expiresAt"),
    "scheduleSlots": ("minute", "updatedAt", "expiresAt"),
}
"""Fields whose automatic single-field indexes are turned off (fieldOverrides with no
indexes): sequential values (timestamps, ULIDs; a map or array of them: the chat's
lastMessage, its id and time, and the rate window's sends) that no query reads through
their own index, which would cap their collection at 500 writes a second
(docs/CAPACITY.md), and the inbox head's `chats` map, whose index entries grow with the
chats a user has, and a recurring series' arrays of occurrences (up to 400 index entries a
series, read by no query). A map's exemption covers its fields. Composite indexes that hold such
a field (the chat list's participants + lastMessage.createdAt) are not affected."""
