"""The spam and fraud hook (the seed's PACK 302 integration): may a send go out?

Every send that passed authorization and the rate limit is reviewed by the
installed checker just before it is committed. A checker returns None (let
it through) or a Verdict; a verdict refuses the send with
`failed-precondition` (details: `reason`, `rule`), writes nothing of the
message, and records the refusal in the audit trail
(`auditLog/rejected_{senderId}_{clientMessageId}`, action SEND_REJECTED).

The default checker, `SameTextToManyChats`, refuses the same text sent to
more than SPAM_MAX_CHATS_SAME_TEXT (5) different chats within a minute: the
signature of a copy-paste flood, which no rate limit on a single chat sees.
Texts shorter than SPAM_MIN_TEXT_LENGTH are ignored ("ok", "hi" go
everywhere). It needs no reads of its own: the sender's last minute of sends
(chat and content hash of each) comes with the rate window.

Integration seam: a real fraud service implements `FraudChecker` (a `name`
and `review(attempt)`) and is installed once at start-up, in main.py:

    fraud.install(MyFraudService(...))

`review` runs on the send path: keep it fast, and decide what an outage
means. This module fails open: a checker that raises is logged as an error
and the send goes through (messaging stays up when the fraud service is
down); make `review` return a Verdict itself to fail closed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from firebase_functions import logger
from google.cloud.firestore import Client

from .. import audit, constants
from ..errors import FailedPrecondition
from ..models import SendRecord, SendRejection

SPAM_SUSPECTED = "spam_suspected"


@dataclass(frozen=True)
class SendAttempt:
    """A send as the checker sees it.

    Attributes:
        sender_id: the sender.
        chat_id: the chat.
        client_message_id: the client's idempotency key.
        text: the text, if any.
        content_ref: the content reference, if any.
        content_hash: rate_limit.content_hash of the content.
        recipients: who would receive it (after blocks).
        recent: the sender's accepted sends of the last minute, oldest first.
        now: the time of the send.
    """

    sender_id: str
    chat_id: str
    client_message_id: str
    text: str | None
    content_ref: str | None
    content_hash: str
    recipients: Sequence[str]
    recent: Sequence[SendRecord]
    now: datetime


@dataclass(frozen=True)
class Verdict:
    """A refusal.

    Attributes:
        reason: a stable code the app can switch on (e.g. spam_suspected).
        message: what the app can show the sender.
        details: what the rule saw, kept in the audit trail (not sent to the app).
    """

    reason: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


class FraudChecker(Protocol):
    """What a spam or fraud integration implements."""

    name: str

    def review(self, attempt: SendAttempt) -> Verdict | None:
        """None to let the send through, or the Verdict that refuses it."""


class SameTextToManyChats:
    """The default rule: one text to at most `max_chats` chats a minute.

    Args:
        max_chats: chats one text may reach within the window (default SPAM_MAX_CHATS_SAME_TEXT).
        min_length: texts shorter than this are never refused (default SPAM_MIN_TEXT_LENGTH).
    """

    name = "same-text-to-many-chats"

    def __init__(
        self,
        max_chats: int = constants.SPAM_MAX_CHATS_SAME_TEXT,
        min_length: int = constants.SPAM_MIN_TEXT_LENGTH,
    ):
        self.max_chats = max_chats
        self.min_length = min_length

    def review(self, attempt: SendAttempt) -> Verdict | None:
        if attempt.text is None or len(attempt.text.strip()) < self.min_length:
            return None
        chats = {r.chat_id for r in attempt.recent if r.content_hash == attempt.content_hash}
        if attempt.chat_id in chats or len(chats) < self.max_chats:
            return None
        return Verdict(
            reason=SPAM_SUSPECTED,
            message="This message was sent to too many chats at once and looks like spam. Try again later.",
            details={"chatsWithSameText": len(chats), "limit": self.max_chats},
        )


_installed: FraudChecker = SameTextToManyChats()


def install(checker: FraudChecker) -> FraudChecker:
    """Make `checker` review every send from now on; returns the one it replaces."""
    global _installed
    previous, _installed = _installed, checker
    return previous


def screen(db: Client, attempt: SendAttempt, checker: FraudChecker | None = None) -> None:
    """Review `attempt`; on a verdict, audit it and raise FailedPrecondition.

    Args:
        attempt: the send.
        checker: the checker to ask (default: the installed one).
    """
    checker = checker or _installed
    try:
        verdict = checker.review(attempt)
    except Exception as err:  # an integration's outage must not stop messaging
        logger.error(f"fraud checker {getattr(checker, 'name', checker)!r} failed: {err!r}; send allowed",
                     alert="FRAUD_CHECK_FAILED", uid=attempt.sender_id, chatId=attempt.chat_id)
        return
    if verdict is None:
        return
    refuse(db, attempt, verdict, rule=getattr(checker, "name", type(checker).__name__), reason=verdict.reason)


def refuse(db: Client, attempt: SendAttempt, verdict: Verdict, *, rule: str, reason: str) -> None:
    """Refuse `attempt` for a hook: its audit record, a log line, and FailedPrecondition (reason, rule).

    Args:
        verdict: the hook's refusal (its message goes to the app, its details to the audit trail).
        rule: which hook refused.
        reason: the stable code the app switches on.
    """
    audit.record_rejection(db, SendRejection(
        actor=f"user:{attempt.sender_id}", sender_id=attempt.sender_id, chat_id=attempt.chat_id,
        client_message_id=attempt.client_message_id, reason=reason, rule=rule, at=attempt.now,
        details=verdict.details,
    ))
    logger.warn(f"send refused by {rule}: {reason}", event="SEND_REJECTED", uid=attempt.sender_id,
                chatId=attempt.chat_id, reason=reason, rule=rule)
    raise FailedPrecondition(verdict.message, {"reason": reason, "rule": rule})
