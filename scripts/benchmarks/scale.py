"""The scale run: many simulated users with registered devices, sending at steady rates.

Through the real path: each send is an HTTP POST to the `pack427_sendMessage`
callable (an unsigned emulator ID token per user: the Auth emulator's callables
accept them, and signing up 10,000 users would only time the Auth emulator),
delivery is the send's own commit (the suite's `pack427_onMessageEnqueued` trigger
for what it queues: pushes, a send that lost a race). Latency of a
message is the inbox entry's create time (the emulator's commit time, same
machine clock) minus the moment the send was issued.

Users are paired in direct chats; a share of them is offline (presence off,
an FCM token: delivery goes through the push path). The rate goes up in
steps; the figure is the highest step whose p95 stays under 1 s. Each step
starts with a warm-up at its rate, verified but not timed (see `run`). A small
share of sends is retried with the same clientMessageId, as a client that
lost the answer would. At the end every accepted message must be in its
recipient's inbox exactly once, every user's inbox seqs must run 1..n
without a gap or repeat, and the offline devices catch up by sync.
"""

from __future__ import annotations

import base64
import json
import random
import statistics
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from google.cloud import firestore
from pack427_client import CallableClient, ClientError
from ulid import ULID

from pack427 import delivery, paths, sync
from pack427.notifier import EmulatorNotifier
from pack427.models import RegisterDeviceRequest, SyncMessagesRequest

P95_TARGET_S = 1.0
WARMUP_S = 15


def emulator_id_token(uid: str, project: str) -> str:
    """An unsigned ID token, as the Auth emulator issues them (callables accept it there)."""
    now = int(time.time())
    claims = {"iss": f"https://securetoken.google.com/{project}", "aud": project, "auth_time": now,
              "user_id": uid, "sub": uid, "iat": now, "exp": now + 3600,
              "firebase": {"identities": {}, "sign_in_provider": "custom"}}
    part = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


@dataclass
class Sent:
    """One accepted send: who to whom, when it was issued, what came back."""

    sender: str
    recipient: str
    chat_id: str
    client_message_id: str
    message_id: str
    issued_at: float
    step: int
    latency_s: float | None = None


@dataclass
class ScaleRun:
    users: list[str]
    offline: set[str]
    partner: dict[str, tuple[str, str]]
    """uid -> (chat id, the other participant)."""
    sent: list[Sent] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    retries: int = 0
    retry_mismatches: int = 0


def setup(db: firestore.Client, users: int, offline_share: float, *, prefix: str) -> tuple[ScaleRun, dict]:
    """Create `users` users (chat core documents), pair them in chats, register one device each.

    Devices are registered with the service the `pack427_registerDevice`
    callable runs, in process (16 threads): the callable's HTTP hop would
    time the functions emulator 10,000 times before the run even starts.
    """
    started = time.perf_counter()
    uids = [f"{prefix}{n:05d}" for n in range(users - users % 2)]
    rng = random.Random(8)
    offline = {uid for uid in uids if rng.random() < offline_share}
    regions = ["EU"] * 8 + ["US", "APAC"]
    partner = {}
    writes = []
    for n, uid in enumerate(uids):
        doc = {"region": rng.choice(regions), "online": uid not in offline, "ageVerified18Plus": True,
               "displayName": uid}
        if uid in offline:
            doc["fcmTokens"] = [f"token-{uid}"]
        writes.append((paths.user(db, uid), doc))
        if n % 2:
            a, chat_id = uids[n - 1], f"{prefix}chat{n // 2:05d}"
            partner[a], partner[uid] = (chat_id, uid), (chat_id, a)
            writes.append((paths.chat(db, chat_id), {"participants": [a, uid]}))
    for start in range(0, len(writes), 400):
        batch = db.batch()
        for ref, doc in writes[start:start + 400]:
            batch.set(ref, doc)
        batch.commit()
    documents_s = time.perf_counter() - started

    started = time.perf_counter()
    request = RegisterDeviceRequest(deviceId="phone", platform="android", appVersion="1.0")
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda uid: sync.register_device(db, uid, request), uids))
    register_s = time.perf_counter() - started
    timing = {"users": len(uids), "offline": len(offline), "chats": len(uids) // 2,
              "documents_s": documents_s, "register_devices_s": register_s}
    return ScaleRun(uids, offline, partner), timing


