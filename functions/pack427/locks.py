"""In-process serialisation of work that would only collide in Firestore anyway.

Concurrent sends to one chat, or by one user, all write the same document
(the chat's `lastMessage`, the user's rate window) conditionally: of N that
race, one commits and N-1 read again and retry, so a burst costs O(N^2)
attempts. Requests served by the same instance (Cloud Functions runs many at
once per instance; tests use threads) take their turn on a local lock
instead, and commit on the first try.

The locks are an optimisation, not the guarantee: they do not reach other
instances, and correctness never depends on them (the conditional writes
still decide). A fixed set of stripes bounds memory; two keys that share a
stripe just wait for each other.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

STRIPES = 256
_locks = [threading.Lock() for _ in range(STRIPES)]


@contextmanager
def held(*keys: str) -> Iterator[None]:
    """Hold the local locks of `keys` (in a fixed order: no deadlock) for the block.

    Args:
        keys: what the block writes conditionally, e.g. "chat:c1", "user:alice".
    """
    stripes = sorted({zlib.crc32(key.encode("utf-8", "surrogatepass")) % STRIPES for key in keys})
    with ExitStack() as stack:
        for stripe in stripes:
            stack.enter_context(_locks[stripe])
        yield
