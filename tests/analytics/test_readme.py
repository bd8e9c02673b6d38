"""The README's AnalyticsService grpcurl commands work as printed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from tests.analytics.support import profile
from tests.harness import Backing, ServerThread

GRPCURL = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or "grpcurl"
README = Path(__file__).resolve().parents[2] / "README.md"


def test_analytics_calls_from_the_readme(
    backing: Backing, server: ServerThread, profiles: ProfileServiceStub
) -> None:
    assert profile(profiles) == "profiles/1"  # the tables are emptied with RESTART IDENTITY
    commands = [
        line.strip()
        for line in README.read_text().replace("\\\n", " ").splitlines()
        if line.strip().startswith("grpcurl ") and "socialhub.v1.AnalyticsService/" in line
    ]
    assert len(commands) >= 3, commands
    outputs = []
    for command in commands:
        result = subprocess.run(
            command.replace("grpcurl ", f"{GRPCURL} ", 1).replace(
                "127.0.0.1:50051", server.address
            ),
            shell=True,
            capture_output=True,
            text=True,
            timeout=30,
            env={"SOCIALHUB_KEY": backing.admin_key},
            check=False,
        )
        assert result.returncode == 0, (command, result.stderr)
        outputs.append(json.loads(result.stdout))
    assert outputs[0] == {"created_count": "1"}
    assert outputs[1]["post_count"] == "1"
    assert outputs[1]["engagement"] == "137"
    assert outputs[2]["profile_count"] == "1"
