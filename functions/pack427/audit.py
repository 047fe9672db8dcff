"""The audit trail: one `auditLog` document per queue state change.

Events are written in the same batch as the change they record, so the trail
never claims a change that did not happen, nor misses one that did.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud.firestore import Client, WriteBatch
from google.cloud.firestore_v1.base_query import FieldFilter

from . import paths
from .models import AuditEvent, QueuedMessage, QueueStatus, SendRejection


def record(
    db: Client,
    batch: WriteBatch,
    entry: QueuedMessage,
    *,
    actor: str,
    to_status: QueueStatus,
    attempts: int,
    at: datetime,
    from_status: QueueStatus | None = None,
    details: dict[str, Any] | None = None,
    action: str | None = None,
) -> None:
    """Add the event for `entry` moving to `to_status` to `batch`.

    The event id is derived from the entry, the new status, the attempt
    number and the entry's requeues, so a replayed change cannot add a second
    event. `action` defaults to ENQUEUED for a new entry, else the new status.
    """
    event = AuditEvent(
        entry_id=entry.id,
        message_id=entry.message_id,
        region=entry.target_region,
        actor=actor,
        action=action or ("ENQUEUED" if from_status is None else to_status.value),
        from_status=from_status,
        to_status=to_status,
        attempts=attempts,
        at=at,
        details=details or {},
    )
    # Attempts start again at 0 after a requeue: the round keeps the ids apart.
    round_suffix = f"_r{entry.requeues}" if entry.requeues else ""
    ref = paths.audit_log(db).document(f"{entry.id}_{attempts}_{to_status.value}{round_suffix}")
    batch.create(ref, event.to_firestore())


def record_rejection(db: Client, rejection: SendRejection) -> None:
    """Record a send a policy refused (`auditLog/rejected_{senderId}_{clientMessageId}`).

    Written on its own (the refused send commits nothing); a retry of the
    same refused send finds the event and adds no second one.
    """
    ref = paths.audit_log(db).document(f"rejected_{rejection.sender_id}_{rejection.client_message_id}")
    try:
        ref.create(rejection.to_firestore())
    except gexc.AlreadyExists:
        pass


def history(db: Client, message_id: str) -> list[AuditEvent]:
    """Every recorded change of every queue entry of one message, oldest first."""
    query = paths.audit_log(db).where(filter=FieldFilter("messageId", "==", message_id))
    events = [AuditEvent.model_validate(s.to_dict()) for s in query.stream()]
    return sorted(events, key=lambda e: (e.at, e.entry_id))
