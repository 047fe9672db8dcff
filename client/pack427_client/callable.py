"""The callable protocol: POST {"data": ...}, answer {"result": ...} or {"error": ...}."""

from __future__ import annotations

from typing import Any

import requests


class CallableError(Exception):
    """A callable answered with an error.

    Attributes:
        status: the protocol's status, for example "INVALID_ARGUMENT".
        message: the server's explanation.
        details: extra data the server attached (may be None).
        http_status: the HTTP status code.
    """

    def __init__(self, status: str, message: str, details: Any, http_status: int):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.details = details
        self.http_status = http_status


class CallableClient:
    """Calls `{functions_url}/{name}` with a Firebase ID token.

    Args:
        functions_url: base URL of the functions, for example
            http://127.0.0.1:5001/demo-pack427/us-central1 on the emulator.
        id_token: the signed-in user's Firebase ID token; None calls unauthenticated.
        timeout_s: per-request timeout in seconds (default 30).
    """

    def __init__(self, functions_url: str, id_token: str | None = None, *, timeout_s: float = 30):
        self.functions_url = functions_url.rstrip("/")
        self.id_token = id_token
        self.timeout_s = timeout_s
        self._session = requests.Session()

    def call(self, name: str, data: Any = None) -> Any:
        """Call function `name` with `data`; returns its result or raises CallableError."""
        headers = {"Content-Type": "application/json"}
        if self.id_token:
            headers["Authorization"] = f"Bearer {self.id_token}"
        response = self._session.post(
            f"{self.functions_url}/{name}", json={"data": data}, headers=headers, timeout=self.timeout_s
        )
        try:
            body = response.json()
        except ValueError:
            raise CallableError("INTERNAL", response.text[:500], None, response.status_code) from None
        if "error" in body:
            error = body["error"]
            raise CallableError(error.get("status", "UNKNOWN"), error.get("message", ""), error.get("details"), response.status_code)
        return body.get("result")
