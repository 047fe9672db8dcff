"""Transport faults around real emulator calls: a read that is refused, a commit whose answer is lost.

The fault is injected in the google-cloud-firestore client's API methods, the
last step before the wire (what a dropped connection or an overloaded backend
does to them); the emulator does the real work on every call that is let through.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from google.api_core import exceptions as gexc
from google.cloud.firestore_v1.services.firestore.client import FirestoreClient


@dataclass
class Injected:
    """How many calls the fault hit so far."""

    hits: int = 0


@contextmanager
def transport_fault(method: str, *, applied: bool = False, times: int = 1,
                    error: type[gexc.GoogleAPICallError] = gexc.ServiceUnavailable) -> Iterator[Injected]:
    """Make the next `times` calls of FirestoreClient.`method` fail with `error` for the block.

    Args:
        method: `commit`, `batch_get_documents` (every get and get_all) or `run_query` (every query).
        applied: the call reaches the emulator and does its work before the error (a commit whose
            answer was lost); default False: it fails before it is sent, nothing happens.
        times: calls to fail, then the others go through (default 1).
        error: what the caller sees (default ServiceUnavailable).
    """
    original = getattr(FirestoreClient, method)
    injected = Injected()

    def faulty(self, *args, **kwargs):
        if injected.hits >= times:
            return original(self, *args, **kwargs)
        injected.hits += 1
        if applied:
            result = original(self, *args, **kwargs)
            if method != "commit":
                list(result)  # a stream read to its end: its answer is what is lost
        raise error(f"injected: {method} {'answer lost' if applied else 'unavailable'}")

    setattr(FirestoreClient, method, faulty)
    try:
        yield injected
    finally:
        setattr(FirestoreClient, method, original)
