"""The load run: 10,000 users with real traffic, the rate raised until the engine stops keeping up.

Users have a registered device each; a share of them is offline (presence
off, an FCM token: their messages also queue a push). They are paired in
direct chats and drawn into groups of 3 to 50. Operations arrive open-loop,
as a Poisson process (exponential gaps: bursts and lulls, as real clients
make them), in a fixed mix (MIX): 1:1 sends, group sends, a send repeated with
the same clientMessageId (an app that lost the answer), typing bursts, an
offline device coming back and syncing, markAsRead, chat-list loads. The rate
rises in steps, each after an untimed warm-up at its rate (its messages are
checked with the others); a step is held when its send-to-inbox p95 stays
under 1 s, every message reached its inboxes and no call failed. The run
stops at the first step that is not held.

Two modes, the same workload and checks:
- `suite`: every operation is an HTTP call of the real callable on the
  emulator suite (unsigned emulator ID tokens), and queued entries are
  delivered by the suite's real `pack427_onMessageEnqueued` trigger;
- `engine`: the callables' service functions run in process on a pool of
  simulated function instances (INSTANCES threads), and each queue entry or
  fan-out job a commit created is handed to `delivery.on_enqueued` or
  `fan_out.on_created` on pools of trigger instances: the engine and
  Firestore, without the functions emulator's worker start-up and HTTP hops.

Latency of a message is its inbox entry's create time (the emulator's commit
time, same machine clock) minus the moment the send was issued, for every
recipient. At the end, after one scheduled-processor pass (the emulator runs
no schedules), everything is checked, not assumed (`verify`).
"""

from __future__ import annotations

import base64
import json
import os
import random
import statistics
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from google.cloud import firestore
from ulid import ULID

from pack427 import constants, paths
from pack427.accepting import sending
from pack427.delivering import delivery, fan_out
from pack427.delivering.notifier import EmulatorNotifier
from pack427.errors import EngineError
from pack427.guarding import callables
from pack427.models import (
    AckMessagesRequest,
    GetChatListRequest,
    MarkAsReadRequest,
    Region,
    RegisterDeviceRequest,
    SendMessageRequest,
    SyncMessagesRequest,
    UpdateTypingStateRequest,
)
from pack427.reading import chat_list, sync, typing_state, unread
from pack427.workers import processor
from pack427_client import CallableClient, ClientError

from . import faults, opcount
from .stalls import StallProbe

P95_TARGET_S = 1.0
MIX = {"direct": 0.55, "group": 0.12, "duplicate": 0.03, "typing": 0.12, "sync": 0.06, "read": 0.08, "chat_list": 0.04}
"""Shares of the operations. The step's rate counts the sends (direct, group, duplicate)."""
SEND_SHARE = MIX["direct"] + MIX["group"] + MIX["duplicate"]
GROUP_SIZES = (3, 50)
INSTANCES = 20
"""Simulated function instances of the engine mode (main.py deploys max_instances=20)."""
TRIGGER_INSTANCES = 8
FAN_OUT_INSTANCES = 2
CLIENTS = 64
"""Operations in flight at once (open loop: a slow answer does not slow the schedule)."""
RETRYABLE = {"unavailable", "aborted", "deadline-exceeded"}
"""Error codes after which an app repeats its call (the callable protocol's transient ones)."""
CLIENT_ATTEMPTS = 6
CLIENT_RETRY_PAUSE_S = 0.1

SERVICES = {
    "pack427_sendMessage": (SendMessageRequest, sending.send_message),
    "pack427_syncMessages": (SyncMessagesRequest, sync.sync_messages),
    "pack427_ackMessages": (AckMessagesRequest, sync.ack_messages),
    "pack427_markAsRead": (MarkAsReadRequest, unread.mark_as_read),
    "pack427_getChatList": (GetChatListRequest, chat_list.get_chat_list),
    "pack427_updateTypingState": (UpdateTypingStateRequest, typing_state.update_typing_state),
}


class CallFailed(Exception):
    """An operation's call got an error answer, or none."""


def emulator_id_token(uid: str, project: str) -> str:
    """An unsigned ID token, as the Auth emulator issues them (callables accept it there)."""
    now = int(time.time())
    claims = {"iss": f"https://securetoken.google.com/{project}", "aud": project, "auth_time": now,
              "user_id": uid, "sub": uid, "iat": now, "exp": now + 3600,
              "firebase": {"identities": {}, "sign_in_provider": "custom"}}
    part = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


class SuiteBackend:
    """Calls over HTTP to the callables of the emulator suite; its triggers deliver what queues."""

    name = "suite"

    def __init__(self, functions_url: str, project: str):
        self.functions_url, self.project = functions_url, project
        self._clients: dict[str, CallableClient] = {}
        self._lock = threading.Lock()

    def call(self, uid: str, function: str, data: dict) -> dict:
        with self._lock:
            if uid not in self._clients:
                self._clients[uid] = CallableClient(self.functions_url, emulator_id_token(uid, self.project),
                                                    timeout_s=60)
            client = self._clients[uid]
        try:
            return client.call(function, data)
        except ClientError as err:
            raise CallFailed(getattr(err, "status", None) or type(err).__name__) from None

    def close(self) -> None:
        pass


