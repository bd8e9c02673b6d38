"""`socialhub serve` as a user runs it: embedded servers, ready line, clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc
from socialhub.v1 import profile_pb2
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from bench import credentials
from server.core.embedded import free_port
from tests.harness import Backing


def _processes_using(state_dir: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(str(state_dir) in part for part in process.info["cmdline"] or []):
            found.append(process)
    return found


def test_serve_starts_everything_and_sigterm_stops_everything(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    port = free_port()
    env = {
        key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL")
    } | {"STATE_DIR": str(state_dir), "PORT": str(port), "DEMO_PROFILES": "300"}
    server = subprocess.Popen(
        [sys.executable, "-m", "server", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        ready = server.stdout.readline()
        assert f"127.0.0.1:{port}" in ready
        assert "grpcurl" in ready
        assert _processes_using(state_dir), "embedded postgres and redis should be running"

        # The development key `serve` creates on the embedded default.
        key = (state_dir / "dev-api-key").read_text().strip()
        with credentials.channel(f"127.0.0.1:{port}", key) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            listed = ProfileServiceStub(channel).ListProfiles(profile_pb2.ListProfilesRequest())
            assert listed.total_size == 300, "demo data is loaded on first start"

        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
    finally:
        if server.poll() is None:
            server.kill()
    deadline = time.monotonic() + 10
    while _processes_using(state_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_using(state_dir) == [], "nothing the server started may outlive it"
    assert (state_dir / "postgres" / "PG_VERSION").exists(), "data persists between runs"


def test_with_database_url_set_nothing_embedded_is_started(
    tmp_path: Path, backing: Backing
) -> None:
    state_dir = tmp_path / "state"
    env = os.environ | {"STATE_DIR": str(state_dir), "DATABASE_URL": backing.database_url}
    subprocess.run(
        [sys.executable, "-m", "server", "migrate"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
    )
    assert not (state_dir / "postgres").exists()
    assert not (state_dir / "redis").exists()
