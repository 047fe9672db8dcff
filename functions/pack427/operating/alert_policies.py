"""The engine's alerts as code: Cloud Logging log-based metrics and Cloud Monitoring alert policies.

The engine computes its alerts itself and logs them as structured lines (metrics.py every five
minutes; every other module the moment it sets something aside). Nobody is paged by a log line,
so this module turns the same thresholds (the constants metrics.py decides with: one source) and
the same alert names into the JSON that `gcloud logging metrics create --config-from-file` and
`gcloud monitoring policies create --policy-from-file` take:

- the seed's five alerts, per region, as thresholds on the figures of the `queue_stats` line
  (one distribution metric per figure, the region a label): depth over QUEUE_DEPTH_ALERT, success
  rate under SUCCESS_RATE_ALERT, failed delivery rate over FAILED_RATE_ALERT, any dropped message,
  the slowest sync over SYNC_DURATION_ALERT_MS;
- every alert the engine logs (ENGINE_ALERTS), from one counter of `alert` lines labelled by
  name: any occurrence opens an incident.

`render` gives every file by name; `scripts/deploy --alerts` writes them to monitoring/ and
applies them; `scripts/deploy --check` fails when the files there differ from what the code gives.
tests/unit/test_alert_policies.py parses each into the official client types and checks that
every alert the package logs has a policy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from . import metrics

METRIC_PREFIX = "pack427"
USER_METRIC = "logging.googleapis.com/user/"
ALERTS_METRIC = f"{METRIC_PREFIX}_alerts"
"""The counter of every `alert` log line, labelled by the alert's name."""
WINDOW = f"{metrics.METRICS_WINDOW_SECONDS}s"
"""Each region's figures are logged once per export period: one value per window."""
RUNBOOK = "docs/RUNBOOK.md"


@dataclass(frozen=True)
class Threshold:
    """A seed alert: a figure of the `queue_stats` line crossing a threshold, per region."""

    alert: str
    figure: str
    comparison: str
    threshold: float
    severity: str
    unit: str
    meaning: str


SEED_ALERTS = (
    Threshold("QUEUE_DEPTH", "depth", "COMPARISON_GT", metrics.QUEUE_DEPTH_ALERT, "WARNING", "1",
              "entries waiting for delivery in one region (PENDING + FAILED); runbook section 1"),
    Threshold("DELIVERY_SUCCESS_RATE", "deliverySuccessRate", "COMPARISON_LT", metrics.SUCCESS_RATE_ALERT, "ERROR",
              "1", "share of the messages settled in the window that reached the inbox; runbook sections 1 and 6"),
    Threshold("FAILED_DELIVERY_RATE", "failedDeliveryRate", "COMPARISON_GT", metrics.FAILED_RATE_ALERT, "WARNING",
              "1", "share of the delivery attempts of the window that failed; runbook section 1"),
    Threshold("DROPPED_MESSAGES", "droppedInWindow", "COMPARISON_GT", 0, "ERROR", "1",
              "delivery attempts of the window that dropped an entry (dead letters); runbook section 6"),
    Threshold("SYNC_DURATION", "syncMaxMs", "COMPARISON_GT", metrics.SYNC_DURATION_ALERT_MS, "WARNING", "ms",
              "the slowest device sync of the window; runbook section 3"),
)

ENGINE_ALERTS: dict[str, tuple[str, str]] = {
    "MESSAGE_DROPPED": ("ERROR", "a queue entry became a dead letter (runbook section 6: `scripts/ops "
                        "requeue-dropped`)"),
    "QUEUE_ENTRY_QUARANTINED": ("ERROR", "a queue entry was unusable and is set aside (runbook section 8: "
                                "`scripts/ops quarantined`, `scripts/ops release`)"),
    "FAN_OUT_QUARANTINED": ("ERROR", "a fan-out job was unusable and is set aside (runbook section 8: "
                            "`scripts/ops release-fan-out`)"),
    "FAN_OUT_STALLED": ("WARNING", "a large group's fan-out stopped for over a minute and the processor resumed "
                        "it (runbook section 1b)"),
    "INBOX_HEAD_UNUSABLE": ("ERROR", "a user's inbox head is damaged; their messages wait (runbook section 8: "
                            "`scripts/ops repair-inbox USER`)"),
    "INBOX_ENTRY_UNUSABLE": ("ERROR", "an inbox entry is damaged; its owner's sync stops there (runbook section 8)"),
    "SETTINGS_UNUSABLE": ("ERROR", "config/engine has a field the engine cannot use; its default applies "
                          "(runbook section 8: `scripts/ops mode`, `scripts/ops rate-limit`)"),
    "SCHEDULED_MESSAGE_UNUSABLE": ("ERROR", "a scheduled message was unusable and failed at its time "
                                   "(runbook section 8)"),
    "SEND_RECORD_UNUSABLE": ("ERROR", "an idempotency record is damaged; retries of that send are refused "
                             "(runbook section 8)"),
    "CURSOR_KEY_MISSING": ("CRITICAL", "no cursor key: sync, chat list and resync answer unavailable "
                           "(runbook section 7)"),
    "CURSOR_KEY_IS_DEVELOPMENT_KEY": ("CRITICAL", "the cursor secret holds the development key: sync, chat list "
                                      "and resync answer unavailable (runbook section 7)"),
    "CURSOR_KEY_MALFORMED": ("ERROR", "the cursor key or its rotation part is unusable (runbook section 7)"),
    "ADMISSION_CHECK_FAILED": ("ERROR", "the paid-chat admission hook raised: sends answer unavailable"),
    "FRAUD_CHECK_FAILED": ("WARNING", "the spam hook raised: sends go through unscreened"),
    "REGION_ROUTER_FAILED": ("WARNING", "the region router raised: the profile's region is used"),
}
"""Every alert the engine logs outside the seed's five, with the severity of its policy and what it means."""


