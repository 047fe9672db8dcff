"""Test harness: the real Firestore emulator, cleared between tests.

Under `scripts/emulators exec` (as `scripts/test` runs) the suite's emulator
is used through FIRESTORE_EMULATOR_HOST. Otherwise a standalone Cloud SDK
Firestore emulator is started once for the session (after `scripts/setup`).

Service tests use their own project id: the suite wires triggers only for
demo-pack427, so nothing fires behind a service test's back.

Parallel runs (pytest-xdist, `scripts/test` uses two workers): each worker
has its own unit project, a test file stays on one worker, and the
end-to-end tests, which share the suite's project, all run on one worker.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest
import requests
from google.cloud import firestore
from support.emulator import ROOT, UNIT_PROJECT, clear_project


def pytest_configure(config: pytest.Config) -> None:
    # Known also when xdist is not loaded (`-p no:xdist`).
    config.addinivalue_line("markers", "xdist_group(name): run on the worker of this group (pytest-xdist)")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups into the node ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Group tests for `--dist loadgroup`: one group per file, one for all end-to-end tests."""
    for item in items:
        group = "suite" if "e2e" in item.path.parts else item.path.stem
        item.add_marker(pytest.mark.xdist_group(group))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Refuse to run when xdist ignored the groups: e2e tests on two workers clear each other's data."""
    if getattr(session.config.option, "loadgroup", False):
        ungrouped = [item.nodeid for item in session.items if "@" not in item.nodeid]
        if ungrouped:
            raise pytest.UsageError(f"pytest-xdist did not apply the test groups (first: {ungrouped[0]})")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {deadline_s} s")


@pytest.fixture(scope="session")
def firestore_emulator() -> str:
    """host:port of a running Firestore emulator."""
    host = os.environ.get("FIRESTORE_EMULATOR_HOST")
    if host:
        yield host
        return
    sdk_jar = ROOT / ".emulators" / "firestore-sdk-jar"
    if not sdk_jar.exists():
        pytest.exit("no Firestore emulator: run the tests with scripts/test", returncode=2)
    host = f"127.0.0.1:{_free_port()}"
    proc = subprocess.Popen(
        [
            "java", "-cp", sdk_jar.read_text().strip(),
            "com.google.cloud.datastore.emulator.firestore.CloudFirestore", "start",
            f"--host={host.split(':')[0]}", f"--port={host.split(':')[1]}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.environ["FIRESTORE_EMULATOR_HOST"] = host
    try:
        _wait_http(f"http://{host}/", 120)  # a busy 2-core machine can take a minute
        yield host
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def db(firestore_emulator: str) -> firestore.Client:
    """A client of the (cleared) unit-test project; the engine's settings cache is dropped with the data."""
    from pack427 import settings

    clear_project(firestore_emulator, UNIT_PROJECT)
    settings.forget()
    return firestore.Client(project=UNIT_PROJECT)
