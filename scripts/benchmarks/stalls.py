"""How long a ready thread waited for a CPU during a section: the floor under every time figure.

A process of its own (so the bench's GIL does not count) sleeps STEP_S at a
time and records how late each wake-up is. On a quiet, dedicated machine the
lateness stays under a millisecond. A late wake-up means no CPU ran the
process: other work had them, or the host was not running this virtual
machine's CPUs at all (these machines lose hundreds of milliseconds at a
time that way, and the kernel counts little of it as steal). Every process
of the suite waits the same way, so a message whose path crosses five
processes meets these stalls several times. The probe sleeps nearly all the
time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

STEP_S = 0.01


class StallProbe:
    """Samples wake-up lateness from entering the `with` block to leaving it; then `summary`."""

    def __enter__(self) -> StallProbe:
        self._process = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         text=True)
        return self

    def __exit__(self, *exc) -> None:
        out, _ = self._process.communicate("")  # closing its stdin stops it
        self._summary = json.loads(out)

    def summary(self) -> dict:
        """Share of the time lost to late wake-ups, their p50/p99/max (ms), and stalls over 100 ms per minute."""
        return self._summary


def _summarise(late: list[float], elapsed: float) -> dict:
    late = sorted(late)
    if not late:
        return {"samples": 0}
    return {
        "samples": len(late),
        "lost_share": sum(late) / max(elapsed, 1e-9),
        "p50_ms": late[len(late) // 2] * 1000,
        "p99_ms": late[min(len(late) - 1, round(0.99 * (len(late) - 1)))] * 1000,
        "max_ms": late[-1] * 1000,
        "over_100ms_per_minute": sum(1 for x in late if x > 0.1) * 60 / max(elapsed, 1e-9),
    }


def _probe() -> None:
    """Sample until stdin closes, then print the summary as JSON."""
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    late: list[float] = []
    started = time.perf_counter()
    while not done.is_set():
        asked = time.perf_counter()
        time.sleep(STEP_S)
        late.append(max(0.0, time.perf_counter() - asked - STEP_S))
    print(json.dumps(_summarise(late, time.perf_counter() - started)))


if __name__ == "__main__":
    _probe()
