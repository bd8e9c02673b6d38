"""`make bench` must keep working: a quick run of the whole suite, on its own small data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import report

pytest.importorskip("fastapi")
pytest.importorskip("matplotlib")

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(600)
def test_quick_suite_measures_every_scenario_and_writes_the_docs(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.suite",
            "--quick",
            "--state-dir",
            str(tmp_path / "state"),
            "--output",
            str(tmp_path / "results"),
            "--write-docs",
            "--docs-dir",
            str(tmp_path / "docs"),
        ],
        cwd=REPO,
        check=True,
        timeout=580,
    )
    [result_file] = (tmp_path / "results").glob("bench-*.json")
    run = json.loads(result_file.read_text())
    by_name = {(row["system"], row["scenario"]): row for row in run["results"]}
    systems = {system for system, _ in by_name}
    assert systems == {"floor", "socialhub", "baseline", "lean"}
    # Every scenario the seed-000 peer runs, the lean peer runs too.
    peer_scenarios = {
        system: {scenario for s, scenario in by_name if s == system}
        for system in ("baseline", "lean")
    }
    assert peer_scenarios["lean"] == peer_scenarios["baseline"]
    for (system, scenario), row in by_name.items():
        assert row["calls"] > 0, (system, scenario)
        assert row["errors"] == 0, (system, scenario)
        assert row["server_cpu_us_per_call"] > 0, (system, scenario)

    summary = report.summarize(run)
    compared = {c["scenario"] for c in summary["comparisons"]}
    assert {"GetProfile (cache hit)", "ListProfiles page 50", "CreateProfile"} <= compared
    assert all(c["cpu_ratio"] > 0 and c["throughput_ratio"] > 0 for c in summary["comparisons"])
    assert all(
        c["lean"]["cpu_ratio"] > 0 and c["lean"]["p99_ratio"] > 0 for c in summary["comparisons"]
    )
    assert len(summary["targets"]) == 5
    assert run["streaming"]["posts"] == run["data"]["largest_author_posts"]
    assert {s["workers"] for s in run["scaling"]} == {1, 2}

    document = (tmp_path / "docs" / "BENCHMARKS.md").read_text()
    assert "| GetProfile (cache hit) | get profile |" in document
    assert "| lean | get profile |" in document
    assert "lean CPU/call ratio" in document
    assert (tmp_path / "docs" / "bench" / "benchmarks.png").stat().st_size > 10_000