class EngineBackend:
    """The callables' services in process on INSTANCES threads, and the document-created triggers'
    services on trigger instances: TRIGGER_INSTANCES threads for the queue's, FAN_OUT_INSTANCES for
    fan-out jobs'.

    Each queue entry or fan-out job a commit of the engine created (whoever made it: a send, a
    trigger, a fan-out) is handed as its event (the document as created, read off the commit by a
    faults.FaultInjector that injects nothing unless enabled) to `delivery.on_enqueued` or
    `fan_out.on_created`, as Firestore's triggers would be: no read of the bench's own. (A Firestore
    listener on the queues, tried first, missed about one creation in ten under load on the
    emulator; reading each send's possible queue entries after it answered, used until session 14,
    cost this process about 5% of its CPU.) A trigger run that raised is counted in the outcomes:
    its event is not retried (the functions deploy without retry).
    """

    name = "engine"

    def __init__(self, db: firestore.Client, world: World, mix: faults.FaultMix | None = None):
        self.db, self.world, self.counter = db, world, opcount.install()
        self.instances = ThreadPoolExecutor(INSTANCES, thread_name_prefix="instance")
        self.triggers = ThreadPoolExecutor(TRIGGER_INSTANCES, thread_name_prefix="trigger")
        self.fan_outs = ThreadPoolExecutor(FAN_OUT_INSTANCES, thread_name_prefix="fan-out-trigger")
        self.trigger_outcomes: Counter = Counter()
        """Trigger runs by `trigger: outcome`."""
        self.trigger_times: list[tuple[float, float]] = []
        """Each run's wait for a free trigger instance and its own time, seconds."""
        self.injector = faults.FaultInjector(db, mix, on_created=self._on_created).install()

    def call(self, uid: str, function: str, data: dict) -> dict:
        return self.instances.submit(self._serve, uid, function, data).result()

    def _serve(self, uid: str, function: str, data: dict) -> dict:
        """The callable's service, run as the callable runs it; its error as the callable answers it."""
        model, service = SERVICES[function]
        try:
            return callables.serve(self.db, uid, model, data, service)
        except EngineError as err:
            raise CallFailed(err.code) from None

    def _on_created(self, trigger: str, snapshot) -> None:
        pool = self.triggers if trigger == "queue" else self.fan_outs
        try:
            pool.submit(self._event, trigger, snapshot, time.perf_counter())
        except RuntimeError:
            pass  # a duplicate replayed after the run: the pools are closed

    def _event(self, trigger: str, snapshot, submitted: float) -> None:
        started = time.perf_counter()
        try:
            if trigger == "queue":
                outcome = str(delivery.on_enqueued(self.db, snapshot, EmulatorNotifier()))
            else:
                fan_out.on_created(self.db, snapshot)
                outcome = "fan-out"
        except faults.WorkerDied:
            outcome = "worker died"
        except Exception as err:  # noqa: BLE001 - the trigger's run failed: its event is not retried
            outcome = f"raised {type(err).__name__}"
        with self.world.lock:
            self.trigger_outcomes[f"{trigger}: {outcome}"] += 1
            self.trigger_times.append((started - submitted, time.perf_counter() - started))

    @property
    def trigger_runs(self) -> int:
        return sum(self.trigger_outcomes.values())

    def trigger_summary(self) -> dict:
        """How long entries waited for a free trigger instance, how long a trigger ran, and its outcomes."""
        if not self.trigger_times:
            return {}
        waits, runs = zip(*self.trigger_times, strict=True)
        return {"runs": len(runs), "wait_p99_ms": percentile(list(waits), 99) * 1000,
                "wait_max_ms": max(waits) * 1000, "run_p50_ms": percentile(list(runs), 50) * 1000,
                "run_p99_ms": percentile(list(runs), 99) * 1000, "run_max_ms": max(runs) * 1000,
                "outcomes": dict(sorted(self.trigger_outcomes.items()))}

    def close(self) -> None:
        self.instances.shutdown(wait=True)
        self.triggers.shutdown(wait=True)
        self.fan_outs.shutdown(wait=True)
        self.injector.uninstall()


@dataclass
class Sent:
    """One accepted message: what the bench must find in each recipient's inbox."""

    chat_id: str
    sender: str
    recipients: list[str]
    data: dict
    message_id: str
    issued_at: float
    step: int
    latencies: list[float] = field(default_factory=list)
    arrived: dict[str, float] = field(default_factory=dict)
    """recipient -> latency."""


@dataclass
class World:
    users: list[str]
    offline: list[str]
    chats: dict[str, list[str]]
    """chat id -> members."""
    direct: dict[str, str]
    """uid -> the chat id of their direct chat."""
    groups: list[str]
    regions: dict[str, Region]
    """uid -> home region."""
    sent: list[Sent] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    calls: Counter = field(default_factory=Counter)
    retries: Counter = field(default_factory=Counter)
    """"function: code" -> calls the simulated app repeated after a retryable error (fault runs)."""
    duplicates_checked: int = 0
    duplicates_wrong: int = 0
    cursors: dict[str, str | None] = field(default_factory=dict)
    """An offline user's device: its cursor, as the app keeps it."""
    received: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    """An offline user's device: every message id its syncs returned, in order."""
    lock: threading.Lock = field(default_factory=threading.Lock)


