"""The callable protocol: POST {"data": ...}, answer {"result": ...} or {"error": ...}."""

from __future__ import annotations

from typing import Any

from .auth import StaticToken, TokenSource
from .errors import CallableError, Internal, TransportError, Unauthenticated, from_status
from .transport import HttpTransport, Transport


class CallableClient:
    """Calls `{functions_url}/{name}` as the signed-in user.

    Args:
        functions_url: base URL of the functions, for example
            http://127.0.0.1:5001/demo-pack427/us-central1 on the emulator or
            https://us-central1-PROJECT.cloudfunctions.net in production.
        auth: a TokenSource (PasswordAuth, ...), an ID token string, or None
            to call unauthenticated.
        transport: how requests travel (default HttpTransport()).
        timeout_s: per-request timeout in seconds (default 30).
    """

    def __init__(
        self,
        functions_url: str,
        auth: TokenSource | str | None = None,
        *,
        transport: Transport | None = None,
        timeout_s: float = 30,
    ):
        self.functions_url = functions_url.rstrip("/")
        self.auth = auth if auth is None or not isinstance(auth, str) else StaticToken(auth)
        self.transport = transport or HttpTransport()
        self.timeout_s = timeout_s

    def call(self, name: str, data: Any = None) -> Any:
        """Call function `name` with `data` and return its result.

        Raises the CallableError subclass of the answer's status, or
        TransportError when no answer came (an HTTP 5xx without a callable
        answer included). An UNAUTHENTICATED answer is
        retried once with a refreshed token.
        """
        try:
            return self._call(name, data, force_refresh=False)
        except Unauthenticated:
            if self.auth is None:
                raise
            return self._call(name, data, force_refresh=True)

    def _call(self, name: str, data: Any, *, force_refresh: bool) -> Any:
        headers = {"Content-Type": "application/json"}
        token = self.auth.token(force_refresh=force_refresh) if self.auth is not None else None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        status, body = self.transport.post(f"{self.functions_url}/{name}", {"data": data}, headers, self.timeout_s)
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            error = body["error"]
            raise from_status(str(error.get("status", "UNKNOWN")), str(error.get("message", "")),
                              error.get("details"), status)
        if status >= 500:
            # No callable answer: the platform in front of the function failed
            # (a dropped worker, an overloaded front end). The function may or
            # may not have run, exactly as when the reply is lost.
            raise TransportError(f"{name}: HTTP {status} without a callable answer", reached_server=None)
        if status != 200 or not isinstance(body, dict) or "result" not in body:
            raise Internal("INTERNAL", f"{name}: unexpected answer (HTTP {status})", None, status)
        return body["result"]


__all__ = ["CallableClient", "CallableError"]
