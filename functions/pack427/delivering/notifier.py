"""Push notifications for recipients who are offline (the seed's PACK 293).

A notifier raises when the push could not be handed over; the delivery then
counts as a failed attempt and the retry path takes over. The message itself
is already in the recipient's inbox by then, so a push outage delays only the
notification, never the message.
"""

from __future__ import annotations

import os
import re
from typing import Protocol

from firebase_functions import logger

from ..models import QueuedMessage


class PushError(Exception):
    """The push could not be handed to the push service."""


class Notifier(Protocol):
    def notify(self, entry: QueuedMessage) -> None:
        """Tell the recipient's devices (entry.transport_metadata.push_tokens) about `entry`.

        Raises:
            PushError: nothing could be sent; the attempt failed.
        """


class FcmNotifier:
    """Firebase Cloud Messaging through `firebase_admin.messaging`.

    The notification names the sender but carries no message text: the text
    is fetched by the app through sync, so it never transits the push service.
    """

    def notify(self, entry: QueuedMessage) -> None:
        from firebase_admin import exceptions, messaging

        tokens = entry.transport_metadata.push_tokens
        message = messaging.MulticastMessage(
            tokens=tokens,
            notification=messaging.Notification(
                title=entry.transport_metadata.sender_name or "New message",
                body="New message",
            ),
            data={"chatId": entry.chat_id, "messageId": entry.message_id},
        )
        response = messaging.send_each_for_multicast(message)
        if response.success_count:
            return
        errors = [r.exception for r in response.responses if r.exception]
        permanent = (messaging.UnregisteredError, messaging.SenderIdMismatchError, exceptions.InvalidArgumentError)
        if errors and all(isinstance(e, permanent) for e in errors):
            # Stale tokens (app uninstalled, token rotated): retrying cannot help,
            # and the message is in the inbox for the next sync.
            logger.warn(f"no valid push token for {entry.recipient_id}", recipientId=entry.recipient_id,
                        errors=[str(e) for e in errors])
            return
        raise PushError(f"no device of {entry.recipient_id} accepted the push: " + "; ".join(map(str, errors)))


_FAIL_FIRST = re.compile(r"^fail-first-(\d+)$")


class EmulatorNotifier:
    """Logs the push instead of sending it: used against the local emulators.

    Tokens shaped `fail-always` or `fail-first-N` make the push fail (always,
    or on the first N attempts), so that demos and end-to-end tests can watch
    the retry and dead-letter paths on the emulator suite.
    """

    def notify(self, entry: QueuedMessage) -> None:
        attempt = entry.attempts + 1
        for token in entry.transport_metadata.push_tokens:
            match = _FAIL_FIRST.match(token)
            if token == "fail-always" or (match and attempt <= int(match.group(1))):
                raise PushError(f"push to token {token!r} failed on attempt {attempt}")
        logger.info(
            f"push (emulated) to {entry.recipient_id} for message {entry.message_id}",
            tokens=entry.transport_metadata.push_tokens,
        )


def default_notifier() -> Notifier:
    """EmulatorNotifier when running against the emulators, FcmNotifier otherwise."""
    if os.environ.get("FUNCTIONS_EMULATOR") == "true" or os.environ.get("FIRESTORE_EMULATOR_HOST"):
        return EmulatorNotifier()
    return FcmNotifier()
