"""Faults for the load run (engine mode): injected in this process's Firestore client, never in the engine.

The engine runs in process (load.EngineBackend); every call it makes ends in
one method of google-cloud-firestore's API client (FirestoreClient: commit,
batch_get_documents, run_query, run_aggregation_query). `FaultInjector`
wraps those methods, above the client library's own retry (so the engine sees
what the library would hand it after its retries gave up), and with the
probabilities of a `FaultMix` makes:

- `commit_failed`: a commit fails before it is sent (ServiceUnavailable), nothing applied;
- `answer_lost`: a commit applies, then its caller gets DeadlineExceeded;
- `answer_lost_resent`: a commit applies, its answer is lost and the client
  library sends the same request again (what its retry of an UNAVAILABLE
  commit does): the caller gets the second answer (often AlreadyExists or
  FailedPrecondition, its own first commit having changed the documents);
- `worker_died`: a commit of a job (see JOB_SITES: a processor's bulk
  delivery, a fan-out chunk, an offline recipient's placement before its
  push, one recipient's queued messages of a chat) applies, then its worker dies:
  `WorkerDied`, a BaseException that no handler of the engine catches, ends
  the trigger or processor run there, as an instance's crash or timeout would;
- `read_unavailable`: a document get, get_all, query or count fails before it
  is sent (ServiceUnavailable).

The injector also stands in for Firestore's document-created triggers: each
commit that applied and created a queue entry or a fan-out job hands the
document as created to `on_created` (the load run gives it to a trigger
instance); `event_duplicated` events are handed twice (at-least-once
delivery), some of them to two instances at once, the others again a little
later.

Only while `enabled`, and only the engine's calls get faults: not those of a
thread the op counter is paused on (opcount: the bench's own reads and
writes). What the engine does between faults is the emulator's real work.
"""

from __future__ import annotations

import random
import sys
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1 import DocumentSnapshot, _helpers
from google.cloud.firestore_v1.services.firestore.client import FirestoreClient

from . import opcount


class WorkerDied(BaseException):  # noqa: N818 - not an error of the engine's: the end of its worker
    """The worker's instance went away after a commit of its job (a crash, a timeout): nothing after it runs."""


@dataclass(frozen=True)
class FaultMix:
    """Probabilities of the faults, each decided independently per call.

    Attributes:
        commit_failed: of commits, failed before they are sent (default 2.5%).
        answer_lost: of commits, applied with their answer lost (default 2.5%: half raised to the
            caller, half re-sent by the client library).
        worker_died: of a job's other commits (see JOB_SITES), applied and then the worker dies
            (default 50%; such commits are a small share of all: the queue's, mostly after other faults).
        event_duplicated: of trigger events, handed twice (default 5%: half at once to two instances).
        read_unavailable: of reads (gets, get_alls, queries, counts), refused (default 2%).
    """

    commit_failed: float = 0.025
    answer_lost: float = 0.025
    worker_died: float = 0.5
    event_duplicated: float = 0.05
    read_unavailable: float = 0.02


JOB_SITES = {("processor.py", "commit"): "bulk delivery", ("fan_out.py", "_commit_chunk"): "fan-out chunk",
             ("delivery.py", "_place_in_inbox"): "offline placement", ("delivery.py", "deliver_in_order"): "chat delivery"}
"""Engine functions (file, function) whose commits are steps of a longer job, and what the job is: a
processor's bulk delivery of many inboxes, a fan-out job's chunk, an offline recipient's placement
(its push follows), one recipient's queued messages of a chat in order (a trigger's or the processor's,
group commits included). The innermost one names the job; a worker may die after any of them."""

REPLAY_DELAY_S = (0.5, 3.0)
"""A duplicated event handed again later: after a random delay in this range."""

TRIGGERED = {"messageQueue": "queue", "fanOuts": "fan_out"}
"""Collections whose created documents fire a trigger (pack427_onMessageEnqueued, pack427_onFanOut)."""


def job_site() -> str | None:
    """The JOB_SITES name of the engine function this thread's commit is made from, if any."""
    frame = sys._getframe(2)
    while frame is not None:
        code = frame.f_code
        site = JOB_SITES.get((code.co_filename.rsplit("/", 1)[-1], code.co_name))  # innermost first
        if site is not None and "pack427" in code.co_filename:
            return site
        frame = frame.f_back
    return None


