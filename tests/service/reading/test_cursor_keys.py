"""The cursor key is a deployment secret: never the repository's key when deployed,
rotated without stopping anyone, and a client whose cursor is refused starts again."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from support.chatcore import make_chat, make_user
from support.entries import make_entry
from support.inprocess import InProcessTransport, chat_for, deliver
from support.syncing import deliver_all, sync_all, sync_page

from pack427 import clock
from pack427 import db as service_db
from pack427.errors import InvalidArgument, Unavailable
from pack427.reading import cursors, sync
from pack427_client import LocalStore

SECRET = "PACK427_CURSOR_KEY"
DEVELOPMENT_KEY = "pack427-development-cursor-key"
"""The key in the repository (pack427/reading/cursors.py)."""
OLD = "old-key-0123456789abcdef0123456789abcdef"
NEW = "new-key-fedcba9876543210fedcba9876543210"


@pytest.fixture
def bob(db):
    make_user(db, "bob", region="US")
    make_user(db, "alice", region="EU", name="Alice")
    return db


@pytest.fixture
def engine(db, monkeypatch):
    """The deployed functions in-process (test_client), on the test's Firestore."""
    monkeypatch.setattr(service_db, "client", lambda: db)
    make_user(db, "alice", name="Alice")
    make_user(db, "bob", region="US")
    make_chat(db, "ab", ["alice", "bob"])
    return db


def log_lines(capsys) -> list[dict]:
    """The structured log lines written so far (firebase_functions.logger: JSON on stdout and stderr)."""
    captured = capsys.readouterr()
    lines = []
    for line in (captured.out + captured.err).splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return [entry for entry in lines if isinstance(entry, dict)]


def deployed(monkeypatch, key: str | None) -> None:
    """The environment of a deployed instance: no emulator; the secret's value, if any."""
    monkeypatch.delenv("FUNCTIONS_EMULATOR", raising=False)
    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST", raising=False)  # the test's client is connected already
    set_key(monkeypatch, key)


def set_key(monkeypatch, key: str | None) -> None:
    if key is None:
        monkeypatch.delenv(SECRET, raising=False)
    else:
        monkeypatch.setenv(SECRET, key)


def day(days: int) -> str:
    return (clock.now() + timedelta(days=days)).date().isoformat()


# ------------------------------------------------------------ never the development key when deployed


@pytest.mark.parametrize(("key", "alert"), [(None, "CURSOR_KEY_MISSING"), ("", "CURSOR_KEY_MISSING"),
                                            (DEVELOPMENT_KEY, "CURSOR_KEY_IS_DEVELOPMENT_KEY"),
                                            ("short", "CURSOR_KEY_MALFORMED")])
def test_a_deployed_instance_without_a_real_key_signs_no_cursor_and_alerts(bob, monkeypatch, capsys, key, alert):
    db = bob
    deliver_all(db, make_entry("bob"))
    deployed(monkeypatch, key)
    capsys.readouterr()
    with pytest.raises(Unavailable):
        sync_page(db, "bob", "phone")
    assert [line["alert"] for line in log_lines(capsys) if "alert" in line] == [alert]


def test_on_the_emulators_without_a_key_the_development_key_serves(bob, monkeypatch):
    db = bob
    monkeypatch.delenv(SECRET, raising=False)
    deliver_all(db, make_entry("bob"), make_entry("bob"))
    received, cursor = sync_all(db, "bob", "phone")
    assert len(received) == 2
    assert cursors.decode(sync.INBOX_CURSOR, "bob", cursor)["seq"] == 2


def test_a_deployment_refuses_a_cursor_signed_with_the_development_key_and_says_so(bob, monkeypatch, capsys):
    db = bob
    monkeypatch.delenv(SECRET, raising=False)  # the emulators: the development key
    deliver_all(db, make_entry("bob"))
    development_cursor = sync_page(db, "bob", "phone").cursor
    deployed(monkeypatch, NEW)
    capsys.readouterr()
    with pytest.raises(InvalidArgument):
        sync_page(db, "bob", "phone", development_cursor)
    assert [line.get("cursorRefused") for line in log_lines(capsys)] == ["development_key"]


# ------------------------------------------------------------ rotation


def test_during_a_rotation_a_cursor_signed_with_the_previous_key_resumes_and_comes_back_signed_with_the_new(
        bob, monkeypatch, capsys):
    db = bob
    set_key(monkeypatch, OLD)
    deliver_all(db, make_entry("bob"), make_entry("bob"))
    first, old_cursor = sync_all(db, "bob", "phone")
    deliver_all(db, make_entry("bob"))

    set_key(monkeypatch, f"{NEW} previous={OLD} until={day(30)}")
    capsys.readouterr()
    page = sync_page(db, "bob", "phone", old_cursor)
    assert len(first) == 2 and len(page.messages) == 1 and not page.hasMore  # resumed: nothing again, nothing missed
    assert [line.get("cursorKey") for line in log_lines(capsys)] == ["previous"]

    set_key(monkeypatch, NEW)  # the previous key removed: the new cursor still serves
    assert sync_page(db, "bob", "phone", page.cursor).messages == []


