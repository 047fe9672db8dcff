"""Pieces of scripts/bench.py: operation counting, the scale run, cold start, the report."""
