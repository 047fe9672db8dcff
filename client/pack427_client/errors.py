"""Typed errors: what went wrong, and whether trying again can help.

A callable answers an error with the protocol's status (INVALID_ARGUMENT,
PERMISSION_DENIED, ...); each status has its class here, all subclasses of
CallableError. A call that got no answer at all raises TransportError: the
request may or may not have reached the server, so only idempotent calls
(sendMessage with the same clientMessageId, syncs, acks) may be repeated.
"""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Base of every error this package raises."""

    retryable: bool = False
    """Whether the same call may succeed later unchanged."""


class TransportError(ClientError):
    """No answer: connection refused or reset, timeout, or the reply was lost.

    Attributes:
        reached_server: True when the request is known to have reached the
            server (the reply was lost), False when it is known it did not,
            None when unknown.
    """

    retryable = True

    def __init__(self, message: str, *, reached_server: bool | None = None):
        super().__init__(message)
        self.reached_server = reached_server


class CallableError(ClientError):
    """A callable answered with an error.

    Attributes:
        status: the protocol's status, for example "INVALID_ARGUMENT".
        message: the server's explanation, fit to show to a user.
        details: extra data the server attached (may be None), for example
            `{"retryAfterMs": 1200}` with RESOURCE_EXHAUSTED.
        http_status: the HTTP status code.
    """

    def __init__(self, status: str, message: str, details: Any = None, http_status: int = 0):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.details = details
        self.http_status = http_status


class InvalidArgument(CallableError):
    """The request was malformed (the message names the field)."""


class FailedPrecondition(CallableError):
    """Refused in the current state: not age-verified, blocked, spam suspected, ..."""


class OutOfRange(CallableError):
    pass


class Unauthenticated(CallableError):
    """No valid ID token."""


class PermissionDenied(CallableError):
    """Not yours: another user's data, or a chat the caller is not in."""


class NotFound(CallableError):
    pass


class AlreadyExists(CallableError):
    pass


class ResourceExhausted(CallableError):
    """Rate limited; `retry_after_s` says when to try again."""

    retryable = True

    @property
    def retry_after_s(self) -> float | None:
        details = self.details if isinstance(self.details, dict) else {}
        ms = details.get("retryAfterMs")
        return ms / 1000 if isinstance(ms, int | float) and ms >= 0 else None


class Aborted(CallableError):
    """A conflict that a retry with the same arguments resolves."""

    retryable = True


class Unavailable(CallableError):
    retryable = True


class DeadlineExceeded(CallableError):
    retryable = True


class Internal(CallableError):
    """The server failed; the engine's calls are idempotent, so they are retried."""

    retryable = True


class Unknown(CallableError):
    retryable = True


class Cancelled(CallableError):
    retryable = True


class Unimplemented(CallableError):
    """No such function (a wrong functions URL or name)."""


class DataLoss(CallableError):
    pass


ERRORS_BY_STATUS: dict[str, type[CallableError]] = {
    "INVALID_ARGUMENT": InvalidArgument,
    "FAILED_PRECONDITION": FailedPrecondition,
    "OUT_OF_RANGE": OutOfRange,
    "UNAUTHENTICATED": Unauthenticated,
    "PERMISSION_DENIED": PermissionDenied,
    "NOT_FOUND": NotFound,
    "ALREADY_EXISTS": AlreadyExists,
    "RESOURCE_EXHAUSTED": ResourceExhausted,
    "ABORTED": Aborted,
    "UNAVAILABLE": Unavailable,
    "DEADLINE_EXCEEDED": DeadlineExceeded,
    "INTERNAL": Internal,
    "UNKNOWN": Unknown,
    "CANCELLED": Cancelled,
    "UNIMPLEMENTED": Unimplemented,
    "DATA_LOSS": DataLoss,
}


def from_status(status: str, message: str, details: Any = None, http_status: int = 0) -> CallableError:
    """The typed error for a protocol status (Unknown for a status this package does not know)."""
    return ERRORS_BY_STATUS.get(status, Unknown)(status, message, details, http_status)
