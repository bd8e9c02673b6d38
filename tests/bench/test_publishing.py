"""The publishing benchmark keeps working: a small run of it, which also checks what it
measures (every post published once, lateness, throughput, CPU per publish, the idle CPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_small_publishing_run_publishes_each_post_once_and_measures(tmp_path: Path) -> None:
    output = tmp_path / "publishing.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.publishing",
            "--posts",
            "100",
            "--accounts",
            "8",
            "--window-s",
            "3",
            "--idle-seconds",
            "2",
            "--drain-timeout-s",
            "120",
            "--state-dir",
            str(tmp_path / "state"),
            "--output",
            str(output),
        ],
        cwd=REPO,
        check=True,
        timeout=280,
    )
    result = json.loads(output.read_text())

    assert result["states"] == {"published": 100}
    assert result["exactly_once"] == {
        "published_once": 100,
        "twice_or_more": 0,
        "missing": 0,
        "stray": 0,
    }
    late = result["lateness_s"]
    assert 0 <= late["p50"] <= late["p99"] <= late["max"]
    assert result["throughput_per_s"] > 0
    assert result["server_cpu_ms_per_publish"] > 0
    assert result["idle"]["cpu_s"] >= 0
    assert result["idle"]["seconds"] == 2
