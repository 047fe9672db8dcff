"""The alerts as code (monitoring/, rendered by pack427.operating.alert_policies) parse into the official client
types, carry the engine's own thresholds, cover every alert the package logs, and are up to date."""

from __future__ import annotations

import json
import re

import pytest
from google.api import metric_pb2
from google.cloud import monitoring_v3
from google.cloud.logging_v2.types import LogMetric
from support.emulator import ROOT

from pack427.operating import alert_policies, metrics

MONITORING = ROOT / "monitoring"
PACKAGE = ROOT / "functions" / "pack427"


def stored() -> dict[str, str]:
    return {str(p.relative_to(MONITORING)): p.read_text() for p in sorted(MONITORING.rglob("*.json"))}


def test_the_files_are_what_the_code_renders():
    assert stored() == alert_policies.render(), "monitoring/ is stale: scripts/deploy --alerts-render"


@pytest.mark.parametrize("path", sorted(p for p in alert_policies.render() if p.startswith("metrics/")))
def test_each_metric_is_a_log_metric(path):
    metric = LogMetric.from_json(stored()[path], ignore_unknown_fields=False)
    assert metric.name and metric.filter
    assert metric.metric_descriptor.metric_kind == metric_pb2.MetricDescriptor.MetricKind.DELTA


@pytest.mark.parametrize("path", sorted(p for p in alert_policies.render() if p.startswith("policies/")))
def test_each_policy_is_an_alert_policy_on_a_metric_of_ours(path):
    policy = monitoring_v3.AlertPolicy.from_json(stored()[path], ignore_unknown_fields=False)
    [condition] = policy.conditions
    metric_names = {json.loads(text)["name"] for p, text in stored().items() if p.startswith("metrics/")}
    [metric] = re.findall(r'metric.type="logging.googleapis.com/user/([^"]+)"', condition.condition_threshold.filter)
    assert metric in metric_names
    assert policy.severity.name in ("CRITICAL", "ERROR", "WARNING")


def threshold_of(alert: str) -> tuple[str, float]:
    policy = monitoring_v3.AlertPolicy.from_json(stored()[f"policies/{alert}.json"])
    condition = policy.conditions[0].condition_threshold
    return condition.comparison.name, condition.threshold_value


def test_the_seed_policies_carry_the_engines_thresholds():
    # The seed's numbers, literally, and the engine's constants: a file that differs from either fails.
    assert threshold_of("QUEUE_DEPTH") == ("COMPARISON_GT", 10_000) == ("COMPARISON_GT", metrics.QUEUE_DEPTH_ALERT)
    assert threshold_of("DELIVERY_SUCCESS_RATE") == ("COMPARISON_LT", 0.99) == (
        "COMPARISON_LT", metrics.SUCCESS_RATE_ALERT)
    assert threshold_of("FAILED_DELIVERY_RATE") == ("COMPARISON_GT", 0.01) == (
        "COMPARISON_GT", metrics.FAILED_RATE_ALERT)
    assert threshold_of("DROPPED_MESSAGES") == ("COMPARISON_GT", 0)
    assert threshold_of("SYNC_DURATION") == ("COMPARISON_GT", 30_000) == (
        "COMPARISON_GT", metrics.SYNC_DURATION_ALERT_MS)


def logged_alerts() -> set[str]:
    """Every alert name the package logs: `alert="X"` literals, constants passed as `alert=`, the cursor key's."""
    names = set()
    for source in PACKAGE.rglob("*.py"):
        text = source.read_text()
        names |= set(re.findall(r'alert="([A-Z_]+)"', text))
        for constant in re.findall(r"alert=([A-Z_]+)\b", text):
            names |= set(re.findall(rf'^{constant} = "([A-Z_]+)"', text, re.MULTILINE))
        names |= set(re.findall(r'"(CURSOR_KEY_[A-Z_]+)"', text))
    return names


def test_every_alert_the_engine_logs_has_a_policy():
    seed = {t.alert for t in alert_policies.SEED_ALERTS}
    logged = logged_alerts()
    assert {"MESSAGE_DROPPED", "QUEUE_ENTRY_QUARANTINED", "INBOX_HEAD_UNUSABLE", "SETTINGS_UNUSABLE",
            "FAN_OUT_STALLED", "CURSOR_KEY_MISSING"} <= logged  # the scan finds them
    missing = logged - seed - set(alert_policies.ENGINE_ALERTS)
    assert not missing, f"alerts logged without a policy: {sorted(missing)}"
    assert not set(alert_policies.ENGINE_ALERTS) - logged, "policies for alerts nothing logs"
