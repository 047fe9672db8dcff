"""The guard against the next regression: a run's figures against the ones docs/BENCHMARKS.md was rendered from.

`render` (report) keeps the figures the page was rendered from beside it, in
docs/BENCHMARKS.json (the results without the raw latency samples), with the
commit they were measured on. Every bench run compares its own figures with
those, figure by figure where both runs have it, and says which got worse
(and which better): printed, and on the page it renders.

A time is worse when it grew by more than TIME_TOLERANCE (machines are noisy:
the stall probe is printed beside each section), a rate when it fell by more
than that, an operation count when it grew at all (counts do not depend on
the machine), a held load step when it is no longer held.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import speed

TIME_TOLERANCE = 0.25
"""Relative change of a time or a rate below which it is noise, not a change."""


@dataclass(frozen=True)
class Change:
    figure: str
    before: float
    after: float
    worse: bool

    def line(self) -> str:
        ratio = self.after / self.before if self.before else float("inf")
        return f"{self.figure}: {self.before:,.2f} -> {self.after:,.2f} ({ratio:.2f}x)"


def commit(root: Path) -> str:
    """The commit the tree is at, with `+changes` if it has uncommitted ones ('unknown' outside git)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def digest(results: dict) -> dict:
    """What the page keeps beside it: the results without the raw latency samples."""
    out = json.loads(json.dumps(results))
    for series in (out.get("latency") or {}).values():
        if isinstance(series, dict):
            series.pop("samples_ms", None)
    return out


def figures(results: dict) -> dict[str, tuple[str, float]]:
    """The comparable figures of a results file: name -> (kind, value); kind is `time` (lower is better),
    `rate` (higher is better), `count` (lower is better, exact) or `held` (1 held, 0 not)."""
    out: dict[str, tuple[str, float]] = {}

    def put(name: str, kind: str, value) -> None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = (kind, float(value))

    for label, series in (results.get("latency") or {}).items():
        if isinstance(series, dict):
            put(f"latency {label} p95 ms", "time", series.get("p95_ms"))
    drain = results.get("drain") or {}
    put("drain messages a minute", "rate", drain.get("messages_per_minute"))
    sync = results.get("sync") or {}
    put("sync of the missed messages s", "time", sync.get("seconds"))
    ops = (results.get("ops") or {}).get("per_message", {})
    for k in ("reads", "writes", "round_trips"):
        put(f"1:1 message {k}", "count", ops.get(k))
    load = results.get("load") or {}
    for mode in ("engine", "suite"):
        run = load.get(mode)
        if not isinstance(run, dict):
            continue
        put(f"load {mode} highest rate held", "rate", run.get("highest_rate_held") or 0)
        for step in run.get("steps", []):
            at = f"load {mode} at {step['target_rate']:g}/s"
            for k in ("p95_ms", "p99_ms", "mean_ms"):
                put(f"{at} {k.replace('_ms', '')} ms", "time", step.get(k))
            out[f"{at} held"] = ("held", 1.0 if step.get("held") else 0.0)
        for k in ("reads", "writes", "round_trips"):
            put(f"load {mode} {k} a delivered message", "count", (run.get("ops_per_delivery") or {}).get(k))
    for hot in load.get("hot_chat", []):
        put(f"hot chat {hot['senders']} senders messages/s", "rate", hot.get("messages_per_s"))
    busy = load.get("busy_recipient") or {}
    put("busy recipient p95 ms", "time", (busy.get("busy") or {}).get("p95_ms"))
    return out


def compare(before: dict, after: dict) -> list[Change]:
    """Every figure both results have that changed beyond the noise, worse first."""
    old, new = figures(before), figures(after)
    changes = []
    for name in sorted(old.keys() & new.keys()):
        (kind, a), (_, b) = old[name], new[name]
        if kind == "held":
            if a != b:
                changes.append(Change(name, a, b, worse=b < a))
        elif kind == "count":
            if abs(b - a) > 1e-9 * max(1.0, a):
                changes.append(Change(name, a, b, worse=b > a))
        elif a > 0 and abs(b / a - 1) > TIME_TOLERANCE:
            changes.append(Change(name, a, b, worse=(b > a) if kind == "time" else (b < a)))
    return sorted(changes, key=lambda c: not c.worse)


def previous(docs: Path) -> dict | None:
    """The figures docs/BENCHMARKS.md was rendered from (None before the first such page)."""
    path = docs / "BENCHMARKS.json"
    return json.loads(path.read_text()) if path.exists() else None


def summary(before: dict | None, after: dict) -> list[str]:
    """Lines saying what got worse and better against `before` (the page's figures)."""
    if before is None:
        return ["No figures of an earlier page to compare with (docs/BENCHMARKS.json)."]
    meta = before.get("meta", {})
    changes = compare(before, after)
    head = (f"Against the figures the previous page was rendered from (commit {meta.get('commit', 'unknown')},"
            f" started {meta.get('started', '?')}), figures both runs measured; times and rates beyond"
            f" {TIME_TOLERANCE:.0%} of noise, operation counts exactly:")
    worse = [c.line() for c in changes if c.worse]
    better = [c.line() for c in changes if not c.worse]
    lines = [head]
    now_ms = after.get("meta", {}).get("yardstick_ms_at_start")
    if now_ms:  # a slower CPU makes every time worse: say by how much before the figures do
        lines.append("- machine: " + speed.ratio_line(now_ms, meta.get("yardstick_ms_at_start")))
    return [*lines, "- worse: " + ("; ".join(worse) if worse else "none"),
            "- better: " + ("; ".join(better) if better else "none")]