def setup(db: firestore.Client, users: int, offline_share: float, *, prefix: str) -> tuple[World, dict]:
    """Users (chat core documents), direct chats by pairs, groups of 3 to 50, a device each."""
    started = time.perf_counter()
    rng = random.Random(17)
    uids = [f"{prefix}{n:05d}" for n in range(users - users % 2)]
    offline = [uid for uid in uids if rng.random() < offline_share]
    offline_set = set(offline)
    regions = [Region.EU] * 6 + [Region.US] * 3 + [Region.APAC]
    home: dict[str, Region] = {}
    writes = []
    for uid in uids:
        doc = {"region": home.setdefault(uid, rng.choice(regions)).value, "online": uid not in offline_set, "ageVerified18Plus": True,
               "displayName": uid}
        if uid in offline_set:
            doc["fcmTokens"] = [f"token-{uid}"]
        writes.append((paths.user(db, uid), doc))
    chats, direct = {}, {}
    for n in range(0, len(uids), 2):
        chat_id = f"{prefix}d{n // 2:05d}"
        chats[chat_id] = [uids[n], uids[n + 1]]
        direct[uids[n]], direct[uids[n + 1]] = chat_id, chat_id
    groups = []
    for n in range(max(1, len(uids) // 100)):
        chat_id = f"{prefix}g{n:04d}"
        chats[chat_id] = rng.sample(uids, rng.randint(*GROUP_SIZES))
        groups.append(chat_id)
    writes += [(paths.chat(db, chat_id), {"participants": members}) for chat_id, members in chats.items()]
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
    world = World(uids, offline, chats, direct, groups, home, cursors={uid: None for uid in offline})
    return world, {"users": len(uids), "offline": len(offline), "direct_chats": len(direct) // 2,
                   "groups": len(groups), "group_members": sum(len(chats[g]) for g in groups),
                   "documents_s": documents_s, "register_devices_s": time.perf_counter() - started}


class Workload:
    """The operations of the mix, each one call (or a few) of a callable through `backend`."""

    def __init__(self, world: World, backend, rng: random.Random):
        self.world, self.backend, self.rng = world, backend, rng

    def call(self, uid: str, function: str, data: dict) -> dict | None:
        """The call's result; None if it failed (counted in `world.errors`). A backend with
        `retries_transient` is called again, as an app does, after a retryable error
        (RETRYABLE), with the same data (a send with the same clientMessageId), at most
        CLIENT_ATTEMPTS times, after a pause doubling from CLIENT_RETRY_PAUSE_S."""
        self.world.calls[function] += 1
        attempts = CLIENT_ATTEMPTS if getattr(self.backend, "retries_transient", False) else 1
        for attempt in range(attempts):
            try:
                return self.backend.call(uid, function, data)
            except CallFailed as err:
                if str(err) in RETRYABLE and attempt + 1 < attempts:
                    with self.world.lock:
                        self.world.retries[f"{function}: {err}"] += 1
                    time.sleep(CLIENT_RETRY_PAUSE_S * 2**attempt)
                    continue
                with self.world.lock:
                    self.world.errors[f"{function}: {err}"] += 1
                return None
        return None

    def send(self, chat_id: str, sender: str, step: int) -> None:
        data = {"chatId": chat_id, "clientMessageId": str(ULID()), "text": f"load {step}"}
        issued = time.time()
        result = self.call(sender, "pack427_sendMessage", data)
        if result:
            recipients = [uid for uid in self.world.chats[chat_id] if uid != sender]
            with self.world.lock:
                self.world.sent.append(Sent(chat_id, sender, recipients, data, result["messageId"], issued, step))

    def direct(self, step: int) -> None:
        sender = self.rng.choice(self.world.users)
        self.send(self.world.direct[sender], sender, step)

    def group(self, step: int) -> None:
        chat_id = self.rng.choice(self.world.groups)
        self.send(chat_id, self.rng.choice(self.world.chats[chat_id]), step)

    def duplicate(self, step: int) -> None:
        with self.world.lock:
            if not self.world.sent:
                return
            first = self.rng.choice(self.world.sent[-200:])
        again = self.call(first.sender, "pack427_sendMessage", first.data)
        if again:
            with self.world.lock:
                self.world.duplicates_checked += 1
                self.world.duplicates_wrong += again["messageId"] != first.message_id or not again["duplicate"]

    def typing(self, step: int) -> None:
        uid = self.rng.choice(self.world.users)
        chat_id = self.world.direct[uid]
        for is_typing in (True, True, False):  # keystrokes, then the stop
            self.call(uid, "pack427_updateTypingState", {"chatId": chat_id, "isTyping": is_typing})

    def sync(self, step: int) -> None:
        uid = self.rng.choice(self.world.offline)
        with self.world.lock:
            if self.world.cursors.get(uid, "busy") == "busy":
                return  # this device is syncing already
            cursor, self.world.cursors[uid] = self.world.cursors[uid], "busy"
        try:
            cursor = sync_device(self, uid, cursor)
        finally:
            with self.world.lock:
                self.world.cursors[uid] = cursor

    def read(self, step: int) -> None:
        with self.world.lock:
            if not self.world.sent:
                return
            message = self.rng.choice(self.world.sent[-500:])
        reader = self.rng.choice(message.recipients) if message.recipients else message.sender
        self.call(reader, "pack427_markAsRead", {"chatId": message.chat_id, "readUpToMessageId": message.message_id})

    def chat_list(self, step: int) -> None:
        self.call(self.rng.choice(self.world.users), "pack427_getChatList", {"limit": 20})


def sync_device(workload: Workload, uid: str, cursor: str | None) -> str | None:
    """Sync the user's device page by page from `cursor`, ack each page; the cursor after the last."""
    while True:
        # Without a cursor, a syncId: the app's retry of a lost answer gets the same page.
        page = workload.call(uid, "pack427_syncMessages",
                             {"deviceId": "phone", **({"cursor": cursor} if cursor else {"syncId": str(ULID())})})
        if page is None:
            return cursor
        ids = [m["messageId"] for m in page["messages"]]
        with workload.world.lock:
            workload.world.received[uid].extend(ids)
        if ids:
            workload.call(uid, "pack427_ackMessages", {"messageIds": ids, "deviceId": "phone"})
        cursor = page["cursor"]
        if not page["hasMore"]:
            return cursor


def run_step(world: World, backend, *, rate: float, seconds: float, step: int) -> dict:
    """Operations of the mix as a Poisson process of `rate / SEND_SHARE` a second, for `seconds`."""
    rng = random.Random(1000 + step)
    workload = Workload(world, backend, random.Random(2000 + step))
    operations = list(MIX)
    weights = [MIX[o] for o in operations]
    total_rate = rate / SEND_SHARE
    started = time.time()
    issued = Counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        futures, at = [], 0.0
        while True:
            at += rng.expovariate(total_rate)
            if at >= seconds:
                break
            delay = started + at - time.time()
            if delay > 0:
                time.sleep(delay)
            operation = rng.choices(operations, weights)[0]
            issued[operation] += 1
            futures.append(pool.submit(getattr(workload, operation), step))
        issued_s = time.time() - started
    for future in futures:  # a bench bug must show, not vanish in the pool
        future.result()
    return {"issued": dict(issued), "issue_seconds": issued_s, "last_answer_seconds": time.time() - started}


def collect_latencies(db: firestore.Client, world: World, step: int, *, timeout_s: float = 120) -> dict:
    """Wait for the step's messages to reach every recipient's inbox; their latencies (the bench's
    reads are not counted by the op counter)."""
    with opcount.install().paused():
        return _collect_latencies(db, world, step, timeout_s=timeout_s)


def _collect_latencies(db: firestore.Client, world: World, step: int, *, timeout_s: float) -> dict:
    pending = [(s, uid) for s in world.sent if s.step == step for uid in s.recipients]
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        refs = [paths.inbox_entry(db, uid, s.message_id) for s, uid in pending]
        created = {}
        for start in range(0, len(refs), 300):
            for snapshot in db.get_all(refs[start:start + 300]):
                if snapshot.exists:
                    created[snapshot.reference.path] = snapshot.create_time.timestamp()
        still = []
        for (s, uid), ref in zip(pending, refs, strict=True):
            if ref.path in created:
                s.latencies.append(created[ref.path] - s.issued_at)
                s.arrived[uid] = created[ref.path] - s.issued_at
            else:
                still.append((s, uid))
        pending = still
        if pending:
            time.sleep(0.5)
    latencies = [x for s in world.sent if s.step == step for x in s.latencies]
    messages = sum(1 for s in world.sent if s.step == step)
    out = {"messages": messages, "deliveries": len(latencies), "undelivered_after_wait": len(pending)}
    if latencies:
        out |= {"p50_ms": percentile(latencies, 50) * 1000, "p95_ms": percentile(latencies, 95) * 1000,
                "p99_ms": percentile(latencies, 99) * 1000, "p999_ms": percentile(latencies, 99.9) * 1000,
                "max_ms": max(latencies) * 1000, "mean_ms": statistics.mean(latencies) * 1000}
    return out


def verify(db: firestore.Client, world: World, workload: Workload, *, prefix: str) -> dict:
    """Everything the run must have kept, checked from what Firestore holds."""
    expected = Counter((uid, s.message_id) for s in world.sent for uid in s.recipients)
    found: Counter = Counter()
    inboxes: dict[str, list[dict]] = defaultdict(list)
    for snapshot in db.collection_group("inbox").select(["messageId", "chatId", "senderId", "seq"]).stream():
        owner = snapshot.reference.parent.parent.id
        if owner.startswith(prefix):
            entry = snapshot.to_dict()
            found[(owner, entry["messageId"])] += 1
            inboxes[owner].append(entry)
    lost = sum(1 for key in expected if key not in found)
    duplicated = sum(n - 1 for n in found.values() if n > 1)
    unexpected = sum(1 for key in found if key not in expected)
    seq_gaps = order_breaks = 0
    for entries in inboxes.values():
        entries.sort(key=lambda e: e["seq"])
        seq_gaps += [e["seq"] for e in entries] != list(range(1, len(entries) + 1))
        newest: dict[str, str] = {}
        for e in entries:
            order_breaks += e["messageId"] < newest.get(e["chatId"], "")
            newest[e["chatId"]] = max(newest.get(e["chatId"], ""), e["messageId"])
    # Unread counts: each user's head against a recount of the inbox read above.
    wrong_counts = checked_counts = 0
    heads = {s.reference.parent.parent.id: s.to_dict() for s in db.collection_group("inboxHead").stream()
             if s.reference.parent.parent.id.startswith(prefix)}
    # A head past its bound (500 chats) parks chats in users/{uid}/inboxChats (README, "Unread counts").
    parked: dict[str, dict[str, dict]] = {}
    for s in db.collection_group("inboxChats").stream():
        if s.reference.parent.parent.id.startswith(prefix):
            parked.setdefault(s.reference.parent.parent.id, {})[s.id] = s.to_dict()
    for owner, entries in inboxes.items():
        chats = {**parked.get(owner, {}), **(heads.get(owner) or {}).get("chats", {})}
        for chat_id in {e["chatId"] for e in entries}:
            read_up_to = (chats.get(chat_id) or {}).get("readUpTo") or ""
            truth = sum(1 for e in entries if e["chatId"] == chat_id and e["messageId"] > read_up_to
                        and e["senderId"] != owner)
            checked_counts += 1
            wrong_counts += (chats.get(chat_id) or {}).get("unread") != truth
    # Every offline device catches up from where its app left it: everything, nothing twice.
    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda uid: world.cursors.__setitem__(uid, sync_device(workload, uid, world.cursors[uid])),
                      world.offline))
    behind = sum(1 for uid in world.offline
                 if {e["messageId"] for e in inboxes.get(uid, [])} - set(world.received.get(uid, [])))
    repeated = sum(len(ids) - len(set(ids)) for ids in world.received.values())
    # Nobody got more than the limit through in any 60 s.
    over_limit = 0
    by_sender: dict[str, list] = defaultdict(list)
    for snapshot in db.collection_group("messages").select(["senderId", "createdAt"]).stream():
        if snapshot.get("senderId").startswith(prefix):
            by_sender[snapshot.get("senderId")].append(snapshot.get("createdAt"))
    for times in by_sender.values():
        times.sort()
        over_limit += any((times[i + constants.MAX_MESSAGES_PER_MINUTE] - times[i]).total_seconds() < 60
                          for i in range(len(times) - constants.MAX_MESSAGES_PER_MINUTE))
    return {
        "accepted_messages": len(world.sent),
        "expected_deliveries": sum(expected.values()),
        "inbox_entries": sum(found.values()),
        "lost": lost,
        "duplicated": duplicated,
        "unexpected": unexpected,
        "users_with_seq_gap_or_repeat": seq_gaps,
        "chat_order_breaks": order_breaks,
        "unread_counts_checked": checked_counts,
        "unread_counts_wrong": wrong_counts,
        "offline_devices": len(world.offline),
        "offline_devices_behind": behind,
        "synced_twice": repeated,
        "senders_over_rate_limit": over_limit,
        "duplicate_sends": world.duplicates_checked,
        "duplicate_sends_not_idempotent": world.duplicates_wrong,
        "call_errors": dict(world.errors),
        "final_sync_seconds": time.perf_counter() - started,
    }


def cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by the Firestore emulator's JVM and by this process (the engine in
    process, its simulated clients and the bench): what a step costs, whatever the machine's speed."""
    emulator = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
            if b"java" in cmdline and b"firestore" in cmdline:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                emulator += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            continue
    own = os.times()
    return {"emulator": emulator, "bench_process": own.user + own.system}


def cpu_ceiling(cpu: dict[str, float]) -> float:
    """The most messages a second this machine's cores could serve at a step's CPU a message (the emulator's
    and this process's, every core busy and nothing else running): where a step's rate nears it, the
    machine is the limit, whatever the engine's design; 0 when nothing was measured."""
    spent = cpu.get("emulator_ms_per_message", 0.0) + cpu.get("bench_process_ms_per_message", 0.0)
    return (os.cpu_count() or 1) * 1000 / spent if spent > 0 else 0.0


QUERY_REPLAYS = 5
"""How many times `query_costs` sends each query again (its best time is the figure)."""


def query_costs(db: firestore.Client, samples: dict[str, tuple[str, object]], *,
                replays: int = QUERY_REPLAYS) -> dict[str, float]:
    """What the emulator takes to answer each query shape now: the best of `replays` sends, one at a time,
    of the last request of that shape the step made (opcount's samples), in ms.

    The emulator answers a query by going through every document stored under its collection id (and for
    a collection-group query through every one of them in the database; JFR on the emulator during a
    40/s step: 94% of its CPU in runQuery, most of it in that walk), so the figure grows with what the
    run has stored, not with what the query returns. Production Firestore answers the same queries from
    an index, in time that grows with the documents returned. The best of a few is taken so that the
    figure is the emulator's own work, not the wait behind the step's other requests.
    """
    api = db._firestore_api  # the generated client opcount wraps: the replays are sent exactly as the engine's
    costs: dict[str, float] = {}
    for shape, (method, request) in samples.items():
        best = float("inf")
        for _ in range(replays):
            started = time.perf_counter()
            for _response in getattr(api, method)(request=request, metadata=db._rpc_metadata):
                pass
            best = min(best, time.perf_counter() - started)
        costs[shape] = best * 1000
    return costs


def query_ms_per_message(queries_per_message: dict[str, float], costs_ms: dict[str, float]) -> float:
    """The emulator's time a message on queries: each shape's queries a message times its answer's time
    (`query_costs`); a shape with no measured time counts nothing."""
    return sum(n * costs_ms.get(shape, 0.0) for shape, n in queries_per_message.items())


