"""Render a results JSON (scripts/bench.py) as docs/BENCHMARKS.md and the latency histogram PNG."""

from __future__ import annotations

import json
import sys
from pathlib import Path

SECTIONS = ("latency", "ops", "drain", "sync", "fanout", "lanes", "load", "cold_start", "ts_client", "web_chat")
TARGETS = {
    # issue 16, the lean message path: ratios measured in the same run, and budgets of operations
    "latency_p95_to_floor": 1.5, "drain_per_minute": 20_000, "drain_to_raw": 0.25,
    "sync_to_queries": 2.0, "sync_1000_s": 0.5,
    "writes": 10, "reads": 12, "round_trips": 14, "triggers": 1, "group_writes_per_recipient": 4,
    # issue 17: a load run counts only with real traffic: half the users sent a message, on average
    "load_users": 10_000, "load_min_messages": 5_000,
    # issue 28: the load run's tail, a busy recipient, a hot chat
    "load_p99_ms": 1000, "load_mean_ms": 100, "load_min_rate_held": 80, "load_to_plain_writer": 1.5,
    "busy_p95_to_quiet": 2.0, "busy_placed_by_send": 0.8, "hot_chat_to_plain_writer": 0.5, "hot_chat_lost_races": 1.0,
}
SEED = {"p95_same_region_ms": 2000, "p95_cross_region_ms": 5000, "drain_per_minute": 200, "sync_1000_s": 10.0}
STAGE_FUNCTIONS = {"send": "pack427_sendMessage", "deliver": "pack427_onMessageEnqueued (each queue entry)",
                   "sync": "pack427_syncMessages (one page)", "ack": "pack427_ackMessages", "read": "pack427_markAsRead"}


def group_writes_per_extra_recipient(ops: dict) -> float:
    """What each recipient of a group beyond the first adds to a message's send and delivery, in writes."""
    group = ops["group"]
    one = sum(ops["stages"][stage]["counts"]["writes"] for stage in ("send", "deliver"))
    return (group["send_and_deliver"]["counts"]["writes"] - one) / (group["recipients"] - 1)


