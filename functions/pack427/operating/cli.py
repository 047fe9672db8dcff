"""Operator commands: see, steer and undo the engine (`scripts/ops`, or `python -m pack427.operating.cli`).

Works against the emulators when FIRESTORE_EMULATOR_HOST is set (project:
--project, else GCLOUD_PROJECT, else demo-pack427), or against a real project
with application default credentials (`gcloud auth application-default login`).

    stats                      per-region figures of the last 5 minutes, as a table
    process                    run the queue processor now, with progress
    history CHAT_ID MESSAGE_ID the message's full audit trail
    requeue-dropped [--region R]
                               dead letters back to PENDING (attempts reset), audited
    resync USER CHAT           bring every message of CHAT into USER's inbox
    recalc-unread USER         recount USER's unread counters, show what changed
    repair-inbox USER          rebuild USER's damaged inbox head, deliver what waited for it
    quarantined                queue entries set aside as unusable, with the problem
    release REGION ENTRY_ID    a quarantined entry, repaired in the console, back on its queue
    release-fan-out CHAT MESSAGE_ID
                               a quarantined fan-out job, repaired in the console, back to work
    mode [queue|direct] [--reason TEXT]
                               show or flip the rollback switch; back to queue drains
    nudge USER KEY TEXT        send USER a system nudge (idempotent by KEY)
    rate-limit [N] [--reason TEXT]
                               show or set the sends allowed per user per minute
    set-expiry                 give documents written before the TTL policies their expiresAt (once,
                               after upgrading; docs/RUNBOOK.md)
    heatmap [--days N] [--out FILE]
                               a PNG of delivery latency by weekday and hour, per region

Every change goes through the same conditional writes as the functions: a
command can run while the functions run, and twice, without delivering a
message twice.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from datetime import timedelta
from pathlib import Path

from google.cloud import firestore
from google.cloud.firestore import Client

from .. import audit, clock, settings
from ..accepting import nudges
from ..delivering import backlog, fan_out
from ..delivering.notifier import Notifier, default_notifier
from ..models import EngineMode, Region
from ..reading import unread
from ..workers import processor
from . import heatmap, metrics
from .ops import quarantined, release, repair_inbox, requeue_dropped, resync, set_expiry


def _print_stats(db: Client) -> None:
    columns = ["region", "depth", "pending", "failed", "dropped", "delivered", "success", "failedRate",
               "same p50/p95/p99 ms", "cross p50/p95/p99 ms", "syncs", "sync max ms"]
    rows = []
    for region in Region:
        m = metrics.region_metrics(db, region)
        rows.append([region.value, m.depth, m.pending, m.failed, m.dropped, m.delivered,
                     _pct(m.delivery_success_rate), _pct(m.failed_delivery_rate),
                     _latency(m.latency_same_region), _latency(m.latency_cross_region),
                     m.syncs_in_window, "-" if m.sync_max_ms is None else m.sync_max_ms])
        for severity, name, _message, _ in metrics.alerts(m):
            rows[-1].append(f"{severity.upper()} {name}")
    _table(columns, rows)
    print(f"(rates, latencies and syncs: the last {metrics.METRICS_WINDOW_SECONDS // 60} minutes; "
          f"mode: {settings.current(db).mode.value})")


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.2%}"


def _latency(p) -> str:
    return "-" if not p.samples else f"{p.p50_ms}/{p.p95_ms}/{p.p99_ms}"


def _table(columns: list[str], rows: list[list]) -> None:
    cells = [columns, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells if i < len(row)) for i in range(max(map(len, cells)))]
    for row in cells:
        print("  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip())


def _process(db: Client, notifier: Notifier) -> None:
    def show(region: Region, totals: dict) -> None:
        print(f"{region.value}: depth {totals['depth']} ({totals['mode']}), batches {totals['batches']}, "
              f"delivered {totals['delivered']}, failed {totals['failed']}, dropped {totals['dropped']}, "
              f"deferred {totals['deferred']}", flush=True)

    processor.drain(db, notifier, actor="ops", progress=show)
    left = {region.value: backlog.depth(db, region) for region in Region}
    print("waiting now: " + ", ".join(f"{r} {n}" for r, n in left.items()))


def _history(db: Client, chat_id: str, message_id: str) -> None:
    events = audit.history(db, chat_id, message_id)
    if not events:
        print(f"no audit events for message {message_id}")
        return
    _table(["at", "entry", "actor", "action", "from", "to", "attempt", "details"],
           [[e.at.isoformat(), e.entry_id, e.actor, e.action, e.from_status or "-", e.to_status, e.attempts,
             e.details or ""] for e in events])


def _mode(db: Client, mode: str | None, reason: str | None, notifier: Notifier) -> None:
    if mode is None:
        current = settings.current(db, max_age_s=0)
        print(f"mode {current.mode.value} (set {current.updated_at or 'never'} by {current.updated_by or '-'}"
              f"{': ' + current.reason if current.reason else ''})")
        return
    settings.set_mode(db, EngineMode(mode), actor=f"ops:{getpass.getuser()}", reason=reason)
    print(f"mode {mode}: every instance follows within {settings.SETTINGS_CACHE_SECONDS} s")
    if mode == EngineMode.QUEUE:
        print("draining what is queued")
        _process(db, notifier)


def _heatmap(db: Client, days: int, out: str) -> None:
    since = clock.now() - timedelta(days=days)
    snapshots = heatmap.load(db, since)
    title = f"PACK 427 delivery latency, {len(snapshots)} snapshots since {since:%Y-%m-%d %H:%M} UTC"
    path = heatmap.render(heatmap.grids(snapshots), Path(out), title=title)
    print(f"{path}: {len(snapshots)} stored snapshots of the last {days} days")


def client(project: str | None) -> Client:
    """A Firestore client for `project` (the emulator's when FIRESTORE_EMULATOR_HOST is set)."""
    project = project or os.environ.get("GCLOUD_PROJECT") or os.environ.get("GOOGLE_CLOUD_PROJECT")
    if project is None and os.environ.get("FIRESTORE_EMULATOR_HOST"):
        project = "demo-pack427"
    return firestore.Client(project=project)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/ops", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--project", help="default: GCLOUD_PROJECT, or demo-pack427 on the emulator")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("stats", help="per-region figures of the last window")
    commands.add_parser("process", help="run the queue processor now")
    history = commands.add_parser("history", help="a message's audit trail")
    history.add_argument("chat_id")
    history.add_argument("message_id")
    requeue_parser = commands.add_parser("requeue-dropped", help="dead letters back to PENDING")
    requeue_parser.add_argument("--region", choices=[r.value for r in Region])
    resync_parser = commands.add_parser("resync", help="bring a chat's messages into a user's inbox")
    resync_parser.add_argument("user")
    resync_parser.add_argument("chat")
    commands.add_parser("recalc-unread", help="recount a user's unread counters").add_argument("user")
    commands.add_parser("repair-inbox", help="rebuild a damaged inbox head, deliver what waited").add_argument("user")
    commands.add_parser("quarantined", help="queue entries set aside as unusable")
    release_parser = commands.add_parser("release", help="a repaired quarantined entry back on its queue")
    release_parser.add_argument("region", choices=[r.value for r in Region])
    release_parser.add_argument("entry_id")
    fan_out_parser = commands.add_parser("release-fan-out", help="a repaired quarantined fan-out job back to work")
    fan_out_parser.add_argument("chat")
    fan_out_parser.add_argument("message_id")
    mode_parser = commands.add_parser("mode", help="show or set the rollback switch")
    mode_parser.add_argument("mode", nargs="?", choices=[m.value for m in EngineMode])
    mode_parser.add_argument("--reason")
    nudge_parser = commands.add_parser("nudge", help="send a user a system nudge (idempotent by KEY)")
    for name in ("user", "key", "text"):
        nudge_parser.add_argument(name)
    limit_parser = commands.add_parser("rate-limit", help="show or set the sends allowed per user per minute")
    limit_parser.add_argument("per_minute", nargs="?", type=int)
    limit_parser.add_argument("--reason")
    commands.add_parser("set-expiry", help="give documents written before the TTL policies their expiresAt")
    heat_parser = commands.add_parser("heatmap", help="a PNG of send-to-inbox latency by weekday and hour, per region")
    heat_parser.add_argument("--days", type=int, default=28, help="the stored statistics of the last N days (28)")
    heat_parser.add_argument("--out", default="delivery-heatmap.png", help="the PNG to write")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one operator command (see the module docstring); the exit status."""
    args = _parser().parse_args(argv)

    db = client(args.project)
    notifier = default_notifier()
    say = lambda line: print(line, flush=True)  # noqa: E731
    match args.command:
        case "stats":
            _print_stats(db)
        case "process":
            _process(db, notifier)
        case "history":
            _history(db, args.chat_id, args.message_id)
        case "set-expiry":
            print(json.dumps(set_expiry(db, progress=say)))
        case "requeue-dropped":
            regions = (Region(args.region),) if args.region else tuple(r for r in Region)
            requeued = requeue_dropped(db, regions=regions, progress=say)
            print(f"requeued {len(requeued.requeued)}, marked delivered {len(requeued.markedDelivered)} "
                  "(already in the inbox); the processor delivers within a minute, or `scripts/ops process`")
        case "resync":
            repaired = resync(db, args.user, args.chat, notifier, progress=say)
            print(repaired.model_dump_json(indent=2))
        case "recalc-unread":
            print(unread.recalculate(db, args.user).model_dump_json(indent=2))
        case "repair-inbox":
            print(repair_inbox(db, args.user, notifier).model_dump_json(indent=2))
        case "quarantined":
            found = quarantined(db)
            _table(["region", "entry", "was", "since", "problem"],
                   [[q["region"], q["entryId"], q["status"], q["at"], q["problem"]] for q in found])
            print(f"{len(found)} quarantined; repair each in the console, then `scripts/ops release REGION ENTRY`")
        case "release":
            problem = release(db, Region(args.region), args.entry_id, actor=f"ops:{getpass.getuser()}")
            print(problem or f"{args.region}/{args.entry_id} is back on its queue (PENDING, due now)")
            return 0 if problem is None else 1
        case "release-fan-out":
            problem = fan_out.release(db, args.chat, args.message_id)
            print(problem or f"the fan-out of {args.chat}/{args.message_id} is back; its trigger goes on")
            return 0 if problem is None else 1
        case "mode":
            _mode(db, args.mode, args.reason, notifier)
        case "nudge":
            sent = nudges.send_nudge(db, args.user, key=args.key, text=args.text)
            print(f"nudge {sent.messageId} to {args.user}" + (" (sent before with this key)" if sent.duplicate else "")
                  + ": queued, the trigger delivers it")
        case "heatmap":
            _heatmap(db, args.days, args.out)
        case "rate-limit":
            if args.per_minute is not None:
                settings.set_rate_limit(db, args.per_minute, actor=f"ops:{getpass.getuser()}", reason=args.reason)
            limit = settings.current(db, max_age_s=0).max_messages_per_minute
            print(f"{limit} messages per user per minute; every instance follows within "
                  f"{settings.SETTINGS_CACHE_SECONDS} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