class FaultInjector:
    """Faults in FirestoreClient's methods for this process (see the module docstring).

    Args:
        db: the engine's client (its project's created documents fire `on_created`).
        mix: the probabilities (default FaultMix()).
        on_created: given (trigger, snapshot) for each created queue entry (`queue`) or fan-out
            job (`fan_out`) whose commit applied, once or, for a duplicated event, twice.
        seed: of the injector's random choices (default 27).
    """

    def __init__(self, db: firestore.Client, mix: FaultMix | None = None,
                 on_created: Callable[[str, DocumentSnapshot], None] | None = None, seed: int = 27):
        self.db, self.mix, self.on_created = db, mix or FaultMix(), on_created
        self.enabled = False
        self.injected: Counter = Counter()
        """By kind (see the module docstring), and `worker_died:<site>`."""
        self.calls: Counter = Counter()
        """What the engine called while enabled: commits, reads, events."""
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._counter = opcount.install()
        self._prefix = f"{db._database_string}/documents/"
        self._originals: dict[str, Callable] = {}

    # ------------------------------------------------------------------ control

    def install(self) -> FaultInjector:
        """Wrap FirestoreClient's methods (undone by `uninstall`)."""
        for name in ("commit", "batch_get_documents", "run_query", "run_aggregation_query"):
            self._originals[name] = getattr(FirestoreClient, name)
        injector = self

        def commit(client, request=None, *args, **kwargs):
            return injector._commit(client, request, *args, **kwargs)

        FirestoreClient.commit = commit
        for name in ("batch_get_documents", "run_query", "run_aggregation_query"):
            def read(client, request=None, *args, _name=name, **kwargs):
                return injector._read(_name, client, request, *args, **kwargs)

            setattr(FirestoreClient, name, read)
        return self

    def uninstall(self) -> None:
        for name, original in self._originals.items():
            setattr(FirestoreClient, name, original)
        self._originals.clear()

    def summary(self) -> dict:
        with self._lock:
            commits = self.calls["commits"]
            faulty = sum(self.injected[k] for k in ("commit_failed", "answer_lost", "answer_lost_resent", "worker_died"))
            return {"mix": asdict(self.mix), "injected": dict(sorted(self.injected.items())),
                    "calls": dict(self.calls), "faulty_commit_share": faulty / commits if commits else 0.0,
                    "refused_read_share": self.injected["read_unavailable"] / max(self.calls["reads"], 1),
                    "duplicated_event_share": (self.injected["event_duplicated"]
                                               + self.injected["event_duplicated_concurrently"])
                    / max(self.calls["events"], 1)}

    # ------------------------------------------------------------------ faults

    def _active(self) -> bool:
        return self.enabled and self._counter.counting()

    def _draw(self) -> float:
        with self._lock:
            return self._rng.random()

    def _count(self, kind: str, n: int = 1, *, calls: bool = False) -> None:
        with self._lock:
            (self.calls if calls else self.injected)[kind] += n

    def _read(self, name: str, client, request, *args, **kwargs):
        if self._active():
            self._count("reads", calls=True)
            if self._draw() < self.mix.read_unavailable:
                self._count("read_unavailable")
                raise gexc.ServiceUnavailable(f"injected: {name} refused")
        return self._originals[name](client, request, *args, **kwargs)

    def _commit(self, client, request, *args, **kwargs):
        original = self._originals["commit"]
        if not self._active():
            response = original(client, request, *args, **kwargs)
            self._created(request, response)
            return response
        self._count("commits", calls=True)
        draw, mix = self._draw(), self.mix
        if draw < mix.commit_failed:
            self._count("commit_failed")
            raise gexc.ServiceUnavailable("injected: commit failed before it was sent")
        dies = draw >= mix.commit_failed + mix.answer_lost and self._draw() < mix.worker_died
        site = job_site() if dies else None
        response = original(client, request, *args, **kwargs)
        self._created(request, response)
        if site is not None:
            self._count("worker_died")
            self._count(f"worker_died:{site}")
            raise WorkerDied(f"injected: the worker died after a commit of its {site}")
        if draw < mix.commit_failed + mix.answer_lost / 2:
            self._count("answer_lost")
            raise gexc.DeadlineExceeded("injected: the commit applied, its answer was lost")
        if draw < mix.commit_failed + mix.answer_lost:
            self._count("answer_lost_resent")
            again = original(client, request, *args, **kwargs)  # the library's retry of the same request
            self._created(request, again)
            return again
        return response

    # ------------------------------------------------------------------ triggers

    def _created(self, request, response) -> None:
        """Hand each document a commit created in a triggered collection to `on_created`, as its event."""
        if self.on_created is None:
            return
        writes = list(getattr(request, "writes", None) or (request or {}).get("writes", []))
        for write, result in zip(writes, response.write_results, strict=False):
            name = write.update.name
            if not name.startswith(self._prefix) or "current_document" not in write \
                    or "exists" not in write.current_document or write.current_document.exists:
                continue
            path = name[len(self._prefix):]
            trigger = TRIGGERED.get(path.rsplit("/", 2)[-2])
            if trigger is None:
                continue
            snapshot = DocumentSnapshot(self.db.document(path), _helpers.decode_dict(write.update.fields, self.db),
                                        exists=True, read_time=result.update_time, create_time=result.update_time,
                                        update_time=result.update_time)
            self._event(trigger, snapshot)

    def _event(self, trigger: str, snapshot: DocumentSnapshot) -> None:
        assert self.on_created is not None
        duplicated = self._active() and self._draw() < self.mix.event_duplicated
        if self._active():
            self._count("events", calls=True)
        self.on_created(trigger, snapshot)
        if not duplicated:
            return
        if self._draw() < 0.5:
            self._count("event_duplicated_concurrently")
            self.on_created(trigger, snapshot)
        else:
            self._count("event_duplicated")
            timer = threading.Timer(self._rng.uniform(*REPLAY_DELAY_S), self.on_created, (trigger, snapshot))
            timer.daemon = True
            timer.start()