def histogram(results: dict, path: Path) -> bool:
    """The send-to-inbox latency histogram (same and cross region); False without samples or matplotlib."""
    latency = results.get("latency") or {}
    series = {label: r["samples_ms"] for label, r in latency.items() if isinstance(r, dict) and r.get("samples_ms")}
    if not series:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    top = max(max(v) for v in series.values())
    bins = [top * i / 40 for i in range(41)]
    for label, samples in series.items():
        name = "platform floor (callable + trigger)" if label == "floor" else f"engine, {label.replace('_', ' ')}"
        ax.hist(samples, bins=bins, alpha=0.5, label=f"{name} (n={len(samples)})")
    floor = latency.get("floor")
    if floor:
        limit = TARGETS["latency_p95_to_floor"] * floor["p95_ms"]
        ax.axvline(limit, color="red", linestyle="--", label=f"target: same-region p95 at most {limit:,.0f} ms (1.5x floor p95)")
    ax.set_xlabel("send-to-inbox latency (ms): callable ... inbox listener")
    ax.set_ylabel("messages")
    ax.set_title(f"PACK 427 on the emulator suite ({results['meta']['mode']} run, {results['meta']['started']})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def stalls(results: dict) -> list[str]:
    """How long a ready process waited for a CPU during each section (benchmarks/stalls.py)."""
    rows = [(name, results[name]["stalls"]) for name in SECTIONS
            if isinstance(results.get(name), dict) and results[name].get("stalls", {}).get("samples")]
    if not rows:
        return []
    quiet = max(s["lost_share"] for _, s in rows) < 0.1
    out = ["## The machine under the figures", "",
           "A process of the bench's own sleeps 10 ms at a time through each section and records how late",
           "it wakes up. On a quiet, dedicated machine it wakes within a millisecond. Where it wakes late, it waited",
           "for a CPU: other work had them, or the host was not running this virtual machine's CPUs at all. Every",
           "process a message crosses (bench, functions emulator, Python worker, Firestore emulator) waits the",
           "same way, so these stalls set a floor under every latency below that no engine change can lower.",
           "This run's machine was quiet: its figures are the engine's and the emulators'." if quiet else
           "This run's machine was not quiet: read its absolute figures with the stalls beside them.", "",
           "| section | time lost to late wake-ups | p50 | p99 | max | stalls over 100 ms a minute |",
           "|---|---|---|---|---|---|"]
    for name, s in rows:
        out.append(f"| {name} | {s['lost_share']:.0%} | {s['p50_ms']:.1f} ms | {s['p99_ms']:.0f} ms | "
                   f"{s['max_ms']:.0f} ms | {s['over_100ms_per_minute']:.0f} |")
    return out + [""]


def _f(value, fmt="{:,.0f}", missing="not measured") -> str:
    return missing if value is None else fmt.format(value)


def targets(results: dict) -> list[str]:
    """The targets next to this run's figures: met, or not, at a glance."""
    t, rows = TARGETS, []
    ops = results.get("ops")
    if ops:
        w = ops["per_message"]
        rows += [
            ("writes per 1:1 message, whole life", f"at most {t['writes']}", f"{w['writes']:.1f}", w["writes"] <= t["writes"]),
            ("reads per 1:1 message, whole life", f"at most {t['reads']}", f"{w['reads']:.1f}", w["reads"] <= t["reads"]),
            ("round trips per 1:1 message", f"at most {t['round_trips']}", f"{w['round_trips']:.1f}",
             w["round_trips"] <= t["round_trips"]),
            ("trigger invocations per message and recipient", f"at most {t['triggers']}",
             f"{ops['triggers_per_message']:.1f}", ops["triggers_per_message"] <= t["triggers"]),
        ]
        if ops.get("group"):
            extra = group_writes_per_extra_recipient(ops)
            rows.append(("writes per further online recipient of a group", f"at most {t['group_writes_per_recipient']}",
                         f"{extra:.1f}", extra <= t["group_writes_per_recipient"]))
    lat = results.get("latency") or {}
    if lat.get("floor"):
        ratio = lat["ratio_same_region_p95_to_floor_p95"]
        rows.append(("p95 send-to-inbox, same region, over the platform floor's p95", f"at most {t['latency_p95_to_floor']}",
                     f"{ratio:.2f} ({lat['same_region']['p95_ms']:,.0f} ms / {lat['floor']['p95_ms']:,.0f} ms)",
                     ratio <= t["latency_p95_to_floor"]))
    d = results.get("drain")
    if d:
        rows.append(("backlog drain, one worker", f"at least {t['drain_per_minute']:,} a minute, or at least"
                     f" {t['drain_to_raw']} of a plain writer's documents/s",
                     f"{d['messages_per_minute']:,.0f} a minute; {d['ratio_messages_to_raw_writes']:.3f} of"
                     f" {d['raw_batched_writes_per_s']:,.0f}/s",
                     d["messages_per_minute"] >= t["drain_per_minute"] or d["ratio_messages_to_raw_writes"] >= t["drain_to_raw"]))
    s = results.get("sync")
    if s:
        rows.append(("sync of 1,000 missed messages, over the same page queries alone", f"at most {t['sync_to_queries']}",
                     f"{s['ratio_to_page_queries']:.2f} ({s['seconds']:.2f} s / {s['page_queries_alone_s']:.2f} s)",
                     s["ratio_to_page_queries"] <= t["sync_to_queries"]))
        rows.append(("sync of 1,000 missed messages", f"under {t['sync_1000_s']} s where the machine is quiet",
                     f"{s['seconds']:.2f} s (stalls: {s['stalls']['lost_share']:.0%} of the time)" if s.get("stalls") else
                     f"{s['seconds']:.2f} s", s["seconds"] < t["sync_1000_s"]))
    for mode, run in (results.get("load") or {}).items():
        if mode == "faults" and isinstance(run, dict):
            rows.append((f"load run with faults at {run['rate']:g}/s", "every check 0; no INTERNAL answer",
                         f"{run['faults']['faulty_commit_share']:.1%} of commits faulty; checks"
                         f" {'all 0' if run['all_checks_zero'] else '**not all 0**'}", run["all_checks_zero"]))
        elif isinstance(run, dict) and run.get("verification"):
            held = run["highest_rate_held"]
            messages = run["verification"]["accepted_messages"]
            rows.append((f"load run, mode {mode}",
                         f"{t['load_users']:,} users and at least {t['load_min_messages']:,} messages; every check 0;"
                         " the highest rate held",
                         f"{run['setup']['users']:,} users, {messages:,} messages;"
                         f" checks {'all 0' if run['all_checks_zero'] else '**not all 0**'};"
                         f" held {_f(held, '{:.1f}/s', 'none')}",
                         run["setup"]["users"] >= t["load_users"] and messages >= t["load_min_messages"]
                         and run["all_checks_zero"] and held is not None))
            if mode == "engine":
                rows += _tail_rows(run)
    load = results.get("load") or {}
    hot = next((h for h in load.get("hot_chat", []) if h["senders"] == 20), None)
    if hot and hot.get("plain_writer"):
        rows.append(("hot chat, 20 senders: messages/s over a plain writer's conditional updates of one document from"
                     " 20 writers; lost races a message",
                     f"at least {t['hot_chat_to_plain_writer']}; at most {t['hot_chat_lost_races']:.0f}",
                     f"{hot['ratio_to_plain_writer']:.2f} ({hot['messages_per_s']:.1f}/s /"
                     f" {hot['plain_writer']['writes_per_s']:.1f}/s); {hot['failed_commits_per_message']:.1f}",
                     hot["ratio_to_plain_writer"] >= t["hot_chat_to_plain_writer"]
                     and hot["failed_commits_per_message"] <= t["hot_chat_lost_races"]))
    busy = load.get("busy_recipient")
    if busy:
        b = busy["busy"]
        rows.append((f"busy recipient ({busy['chats']} chats x {busy['rate_per_chat']:g}/s, {busy['devices']} devices"
                     " acking): p95 over one chat alone's; placed by their sends",
                     f"at most {t['busy_p95_to_quiet']:.0f}; at least {t['busy_placed_by_send']:.0%}",
                     f"{busy['ratio_p95_to_quiet']:.2f} ({b['p95_ms']:,.0f} ms / {busy['quiet']['p95_ms']:,.0f} ms);"
                     f" {b['placed_by_send_share']:.0%}",
                     busy["ratio_p95_to_quiet"] <= t["busy_p95_to_quiet"]
                     and b["placed_by_send_share"] >= t["busy_placed_by_send"]))
    ts = results.get("ts_client")
    if ts:
        lat, core = ts["latency"], ts["size"]["core"]
        rows.append(("TypeScript client: p95 sendMessage to onMessagesReceived, over the engine's own series' p95",
                     f"at most {ts['targets']['ratio_p95']}",
                     f"{lat['ratio_p95']:.2f} ({lat['client']['p95_ms']:,.0f} ms / {lat['engine']['p95_ms']:,.0f} ms)",
                     lat["ratio_p95"] <= ts["targets"]["ratio_p95"]))
        rows.append(("TypeScript client: the core, minified and gzipped, without firebase",
                     f"at most {ts['targets']['core_gzipped_bytes']:,} bytes", f"{core['gzipped_bytes']:,} bytes",
                     core["gzipped_bytes"] <= ts["targets"]["core_gzipped_bytes"]))
    if not rows:
        return []
    out = ["## Targets", "", "| figure | target | this run | met |", "|---|---|---|---|"]
    out += [f"| {name} | {target} | {value} | {'yes' if met else '**no**'} |" for name, target, value, met in rows]
    return out + [""]


def _tail_rows(run: dict) -> list[tuple[str, str, str, bool]]:
    """Issue 28's targets for the engine mode's load run: the highest rate held, and at every step
    held, p99 under 1 s and mean under 100 ms, or within 1.5 times the plain writer's at that step."""
    t = TARGETS
    held = run.get("highest_rate_held") or 0
    rows = [("load run, mode engine: the highest rate held", f"at least {t['load_min_rate_held']}/s",
             f"{held:.1f}/s", held >= t["load_min_rate_held"])]
    for step in run["steps"]:
        if not step["held"] or "p99_ms" not in step:
            continue
        plain = step.get("plain_writer") or {}
        near_floor = bool(plain) and (step["p99_ms"] <= t["load_to_plain_writer"] * plain["p99_ms"]
                                      and step["mean_ms"] <= t["load_to_plain_writer"] * plain["mean_ms"])
        rows.append((f"load run, mode engine, {step['target_rate']:g}/s: p99 and mean send-to-inbox",
                     f"under {t['load_p99_ms']:,} ms and {t['load_mean_ms']} ms, or within"
                     f" {t['load_to_plain_writer']} times the plain writer's",
                     f"{step['p99_ms']:,.0f} ms, {step['mean_ms']:,.0f} ms (plain writer"
                     f" {_f(plain.get('p99_ms'))} ms, {_f(plain.get('mean_ms'))} ms)",
                     (step["p99_ms"] < t["load_p99_ms"] and step["mean_ms"] < t["load_mean_ms"]) or near_floor))
    return rows


def _yardstick(meta: dict) -> str:
    """The CPU's pace (benchmarks/speed.py) at the run's start and end: what a slower CPU does the stall probe misses."""
    start, end = meta.get("yardstick_ms_at_start"), meta.get("yardstick_ms_at_end")
    if not start:
        return "its CPU's pace not measured"
    return (f"the CPU yardstick (benchmarks/speed.py: the engine's kind of work, fixed) took {start:.0f} ms at the"
            f" start and {_f(end)} ms at the end; times on a machine whose yardstick is slower are slower by about"
            " as much")


def markdown(results: dict, image: str | None) -> str:
    meta = results["meta"]
    out = [
        "# Benchmarks",
        "",
        f"Rendered by `scripts/bench` from `{meta['json']}` ({meta['mode']} mode, started {meta['started']},"
        f" {meta['seconds']:.0f} s), commit {meta.get('commit', 'unknown')}; its figures are in"
        f" `docs/BENCHMARKS.json`, which the next run compares itself with. Machine: {meta['machine']};"
        f" {_yardstick(meta)}.",
        "Load average (1/5/15 min) when each section finished is noted next to it (the machine has 2 cores: a load of 20 means",
        "ten times more work waiting than cores); these machines are shared,",
        "and the emulators are slower than Firestore. Compare ratios rather than absolute figures.",
        "",
        "Reproduce: `scripts/bench --quick` (small sizes, for CI) or `scripts/bench` (full: 10,000 users, 10,000-message backlog).",
        "What the engine changed because of these numbers, with before and after: `docs/BENCHMARK-CHANGES.md`.",
        "",
    ]
    if meta.get("compared"):
        out += ["## Against the previous page", "", *meta["compared"], ""]
    out += targets(results)
    out += stalls(results)
    lat = results.get("latency")
    if lat:
        out += ["## Send-to-inbox latency", "",
                "HTTP POST to `pack427_sendMessage` (functions emulator, Auth emulator ID token), the inbox",
                "entry seen by a real-time listener. Beside it, message by message, the platform's floor",
                "(`scripts/benchmarks/floor`): a callable that writes one document and a trigger on it that",
                "writes the inbox document, watched by the same listener: what any engine built of a callable",
                "and a trigger pays on this machine.",
                f"Load: {lat.get('load', '?')}.", "",
                "The answer columns are the part the sender waits for.", "",
                "| series | n | p50 | p95 | p99 | answer p50 | answer p95 | seed p95 |",
                "|---|---|---|---|---|---|---|---|"]
        names = {"same_region": ("engine, same region", f"{SEED['p95_same_region_ms']} ms"),
                 "cross_region": ("engine, cross region", f"{SEED['p95_cross_region_ms']} ms"),
                 "floor": ("platform floor", "-")}
        for label, (name, seed) in names.items():
            r = lat.get(label)
            if r:
                out.append(f"| {name} | {r['messages']} | {r['p50_ms']:.0f} ms | {r['p95_ms']:.0f} ms"
                           f" | {r['p99_ms']:.0f} ms | {_f(r.get('answer_p50_ms'), '{:,.0f} ms')}"
                           f" | {_f(r.get('answer_p95_ms'), '{:,.0f} ms')} | {seed} |")
        if lat.get("floor"):
            out += ["", f"Same-region p95 over the floor's p95: **{lat['ratio_same_region_p95_to_floor_p95']:.2f}**"
                        f" (target at most {TARGETS['latency_p95_to_floor']})."]
        if image:
            out += ["", f"![latency histogram]({image})"]
        out.append("")
    d = results.get("drain")
    if d:
        out += ["## Backlog drain, one worker", "",
                f"{d['messages']:,} queued messages (100 recipients, 50 chats), `processor.drain` in one process.",
                f"Load: {d.get('load', '?')}.", "",
                "| figure | value |", "|---|---|",
                f"| messages per minute | {d['messages_per_minute']:,.0f} (target {TARGETS['drain_per_minute']:,}, seed {SEED['drain_per_minute']}) |",
                f"| a plain writer's batched writes (500 a commit, no engine code) | {d['raw_batched_writes_per_s']:,.0f} documents/s |",
                f"| delivery's writes | {d['delivery_writes_per_s']:,.0f} documents/s |",
                f"| ratio delivery writes / raw writes | {d['ratio_delivery_writes_to_raw_writes']:.2f} |",
                f"| messages per minute / raw writes per minute | {d['ratio_messages_to_raw_writes']:.3f} (target at least {TARGETS['drain_to_raw']}) |"]
        if d.get("ops_per_message"):
            o = d["ops_per_message"]
            out.append(f"| Firestore ops per drained message | {o['reads']:.2f} reads, {o['writes']:.2f} writes, "
                       f"{o['transactions']:.0f} transactions, {o['round_trips']:.2f} round trips |")
        out.append("")
    ops = results.get("ops")
    if ops:
        out += ["## Firestore operations per message", "",
                "Counted by wrapping the google-cloud-firestore client's RPC methods in process",
                "(`scripts/benchmarks/opcount.py`): billed reads (documents asked for or returned, at least one",
                "per query; a count aggregation as one), writes, transactions, round trips; trigger invocations",
                "are the documents created where a trigger fires (queue entries). One message, one online",
                f"recipient, averaged over {ops['lives']} lives after a warm-up. Load: {ops.get('load', '?')}.", "",
                "| stage | function | reads | writes | transactions | round trips |", "|---|---|---|---|---|---|"]
        for stage, fn in STAGE_FUNCTIONS.items():
            c = ops["stages"][stage]["counts"]
            out.append(f"| {stage} | {fn} | {c['reads']:.1f} | {c['writes']:.1f} | {c['transactions']:.0f} | {c['round_trips']:.1f} |")
        w = ops["per_message"]
        out += [f"| **whole life** | | **{w['reads']:.1f}** | **{w['writes']:.1f}** | **{w['transactions']:.0f}** | **{w['round_trips']:.1f}** |", "",
                f"Trigger invocations per message and recipient: **{ops['triggers_per_message']:.1f}**"
                f" (budget {TARGETS['triggers']}). Queue writes per message: {ops['queue_writes_per_message']:.1f}"
                f" (seed: ~{ops['seed']['queue_writes_per_message']}, enqueue + delivered); inbox-head writes (seq,"
                f" unread counts, read and ack positions): {ops['unread_writes_per_message']:.1f} (seed: {ops['seed']['unread_writes_per_message']}"
                " unread-counter write per message and recipient, plus one when it is read).", ""]
        g = ops.get("group")
        if g:
            c = g["send_and_deliver"]["counts"]
            out += [f"A group of {g['members']} members, all online: a message's send and delivery cost {c['writes']:.1f} writes,"
                    f" {c['reads']:.1f} reads, {c['round_trips']:.1f} round trips and {g['triggers_per_message']:.1f} trigger"
                    f" invocations; each recipient beyond the first adds **{group_writes_per_extra_recipient(ops):.1f}**"
                    f" writes (budget {TARGETS['group_writes_per_recipient']}).", ""]
        out += ["By collection (per message; creates are counted among the writes too):", "",
                "| operation:collection | per message |", "|---|---|"]
        out += [f"| {k} | {v:.1f} |" for k, v in ops["by_collection"].items()]
        out.append("")
    s = results.get("sync")
    if s:
        out += ["## Offline catch-up", "",
                f"One device syncs {s['messages']:,} missed messages (10 chats) page by page with",
                "`sync.sync_messages` in process (the callable's service; the HTTP hop adds a round trip per page).",
                f"Load: {s.get('load', '?')}.", "",
                f"- {s['messages']:,} messages in {s['pages']} pages: **{s['seconds']:.2f} s** "
                f"(target under {TARGETS['sync_1000_s']} s where the machine is quiet, seed {SEED['sync_1000_s']:.0f} s)"]
        if s.get("ops"):
            o = s["ops"]
            out.append(f"- Firestore: {o['reads']} reads, {o['writes']} writes, {o['round_trips']} round trips in all")
        if s.get("page_queries_alone_s"):
            out.append(f"- the same {s['pages']} inbox page queries alone, back to back: {s['page_queries_alone_s']:.2f} s "
                       f"(ratio sync / queries alone **{s['ratio_to_page_queries']:.2f}**, target at most "
                       f"{TARGETS['sync_to_queries']}): the emulator scans a "
                       "collection for every query, so this floor grows with the inbox; Firestore serves them from an index")
        out.append("")
    if results.get("fanout"):
        out += fanout_section(results["fanout"])
    la = results.get("lanes")
    if la:
        out += ["## Priority lanes", "",
                f"{la['backlog']:,} normal messages queued in one region, then one priority message and one normal one,",
                "to recipients of their own; one worker drains the queue (`processor.drain`), each round a batch of the",
                "priority lane first, then a batch of every due entry oldest first. Waits from the drain's start."
                f" Load: {la.get('load', '?')}; " + _stall_phrase(la.get("stalls")) + ".", "",
                "| message | delivered after | round |", "|---|---|---|",
                f"| priority | {la['priority_wait']['seconds']:.2f} s | {la['priority_wait']['rounds']} |",
                f"| normal, queued at the same moment | {la['normal_wait']['seconds']:.2f} s | {la['normal_wait']['rounds']} |",
                "", f"Ratio of the waits **{la['ratio_priority_to_normal_wait']:.3f}**; the whole drain took"
                f" {la['drain_seconds']:.1f} s in {la['rounds']} rounds.", ""]
    if results.get("load"):
        out += load_section(results["load"])
    c = results.get("cold_start")
    if c:
        out += ["## Cold start", "",
                f"Import time in a fresh interpreter, median of {c['repeats']} (alternated). Load: {c.get('load', '?')}.", "",
                f"- bare SDKs (firebase_functions, firebase_admin, google.cloud.firestore): {c['sdk_import_s']:.2f} s",
                f"- `functions/main.py` (SDKs + the engine + `initialize_app`): {c['main_import_s']:.2f} s"
                f" (ratio {c['ratio_main_to_sdks']:.2f}, engine's own {c['engine_overhead_s']:+.2f} s)", ""]
    if results.get("ts_client"):
        out += ts_client_section(results["ts_client"])
    if results.get("web_chat"):
        out += web_chat_section(results["web_chat"])
    missing = [name for name in SECTIONS if name not in results]
    if missing:
        out += ["## Not measured in this run", "",
                f"Sections left out of this run: {', '.join(missing)} (`scripts/bench --only ...` chose the others,",
                "or they need the emulator suite). Run `scripts/bench` for every section.", ""]
    if results.get("notes"):
        out += ["## Notes", ""] + [f"- {n}" for n in results["notes"]] + [""]
    return "\n".join(out)


def ts_client_section(ts: dict) -> list[str]:
    """The TypeScript client: its delivery latency next to the engine's own series, and its size."""
    lat, size = ts["latency"], ts["size"]
    c, e = lat["client"], lat["engine"]
    return ["## The TypeScript client (client-ts)", "",
            "From `sendMessage` in one `@pack427/client` to `onMessagesReceived` in another (the recipient's inbox",
            "listener, the message stored, then handed over), message by message alternated with the engine's own",
            "series: `pack427_sendMessage` called directly, the inbox entry seen by a bare Firestore listener. Both on",
            "the official JS SDK (Node), on the same suite, at the same moments (client-ts/bench/latency.mjs)."
            f" Load: {ts.get('load', '?')}; " + _stall_phrase(ts.get("stalls")) + ".", "",
            "| series | messages | p50 | p95 | p99 |", "|---|---|---|---|---|",
            f"| client: sendMessage to onMessagesReceived | {c['messages']} | {c['p50_ms']:.0f} ms | {c['p95_ms']:.0f} ms |"
            f" {c['p99_ms']:.0f} ms |",
            f"| engine: callable to inbox listener | {e['messages']} | {e['p50_ms']:.0f} ms | {e['p95_ms']:.0f} ms |"
            f" {e['p99_ms']:.0f} ms |", "",
            f"Ratio client / engine: p50 **{lat['ratio_p50']:.2f}**, p95 **{lat['ratio_p95']:.2f}** (target at most"
            f" {ts['targets']['ratio_p95']}).", "",
            f"Size without firebase (esbuild, minified, gzip -9): the core {size['core']['minified_bytes']:,} bytes"
            f" minified, **{size['core']['gzipped_bytes']:,} bytes gzipped** (target at most"
            f" {ts['targets']['core_gzipped_bytes']:,}); with the React hooks {size['react']['gzipped_bytes']:,} bytes"
            " gzipped (react not included).", ""]


def web_chat_section(web: dict) -> list[str]:
    """The web chat in the real browser: the chat list's first render after sign-in, and send to render."""
    f, s = web["first_render"], web["send_to_render"]
    return ["## The web chat in the browser (examples/web-chat)", "",
            f"The app built and served on localhost, in {web['browser']} driven by playwright-core",
            "(examples/web-chat/bench/bench.mjs), timed inside the pages. First render: from the click on",
            "\"Sign in as Ann\" in a fresh window (no storage, no cache) until her chats are listed (the Auth",
            "emulator's sign-in, then the chat list's first Firestore snapshot). Send to render: from Send in",
            "Ann's window until the message is on Bea's page (the outbox, `pack427_sendMessage`, Bea's inbox",
            "listener, the render), one message at a time, both windows open on the chat."
            f" Load: {web.get('load', '?')}; " + _stall_phrase(web.get("stalls")) + ".", "",
            "| measure | n | p50 | p95 | max |", "|---|---|---|---|---|",
            f"| chat list, first render after sign-in | {f['n']} | {f['p50_ms']:.0f} ms | {f['p95_ms']:.0f} ms |"
            f" {f['max_ms']:.0f} ms |",
            f"| send to render on the other page | {s['n']} | {s['p50_ms']:.0f} ms | {s['p95_ms']:.0f} ms |"
            f" {s['max_ms']:.0f} ms |", ""]


def fanout_section(fanout: dict) -> list[str]:
    """Large groups: time until the last member has a message, next to a plain writer's time for the same documents."""
    out = ["## Large groups (fan-out)", "",
           "One send to a group of N members (all online), timed from the call until the last member's inbox has",
           "the message: the send commits the message with its fan-out job, and the fan-out worker (in process, as",
           "`pack427_onFanOut` runs it, without the trigger's own hop) commits the members in chunks of "
           f"{fanout.get('chunk', '?')}, one after the other. The plain writer",
           "puts copies of the two documents each member got (the inbox entry and the head the fan-out wrote) into",
           f"the same emulator, 500 a commit, no engine code. Load: {fanout.get('load', '?')}; "
           + _stall_phrase(fanout.get("stalls")) + ".", "",
           "| members | send accepted | last member has it | members/s | plain writer, 2 documents a member | ratio | reads a member | writes a member |",
           "|---|---|---|---|---|---|---|---|"]
    for g in fanout["groups"]:
        o = g["ops_per_member"]
        out.append(f"| {g['members']:,} | {g['send_accepted_s'] * 1000:.0f} ms | {g['last_member_s']:.1f} s"
                   f" | {g['members_per_s']:,.0f} | {g['plain_writer_s']:.1f} s | **{g['ratio_to_plain_writer']:.2f}**"
                   f" | {o['reads']:.2f} | {o['writes']:.2f} |")
    out.append("")
    if fanout.get("through_suite"):
        out += ["Through the emulator suite: the callable over HTTP, the real `pack427_onFanOut` in the Functions",
                "emulator's Python worker (the trigger's hop included), timed until the worker cleared the chat's",
                "`fanOutPending` after the last member's commit (the first row includes the cold start of both functions' workers):", "",
                "| members | send accepted | last member has it | members/s |", "|---|---|---|---|"]
        out += [f"| {g['members']:,} | {g['send_accepted_s'] * 1000:.0f} ms | {g['last_member_s']:.1f} s"
                f" | {g['members_per_s']:,.0f} |" for g in fanout["through_suite"]]
        out.append("")
    return out


def _stall_phrase(stalls: dict | None) -> str:
    if not stalls or not stalls.get("samples"):
        return "no stall samples"
    return f"wake-ups late {stalls['lost_share']:.0%} of the time (p99 {stalls['p99_ms']:.0f} ms)"


def load_section(load: dict) -> list[str]:
    """The load run, each mode: its steps with the stalls beside them, and its checks."""
    from benchmarks import load as load_run

    out = ["## Load run", "",
           "Simulated users with a registered device each, a fifth offline (push path), in direct chats and groups",
           "of 3 to 50; operations arrive as a Poisson process in a fixed mix (shares: "
           + ", ".join(f"{k} {v:.0%}" for k, v in load_run.MIX.items())
           + "); the rate counts the sends. Each step follows an untimed warm-up at its rate (10 s: the functions",
           "emulator starts a Python worker, seconds each, whenever all of a function's are busy). A step is held",
           "when its send-to-inbox p95 (every recipient) is under 1 s, every message reached every inbox and no",
           "call failed; the run stops at the first step not held.",
           "Mode `engine`: the callables' services in process on 20 simulated instances, each queue entry (or fan-out",
           "job) a commit created handed, as read off the commit, to the trigger's service on 8 more (2 for fan-outs).",
           "Mode `suite`: real callables over",
           "HTTP and the suite's real trigger. After each step, a plain writer writes the documents the step's sends",
           "placed (message, idempotency record, chat, rate window, each recipient's inbox entry and head) at the",
           "same moments, on the same emulator: where the engine comes near it, the emulator is the limit. CPU a",
           "message: what the emulator's JVM and the bench's own process (engine, clients, bench) used in the step,",
           "over its messages (comparable between commits on machines of the same yardstick), and the rate at which",
           "that would keep every core of the machine busy (its ceiling, mode engine only: a step near it is limited",
           "by the machine; in mode suite the functions emulator's workers, not counted, run the engine).",
           ""]
    for mode, run in load.items():
        if not isinstance(run, dict) or "steps" not in run:
            continue
        st, v = run["setup"], run["verification"]
        out += [f"### Mode {mode}", "",
                f"{st['users']:,} users ({st['offline']:,} offline), {st['direct_chats']:,} direct chats, {st['groups']}"
                f" groups ({st['group_members']:,} memberships); devices registered in {st['register_devices_s']:.0f} s."
                f" Load: {run.get('load', '?')}.", "",
                "| rate (messages/s) | messages | achieved | deliveries | p50 | p95 | p99 | p99.9 | mean"
                " | plain writer p99 / mean | lost races a message | CPU a message: emulator / engine and bench (ceiling)"
                " | undelivered | errors | held | time lost to stalls |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for step in run["steps"]:
            stalls, plain, cpu = step.get("stalls") or {}, step.get("plain_writer") or {}, step.get("cpu") or {}
            out.append(f"| {step['target_rate']} | {step['messages']:,} | {step['achieved_rate']:.1f}/s | {step['deliveries']:,}"
                       f" | {_f(step.get('p50_ms'))} ms | {_f(step.get('p95_ms'))} ms | {_f(step.get('p99_ms'))} ms"
                       f" | {_f(step.get('p999_ms'))} ms | {_f(step.get('mean_ms'))} ms"
                       f" | {_f(plain.get('p99_ms'), missing='-')} / {_f(plain.get('mean_ms'), missing='-')} ms"
                       f" | {_f(step.get('lost_races_per_message'), '{:.2f}', '-')}"
                       f" | {_f(cpu.get('emulator_ms_per_message'), missing='-')} / "
                       f"{_f(cpu.get('bench_process_ms_per_message'), missing='-')} ms"
                       f" ({_f(cpu.get('ceiling_messages_per_s') if mode == 'engine' else None, '{:.0f}/s', '-')})"
                       f" | {step['undelivered_after_wait']} | {step['errors']} | {'yes' if step['held'] else '**no**'}"
                       f" | {_f(stalls.get('lost_share'), '{:.0%}', '-')} |")
        queried = [step for step in run["steps"] if (step.get("queries") or {}).get("per_message")]
        if queried:
            out += ["", "The emulator's time on queries a message (each shape's queries a message times the best of"
                    f" {load_run.QUERY_REPLAYS} answers to it after the step: the emulator walks every document of the"
                    " query's collection id, production Firestore reads an index): "
                    + "; ".join(f"{s['target_rate']}/s {s['queries']['emulator_ms_per_message']:.0f} ms"
                                f" ({sum(s['queries']['per_message'].values()):.2f} queries)" for s in queried) + "."]
        top = " (every step of the ladder held: the limit is above it)" if all(x["held"] for x in run["steps"]) else ""
        out += ["", f"Highest rate held: **{_f(run['highest_rate_held'], '{:.1f} messages/s', 'none')}**{top}.", "",
                "Checks after the run (each must be 0): "
                + ", ".join(f"{k.replace('_', ' ')} **{v[k]}**" for k in load_run.ZERO_CHECKS) + ".",
                f"Of {v['accepted_messages']:,} messages ({v['expected_deliveries']:,} deliveries, {v['inbox_entries']:,}"
                f" inbox entries), {v['unread_counts_checked']:,} unread counts recounted, {v['offline_devices']:,} offline"
                f" devices caught up by sync, {v['duplicate_sends']:,} sends repeated with their clientMessageId; call errors:"
                f" {v['call_errors'] or 'none'}; one scheduled-processor pass delivered"
                f" {v['delivered_by_the_scheduled_processor']:,} before the checks.", ""]
        if run.get("paths"):
            o = run["ops_per_delivery"]
            out += ["Deliveries by path (send: the send's own commit; trigger and processor: a queue entry awaiting"
                    " its inbox): " + ", ".join(f"{p} {r['share']:.1%} (p99 {r['p99_ms']:,.0f} ms)"
                                                for p, r in run["paths"].items()) + ".", ""]
            if o:  # mode engine only: in mode suite the engine's calls are the functions emulator's
                out += [f"The whole mix per delivered message ({o['deliveries']:,} deliveries of {o['messages']:,}"
                        f" messages, the op counter over every operation of the steps): {o['reads']:.2f} reads,"
                        f" {o['writes']:.2f} writes, {o['round_trips']:.2f} round trips, {o['failed_commits']:.2f}"
                        " lost races.", ""]
            if run.get("queries_per_message"):
                out += ["Queries per message over the mix, by shape (on the emulator each one scans every document"
                        " of its collection id; Firestore answers them from indexes): "
                        + "; ".join(f"{n:.2f} `{shape}`" for shape, n in run["queries_per_message"].items()) + ".", ""]
    if load.get("faults"):
        out += faults_section(load["faults"])
    if load.get("hot_chat"):
        out += ["### One hot chat", "",
                "N members of one chat send 10 messages each, as fast as they go, each on an instance of its own",
                "(engine, in process): every send writes the chat conditionally, so they serialise on it. Beside it,",
                "the floor of any design that orders a chat on one document: a plain writer's conditional updates of",
                "one document from N writers, as many, on the same emulator. A group's send that lost its two",
                "placing attempts commits a fan-out job instead (no recipient's head in its commit), and so does every",
                "send after it while the chat has a message in fan-out; after the sends, their jobs are run and the",
                "queues drained as their triggers would, and every inbox is counted.", "",
                "| senders | messages/s | lost races a message | round trips a message | plain writer: updates/s"
                " | its lost races an update | engine over plain writer | every message in every inbox after"
                " | undelivered |", "|---|---|---|---|---|---|---|---|---|"]
        for h in load["hot_chat"]:
            plain = h.get("plain_writer") or {}
            out.append(f"| {h['senders']} | {h['messages_per_s']:.1f} | {h['failed_commits_per_message']:.2f} |"
                       f" {h['round_trips_per_message']:.1f} | {_f(plain.get('writes_per_s'), '{:.1f}', '-')} |"
                       f" {_f(plain.get('lost_races_per_write'), '{:.2f}', '-')} |"
                       f" {_f(h.get('ratio_to_plain_writer'), '{:.2f}', '-')} |"
                       f" {_f(h.get('all_delivered_s'), '{:.1f} s', '-')} | {_f(h.get('undelivered'), missing='-')} |")
        out.append("")
    busy = load.get("busy_recipient")
    if busy:
        q, b = busy["quiet"], busy["busy"]
        out += ["### A busy recipient", "",
                f"One recipient receives from {busy['chats']} direct chats at once, {busy['rate_per_chat']:g} messages/s"
                f" each (Poisson), for {busy['seconds']:.0f} s, while {busy['devices']} of their devices sync and ack"
                " every 200 ms; before it, the same recipient from one chat alone, without devices.", "",
                "| | messages | p50 | p95 | p99 | mean | placed by their sends | lost races a message |",
                "|---|---|---|---|---|---|---|---|"]
        for label, r in (("one chat alone", q), ("busy", b)):
            out.append(f"| {label} | {r['messages']} | {r['p50_ms']:,.0f} ms | {r['p95_ms']:,.0f} ms |"
                       f" {r['p99_ms']:,.0f} ms | {r['mean_ms']:,.0f} ms | {r['placed_by_send_share']:.0%} |"
                       f" {r['lost_races_per_message']:.2f} |")
        out += ["", f"p95 busy over alone: {busy['ratio_p95_to_quiet']:.2f}.", ""]
    return out


FAULT_KINDS = {
    "commit_failed": "a commit failed before it was sent (ServiceUnavailable)",
    "answer_lost": "a commit applied, its answer lost (DeadlineExceeded to the caller)",
    "answer_lost_resent": "a commit applied, its answer lost, the client library sent it again",
    "worker_died": "a worker died after a commit of its job",
    "event_duplicated": "a trigger event handed again, 0.5-3 s later",
    "event_duplicated_concurrently": "a trigger event handed to two instances at once",
    "read_unavailable": "a get, get_all, query or count refused (ServiceUnavailable)",
}


def faults_section(run: dict) -> list[str]:
    """The load run with faults (`scripts/bench --only load --faults`): both steps, the faults by kind, the checks."""
    st, v, f, seen = run["setup"], run["verification"], run["faults"], run["seen"]
    calls, mix = f["calls"], f["mix"]
    out = ["### Mode engine with faults", "",
           f"`scripts/bench --only load --faults`: {st['users']:,} users ({st['offline']:,} offline), the same mix, a step"
           f" without faults then one with, both at {run['rate']:g} messages/s for {run['step_seconds']:g} s, the"
           f" processor every {run['processor_every_s']:g} s, and beside the mix a message every"
           f" {run['large_group']['every_s']:g} s to a group of {run['large_group']['members']} (a fan-out job). Faults"
           " are injected in the engine's Firestore client (scripts/benchmarks/faults.py): of commits"
           f" {mix['commit_failed']:.1%} fail before they are sent and {mix['answer_lost']:.1%} apply with their"
           f" answer lost; of a job's other commits (bulk delivery, fan-out chunk, a chat's queued messages,"
           f" an offline placement) {mix['worker_died']:.0%} are the last of their worker; {mix['event_duplicated']:.0%}"
           f" of trigger events are handed twice; {mix['read_unavailable']:.0%} of reads are refused. The simulated"
           " app retries an UNAVAILABLE or ABORTED call with the same data. Load: " + f"{run.get('load', '?')}.", "",
           "| step | messages | deliveries | p50 | p95 | p99 | max | undelivered | errors after the app's retries"
           " | app retries | large group: messages, p95 / p99 | time lost to stalls |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, name in (("fault_free", "without faults"), ("faulty", "with faults")):
        step = run.get(label) or {}
        if not step:
            continue
        big, stalls = step.get("large_group") or {}, step.get("stalls") or {}
        out.append(f"| {name} | {step['messages']:,} | {step['deliveries']:,} | {_f(step.get('p50_ms'))} ms"
                   f" | {_f(step.get('p95_ms'))} ms | {_f(step.get('p99_ms'))} ms | {_f(step.get('max_ms'))} ms"
                   f" | {step['undelivered_after_wait']} | {step['errors']} | {step['client_retries']}"
                   f" | {big.get('messages', 0)}, {_f(big.get('p95_ms'), missing='-')} / {_f(big.get('p99_ms'), missing='-')} ms"
                   f" | {_f(stalls.get('lost_share'), '{:.0%}', '-')} |")
    out += ["", f"Injected in the faulty step: {f['faulty_commit_share']:.1%} of {calls.get('commits', 0):,} commits,"
            f" {f['refused_read_share']:.1%} of {calls.get('reads', 0):,} reads,"
            f" {f['duplicated_event_share']:.1%} of {calls.get('events', 0):,} trigger events.", "",
            "| fault | injected |", "|---|---|"]
    for kind, what in FAULT_KINDS.items():
        out.append(f"| {what} | {f['injected'].get(kind, 0):,} |")
    died = {k.split(":", 1)[1]: n for k, n in f["injected"].items() if k.startswith("worker_died:")}
    out += ["", "Workers that died, by job: " + (", ".join(f"{k} {n}" for k, n in died.items()) or "none") + ".",
            f"What the engine and the app saw: the app repeated {sum(seen['client_retries'].values()):,} calls"
            f" ({', '.join(f'{k} {n}' for k, n in seen['client_retries'].items()) or 'none'}); {seen['trigger_runs']:,}"
            " trigger runs (" + ", ".join(f"{k} {n:,}" for k, n in seen["trigger_outcomes"].items()) + "); processor runs "
            + ", ".join(f"{k} {n}" for k, n in seen["processor_runs"].items()) + ", which delivered"
            f" {seen['processor_outcomes'].get('delivered', 0):,}; INTERNAL answers {sum(seen['internal'].values())}.", "",
            "Checks after the run (each must be 0): "
            + ", ".join(f"{k.replace('_', ' ')} **{v[k]}**" for k in run["checks"]) + ".",
            f"Of {v['accepted_messages']:,} messages ({v['expected_deliveries']:,} deliveries, {v['inbox_entries']:,} inbox"
            f" entries), {v['unread_counts_checked']:,} unread counts recounted, {v['offline_devices']:,} offline devices"
            f" caught up by sync, {v['duplicate_sends']:,} sends repeated with their clientMessageId.", ""]
    return out


def render(results: dict, docs: Path) -> None:
    """Write docs/BENCHMARKS.md, the figures it was rendered from (docs/BENCHMARKS.json, which the next
    run compares itself with: benchmarks/compare.py) and docs/bench-latency.png (when there are samples)."""
    from benchmarks import compare

    docs.mkdir(parents=True, exist_ok=True)
    image = "bench-latency.png" if histogram(results, docs / "bench-latency.png") else None
    figures = compare.digest(results)
    (docs / "BENCHMARKS.json").write_text(json.dumps(figures, indent=1) + "\n")
    (docs / "BENCHMARKS.md").write_text(markdown(figures, image))


def merge(files: list[Path]) -> dict:
    """Results of several runs (`--only` some sections each) as one: later files add their sections."""
    merged: dict = {}
    for path in files:
        results = json.loads(path.read_text())
        meta = results.pop("meta")
        if "meta" not in merged:
            merged["meta"] = dict(meta)
        else:
            merged["meta"]["json"] += f" + {meta['json']}"
            merged["meta"]["seconds"] += meta["seconds"]
            merged["meta"]["started"] += f" / {meta['started']}"
        merged.update(results)
    return merged


if __name__ == "__main__":
    # python scripts/benchmarks/report.py RESULTS.json [MORE.json ...]: renders into docs/
    ROOT = Path(__file__).resolve().parents[2]
    sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "functions"), str(ROOT / "client")]
    render(merge([Path(a) for a in sys.argv[1:]]), ROOT / "docs")