def test_the_first_step_of_a_rotation_accepts_the_new_key_so_instances_of_both_steps_accept_each_other(bob, monkeypatch):
    """RUNBOOK: first deploy `OLD previous=NEW`, then `NEW previous=OLD`; while the
    second rolls out, an instance of either step takes the other's cursors."""
    db = bob
    deliver_all(db, make_entry("bob"), make_entry("bob"))
    set_key(monkeypatch, f"{OLD} previous={NEW} until={day(30)}")
    first_step = sync_page(db, "bob", "phone").cursor
    set_key(monkeypatch, f"{NEW} previous={OLD} until={day(30)}")
    second_step = sync_page(db, "bob", "phone", first_step).cursor
    set_key(monkeypatch, f"{OLD} previous={NEW} until={day(30)}")
    assert sync_page(db, "bob", "phone", second_step).messages == []


@pytest.mark.parametrize(("until", "reason"), [(-1, "previous_key_expired"), (0, "previous_key_expired"),
                                               (31, "previous_key_period_too_long")])
def test_after_the_period_a_cursor_signed_with_the_previous_key_is_refused_and_logged(
        bob, monkeypatch, capsys, until, reason):
    db = bob
    set_key(monkeypatch, OLD)
    deliver_all(db, make_entry("bob"))
    old_cursor = sync_page(db, "bob", "phone").cursor
    set_key(monkeypatch, f"{NEW} previous={OLD} until={day(until)}")
    capsys.readouterr()
    with pytest.raises(InvalidArgument):
        sync_page(db, "bob", "phone", old_cursor)
    assert [line.get("cursorRefused") for line in log_lines(capsys)] == [reason]


def test_a_rotation_part_that_cannot_be_used_alerts_and_cursors_are_still_signed_with_the_current_key(
        bob, monkeypatch, capsys):
    db = bob
    deliver_all(db, make_entry("bob"))
    set_key(monkeypatch, f"{NEW} previous={OLD}")  # no `until`: the period is not stated
    capsys.readouterr()
    cursor = sync_page(db, "bob", "phone").cursor
    assert [line["alert"] for line in log_lines(capsys) if "alert" in line] == ["CURSOR_KEY_MALFORMED"]
    set_key(monkeypatch, NEW)
    assert sync_page(db, "bob", "phone", cursor).messages == []


def test_after_a_key_change_a_device_without_a_cursor_starts_again_from_the_beginning_not_further(bob, monkeypatch):
    """The device's stored position is signed too: when it no longer verifies, the
    sync repeats from the start of the inbox rather than skip anything."""
    db = bob
    set_key(monkeypatch, OLD)
    deliver_all(db, make_entry("bob"), make_entry("bob"))
    sync_all(db, "bob", "phone")
    deliver_all(db, make_entry("bob"))
    set_key(monkeypatch, NEW)
    received, _ = sync_all(db, "bob", "phone")
    assert len(received) == 3


# ------------------------------------------------------------ the Python client


def test_a_client_whose_stored_cursor_is_refused_starts_again_and_gets_every_message_once(engine, monkeypatch, tmp_path):
    set_key(monkeypatch, OLD)
    alice = chat_for("alice", LocalStore())
    for n in range(3):
        alice.send_message("ab", f"m{n}")
    deliver(engine)
    phone = chat_for("bob", LocalStore(tmp_path / "bob.db"))
    assert [m.text for m in phone.sync_messages()] == ["m0", "m1", "m2"]
    phone.store.close()

    alice.send_message("ab", "m3")
    deliver(engine)
    set_key(monkeypatch, NEW)  # rotated, and the previous key's period is over
    transport = InProcessTransport()
    reopened = chat_for("bob", LocalStore(tmp_path / "bob.db"), transport=transport)
    assert [m.text for m in reopened.sync_messages()] == ["m3"]  # the others again, dropped by id
    assert [m.text for m in reopened.messages("ab")] == ["m0", "m1", "m2", "m3"]
    assert transport.calls.count("pack427_syncMessages") == 2  # refused, then started again
    # The cursor stored now is signed with the new key: the next sync resumes from it.
    assert reopened.sync_messages() == [] and transport.calls.count("pack427_syncMessages") == 3
