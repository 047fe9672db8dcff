"""Raw callable calls the way an app makes them over a real network."""

from __future__ import annotations

from typing import Any

from pack427_client import CallableClient, TransportError

ATTEMPTS = 3


def call_retrying(client: CallableClient, name: str, data: Any, retried: list[str] | None = None) -> Any:
    """`client.call`, repeated with the same data when no answer came.

    The emulator's functions proxy sometimes drops a worker's connection under
    load ("socket hang up", HTTP 500 without a callable answer); the function
    may or may not have run, so only idempotent calls (a send with its
    clientMessageId) may go through here.

    Args:
        retried: if given, each repeat appends the error's text to it, so a
            test can tell an answer that followed a lost one.
    """
    for attempt in range(ATTEMPTS):
        try:
            return client.call(name, data)
        except TransportError as err:
            if attempt == ATTEMPTS - 1:
                raise
            if retried is not None:
                retried.append(str(err))
    raise AssertionError("unreachable")
