"""The emulator projects the tests use, and how to clear one."""

from __future__ import annotations

import os
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
"""The repository's root."""

UNIT_PROJECT = f"demo-pack427-test{os.environ.get('PYTEST_XDIST_WORKER', '')}"
"""The service tests' project: one per xdist worker; the suite wires triggers only for demo-pack427."""


def clear_project(host: str, project: str) -> None:
    """Delete every document of `project` on the Firestore emulator at `host`."""
    url = f"http://{host}/emulator/v1/projects/{project}/databases/(default)/documents"
    requests.delete(url, timeout=120).raise_for_status()  # the emulator can stall for a while on a busy machine
