"""Chat-core mode: the chat core creates messages itself and a trigger takes each into delivery."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
from datetime import timedelta

from support.chatcore import all_documents, head, inbox, make_chat, make_user, queue_entries
from support.emulator import ROOT
from ulid import ULID

from pack427 import clock
from pack427.accepting import chat_core_intake, sending
from pack427.delivering import fan_out
from pack427.models import ResyncChatRequest, SendMessageRequest
from pack427.reading import sync

_TICKS = itertools.count()


def core_message(db, chat_id: str, sender: str, text: str | None = "hi", **fields) -> str:
    """A message as the chat core creates it (its own shape, an id that sorts in the chat's order)."""
    message_id = str(ULID.from_datetime(clock.now() + timedelta(milliseconds=next(_TICKS))))
    data = {"senderId": sender, **({"text": text} if text is not None else {}), **fields}
    db.document(f"chats/{chat_id}/messages/{message_id}").set(data)
    return message_id


def trigger(db, chat_id: str, message_id: str):
    """The trigger's event for the message, as Firestore delivers it."""
    return chat_core_intake.on_created(db, db.document(f"chats/{chat_id}/messages/{message_id}").get())


def test_chat_core_messages_under_duplicated_and_reordered_events_arrive_once_and_in_order(db):
    for uid in ("alice", "bob", "carol"):
        make_user(db, uid)
    make_chat(db, "c", ["alice", "bob", "carol"], billing={"plan": "paid", "pricePerMessage": 2})
    ids = [core_message(db, "c", sender, f"m{n}") for n, sender in enumerate(["alice", "bob", "alice"])]

    # The newest message's event comes first: it takes the older ones, oldest first.
    assert trigger(db, "c", ids[2]).accepted == ids
    # Then the older ones' events, and the newest's again, twice at once: nothing more.
    threads = [threading.Thread(target=trigger, args=(db, "c", i)) for i in (ids[0], ids[1], ids[2], ids[2])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(list(db.collection("chats/c/fanOuts").stream())) == 3
    fan_out.run_chat(db, "c")

    assert [e["messageId"] for e in inbox(db, "carol")] == ids
    assert [e["messageId"] for e in inbox(db, "bob")] == [ids[0], ids[2]]
    assert [e["seq"] for e in inbox(db, "carol")] == [1, 2, 3]
    assert head(db, "carol")["chats"]["c"]["unread"] == 3
    messages = {s.id: s.to_dict() for s in db.collection("chats/c/messages").stream()}
    assert set(messages) == set(ids)  # the core's documents only: the engine created no message of its own
    assert all(m["intake"] == "chatCore" and m["billingState"] == {"plan": "paid", "pricePerMessage": 2}
               for m in messages.values())
    assert list(db.collection("idempotencyKeys").stream()) == []
    assert db.document("chats/c").get().get("lastMessage")["messageId"] == ids[2]
    history = sync.resync_chat(db, "carol", ResyncChatRequest(chatId="c"))  # a wiped device gets them back
    assert [(m.messageId, m.text) for m in history.messages] == [(i, f"m{n}") for n, i in enumerate(ids)]


def test_a_message_whose_older_one_arrives_later_is_never_lost(db):
    for uid in ("alice", "bob"):
        make_user(db, uid)
    make_chat(db, "c", ["alice", "bob"])
    older_id = str(ULID.from_datetime(clock.now() - timedelta(seconds=1)))
    newer = core_message(db, "c", "alice", "second")
    trigger(db, "c", newer)
    fan_out.run_chat(db, "c")
    db.document(f"chats/c/messages/{older_id}").set({"senderId": "alice", "text": "first, written late"})
    trigger(db, "c", older_id)
    fan_out.run_chat(db, "c")
    assert [e["messageId"] for e in inbox(db, "bob")] == [newer, older_id]  # late, after the newer one
    assert db.document("chats/c").get().get("lastMessage")["messageId"] == newer


def test_senders_not_verified_18_or_not_in_the_chat_and_non_messages_are_refused_and_reach_nobody(db):
    make_user(db, "alice")
    make_user(db, "minor", adult=False)
    make_user(db, "bob")
    make_chat(db, "c", ["alice", "bob", "minor"])
    refused = {
        core_message(db, "c", "minor"): "age_verification_required",
        core_message(db, "c", "mallory"): "sender_not_participant",
        core_message(db, "c", "a/b"): "sender_not_participant",  # not even a usable uid
        core_message(db, "c", "alice", text=None): "invalid_message",
        core_message(db, "c", "alice", text="x" * 5000): "invalid_message",
    }
    for message_id in refused:
        trigger(db, "c", message_id)
    fan_out.run_chat(db, "c")
    assert inbox(db, "bob") == [] and inbox(db, "alice") == []
    for message_id, reason in refused.items():
        doc = db.document(f"chats/c/messages/{message_id}").get().to_dict()
        assert (doc["intake"], doc["intakeRefusal"]) == ("refused", reason)
        audited_as = doc.get("senderId") if doc.get("senderId") in ("alice", "minor", "mallory") else "unknown"
        assert db.document(f"auditLog/rejected_{audited_as}_{message_id}").get().get("reason") == reason


def test_a_blocked_member_gets_nothing_of_a_chat_core_message(db):
    make_user(db, "alice")
    make_user(db, "bob", blocked=["alice"])
    make_user(db, "carol", online=False, tokens=["carols-phone"])
    make_chat(db, "g", ["alice", "bob", "carol"])
    message_id = core_message(db, "g", "alice")
    trigger(db, "g", message_id)
    fan_out.run_chat(db, "g")
    assert inbox(db, "bob") == [] and [e["messageId"] for e in inbox(db, "carol")] == [message_id]
    assert [(e["recipientId"], e["awaitingInbox"]) for e in queue_entries(db)] == [("carol", False)]  # her push


def test_messages_the_engine_sent_are_left_alone_by_the_trigger(db):
    for uid in ("alice", "bob"):
        make_user(db, uid)
    make_chat(db, "c", ["alice", "bob"])
    sent = sending.send_message(db, "alice", SendMessageRequest(chatId="c", clientMessageId=str(ULID()), text="x"))
    before = all_documents(db)
    assert trigger(db, "c", sent.messageId).accepted == []
    assert all_documents(db) == before


def test_the_trigger_is_deployed_only_in_chat_core_mode():
    def deployed(source: str | None) -> bool:
        env = {k: v for k, v in os.environ.items() if k != "PACK427_MESSAGE_SOURCE"}
        if source is not None:
            env["PACK427_MESSAGE_SOURCE"] = source
        out = subprocess.run([sys.executable, "-c", "import main; print(hasattr(main, 'pack427_onChatCoreMessage'))"],
                             cwd=ROOT / "functions", env=env, capture_output=True, text=True, check=True, timeout=120)
        return out.stdout.strip() == "True"

    assert deployed("chatCore") and not deployed(None) and not deployed("engine")


def test_a_catch_up_whose_jobs_pass_a_commit_s_bytes_takes_them_in_order_over_several_commits(db, monkeypatch):
    """Each message of a large group takes its job (up to 5.1 MB of ids): one commit holds what its
    bytes allow (store.fitting), the rest follow in order. Here a commit holds two jobs, not four."""
    from pack427 import constants, store

    members = [f"u{n:02}" + "x" * 120 for n in range(60)]  # 60 ids of 123 characters
    for uid in members:
        make_user(db, uid)
    make_chat(db, "g", members)
    ids = [core_message(db, "g", members[0], f"m{n}") for n in range(4)]
    one = store.document_size(f"chats/g/fanOuts/{ids[0]}", {"recipients": members[1:]})
    monkeypatch.setattr(constants, "COMMIT_MAX_BYTES", 2 * one + 25_000)  # 2 takes and the chat's update fit, not 3
    commits = []
    commit = store.commit
    monkeypatch.setattr(store, "commit", lambda batch: commits.append(len(batch._write_pbs)) or commit(batch))

    assert trigger(db, "g", ids[3]).accepted == ids  # the newest's event takes the older ones first, in order
    assert len(commits) == 2 and sum(commits) == 4 * 2 + 2  # each message's mark and job, the chat twice
    assert [s.id for s in db.collection("chats/g/fanOuts").order_by("__name__").stream()] == ids
    assert db.document("chats/g").get().get("lastMessage.messageId") == ids[3]
    assert trigger(db, "g", ids[3]).accepted == [] and trigger(db, "g", ids[0]).accepted == []  # exactly once
    fan_out.run_chat(db, "g")
    assert [e["messageId"] for e in inbox(db, members[1])] == ids
