"""Large groups: how long until the last member of a 1,000- and a 10,000-member group has a message.

For each size, in a project of its own (no trigger fires there): the chat
core's documents (one profile per member, all online, and the chat), then one
send, timed from the call until the fan-out has committed its last chunk (the
worker runs here, in process, as `pack427_onFanOut` would run it: the trigger's
own hop, tens of milliseconds, is not in the figure). Every member's inbox is
then counted.

The floor, in the same run on the same emulator: a plain writer putting the
two documents each member must at least get, copies of the very inbox entries
and heads the fan-out wrote, into Firestore, 500 to a commit, one commit after
the other, no engine code.
The ratio of the two is what to compare across machines.

On the emulator suite, the same send through the real callable and trigger
(`measure_through_suite`): the trigger's hop, the Functions emulator's
worker and HTTP included.
"""

from __future__ import annotations

import time

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from ulid import ULID

from pack427 import constants, paths
from pack427.accepting import sending
from pack427.delivering import fan_out
from pack427.models import SendMessageRequest
from pack427_client import CallableClient

from . import opcount
from .load import emulator_id_token

SENDER = "host"


def _write_all(db: firestore.Client, writes: list[tuple[firestore.DocumentReference, dict]]) -> float:
    """Seconds to `set` `writes`, 500 to a commit, one commit after the other."""
    started = time.perf_counter()
    for start in range(0, len(writes), 500):
        batch = db.batch()
        for ref, data in writes[start:start + 500]:
            batch.set(ref, data)
        batch.commit()
    return time.perf_counter() - started


def measure_one(db: firestore.Client, size: int) -> dict:
    """One group of `size` members besides the sender: the send, the fan-out, the floor."""
    chat_id = f"group{size}"
    members = [f"g{size}m{n:05d}" for n in range(size)]
    profile = {"region": "EU", "online": True, "ageVerified18Plus": True}
    _write_all(db, [(paths.user(db, uid), {**profile, "displayName": uid}) for uid in [SENDER, *members]])
    paths.chat(db, chat_id).set({"participants": [SENDER, *members]})

    counter = opcount.install()
    before = counter.snapshot()
    started = time.perf_counter()
    sent = sending.send_message(db, SENDER, SendMessageRequest(chatId=chat_id, clientMessageId=str(ULID()),
                                                               text="to everyone"))
    accepted_s = time.perf_counter() - started
    fan_out.run_chat(db, chat_id)
    last_member_s = time.perf_counter() - started
    spent = counter.snapshot() - before

    query = db.collection_group("inbox").where(filter=FieldFilter("messageId", "==", sent.messageId))
    entries = [s.to_dict() for s in query.stream()]
    if len(entries) != size:
        raise SystemExit(f"fan-out reached {len(entries)} of {size} members")
    heads = [s.to_dict() for s in db.get_all([paths.inbox_head(db, uid) for uid in members])]
    raw = db.collection("rawWrites")
    floor_s = _write_all(db, [(raw.document(f"{chat_id}-{n}"), data) for n, data in enumerate(entries + heads)])
    return {
        "members": size,
        "send_accepted_s": accepted_s,
        "last_member_s": last_member_s,
        "members_per_s": size / last_member_s,
        "plain_writer_s": floor_s,
        "ratio_to_plain_writer": last_member_s / floor_s,
        "chunks": -(-size // constants.FAN_OUT_CHUNK),
        "ops_per_member": {k: v / size for k, v in spent.as_dict().items()},
    }


def measure_through_suite(db: firestore.Client, functions_url: str, size: int) -> dict:
    """One group of `size` on the emulator suite: the callable over HTTP, the real `pack427_onFanOut`.

    Timed from the call until the chat's `fanOutPending` is cleared (the worker
    that finds no job left clears it, after the last member's commit), polled
    every 20 ms.
    """
    chat_id = f"suite-group{size}-{str(ULID()).lower()}"
    members = [f"s{size}m{n:05d}" for n in range(size)]
    profile = {"region": "EU", "online": True, "ageVerified18Plus": True}
    _write_all(db, [(paths.user(db, uid), {**profile, "displayName": uid}) for uid in [SENDER, *members]])
    paths.chat(db, chat_id).set({"participants": [SENDER, *members]})
    client = CallableClient(functions_url, emulator_id_token(SENDER, db.project), timeout_s=120)
    started = time.perf_counter()
    sent = client.call("pack427_sendMessage", {"chatId": chat_id, "clientMessageId": str(ULID()), "text": "to all"})
    accepted_s = time.perf_counter() - started
    deadline = started + 600
    while paths.chat(db, chat_id).get().get("fanOutPending") is not False:
        if time.perf_counter() > deadline:
            raise SystemExit(f"the fan-out of {size} members did not finish within 600 s")
        time.sleep(0.02)
    last_member_s = time.perf_counter() - started
    query = db.collection_group("inbox").where(filter=FieldFilter("messageId", "==", sent["messageId"]))
    reached = int(query.count().get()[0][0].value)
    if reached != size:
        raise SystemExit(f"the suite's fan-out reached {reached} of {size} members")
    return {"members": size, "send_accepted_s": accepted_s, "last_member_s": last_member_s,
            "members_per_s": size / last_member_s}


def measure(project: str, sizes: list[int], *, suite: tuple[str, str] | None = None) -> dict:
    """`measure_one` for each size, in `project` (a fresh one: nothing else writes there), and,
    given the suite's (functions URL, project), `measure_through_suite` for each size."""
    db = firestore.Client(project=project)
    results = {"groups": [measure_one(db, size) for size in sizes]}
    if suite is not None:
        url, suite_project = suite
        suite_db = firestore.Client(project=suite_project)
        results["through_suite"] = [measure_through_suite(suite_db, url, size) for size in sizes]
    return results
