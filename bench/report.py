"""One `bench.suite` run as medians, per-run ratios, target verdicts, a table and a chart."""

from __future__ import annotations

import json
import re
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

CPU_TARGET = 2 / 3  # Socialhub's server CPU per call against the seed-000 baseline's
EMPTY_RPC_TARGET = 1.25  # GetProfile cache hit against the empty RPC
DEEP_PAGE_TARGET = 1.2  # ListProfiles page 1,000 p50 against the first page's
STREAM_TARGET = 0.5  # StreamProfilePosts rows/s against raw cursor + protobuf
METRICS = ("calls_per_s", "p50_ms", "p90_ms", "p99_ms", "server_cpu_us_per_call")
START, END = "<!-- bench:results:start -->", "<!-- bench:results:end -->"
# The HTTP peers, as `system` names the rows: the targets are set against the first.
PEERS = ("baseline", "lean")


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _by_repeat(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[int, dict[str, Any]]]:
    table: dict[tuple[str, str], dict[int, dict[str, Any]]] = defaultdict(dict)
    for row in rows:
        table[(row["system"], row["scenario"])][row["repeat"]] = row
    return table


def _ratio(
    table: dict[tuple[str, str], dict[int, dict[str, Any]]],
    numerator: tuple[str, str],
    denominator: tuple[str, str],
    metric: str,
) -> float:
    """The median over repeats of a ratio taken within each repeat."""
    ratios = [
        row[metric] / table[denominator][repeat][metric]
        for repeat, row in table[numerator].items()
        if repeat in table[denominator] and table[denominator][repeat][metric]
    ]
    return round(_median(ratios), 3)


def summarize(run: dict[str, Any]) -> dict[str, Any]:
    rows = run["results"]
    table = _by_repeat(rows)
    medians = []
    for (system, scenario), repeats in table.items():
        entry: dict[str, Any] = {"system": system, "scenario": scenario}
        for metric in (*METRICS, "backing_cpu_us_per_call", "client_cpu_us_per_call"):
            values = [r[metric] for r in repeats.values() if r.get(metric) is not None]
            entry[metric] = round(_median(values), 1) if values else None
        entry["errors"] = sum(r["errors"] for r in repeats.values())
        entry["compared_with"] = next(iter(repeats.values()))["compared_with"]
        medians.append(entry)
    comparisons = []
    for entry in medians:
        if entry["system"] != "socialhub" or not entry["compared_with"]:
            continue
        ours = ("socialhub", entry["scenario"])
        # Ratios against each peer that ran the scenario ("lean" is absent from older runs).
        ratios = {
            peer: _ratios(table, ours, (peer, entry["compared_with"]))
            for peer in PEERS
            if (peer, entry["compared_with"]) in table
        }
        seed = ratios["baseline"]
        comparisons.append(
            {
                "scenario": entry["scenario"],
                "baseline": entry["compared_with"],
                **seed,
                "met": seed["cpu_ratio"] <= CPU_TARGET
                and seed["throughput_ratio"] >= 1
                and seed["p99_ratio"] <= 1,
                "lean": ratios.get("lean"),
            }
        )
    return {
        "medians": medians,
        "comparisons": comparisons,
        "targets": _targets(table, run),
        "scaling": run.get("scaling", []),
    }


def _ratios(
    table: dict[tuple[str, str], dict[int, dict[str, Any]]],
    ours: tuple[str, str],
    theirs: tuple[str, str],
) -> dict[str, float]:
    return {
        "cpu_ratio": _ratio(table, ours, theirs, "server_cpu_us_per_call"),
        "throughput_ratio": _ratio(table, ours, theirs, "calls_per_s"),
        "p99_ratio": _ratio(table, ours, theirs, "p99_ms"),
    }


