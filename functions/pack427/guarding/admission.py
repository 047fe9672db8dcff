"""Paid-chat admission (the seed's PACK 277 token checks, through PACK 273): may this sender send here?

Before a message is accepted, after every other check (authorization, the
rate limit, the spam hook), the installed admission hook is asked whether
the sender may send in this chat, given the chat's billing state. It returns
None (admitted) or a Verdict. A refusal is `failed-precondition` with the
verdict's reason (`insufficient_tokens` unless it names another), writes
nothing of the message and bills nothing; its only trace is its audit record
(`auditLog/rejected_{senderId}_{clientMessageId}`, action SEND_REJECTED, as
the spam hook's). Apps and the Python client treat it as refused for good.

The default hook admits everything: this engine never bills, and a
deployment without a paid-chat engine has nothing to ask.

The same hook ranks an admitted send (`priority_of`): paid and VIP messages
go in the processor's priority lane under a backlog. A hook may implement
`priority(attempt, billing_state) -> bool`; without it, a chat whose billing
state says `priority: true` is a priority chat. Never the client's say. A paid-chat engine
implements `AdmissionHook` (a `name` and `admit(attempt, billing_state)`)
and is installed once at start-up, in main.py:

    admission.install(MyPaidChatEngine(...))

The hook fails closed, unlike the spam hook: a hook that raises makes the
send `unavailable` (retryable; the client's outbox sends it again later),
because letting a paid message through unchecked would give it away. A
retry of a send accepted before is answered from its idempotency record and
never asks the hook again, so a later refusal cannot undo an accepted message.
"""

from __future__ import annotations

from typing import Any, Protocol

from firebase_functions import logger
from google.cloud.firestore import Client

from ..errors import Unavailable
from . import fraud
from .fraud import SendAttempt, Verdict

INSUFFICIENT_TOKENS = "insufficient_tokens"


class AdmissionHook(Protocol):
    """What a paid-chat engine implements."""

    name: str

    def admit(self, attempt: SendAttempt, billing_state: dict[str, Any]) -> Verdict | None:
        """None to admit the send, or the Verdict that refuses it.

        Args:
            attempt: the send (sender, chat, content, recipients after blocks).
            billing_state: the chat core's billing state of the chat (`chats/{chatId}.billing`).
        """


class AdmitAll:
    """The default: every send is admitted (nothing is billed by this engine)."""

    name = "admit-all"

    def admit(self, attempt: SendAttempt, billing_state: dict[str, Any]) -> Verdict | None:
        return None


_installed: AdmissionHook = AdmitAll()


def install(hook: AdmissionHook) -> AdmissionHook:
    """Make `hook` admit every send from now on; returns the one it replaces."""
    global _installed
    previous, _installed = _installed, hook
    return previous


def billing_priority(billing_state: dict[str, Any]) -> bool:
    """The default priority rule: the chat's billing state says `priority: true` (a paid chat,
    a VIP sender's: the paid-chat engine writes it on the chat)."""
    return billing_state.get("priority") is True


def priority_of(attempt: SendAttempt, billing_state: dict[str, Any], hook: AdmissionHook | None = None) -> bool:
    """Whether an admitted send goes in the priority lane: the hook's `priority(attempt, billing_state)`
    if it has one, else `billing_priority`. A hook that fails gives the normal lane (logged):
    priority is a service level, not a safeguard."""
    hook = hook or _installed
    decide = getattr(hook, "priority", None)
    if decide is None:
        return billing_priority(billing_state)
    try:
        return bool(decide(attempt, billing_state))
    except Exception as err:  # noqa: BLE001 - the normal lane delivers it all the same
        logger.error(f"admission hook {getattr(hook, 'name', hook)!r} failed to rank a send: {err!r}")
        return False


def screen(db: Client, attempt: SendAttempt, billing_state: dict[str, Any], hook: AdmissionHook | None = None) -> None:
    """Ask the hook; on a refusal, audit it and raise FailedPrecondition.

    Args:
        attempt: the send.
        billing_state: the chat's billing state, passed to the hook unchanged.
        hook: the hook to ask (default: the installed one).

    Raises:
        FailedPrecondition: refused (details: reason, rule).
        Unavailable: the hook failed; retrying the send later is safe.
    """
    hook = hook or _installed
    rule = getattr(hook, "name", type(hook).__name__)
    try:
        verdict = hook.admit(attempt, billing_state)
    except Exception as err:  # noqa: BLE001 - fail closed: a paid message is never let through unchecked
        logger.error(f"admission hook {rule!r} failed: {err!r}; send refused for now",
                     alert="ADMISSION_CHECK_FAILED", uid=attempt.sender_id, chatId=attempt.chat_id)
        raise Unavailable("Sending in this chat is not possible right now; try again shortly.",
                          {"reason": "admission_unavailable"}) from None
    if verdict is None:
        return
    fraud.refuse(db, attempt, verdict, rule=rule, reason=verdict.reason or INSUFFICIENT_TOKENS)
