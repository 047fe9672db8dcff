"""Firebase ID tokens for the callables: email/password sign-in with refresh.

The callables want `Authorization: Bearer <ID token>`. ID tokens live an
hour; PasswordAuth refreshes them with the refresh token shortly before they
expire, and on demand when the server says UNAUTHENTICATED. Against the Auth
emulator pass `emulator_host` (host:port); any API key works there.

    auth = PasswordAuth.sign_up("ann@example.com", "secret!", emulator_host="127.0.0.1:9099")
    auth.uid, auth.token()
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

import requests

from .errors import TransportError, Unauthenticated

REFRESH_MARGIN_S = 300
"""Refresh a token this long before it expires."""


class TokenSource(Protocol):
    def token(self, *, force_refresh: bool = False) -> str | None:
        """The current ID token (None: call unauthenticated)."""
        ...


class StaticToken:
    """A token obtained elsewhere (None: unauthenticated); never refreshed."""

    def __init__(self, id_token: str | None):
        self._token = id_token

    def token(self, *, force_refresh: bool = False) -> str | None:
        return self._token


class PasswordAuth:
    """A signed-in email/password user of Firebase Authentication.

    Args:
        api_key: the project's web API key (any string on the emulator).
        emulator_host: host:port of the Auth emulator; None for production.
        timeout_s: per-request timeout (default 30).

    Use sign_in / sign_up to create one.
    """

    def __init__(self, *, api_key: str = "emulator", emulator_host: str | None = None, timeout_s: float = 30):
        self.api_key = api_key
        self.timeout_s = timeout_s
        if emulator_host:
            self._identity = f"http://{emulator_host}/identitytoolkit.googleapis.com/v1"
            self._secure_token = f"http://{emulator_host}/securetoken.googleapis.com/v1"
        else:
            self._identity = "https://identitytoolkit.googleapis.com/v1"
            self._secure_token = "https://securetoken.googleapis.com/v1"
        self.uid: str | None = None
        self.email: str | None = None
        self._id_token: str | None = None
        self._refresh_token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()

    @classmethod
    def sign_up(cls, email: str, password: str, **options) -> PasswordAuth:
        """Create the account and sign it in (options as for the constructor)."""
        auth = cls(**options)
        auth._account("accounts:signUp", email, password)
        return auth

    @classmethod
    def sign_in(cls, email: str, password: str, **options) -> PasswordAuth:
        """Sign in an existing account (options as for the constructor)."""
        auth = cls(**options)
        auth._account("accounts:signInWithPassword", email, password)
        return auth

    def token(self, *, force_refresh: bool = False) -> str | None:
        with self._lock:
            if force_refresh or time.monotonic() > self._expires_at - REFRESH_MARGIN_S:
                self._refresh()
            return self._id_token

    def _account(self, action: str, email: str, password: str) -> None:
        body = self._post(f"{self._identity}/{action}?key={self.api_key}",
                          {"email": email, "password": password, "returnSecureToken": True})
        self.uid, self.email = body["localId"], email
        self._store(body["idToken"], body["refreshToken"], body.get("expiresIn", 3600))

    def _refresh(self) -> None:
        body = self._post(f"{self._secure_token}/token?key={self.api_key}",
                          {"grant_type": "refresh_token", "refresh_token": self._refresh_token})
        self._store(body["id_token"], body["refresh_token"], body.get("expires_in", 3600))

    def _store(self, id_token: str, refresh_token: str, expires_in: str | int) -> None:
        self._id_token, self._refresh_token = id_token, refresh_token
        self._expires_at = time.monotonic() + int(expires_in)

    def _post(self, url: str, body: dict) -> dict:
        try:
            response = requests.post(url, json=body, timeout=self.timeout_s)
        except requests.RequestException as err:
            raise TransportError(f"Firebase Auth unreachable: {err}") from err
        if response.status_code != 200:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:200]
            raise Unauthenticated("UNAUTHENTICATED", f"Firebase Auth refused: {message}", None, response.status_code)
        return response.json()