def plain_writer(db: firestore.Client, world: World, step: int) -> dict:
    """The emulator's own floor at a step: the documents the step's sends placed, written by a plain writer.

    For each message of the step, at the same moment after the step's start as it was
    issued (so at the same rate, with the same bursts), one unconditional commit of what a
    send that places it writes: the chat message, the idempotency record, the chat's last
    message, the sender's rate window, and for every recipient an inbox entry and the
    inbox head. On documents of their own (users `plain-...`, deleted afterwards), in
    the same collections, so the emulator's work per write is the same (it makes no queries: the step's
    queries are measured apart, see query_costs).
    Latency: the commit's time (the emulator's clock, as the engine's inbox entries) minus
    the moment it was due.
    """
    messages = sorted((s for s in world.sent if s.step == step), key=lambda s: s.issued_at)
    if not messages:
        return {}
    tag = f"plain-{str(ULID())[-6:].lower()}"
    written: list = []
    lock = threading.Lock()
    latencies: list[float] = []
    start, first, cpu_before = time.time(), messages[0].issued_at, cpu_seconds()["emulator"]

    counter = opcount.install()

    def write(s: Sent) -> None:
        with counter.paused():  # the bench's writes, not the engine's (paused per thread)
            _write(s)

    def _write(s: Sent) -> None:
        due = start + (s.issued_at - first)
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        chat = db.collection("chats").document(f"{tag}-{s.chat_id}")
        sender = f"{tag}-{s.sender}"
        refs = [(chat.collection("messages").document(s.message_id),
                 {"senderId": sender, "text": s.data["text"], "createdAt": firestore.SERVER_TIMESTAMP}),
                (paths.idempotency_key(db, sender, s.data["clientMessageId"]), {"messageId": s.message_id}),
                (chat, {"lastMessage": {"messageId": s.message_id, "senderId": sender}}),
                (paths.rate_window(db, sender), {"sends": [s.message_id]})]
        for uid in s.recipients:
            refs.append((paths.inbox_entry(db, f"{tag}-{uid}", s.message_id),
                         {"messageId": s.message_id, "chatId": s.chat_id, "seq": 1, "senderId": sender}))
            refs.append((paths.inbox_head(db, f"{tag}-{uid}"), {"seq": 1, "messageId": s.message_id}))
        batch = db.batch()
        for ref, doc in refs:
            batch.set(ref, doc)
        committed = batch.commit()[0].update_time.timestamp()
        with lock:
            latencies.append(committed - due)
            written.extend(ref for ref, _ in refs)

    with counter.paused(), ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(write, messages))
        cpu = cpu_seconds()["emulator"] - cpu_before
        for begin in range(0, len(written), 400):  # leave the engine's next step the database it had
            batch = db.batch()
            for ref in written[begin:begin + 400]:
                batch.delete(ref)
            batch.commit()
    return {"messages": len(latencies), "p50_ms": percentile(latencies, 50) * 1000,
            "p95_ms": percentile(latencies, 95) * 1000, "p99_ms": percentile(latencies, 99) * 1000,
            "mean_ms": statistics.mean(latencies) * 1000, "emulator_cpu_ms_per_message": cpu * 1000 / len(latencies)}


def delivery_paths(db: firestore.Client, world: World, *, prefix: str, slowest: int = 30) -> dict:
    """How each delivery reached its inbox, with the latencies of each path, and the slowest ones' stories.

    Paths: `send` (the send's own commit placed it; an offline recipient's queue entry then
    carries only the push), `trigger` and `processor` (a queue entry awaiting its inbox,
    delivered by that worker; `bulk` when the processor's bulk commit did it). Read from the
    queue entries after the run (DELIVERED ones are kept for days).
    """
    entries: dict[tuple[str, str], dict] = {}
    for snapshot in db.collection_group("messageQueue").stream():
        data = snapshot.to_dict()
        if str(data.get("recipientId", "")).startswith(prefix):
            entries[(data["messageId"], data["recipientId"])] = data
    by_path: dict[str, list[float]] = defaultdict(list)
    stories = []
    for s in world.sent:
        if s.step < 0:
            continue
        for uid, latency in s.arrived.items():
            data = entries.get((s.message_id, uid))
            path = "send"
            if data is not None and not data.get("placedBySend"):
                delivered = [e for e in data.get("history", []) if e.get("action") == "DELIVERED"]
                path = delivered[-1]["actor"] if delivered else "undelivered"
                path = {"scheduler": "processor"}.get(path, path)
            by_path[path].append(latency)
            stories.append((latency, s, uid, path, data))
    total = sum(len(v) for v in by_path.values()) or 1
    paths_out = {path: {"deliveries": len(v), "share": len(v) / total, "p50_ms": percentile(v, 50) * 1000,
                        "p99_ms": percentile(v, 99) * 1000, "max_ms": max(v) * 1000}
                 for path, v in sorted(by_path.items())}
    stories.sort(key=lambda x: -x[0])
    slow = []
    for latency, s, uid, path, data in stories[:slowest]:
        story = {"latency_ms": latency * 1000, "path": path, "chat": s.chat_id, "recipient": uid,
                 "recipients": len(s.recipients), "step": s.step}
        if data is not None:
            created = data.get("createdAt")
            story |= {"attempts": data.get("attempts"), "last_error": (data.get("lastError") or "")[:160],
                      "history": [f"{e.get('action')}/{e.get('actor')}@{(e['at'] - created).total_seconds():+.2f}s"
                                  for e in data.get("history", [])],
                      "created_after_issue_s": created.timestamp() - s.issued_at if created else None}
        slow.append(story)
    return {"paths": paths_out, "slowest": slow}


ZERO_CHECKS = ("lost", "duplicated", "unexpected", "users_with_seq_gap_or_repeat", "chat_order_breaks",
               "unread_counts_wrong", "offline_devices_behind", "synced_twice", "senders_over_rate_limit",
               "duplicate_sends_not_idempotent")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


WARMUP_S = 10


