"""End-to-end harness: the full emulator suite started by `scripts/emulators exec`.

Messages go in through HTTP POSTs to the callables and come out through the
real `pack427_onMessageEnqueued` trigger running in the Functions emulator.
"""

from __future__ import annotations

import os

import pytest
import requests
from google.cloud import firestore
from support.emulator import clear_project

from pack427_client import CallableClient, PasswordAuth


def _suite_env() -> dict[str, str]:
    names = ("PACK427_FUNCTIONS_URL", "PACK427_PROJECT", "FIRESTORE_EMULATOR_HOST", "FIREBASE_AUTH_EMULATOR_HOST")
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        pytest.fail(f"end-to-end tests need the emulator suite (missing {', '.join(missing)}): run scripts/test")
    return {n: os.environ[n] for n in names}


@pytest.fixture
def suite() -> dict[str, str]:
    """The suite's environment, with Firestore and Auth data cleared."""
    env = _suite_env()
    project = env["PACK427_PROJECT"]
    clear_project(env["FIRESTORE_EMULATOR_HOST"], project)
    requests.delete(
        f"http://{env['FIREBASE_AUTH_EMULATOR_HOST']}/emulator/v1/projects/{project}/accounts", timeout=30
    ).raise_for_status()
    return env


@pytest.fixture
def suite_db(suite) -> firestore.Client:
    """Admin access to the suite's Firestore (where the triggers fire)."""
    return firestore.Client(project=suite["PACK427_PROJECT"])


@pytest.fixture
def app_user(suite):
    """Sign up a user in the Auth emulator; returns (uid, CallableClient)."""

    def make(name: str) -> tuple[str, CallableClient]:
        user = PasswordAuth.sign_up(f"{name}@example.com", "password123",
                                    emulator_host=suite["FIREBASE_AUTH_EMULATOR_HOST"])
        # Concurrent calls make the Functions emulator start a Python worker
        # each, which takes seconds apiece on a busy 2-core machine.
        return user.uid, CallableClient(suite["PACK427_FUNCTIONS_URL"], user, timeout_s=300)

    return make