def _metric_type(name: str) -> str:
    return f"{USER_METRIC}{name}"


def figure_metric(threshold: Threshold) -> dict:
    """The log-based distribution metric of one `queue_stats` figure, per region."""
    name = f"{METRIC_PREFIX}_{threshold.figure}"
    bounds = sorted({0, threshold.threshold, *(threshold.threshold * f for f in (0.5, 0.9, 1.1, 2, 10))})
    return {
        "name": name,
        "description": f"PACK 427 queue_stats {threshold.figure}: {threshold.meaning}",
        "filter": 'jsonPayload.metric="queue_stats"',
        "metricDescriptor": {"metricKind": "DELTA", "valueType": "DISTRIBUTION", "unit": threshold.unit,
                             "labels": [{"key": "region", "valueType": "STRING"}]},
        "valueExtractor": f"EXTRACT(jsonPayload.{threshold.figure})",
        "labelExtractors": {"region": "EXTRACT(jsonPayload.region)"},
        "bucketOptions": {"explicitBuckets": {"bounds": bounds}},
    }


def alerts_metric() -> dict:
    """The counter of every `alert` line the engine logs, labelled by the alert's name."""
    return {
        "name": ALERTS_METRIC,
        "description": "PACK 427 alert log lines, by alert name (pack427 alerts.py and every module that sets "
                       "something aside)",
        "filter": "jsonPayload.alert:*",
        "metricDescriptor": {"metricKind": "DELTA", "valueType": "INT64", "unit": "1",
                             "labels": [{"key": "alert", "valueType": "STRING"}]},
        "labelExtractors": {"alert": "EXTRACT(jsonPayload.alert)"},
    }


def threshold_policy(threshold: Threshold) -> dict:
    """The alert policy of one seed alert: the figure crossing its threshold in any region."""
    aligner = "ALIGN_PERCENTILE_05" if threshold.comparison == "COMPARISON_LT" else "ALIGN_PERCENTILE_99"
    return {
        "displayName": f"PACK 427 {threshold.alert}",
        "documentation": {"content": f"{threshold.meaning}. Threshold {threshold.threshold} ({RUNBOOK}).",
                          "mimeType": "text/markdown"},
        "combiner": "OR",
        "severity": threshold.severity,
        "conditions": [{
            "displayName": f"{threshold.figure} {threshold.comparison.removeprefix('COMPARISON_').lower()} "
                           f"{threshold.threshold} in a region",
            "conditionThreshold": {
                "filter": f'metric.type="{_metric_type(figure_metric(threshold)["name"])}" '
                          'AND resource.type="cloud_run_revision"',
                "comparison": threshold.comparison,
                "thresholdValue": threshold.threshold,
                "duration": "0s",
                "aggregations": [{"alignmentPeriod": WINDOW, "perSeriesAligner": aligner}],
                "trigger": {"count": 1},
            },
        }],
    }


def engine_alert_policy(alert: str) -> dict:
    """The alert policy of one engine alert: any occurrence of its log line."""
    severity, meaning = ENGINE_ALERTS[alert]
    return {
        "displayName": f"PACK 427 {alert}",
        "documentation": {"content": f"{meaning}. Logged with `alert: {alert}` ({RUNBOOK}).",
                          "mimeType": "text/markdown"},
        "combiner": "OR",
        "severity": severity,
        "conditions": [{
            "displayName": f"{alert} logged",
            "conditionThreshold": {
                "filter": f'metric.type="{_metric_type(ALERTS_METRIC)}" AND metric.label.alert="{alert}" '
                          'AND resource.type="cloud_run_revision"',
                "comparison": "COMPARISON_GT",
                "thresholdValue": 0,
                "duration": "0s",
                "aggregations": [{"alignmentPeriod": "60s", "perSeriesAligner": "ALIGN_SUM"}],
                "trigger": {"count": 1},
            },
        }],
    }


def render() -> dict[str, str]:
    """Every file, by its path under monitoring/: `metrics/NAME.json` and `policies/NAME.json`."""
    files = {f"metrics/{m['name']}.json": m for m in [*map(figure_metric, SEED_ALERTS), alerts_metric()]}
    files |= {f"policies/{t.alert}.json": threshold_policy(t) for t in SEED_ALERTS}
    files |= {f"policies/{alert}.json": engine_alert_policy(alert) for alert in ENGINE_ALERTS}
    return {path: json.dumps(body, indent=2, sort_keys=True) + "\n" for path, body in sorted(files.items())}