def run(db: firestore.Client, backend_factory: Callable[[World], object], *, users: int, offline_share: float,
        rates: list[float], step_seconds: float, warmup_seconds: float = WARMUP_S, log=print) -> dict:
    """The load run in one mode: setup, rate steps until one is not held, one processor pass, checks."""
    prefix = f"load{str(ULID())[-6:].lower()}-"
    world, timing = setup(db, users, offline_share, prefix=prefix)
    backend = backend_factory(world)
    log(f"  load ({backend.name}): {timing['users']} users ({timing['offline']} offline), "
        f"{timing['groups']} groups, devices registered in {timing['register_devices_s']:.0f} s")
    steps = []
    counter = opcount.install()
    before = counter.snapshot()
    try:
        for step, rate in enumerate(rates):
            # Untimed warm-up at the step's rate: the functions emulator starts a Python worker (an
            # import of seconds) whenever all of a function's are busy; production instances serve
            # many requests each and scale ahead of a steady rate. Its messages are checked too.
            run_step(world, backend, rate=rate, seconds=warmup_seconds, step=-1 - step)
            collect_latencies(db, world, -1 - step)
            errors_before = sum(world.errors.values())
            spent_before, cpu_before = counter.snapshot(), cpu_seconds()
            with StallProbe() as stalls:
                issued = run_step(world, backend, rate=rate, seconds=step_seconds, step=step)
                latency = collect_latencies(db, world, step)
            spent, cpu_after = counter.snapshot() - spent_before, cpu_seconds()
            cpu = {f"{k}_ms_per_message": (cpu_after[k] - cpu_before[k]) * 1000 / max(latency["messages"], 1)
                   for k in cpu_after}
            if backend.name == "engine":  # in mode suite the engine's CPU is the functions emulator's workers'
                cpu["ceiling_messages_per_s"] = cpu_ceiling(cpu)
            plain = plain_writer(db, world, step)
            step_queries = {shape: n / max(latency["messages"], 1) for shape, n in spent.queries.most_common()}
            with counter.paused():
                costs = query_costs(db, {shape: sample for shape, sample in counter.samples().items()
                                         if shape in step_queries})
            queries = {"per_message": step_queries, "best_ms": costs,
                       "emulator_ms_per_message": query_ms_per_message(step_queries, costs)}
            errors = sum(world.errors.values()) - errors_before
            achieved = latency["messages"] / max(issued["issue_seconds"], 1e-9)
            held = (latency.get("p95_ms", float("inf")) < P95_TARGET_S * 1000
                    and latency["undelivered_after_wait"] == 0 and errors == 0)
            steps.append(issued | latency | {"target_rate": rate, "achieved_rate": achieved, "errors": errors,
                                             "held": held, "stalls": stalls.summary(), "plain_writer": plain, "cpu": cpu,
                                             "queries": queries,
                                             "lost_races_per_message": spent["failed_commits"] / max(latency["messages"], 1)})
            log(f"  load step {step}: {rate}/s, {latency['messages']} messages ({achieved:.1f}/s), "
                f"p95 {latency.get('p95_ms', float('nan')):.0f} ms, p99 {latency.get('p99_ms', float('nan')):.0f} ms, "
                f"p99.9 {latency.get('p999_ms', float('nan')):.0f} ms, mean {latency.get('mean_ms', float('nan')):.0f} ms, "
                f"errors {errors}, held {held}; stalls {stalls.summary().get('lost_share', 0):.0%}; a plain writer of"
                f" the same documents: p99 {plain.get('p99_ms', float('nan')):.0f} ms,"
                f" mean {plain.get('mean_ms', float('nan')):.0f} ms, emulator CPU"
                f" {plain.get('emulator_cpu_ms_per_message', float('nan')):.0f} ms a message; CPU a message: emulator"
                f" {cpu['emulator_ms_per_message']:.0f} ms, engine and bench {cpu['bench_process_ms_per_message']:.0f} ms"
                + (f" (at that, this machine's {os.cpu_count()} cores serve at most {cpu['ceiling_messages_per_s']:.0f}/s)"
                   if "ceiling_messages_per_s" in cpu else ""))
            if step_queries:
                log(f"    queries: {sum(step_queries.values()):.2f} a message, the emulator's answers about"
                    f" {queries['emulator_ms_per_message']:.0f} ms a message at their best: "
                    + "; ".join(f"{n:.3f} x {costs.get(shape, float('nan')):.0f} ms {shape}"
                                for shape, n in step_queries.items()))
            if not held:
                break
        spent = counter.snapshot() - before
        # The emulator runs no schedules: what pack427_processMessageQueue does every minute.
        processed = processor.drain(db, EmulatorNotifier(), actor="scheduler", time_budget_s=120)
        with counter.paused():
            routes = delivery_paths(db, world, prefix=prefix)
            checks = verify(db, world, Workload(world, backend, random.Random(3)), prefix=prefix)
    finally:
        backend.close()
    checks["delivered_by_the_scheduled_processor"] = sum(r.get("delivered", 0) for r in processed.values())
    deliveries = sum(len(s.latencies) for s in world.sent)
    # The op counter sees this process's Firestore calls: the engine's in mode engine, none in mode suite.
    in_process = backend.name == "engine"
    ops = {k: spent[k] / max(deliveries, 1) for k in ("reads", "writes", "round_trips", "failed_commits")}
    log("  paths: " + ", ".join(f"{p} {r['share']:.1%} (p99 {r['p99_ms']:.0f} ms)" for p, r in routes["paths"].items()))
    if hasattr(backend, "trigger_summary"):
        log(f"  triggers: {backend.trigger_summary()}")
    if in_process:
        log(f"  per delivered message over the mix: {ops['reads']:.2f} reads, {ops['writes']:.2f} writes, "
            f"{ops['round_trips']:.2f} round trips, {ops['failed_commits']:.2f} lost races")
    queries = {shape: n / max(len(world.sent), 1) for shape, n in spent.queries.most_common()} if in_process else {}
    log("  queries per message over the mix: " + "; ".join(f"{n:.2f} {shape}" for shape, n in queries.items()))
    for story in routes["slowest"][:10]:
        log(f"  slow: {json.dumps(story, default=str)}")
    return {"mode": backend.name, "setup": timing, "steps": steps, "step_seconds": step_seconds,
            "warmup_seconds": warmup_seconds, "mix": MIX,
            "highest_rate_held": max((s["achieved_rate"] for s in steps if s["held"]), default=None),
            "trigger_runs": getattr(backend, "trigger_runs", None),
            "triggers": backend.trigger_summary() if hasattr(backend, "trigger_summary") else None,
            "paths": routes["paths"], "slowest": routes["slowest"],
            "ops_per_delivery": ops | {"deliveries": deliveries, "messages": len(world.sent)} if in_process else None,
            "queries_per_message": queries,
            "verification": checks, "all_checks_zero": all(checks[k] == 0 for k in ZERO_CHECKS)}


# ------------------------------------------------------------------ the fault run (mode engine)

