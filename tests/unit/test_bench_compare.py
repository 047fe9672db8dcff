"""The benchmark page's guard: it is what its figures render to, and a run says what got worse against them."""

from __future__ import annotations

import copy
import json
import sys

from support.emulator import ROOT

sys.path[:0] = [str(ROOT / "scripts")]
from benchmarks import compare, report  # noqa: E402


def results(p99_ms: float = 400, held_80: bool = True, writes: float = 10, hot_20: float = 5.0) -> dict:
    step = lambda rate, p99, held: {"target_rate": rate, "p95_ms": p99 / 2, "p99_ms": p99, "mean_ms": p99 / 10,  # noqa: E731
                                    "held": held}
    return {"meta": {"commit": "abc1234", "started": "2026-12-02 00:00 UTC"},
            "ops": {"per_message": {"reads": 10.0, "writes": writes, "round_trips": 10.0}},
            "load": {"engine": {"highest_rate_held": 80.0 if held_80 else 40.0,
                                "steps": [step(40, 300, True), step(80, p99_ms, held_80)]},
                     "hot_chat": [{"senders": 20, "messages_per_s": hot_20}]}}


def worse(before: dict, after: dict) -> list[str]:
    return [c.figure for c in compare.compare(before, after) if c.worse]


def test_a_run_like_the_pages_figures_changes_nothing_and_noise_is_not_a_change():
    assert compare.compare(results(), results()) == []
    assert compare.compare(results(p99_ms=400), results(p99_ms=450)) == []  # 12%: within the noise


def test_a_slower_tail_a_step_no_longer_held_and_one_more_write_are_worse():
    assert worse(results(), results(p99_ms=8000)) == ["load engine at 80/s mean ms", "load engine at 80/s p95 ms",
                                                       "load engine at 80/s p99 ms"]
    assert set(worse(results(), results(held_80=False))) == {"load engine at 80/s held",
                                                             "load engine highest rate held"}
    assert worse(results(), results(writes=11)) == ["1:1 message writes"]  # counts: exact
    assert worse(results(), results(hot_20=2.0)) == ["hot chat 20 senders messages/s"]
    better = [c.figure for c in compare.compare(results(p99_ms=8000), results()) if not c.worse]
    assert "load engine at 80/s p99 ms" in better


def test_the_summary_names_the_pages_commit_and_the_figures_that_got_worse():
    lines = compare.summary(results(), results(p99_ms=8000))
    assert "commit abc1234" in lines[0]
    assert lines[1].startswith("- worse: ") and "load engine at 80/s p99 ms: 400.00 -> 8,000.00 (20.00x)" in lines[1]
    assert compare.summary(None, results())[0].startswith("No figures")


def test_the_summary_says_how_much_slower_this_machines_cpu_is_than_the_pages():
    page, slow = results(), results(p99_ms=8000)
    page["meta"]["yardstick_ms_at_start"], slow["meta"]["yardstick_ms_at_start"] = 200.0, 500.0
    lines = compare.summary(page, slow)
    assert lines[1] == ("- machine: this machine's yardstick: 500 ms, the page's run's 200 ms: this CPU is 2.50 times"
                        " slower, and its times should be about 2.50 times theirs for the same code")
    assert lines[2].startswith("- worse: ")  # the figures are still compared as measured
    del page["meta"]["yardstick_ms_at_start"]
    assert "did not measure one" in compare.summary(page, slow)[1]
    assert not any(line.startswith("- machine") for line in compare.summary(results(), results()))


def test_the_digest_keeps_every_figure_but_the_raw_samples():
    full = results() | {"latency": {"same_region": {"p95_ms": 70.0, "samples_ms": [1.0] * 200}}}
    kept = compare.digest(full)
    assert "samples_ms" not in kept["latency"]["same_region"] and kept["latency"]["same_region"]["p95_ms"] == 70.0
    assert "samples_ms" in full["latency"]["same_region"]  # the run's own results are left whole
    assert compare.figures(kept) == compare.figures(copy.deepcopy(full))


def test_the_benchmark_page_is_what_its_figures_render_to():
    # No hand edit, no splice of another run's sections: the page is rendered from docs/BENCHMARKS.json whole.
    figures = json.loads((ROOT / "docs" / "BENCHMARKS.json").read_text())
    image = "bench-latency.png" if (ROOT / "docs" / "bench-latency.png").exists() else None
    assert report.markdown(figures, image) == (ROOT / "docs" / "BENCHMARKS.md").read_text()
    assert figures["meta"].get("commit"), "the page names the commit it was measured on"


def test_a_fault_run_renders_its_table_and_a_page_without_one_is_unchanged():
    figures = json.loads((ROOT / "docs" / "BENCHMARKS.json").read_text())
    without = report.load_section(figures["load"])
    step = {"messages": 300, "deliveries": 1800, "p50_ms": 40.0, "p95_ms": 90.0, "p99_ms": 200.0, "max_ms": 900.0,
            "undelivered_after_wait": 0, "errors": 0, "client_retries": 12, "stalls": {"lost_share": 0.02},
            "large_group": {"messages": 5, "deliveries": 795, "p95_ms": 300.0, "p99_ms": 12000.0}}
    faults = {"setup": figures["load"]["engine"]["setup"], "rate": 10.0, "step_seconds": 30, "processor_every_s": 5.0,
              "large_group": {"members": 160, "every_s": 6.0}, "fault_free": step | {"client_retries": 0},
              "faulty": step, "load": "1 / 1 / 1",
              "faults": {"mix": {"commit_failed": 0.025, "answer_lost": 0.025, "worker_died": 0.5,
                                 "event_duplicated": 0.05, "read_unavailable": 0.02},
                         "injected": {"commit_failed": 30, "worker_died": 2, "worker_died:fan-out chunk": 2},
                         "calls": {"commits": 1000, "reads": 1200, "events": 400}, "faulty_commit_share": 0.05,
                         "refused_read_share": 0.02, "duplicated_event_share": 0.05},
              "seen": {"client_retries": {"pack427_sendMessage: unavailable": 12}, "trigger_runs": 420,
                       "trigger_outcomes": {"queue: delivered": 400}, "processor_runs": {"completed": 12},
                       "processor_outcomes": {"delivered": 7}, "internal": {}},
              "verification": figures["load"]["engine"]["verification"] | {"internal_answers": 0,
                                                                            "calls_failed_after_retries": 0},
              "checks": ["lost", "internal_answers"], "all_checks_zero": True}
    page = "\n".join(report.load_section(figures["load"] | {"faults": faults}))
    assert "### Mode engine with faults" in page and "| with faults | 300 | 1,800 | 40 ms | 90 ms | 200 ms |" in page
    assert "| a commit failed before it was sent (ServiceUnavailable) | 30 |" in page
    assert "fan-out chunk 2" in page and "internal answers **0**" in page
    assert report.load_section(figures["load"]) == without  # no fault run: the section as it was
    # The whole page renders with it (a full run's load section ends with the fault run), its target a row.
    whole = report.markdown(figures | {"load": figures["load"] | {"faults": faults}}, None)
    assert "| load run with faults at 10/s | every check 0; no INTERNAL answer | 5.0% of commits faulty; checks all 0 | yes |" in whole