def _targets(
    table: dict[tuple[str, str], dict[int, dict[str, Any]]], run: dict[str, Any]
) -> list[dict[str, Any]]:
    hit = _ratio(
        table,
        ("socialhub", "GetProfile (cache hit)"),
        ("floor", "empty RPC"),
        "server_cpu_us_per_call",
    )
    deep = next(s for (_, s) in table if s.startswith("ListProfiles page") and "off" not in s)
    deep_ratio = _ratio(
        table, ("socialhub", deep), ("socialhub", "ListProfiles first page"), "p50_ms"
    )
    deep_off = _ratio(
        table,
        ("socialhub", f"{deep} (cache off)"),
        ("socialhub", "ListProfiles first page (cache off)"),
        "p50_ms",
    )
    stream = run["streaming"]
    stream_ratio = round(
        _median(stream["posts_per_s"]) / _median(stream["raw_cursor_protobuf_rows_per_s"]), 3
    )
    rss_growth = round(max(stream["server_rss_peak_mib"]) - stream["server_rss_before_mib"], 1)
    return [
        {
            "target": "GetProfile cache hit: server CPU/call <= 1.25x the empty RPC's",
            "value": hit,
            "met": hit <= EMPTY_RPC_TARGET,
        },
        {
            "target": f"{deep}: p50 <= 1.2x the first page's",
            "value": deep_ratio,
            "met": deep_ratio <= DEEP_PAGE_TARGET,
        },
        {
            "target": f"{deep}, cache off: p50 <= 1.2x the first page's (cache off)",
            "value": deep_off,
            "met": deep_off <= DEEP_PAGE_TARGET,
        },
        {
            "target": "StreamProfilePosts: rows/s >= 0.5x raw cursor + protobuf",
            "value": stream_ratio,
            "met": stream_ratio >= STREAM_TARGET,
        },
        {
            "target": f"StreamProfilePosts: server RSS growth over {stream['posts']:,} posts (MiB)",
            "value": rss_growth,
            "met": rss_growth < 64,
        },
    ]


