"""The load run's figure for the emulator's time on queries: each shape's queries a message times its answer."""

from __future__ import annotations

import sys

import pytest
from support.emulator import ROOT

sys.path[:0] = [str(ROOT / "scripts")]
from benchmarks import load  # noqa: E402


def test_each_shapes_queries_a_message_weigh_its_answers_time():
    queries = {"collection:inbox[seqGREATER_THAN] order seq": 0.1, "group:messageQueue[chatIdEQUAL]": 0.25}
    costs = {"collection:inbox[seqGREATER_THAN] order seq": 40.0, "group:messageQueue[chatIdEQUAL]": 12.0}
    assert load.query_ms_per_message(queries, costs) == pytest.approx(0.1 * 40 + 0.25 * 12)


def test_a_shape_without_a_measured_answer_counts_nothing_and_no_queries_cost_nothing():
    assert load.query_ms_per_message({"collection:chats[] order __name__": 2.0}, {}) == 0.0
    assert load.query_ms_per_message({}, {"collection:chats[] order __name__": 9.0}) == 0.0
