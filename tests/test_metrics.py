"""Queue figures: stored per region and logged, with the seed's alerts."""

from __future__ import annotations

import json

from entries import T0, enqueue, load, make_entry
from pack427 import delivery, metrics, paths
from pack427.models import Region
from pack427.notifier import EmulatorNotifier


def test_export_stores_a_snapshot_per_region_and_alerts_over_thresholds(db, capfd, monkeypatch):
    delivered, waiting, doomed = make_entry("a"), make_entry("b"), make_entry("c", tokens=["fail-always"])
    enqueue(db, delivered, waiting, doomed)
    delivery.deliver(db, load(db, delivered), EmulatorNotifier(), actor="test")
    for _ in range(5):
        delivery.deliver(db, load(db, doomed), EmulatorNotifier(), actor="test")
    capfd.readouterr()
    monkeypatch.setattr(metrics, "QUEUE_DEPTH_ALERT", 0)

    snapshots = metrics.export_queue_stats(db, now=T0)

    us = next(s for s in snapshots if s.region is Region.US)
    assert (us.pending, us.delivered, us.dropped, us.depth) == (1, 1, 1, 1)
    [stored] = [s.to_dict() for s in paths.queue_stats(db, Region.US).stream()]
    assert (stored["pending"], stored["delivered"], stored["dropped"]) == (1, 1, 1)
    assert len(list(paths.queue_stats(db, Region.EU).stream())) == 1
    captured = capfd.readouterr()
    stats_lines = [json.loads(line) for line in captured.out.splitlines() if '"queue_stats"' in line]
    lines = captured.out.splitlines() + captured.err.splitlines()
    alerts = [json.loads(line) for line in lines if '"alert"' in line]
    assert {(line["region"], line["depth"]) for line in stats_lines} == {("EU", 0), ("US", 1), ("APAC", 0)}
    assert sorted((a["alert"], a["region"], a["severity"]) for a in alerts) == [
        ("DROPPED_MESSAGES", "US", "ERROR"),
        ("QUEUE_DEPTH", "US", "WARNING"),
    ]