def _number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def markdown_table(summary: dict[str, Any]) -> str:
    lines = [
        "| system | scenario | calls/s | p50 ms | p90 ms | p99 ms | server CPU µs/call"
        " | DB+Redis CPU µs/call | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in summary["medians"]:
        lines.append(
            f"| {m['system']} | {m['scenario']} | {_number(m['calls_per_s'])}"
            f" | {_number(m['p50_ms'], 2)} | {_number(m['p90_ms'], 2)} | {_number(m['p99_ms'], 2)}"
            f" | {_number(m['server_cpu_us_per_call'])} | {_number(m['backing_cpu_us_per_call'])}"
            f" | {m['errors']} |"
        )
    lines += [
        "",
        "Ratios are Socialhub's figure over the peer's: below 1 is less CPU or latency for"
        " Socialhub, above 1 more calls/s. The targets apply to the seed-000 baseline;"
        " the lean peer's columns have none.",
        "",
        "| Socialhub scenario | peers' scenario | baseline CPU/call ratio (≤ 0.667)"
        " | baseline calls/s ratio (≥ 1) | baseline p99 ratio (≤ 1) | met"
        " | lean CPU/call ratio | lean calls/s ratio | lean p99 ratio |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for c in summary["comparisons"]:
        lean = c.get("lean")
        lean_cells = (
            " - | - | - |"
            if lean is None
            else f" {lean['cpu_ratio']:.2f} | {lean['throughput_ratio']:.2f}"
            f" | {lean['p99_ratio']:.2f} |"
        )
        lines.append(
            f"| {c['scenario']} | {c['baseline']} | {c['cpu_ratio']:.2f}"
            f" | {c['throughput_ratio']:.2f} | {c['p99_ratio']:.2f} | {_verdict(c['met'])} |"
            + lean_cells
        )
    lines += ["", "| target | value | met |", "|---|---:|---|"]
    for t in summary["targets"]:
        lines.append(f"| {t['target']} | {t['value']} | {_verdict(t['met'])} |")
    if summary["scaling"]:
        lines += [
            "",
            "| workers | load | calls/s | p50 ms | p99 ms | server CPU µs/call |",
            "|---:|---|---:|---:|---:|---:|",
        ]
        for s in summary["scaling"]:
            load = "x2" if "x2" in s["scenario"] else "x1"
            lines.append(
                f"| {s['workers']} | {load} | {s['calls_per_s']:,.0f} | {s['p50_ms']:.2f}"
                f" | {s['p99_ms']:.2f} | {_number(s['server_cpu_us_per_call'])} |"
            )
    return "\n".join(lines) + "\n"


def _verdict(met: bool) -> str:
    return "yes" if met else "**no**"


def chart(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = [
        (c["scenario"], c["baseline"])
        for c in summary["comparisons"]
        if "cache off" not in c["scenario"]
    ]
    by_key = {(m["system"], m["scenario"]): m for m in summary["medians"]}
    labels = [ours for ours, _ in pairs]
    figure, (cpu_axis, rate_axis) = plt.subplots(1, 2, figsize=(14, 7))
    positions = range(len(pairs))
    systems = [
        ("socialhub", "Socialhub (gRPC)"),
        ("baseline", "seed-000 baseline (FastAPI, ORM)"),
        ("lean", "lean peer (Starlette, asyncpg)"),
    ]
    for axis, metric, title in (
        (cpu_axis, "server_cpu_us_per_call", "server CPU per call (µs, lower is better)"),
        (rate_axis, "calls_per_s", "calls/s at the same concurrency (higher is better)"),
    ):
        for index, (system, label) in enumerate(systems):
            values = [
                (by_key.get((system, o if system == "socialhub" else b)) or {}).get(metric) or 0
                for o, b in pairs
            ]
            if any(values):
                # Top to bottom within a scenario: Socialhub, then the peers.
                offsets = [p + 0.27 * (1 - index) for p in positions]
                axis.barh(offsets, values, height=0.27, label=label)
        floor = by_key.get(("floor", "empty RPC"))
        if floor and floor[metric]:
            axis.axvline(floor[metric], color="grey", linestyle="--", label="empty RPC")
        axis.set_yticks(list(positions), labels if axis is cpu_axis else [""] * len(labels))
        axis.set_title(title)
        axis.set_xscale("log")
    # One legend for both panels, below them, where it hides no bar.
    handles, names = cpu_axis.get_legend_handles_labels()
    figure.legend(handles, names, loc="lower center", ncol=len(names), frameon=False)
    figure.tight_layout(rect=(0, 0.05, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_docs(run: dict[str, Any], summary: dict[str, Any], docs: Path) -> None:
    """Refresh the generated part of docs/BENCHMARKS.md, its JSON and its chart."""
    (docs / "bench").mkdir(parents=True, exist_ok=True)
    (docs / "bench" / "benchmarks.json").write_text(json.dumps(run, indent=2))
    chart(summary, docs / "bench" / "benchmarks.png")
    machine = run["machine"]
    generated = "\n".join(
        [
            START,
            f"Run of {run['when']} on {machine['cores']} cores, {machine['memory_gib']} GiB,"
            f" Python {machine['python']}; data: {run['data']['profiles']:,} profiles,"
            f" {run['data']['posts']:,} posts, {run['data']['follows']:,} follows;"
            f" concurrency {run['arguments']['concurrency']}, {run['arguments']['duration']} s"
            f" windows after {run['arguments']['warmup']} s warm-up, medians of"
            f" {run['arguments']['repeats']} repeats (ratios taken within each repeat)."
            + _load_text(run),
            "",
            markdown_table(summary),
            _streaming_text(run["streaming"]),
            "",
            "![Socialhub against the seed-000 baseline and the lean peer](bench/benchmarks.png)",
            END,
        ]
    )
    path = docs / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.DOTALL)
    path.write_text(pattern.sub(lambda _: generated, text))


def _load_text(run: dict[str, Any]) -> str:
    load = run.get("load_average_1m")
    if not load:
        return ""
    return (
        f" 1-minute load average as scenarios ended: {load['min']:.1f} to {load['max']:.1f},"
        f" median {load['median']:.1f} (the machine has {run['machine']['cores']} cores)."
    )


def _streaming_text(stream: dict[str, Any]) -> str:
    return (
        f"StreamProfilePosts of the largest author ({stream['posts']:,} posts):"
        f" {_median(stream['posts_per_s']):,.0f} posts/s through gRPC"
        f" (first message {_median(stream['first_message_ms']):.1f} ms);"
        f" raw asyncpg cursor {_median(stream['raw_cursor_rows_per_s']):,.0f} rows/s,"
        f" raw cursor + protobuf {_median(stream['raw_cursor_protobuf_rows_per_s']):,.0f} rows/s;"
        f" server RSS {stream['server_rss_before_mib']} MiB before,"
        f" peak {max(stream['server_rss_peak_mib'])} MiB while streaming."
    )