def run_step(run: ScaleRun, functions_url: str, project: str, *, rate: float, seconds: float, step: int,
             retry_share: float = 0.02, workers: int = 64) -> dict:
    """Send at `rate` messages/s for `seconds` (open loop: a slow answer does not slow the schedule)."""
    rng = random.Random(step)
    total = max(1, int(rate * seconds))
    # Round robin over the users: each sends far below 60 a minute.
    offset = step * 7919
    senders = [run.users[(offset + k) % len(run.users)] for k in range(total)]
    clients: dict[str, CallableClient] = {}

    def client(uid: str) -> CallableClient:
        if uid not in clients:
            clients[uid] = CallableClient(functions_url, emulator_id_token(uid, project), timeout_s=60)
        return clients[uid]

    def send(k: int) -> None:
        uid = senders[k]
        chat_id, other = run.partner[uid]
        data = {"chatId": chat_id, "clientMessageId": str(ULID()), "text": f"scale {step}.{k}"}
        issued = time.time()
        result = None
        for _ in range(3):  # as an app does: retried with the same clientMessageId (idempotent)
            try:
                result = client(uid).call("pack427_sendMessage", data)
            except ClientError as err:  # refused, or no answer (timeout, connection lost)
                run.errors[getattr(err, "status", None) or type(err).__name__] += 1
                continue
            if result and "messageId" in result:
                break
            run.errors["empty answer"] += 1
            result = None
        if result is None:
            return
        run.sent.append(Sent(uid, other, chat_id, data["clientMessageId"], result["messageId"], issued, step))
        if rng.random() < retry_share:
            # The client lost the answer and sends again: same message, duplicate: true.
            try:
                again = client(uid).call("pack427_sendMessage", data)
            except ClientError as err:
                run.errors[f"retry: {getattr(err, 'status', None) or type(err).__name__}"] += 1
                return
            run.retries += 1
            if again["messageId"] != result["messageId"] or not again["duplicate"]:
                run.retry_mismatches += 1

    started = time.time()
    with ThreadPoolExecutor(workers) as pool:
        futures = []
        for k in range(total):
            delay = started + k / rate - time.time()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(send, k))
        issued_s = time.time() - started  # the schedule's length, not the wait for the last answer
    answered_s = time.time() - started
    for future in futures:  # a bench bug must show, not vanish in the pool
        future.result()
    return {"step": step, "target_rate": rate, "messages": total, "issue_seconds": issued_s,
            "last_answer_seconds": answered_s}


def collect_latencies(db: firestore.Client, run: ScaleRun, step: int, *, timeout_s: float = 180) -> dict:
    """Wait for the step's messages to reach their inboxes; their latencies, p50/p95/p99."""
    pending = [s for s in run.sent if s.step == step]
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        refs = [paths.inbox_entry(db, s.recipient, s.message_id) for s in pending]
        found = {}
        for start in range(0, len(refs), 300):
            for snap in db.get_all(refs[start:start + 300]):
                if snap.exists:
                    found[snap.reference.path] = snap.create_time.timestamp()
        still = []
        for s, ref in zip(pending, refs):
            if ref.path in found:
                s.latency_s = found[ref.path] - s.issued_at
            else:
                still.append(s)
        pending = still
        if pending:
            time.sleep(1)
    latencies = [s.latency_s for s in run.sent if s.step == step and s.latency_s is not None]
    accepted = sum(1 for s in run.sent if s.step == step)
    out = {"accepted": accepted, "delivered": len(latencies), "undelivered_after_wait": len(pending)}
    if latencies:
        out |= {"p50_ms": percentile(latencies, 50) * 1000, "p95_ms": percentile(latencies, 95) * 1000,
                "p99_ms": percentile(latencies, 99) * 1000, "mean_ms": statistics.mean(latencies) * 1000}
    return out


