"""The README's AnalyticsService grpcurl commands work as printed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from typing import Any

import grpc
from socialhub.v1 import analytics_pb2
from socialhub.v1.analytics_pb2_grpc import AnalyticsServiceStub
from socialhub.v1.feed_pb2_grpc import FeedServiceStub
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from tests.analytics.insights_support import insights_of, post
from tests.analytics.support import profile
from tests.harness import Backing, ServerThread
from tests.readme import as_run_here, readme_commands, run_readme_command


def test_analytics_calls_from_the_readme(
    backing: Backing,
    channel: grpc.Channel,
    server: ServerThread,
    profiles: ProfileServiceStub,
    analytics: AnalyticsServiceStub,
) -> None:
    assert profile(profiles) == "profiles/1"  # the tables are emptied with RESTART IDENTITY
    commands = readme_commands("AnalyticsService")
    watches = [command for command in commands if "AnalyticsService/Watch" in command]
    commands = [command for command in commands if command not in watches]
    assert len(commands) >= 6, commands
    assert len(watches) == 2, watches
    outputs: list[Any] = []
    for command in commands:
        if "Insights" in command and not any(
            "Insights" in done for done in commands[: len(outputs)]
        ):
            # After the reports (which would count it): posts/1, through FeedService, analysed.
            written = post(FeedServiceStub(channel), "profiles/1", "Loving the sunny weather today")
            insights_of(analytics, written.name)
        result = run_readme_command(command, server.address, backing.admin_key)
        assert result.returncode == 0, (command, result.stderr)
        outputs.append(json.loads(result.stdout))
    assert outputs[0] == {"created_count": "1"}
    assert outputs[1]["post_count"] == "1"
    assert outputs[1]["engagement"] == "137"
    assert outputs[2]["profile_count"] == "1"
    assert outputs[3]["name"] == "posts/1/insights"
    assert outputs[3]["language_code"] == "en"
    assert outputs[4]["post_count"] == "1"
    assert outputs[4]["primary_language_code"] == "en"
    assert [c["profile"] for c in outputs[5]["creators"]] == ["profiles/1"]

    # The live ones run until cancelled: what they print in a few seconds.
    running = [
        subprocess.Popen(
            as_run_here(command, server.address),
            shell=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={"SOCIALHUB_KEY": backing.admin_key},
            start_new_session=True,
        )
        for command in watches
    ]
    # Calls for the metrics stream to count, over more than one of its 1 s intervals.
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        analytics.GetDirectoryStats(analytics_pb2.GetDirectoryStatsRequest())
        time.sleep(0.05)
    printed = []
    for process in running:
        os.killpg(process.pid, signal.SIGTERM)
        out, err = process.communicate(timeout=10)
        printed.append(out + err)
    assert '"post_id": "C1x9"' in printed[0], printed[0]
    assert '"event_id"' in printed[0], printed[0]
    assert "socialhub.v1.AnalyticsService/GetDirectoryStats" in printed[1], printed[1]
    assert '"replica_count"' in printed[1], printed[1]
