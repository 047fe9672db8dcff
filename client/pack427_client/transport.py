"""How a call reaches the server: HTTP, or HTTP with faults injected for tests."""

from __future__ import annotations

import random
import threading
from collections import Counter
from typing import Any, Protocol

import requests

from .errors import TransportError


class Transport(Protocol):
    def post(self, url: str, body: Any, headers: dict[str, str], timeout_s: float) -> tuple[int, Any]:
        """POST `body` as JSON; returns (HTTP status, decoded JSON body or None). Raises TransportError."""
        ...


class HttpTransport:
    """`requests` with one keep-alive session (thread-safe enough for requests' adapters).

    A server closes a kept-alive connection once it has been idle a while (the
    emulator suite's after 5 s). A request the session sends on it just then
    fails with "connection reset" or "remote end closed": that request is sent
    once more, on a new connection. The callables of this engine are all
    idempotent (a send by its clientMessageId), so a second copy that did
    reach the server changes nothing. A timeout is not retried here: the
    caller decides (see RetryPolicy).
    """

    def __init__(self) -> None:
        self._session = requests.Session()

    def post(self, url: str, body: Any, headers: dict[str, str], timeout_s: float) -> tuple[int, Any]:
        try:
            try:
                response = self._session.post(url, json=body, headers=headers, timeout=timeout_s)
            except requests.ConnectionError as err:
                if isinstance(err, requests.Timeout):
                    raise
                response = self._session.post(url, json=body, headers=headers, timeout=timeout_s)
        except requests.RequestException as err:
            raise TransportError(f"{url}: {err}") from err
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, None


class FaultyTransport:
    """Loses a share of calls, as a bad mobile network does (for tests).

    Each call fails with probability `failure_rate`: half of those before the
    request leaves (the server never sees it), half after the server handled
    it and before the reply arrives (the server acted, the caller does not
    know). Both raise TransportError.

    Args:
        inner: the transport that really sends (default HttpTransport()).
        failure_rate: share of calls that fail, 0..1 (default 0.3).
        seed: seed of the random choice, for a reproducible run (default none).

    Attributes:
        counts: calls by outcome: "ok", "lost_request", "lost_reply".
    """

    def __init__(self, inner: Transport | None = None, *, failure_rate: float = 0.3, seed: int | None = None):
        if not 0 <= failure_rate <= 1:
            raise ValueError("failure_rate must be between 0 and 1")
        self.inner = inner or HttpTransport()
        self.failure_rate = failure_rate
        self.counts: Counter[str] = Counter()
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def post(self, url: str, body: Any, headers: dict[str, str], timeout_s: float) -> tuple[int, Any]:
        with self._lock:
            draw = self._random.random()
        if draw < self.failure_rate / 2:
            self._count("lost_request")
            raise TransportError("injected fault: the request was lost", reached_server=False)
        answer = self.inner.post(url, body, headers, timeout_s)
        if draw < self.failure_rate:
            self._count("lost_reply")
            raise TransportError("injected fault: the reply was lost", reached_server=True)
        self._count("ok")
        return answer

    def _count(self, outcome: str) -> None:
        with self._lock:
            self.counts[outcome] += 1
