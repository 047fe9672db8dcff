"""Operating: running the engine and seeing into it.

Metrics and their alerts (metrics), the alerts as code (alert_policies), the latency
heatmap (heatmap), operator repairs (ops) and the operator commands (cli, `scripts/ops`).
May import every folder; nothing imports it but the deployed functions and scripts.
"""