def verify(db: firestore.Client, run: ScaleRun, *, prefix: str) -> dict:
    """Every accepted message in its recipient's inbox exactly once; seqs 1..n; offline devices catch up."""
    expected = Counter((s.recipient, s.message_id) for s in run.sent)
    found: Counter = Counter()
    seqs: dict[str, list[int]] = {}
    query = db.collection_group("inbox").select(["messageId", "seq"])
    for snap in query.stream():
        owner = snap.reference.parent.parent.id
        if not owner.startswith(prefix):
            continue
        found[(owner, snap.get("messageId"))] += 1
        seqs.setdefault(owner, []).append(snap.get("seq"))
    lost = sum(1 for key in expected if key not in found)
    duplicated = sum(n - 1 for n in found.values() if n > 1) + sum(n - 1 for n in expected.values() if n > 1)
    unexpected = sum(1 for key in found if key not in expected)
    bad_seq_users = sum(1 for values in seqs.values() if sorted(values) != list(range(1, len(values) + 1)))

    # The offline devices catch up from their stored positions: each must get exactly its messages.
    inbound: dict[str, set[str]] = {}
    for s in run.sent:
        inbound.setdefault(s.recipient, set()).add(s.message_id)
    offline = [uid for uid in run.offline if uid in inbound]

    def catch_up(uid: str) -> tuple[int, int]:
        got: list[str] = []
        cursor = None
        while True:
            page = sync.sync_messages(db, uid, SyncMessagesRequest(deviceId="phone", cursor=cursor))
            got += [m.messageId for m in page.messages]
            cursor = page.cursor
            if not page.hasMore:
                break
        missing = len(inbound[uid] - set(got))
        repeated = len(got) - len(set(got))
        return missing, repeated

    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(catch_up, offline))
    return {
        "accepted_messages": len(run.sent),
        "inbox_entries": sum(found.values()),
        "lost": lost,
        "duplicated": duplicated,
        "unexpected": unexpected,
        "users_with_seq_gap_or_repeat": bad_seq_users,
        "retried_sends": run.retries,
        "retries_not_idempotent": run.retry_mismatches,
        "send_errors": dict(run.errors),
        "offline_devices_synced": len(offline),
        "offline_sync_missing": sum(m for m, _ in results),
        "offline_sync_repeated": sum(r for _, r in results),
        "offline_sync_seconds": time.perf_counter() - started,
    }


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def run(db: firestore.Client, functions_url: str, project: str, *, users: int, offline_share: float,
        rates: list[float], step_seconds: float, warmup_seconds: float = WARMUP_S, log=print) -> dict:
    """The whole scale run; stops raising the rate once p95 passes 3x the target.

    Each step first sends at its rate for `warmup_seconds`, waits until those
    messages are delivered, and only then sends the `step_seconds` it times.
    The functions emulator serves each concurrent invocation of a function in
    a Python process of its own, and starts one (an import of several seconds
    here) whenever all of that function's are busy; a production instance
    serves up to 80 requests at once and scales ahead of a steady rate. Timing
    the warm-up would time those starts, not the engine. Its messages count
    in the verification like every other.
    """
    prefix = f"scale{str(ULID())[-6:].lower()}-"
    state, timing = setup(db, users, offline_share, prefix=prefix)
    log(f"  scale: {timing['users']} users ({timing['offline']} offline), devices registered in "
        f"{timing['register_devices_s']:.0f} s")
    steps = []
    for step, rate in enumerate(rates):
        warmup_step = -1 - step
        run_step(state, functions_url, project, rate=rate, seconds=warmup_seconds, step=warmup_step)
        warmup = collect_latencies(db, state, warmup_step)
        issued = run_step(state, functions_url, project, rate=rate, seconds=step_seconds, step=step)
        latency = collect_latencies(db, state, step)
        achieved = latency["accepted"] / max(issued["issue_seconds"], 1e-9)
        steps.append(issued | latency | {"achieved_rate": achieved, "warmup": warmup})
        log(f"  scale step {step}: target {rate}/s, warm-up p95 {warmup.get('p95_ms', float('nan')):.0f} ms, "
            f"accepted {latency['accepted']} ({achieved:.1f}/s), p95 {latency.get('p95_ms', float('nan')):.0f} ms")
        if latency.get("p95_ms", float("inf")) > 3 * P95_TARGET_S * 1000:
            break
    sustained = [s for s in steps if s.get("p95_ms", float("inf")) < P95_TARGET_S * 1000
                 and s["undelivered_after_wait"] == 0]
    # The emulator runs no schedules: do what pack427_processMessageQueue does every minute in
    # production, so a message whose trigger attempt failed or never ran is retried before the count.
    processed = delivery.drain(db, EmulatorNotifier(), actor="scheduler", time_budget_s=120)
    checks = verify(db, state, prefix=prefix)
    checks["delivered_by_the_scheduled_processor"] = sum(r.get("delivered", 0) for r in processed.values())
    return {"setup": timing, "steps": steps, "step_seconds": step_seconds, "warmup_seconds": warmup_seconds,
            "highest_rate_p95_under_1s": max((s["achieved_rate"] for s in sustained), default=None),
            "verification": checks}