FAULT_RATE = 10.0
"""The fault run's rate (messages/s) unless given: about the highest the engine mode held without
faults on the 2-core machine of docs/BENCHMARKS.md (9.3/s at the 10/s step)."""
PROCESSOR_EVERY_S = 5.0
"""A fault run drives the processor (processor.drain, what pack427_processMessageQueue runs every
minute) every this many seconds, in both steps: the retries and resumptions the faults need come
within a step, not after a minute."""
FAN_OUT_STALLED_S = 10
"""constants.FAN_OUT_STALLED_SECONDS during a fault run (60 in production): a fan-out job whose
worker died is resumed by the processor within a step."""
LARGE_GROUP_MEMBERS = 160
"""Members of the fault run's one large group (over INLINE_MAX_RECIPIENTS: each message is a fan-out job, two
chunks of FAN_OUT_CHUNK and the rest), whose fan-outs run beside the mix so that a worker can die in one."""
LARGE_GROUP_EVERY_S = 6.0
"""A message to the large group every this many seconds, from its members in turn, in each step."""
FAULT_ZERO_CHECKS = (*ZERO_CHECKS, "internal_answers", "calls_failed_after_retries")
"""A fault run's checks: the load run's, no INTERNAL answer, and no call still failing after the app's retries."""


class EngineLog:
    """The engine's log lines (firebase_functions.logger info, warn, error) during a fault run, not printed
    (thousands of expected warnings); warnings and errors counted by alert, or by their first words."""

    def __init__(self) -> None:
        self.lines: Counter = Counter()
        self._saved: dict = {}

    def install(self) -> EngineLog:
        from firebase_functions import logger

        for severity in ("info", "warn", "error"):
            self._saved[severity] = getattr(logger, severity)
            setattr(logger, severity, lambda message="", *_, _s=severity, **fields: self._count(_s, message, fields))
        return self

    def _count(self, severity: str, message: str, fields: dict) -> None:
        if severity == "info":
            return
        # Ids vary line by line: the line's kind is its other words.
        words = ["…" if any(c.isdigit() for c in w) else w for w in str(message).split()[:4]]
        self.lines[f"{severity}: {fields.get('alert') or ' '.join(words)}"] += 1

    def uninstall(self) -> None:
        from firebase_functions import logger

        for severity, original in self._saved.items():
            setattr(logger, severity, original)


class ProcessorLoop:
    """The scheduled processor on a thread of its own: one `processor.drain` a run (its time budget:
    the period); a run that raised or whose worker died is counted, and the next run goes on, as
    the next scheduled invocation would.

    Args:
        db: the engine's client.
        every_s: the period (default PROCESSOR_EVERY_S).
    """

    def __init__(self, db: firestore.Client, every_s: float = PROCESSOR_EVERY_S):
        self.db, self.every_s = db, every_s
        self.runs: Counter = Counter()
        self.outcomes: Counter = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="processor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                report = processor.drain(self.db, EmulatorNotifier(), actor="scheduler", time_budget_s=self.every_s)
                self.runs["completed"] += 1
                for counts in report.values():
                    self.outcomes.update({k: v for k, v in counts.items() if isinstance(v, int) and k != "batches"})
            except faults.WorkerDied:
                self.runs["worker_died"] += 1
            except Exception as err:  # noqa: BLE001 - the scheduled function's run failed; the next one goes on
                self.runs[f"raised {type(err).__name__}"] += 1


class FaultyEngineBackend(EngineBackend):
    """EngineBackend whose FaultInjector injects `mix` while enabled (see faults), with the scheduled
    processor on a thread of its own (it delivers what a trigger whose worker died left).

    A duplicated event is handed twice. The callables answer as the Functions runtime does: an
    unexpected exception is INTERNAL (counted: it must not happen); the simulated app retries the
    retryable ones.
    """

    retries_transient = True

    def __init__(self, db: firestore.Client, world: World, mix: faults.FaultMix | None = None):
        super().__init__(db, world, mix or faults.FaultMix())
        self.internal: Counter = Counter()
        self.internal_died = 0
        self.processor = ProcessorLoop(db)

    def call(self, uid: str, function: str, data: dict) -> dict:
        return self.instances.submit(self._answered, uid, function, data).result()

    def _answered(self, uid: str, function: str, data: dict) -> dict:
        try:
            return self._serve(uid, function, data)
        except CallFailed:
            raise
        except faults.WorkerDied:  # the instance went away: the app sees the connection drop
            with self.world.lock:
                self.internal_died += 1
            raise CallFailed("unavailable") from None
        except Exception as err:  # noqa: BLE001 - what the Functions runtime answers INTERNAL
            with self.world.lock:
                self.internal[f"{function}: {type(err).__name__}: {err}"[:300]] += 1
            raise CallFailed("internal") from None

    def close(self) -> None:
        self.processor.stop()
        super().close()


def large_group(db: firestore.Client, world: World, *, prefix: str) -> str:
    """Add the fault run's large group (LARGE_GROUP_MEMBERS of the users) to `world` and Firestore; its id.
    It is not among `world.groups`: the mix's group sends do not pick it."""
    chat_id = f"{prefix}big"
    world.chats[chat_id] = random.Random(29).sample(world.users, LARGE_GROUP_MEMBERS)
    paths.chat(db, chat_id).set({"participants": world.chats[chat_id]})
    return chat_id


def send_to_large_group(world: World, backend, chat_id: str, *, step: int, seconds: float) -> int:
    """A message to `chat_id` every LARGE_GROUP_EVERY_S for `seconds`, each from the next member (sent by
    the app as the mix's are, retries included, and checked with them); how many were sent.

    Args:
        step: the step the messages count in (and where the senders' turn starts).
        seconds: how long.
    """
    workload, members = Workload(world, backend, random.Random(4000 + step)), world.chats[chat_id]
    started, sent = time.time(), 0
    while (due := started + sent * LARGE_GROUP_EVERY_S) < started + seconds:
        time.sleep(max(due - time.time(), 0))
        workload.send(chat_id, members[(step * 97 + sent) % len(members)], step)
        sent += 1
    return sent


def latency_figures(values: list[float]) -> dict:
    """How many, p50, p95, p99, p99.9, max and mean of `values` (seconds) in ms; only the count if none."""
    if not values:
        return {"deliveries": 0}
    return {"deliveries": len(values), "p50_ms": percentile(values, 50) * 1000, "p95_ms": percentile(values, 95) * 1000,
            "p99_ms": percentile(values, 99) * 1000, "p999_ms": percentile(values, 99.9) * 1000,
            "max_ms": max(values) * 1000, "mean_ms": statistics.mean(values) * 1000}


