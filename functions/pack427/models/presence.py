"""What devices and typing users leave: device sync states and typing events.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import (
    ConfigDict,
)

from .base import Document, Region


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
        last_sync_id, last_sync_from: the syncId of the last sync without a cursor and the
            seq it was served from: its retry (the same syncId) is served from there again.
    """

    user_id: str
    device_id: str
    platform: Platform | None = None
    app_version: str | None = None
    cursor: str | None = None
    last_region: Region
    last_sync_at: datetime | None = None
    last_sync_duration_ms: int | None = None
    last_sync_id: str | None = None
    last_sync_from: int | None = None
    registered_at: datetime | None = None
    """None for a device whose first write was a sync that found no state (see sync)."""
    updated_at: datetime


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
