"""Errors the service raises for the caller's mistakes or for policy.

Each carries the callable protocol's error code; the entry points turn them
into `HttpsError` unchanged. Anything else that escapes is a bug.
"""

from __future__ import annotations

from typing import Any


class EngineError(Exception):
    """An error the caller should see.

    Args:
        message: what is wrong, naming the field or the rule.
        details: optional JSON-serialisable data for the app.
    """

    code = "internal"

    def __init__(self, message: str, details: Any = None):
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidArgument(EngineError):
    code = "invalid-argument"


class Unauthenticated(EngineError):
    code = "unauthenticated"


class PermissionDenied(EngineError):
    code = "permission-denied"


class NotFound(EngineError):
    code = "not-found"


class FailedPrecondition(EngineError):
    code = "failed-precondition"


class ResourceExhausted(EngineError):
    code = "resource-exhausted"


class Unavailable(EngineError):
    """A dependency (an integration's hook) failed; retrying the call later is safe."""

    code = "unavailable"


class Aborted(EngineError):
    """A conflict that outlasted the retries; retrying the call is safe."""

    code = "aborted"