def run_faults(db: firestore.Client, *, users: int, offline_share: float, rate: float = FAULT_RATE,
               step_seconds: float, warmup_seconds: float = WARMUP_S, mix: faults.FaultMix | None = None,
               log=print) -> dict:
    """The load run with faults (mode engine): after a warm-up, a step at `rate` without faults, then one at
    the same rate with faults (FaultMix), on the same users; then one processor pass and the checks.

    The processor runs every PROCESSOR_EVERY_S in both steps (ProcessorLoop), fan-out jobs count as
    stalled after FAN_OUT_STALLED_S. Beside the mix, in both steps, a message to one large group every
    LARGE_GROUP_EVERY_S (its fan-out: where a worker can die part-way through a job of chunks); the
    step's figures are the mix's, the large group's are apart (`large_group`). Faults are injected from the faulty step's first operation
    until its last message reached every inbox (the recovery is under faults too); the final syncs
    of the checks run without.

    Args:
        users: simulated users (a fifth offline with `offline_share` 0.2).
        rate: messages/s of both steps (default FAULT_RATE).
        step_seconds: length of each step.
        warmup_seconds: the untimed warm-up before the first step (default WARMUP_S).
        mix: the faults' probabilities (default faults.FaultMix()).
    """
    prefix = f"load{str(ULID())[-6:].lower()}-"
    world, timing = setup(db, users, offline_share, prefix=prefix)
    big = large_group(db, world, prefix=prefix)
    backend = FaultyEngineBackend(db, world, mix)
    injector = backend.injector
    log(f"  load with faults (engine): {timing['users']} users ({timing['offline']} offline), {timing['groups']} groups,"
        f" devices registered in {timing['register_devices_s']:.0f} s; {rate}/s without faults, then with")
    stalled_s, constants.FAN_OUT_STALLED_SECONDS = constants.FAN_OUT_STALLED_SECONDS, FAN_OUT_STALLED_S
    engine_log = EngineLog().install()
    steps: dict[str, dict] = {}
    try:
        backend.processor.start()
        run_step(world, backend, rate=rate, seconds=warmup_seconds, step=-1)
        collect_latencies(db, world, -1)
        for step, label in enumerate(("fault_free", "faulty")):
            errors_before, retries_before = sum(world.errors.values()), sum(world.retries.values())
            with StallProbe() as stalls:
                injector.enabled = label == "faulty"
                with ThreadPoolExecutor(1, thread_name_prefix="large-group") as beside:
                    fanned = beside.submit(send_to_large_group, world, backend, big, step=step, seconds=step_seconds)
                    issued = run_step(world, backend, rate=rate, seconds=step_seconds, step=step)
                    fanned.result()
                latency = collect_latencies(db, world, step)  # its reads are the bench's: no faults
                injector.enabled = False
            mix_latencies = [x for m in world.sent if m.step == step and m.chat_id != big for x in m.latencies]
            large = [x for m in world.sent if m.step == step and m.chat_id == big for x in m.latencies]
            latency |= latency_figures(mix_latencies) | {
                "messages": sum(1 for m in world.sent if m.step == step and m.chat_id != big),
                "large_group": latency_figures(large) | {
                    "messages": sum(1 for m in world.sent if m.step == step and m.chat_id == big)}}
            errors = sum(world.errors.values()) - errors_before
            achieved = latency["messages"] / max(issued["issue_seconds"], 1e-9)
            held = (latency.get("p95_ms", float("inf")) < P95_TARGET_S * 1000
                    and latency["undelivered_after_wait"] == 0 and errors == 0)
            steps[label] = issued | latency | {"target_rate": rate, "achieved_rate": achieved, "errors": errors,
                                               "client_retries": sum(world.retries.values()) - retries_before,
                                               "held": held, "stalls": stalls.summary()}
            log(f"  load {label.replace('_', '-')} step: {rate}/s, {latency['messages']} messages ({achieved:.1f}/s),"
                f" p95 {latency.get('p95_ms', float('nan')):.0f} ms, p99 {latency.get('p99_ms', float('nan')):.0f} ms,"
                f" max {latency.get('max_ms', float('nan')):.0f} ms, undelivered {latency['undelivered_after_wait']},"
                f" errors after retries {errors}, client retries {steps[label]['client_retries']}; the large group:"
                f" {latency['large_group']['messages']} messages, p99 {latency['large_group'].get('p99_ms', float('nan')):.0f} ms;"
                f" stalls {stalls.summary().get('lost_share', 0):.0%}")
        backend.processor.stop()
        processed = processor.drain(db, EmulatorNotifier(), actor="scheduler", time_budget_s=120)
        with opcount.install().paused():
            routes = delivery_paths(db, world, prefix=prefix)
            checks = verify(db, world, Workload(world, backend, random.Random(3)), prefix=prefix)
    finally:
        backend.close()
        constants.FAN_OUT_STALLED_SECONDS = stalled_s
        engine_log.uninstall()
    checks["delivered_by_the_scheduled_processor"] = sum(r.get("delivered", 0) for r in processed.values())
    checks["internal_answers"] = sum(backend.internal.values())
    checks["calls_failed_after_retries"] = sum(world.errors.values())
    injected = injector.summary()
    seen = {"client_retries": dict(world.retries), "internal": dict(backend.internal),
            "callable_instances_died": backend.internal_died,
            "trigger_runs": backend.trigger_runs, "trigger_outcomes": dict(sorted(backend.trigger_outcomes.items())),
            "processor_runs": dict(backend.processor.runs), "processor_outcomes": dict(backend.processor.outcomes),
            "engine_log": dict(engine_log.lines.most_common())}
    log("  faults injected: " + ", ".join(f"{k} {v}" for k, v in injected["injected"].items())
        + f" ({injected['faulty_commit_share']:.1%} of {injected['calls'].get('commits', 0)} commits,"
          f" {injected['refused_read_share']:.1%} of {injected['calls'].get('reads', 0)} reads,"
          f" {injected['duplicated_event_share']:.1%} of {injected['calls'].get('events', 0)} trigger events)")
    log(f"  seen: {json.dumps(seen, default=str)}")
    log("  paths: " + ", ".join(f"{p} {r['share']:.1%} (p99 {r['p99_ms']:.0f} ms)" for p, r in routes["paths"].items()))
    return {"mode": "engine", "setup": timing, "rate": rate, "step_seconds": step_seconds,
            "warmup_seconds": warmup_seconds, "mix": MIX, "processor_every_s": PROCESSOR_EVERY_S,
            "large_group": {"members": LARGE_GROUP_MEMBERS, "every_s": LARGE_GROUP_EVERY_S},
            "fan_out_stalled_s": FAN_OUT_STALLED_S, "fault_free": steps.get("fault_free"), "faulty": steps.get("faulty"),
            "faults": injected, "seen": seen, "triggers": backend.trigger_summary(), "paths": routes["paths"],
            "slowest": routes["slowest"], "verification": checks,
            "checks": list(FAULT_ZERO_CHECKS), "all_checks_zero": all(checks[k] == 0 for k in FAULT_ZERO_CHECKS)}
