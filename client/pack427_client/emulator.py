"""Users of the Firebase Auth emulator, for local runs and tests."""

from __future__ import annotations

from dataclasses import dataclass

import requests


@dataclass(frozen=True)
class EmulatorUser:
    uid: str
    email: str
    id_token: str


def sign_up(auth_host: str, email: str, password: str = "password123") -> EmulatorUser:
    """Create a user in the Auth emulator at `auth_host` (host:port) and sign it in."""
    response = requests.post(
        f"http://{auth_host}/identitytoolkit.googleapis.com/v1/accounts:signUp?key=emulator",
        json={"email": email, "password": password, "returnSecureToken": True},
        timeout=30,
    )
    response.raise_for_status()
    body = response.json()
    return EmulatorUser(uid=body["localId"], email=email, id_token=body["idToken"])
