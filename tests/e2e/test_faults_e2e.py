"""Network instability, end to end: 30% of the client's calls fail, half before
the request leaves and half after the server handled it (the reply is lost),
and still every message arrives exactly once and in order.

Sender and receiver both talk through FaultyTransport; the sender's outbox
repeats lost sends with the same clientMessageId, the receiver's sync repeats
lost pages from its stored cursor and de-duplicates by id.
"""

from __future__ import annotations

import os

from support.chatcore import make_chat, make_user, queue_entries, wait_for

from pack427 import settings
from pack427_client import CallableClient, FaultyTransport, LocalStore, OfflineAwareChat, RetryPolicy

MESSAGES = int(os.environ.get("PACK427_FAULT_MESSAGES", "30"))
"""30 over HTTP by default (each one costs trigger runs in the Functions emulator);
tests/test_client.py sends 200 through the same faults in-process."""
FAILURE_RATE = 0.3
FUNCTION_WAIT_S = 300


def test_messages_through_a_network_that_loses_30_percent_arrive_once_in_order(suite_db, app_user, tmp_path):
    (alice, alice_client), (bob, bob_client) = app_user("alice"), app_user("bob")
    make_user(suite_db, alice)
    make_user(suite_db, bob, region="US")
    make_chat(suite_db, "ab", [alice, bob])
    # One client sending 500 messages in a few minutes is a bot's rate: the operator's setting allows it.
    settings.set_rate_limit(suite_db, 1000, actor="test", reason="fault-injection run")

    def faulty(client: CallableClient, seed: int) -> tuple[CallableClient, FaultyTransport]:
        transport = FaultyTransport(failure_rate=FAILURE_RATE, seed=seed)
        return CallableClient(client.functions_url, client.auth, transport=transport, timeout_s=300), transport

    sender_client, sender_net = faulty(alice_client, 427)
    receiver_client, receiver_net = faulty(bob_client, 428)
    quick = RetryPolicy(base_delay_s=0.05, max_delay_s=1, max_attempts=12)
    sender = OfflineAwareChat(sender_client, LocalStore(tmp_path / "alice.db"), user_id=alice, device_id="a",
                              retry=quick)
    receiver = OfflineAwareChat(receiver_client, LocalStore(tmp_path / "bob.db"), user_id=bob, device_id="b",
                                retry=quick)

    received = []
    for n in range(MESSAGES):
        sender.send_message("ab", f"m{n}")
        if n % 25 == 24:  # the receiver syncs now and then while messages keep coming
            received += receiver.sync_messages()
    assert sender.failed_messages_count == 0 and not sender.has_pending_messages
    wait_for(suite_db.document(f"users/{bob}/inboxHead/current"), lambda d: d["seq"] == MESSAGES, FUNCTION_WAIT_S)
    received += receiver.sync_messages()

    texts = [m.text for m in received]
    duplicates = len(texts) - len(set(texts))
    out_of_order = sum(1 for a, b in zip(received, received[1:], strict=False) if a.message_id >= b.message_id)
    print(f"\nfault injection ({FAILURE_RATE:.0%} of calls fail): sent {MESSAGES}, delivered {len(set(texts))}, "
          f"duplicates {duplicates}, out of order {out_of_order}; sender calls {dict(sender_net.counts)}, "
          f"receiver calls {dict(receiver_net.counts)}")
    assert texts == [f"m{n}" for n in range(MESSAGES)]
    assert sender_net.counts["lost_reply"] > 0 and sender_net.counts["lost_request"] > 0  # the faults happened
    assert receiver_net.counts["lost_reply"] > 0
    # Nothing twice on the server either: one message and one inbox entry each, which either its
    # send placed or (a send that lost a race for bob's inbox head) one queue entry delivered.
    messages = {s.id for s in suite_db.collection("chats/ab/messages").stream()}
    assert len(messages) == MESSAGES
    assert len(list(suite_db.collection(f"users/{bob}/inbox").stream())) == MESSAGES
    placed = [s.get("messageId") for s in suite_db.collection("idempotencyKeys").stream() if bob in s.get("placedBySend")]
    queued = [e["messageId"] for e in queue_entries(suite_db) if e["recipientId"] == bob]
    assert sorted(placed + queued) == sorted(messages)
