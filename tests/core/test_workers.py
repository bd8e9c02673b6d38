"""`socialhub serve --workers N`: forked processes sharing one port, started and stopped as one."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc
from socialhub.v1 import profile_pb2
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from bench import credentials
from server.app import application
from server.core.embedded import free_port
from tests.harness import Backing, test_settings
from tests.helpers import new_profile

READY = re.compile(r"ready on 127\.0\.0\.1:(\d+) \((\d+) workers, pids ([\d ]+)\)")


@dataclass
class Served:
    process: subprocess.Popen[str]
    port: int
    worker_pids: list[int]
    stderr: Path


@contextmanager
def serve_workers(backing: Backing, tmp_path: Path, port: int, workers: int) -> Iterator[Served]:
    """Run `serve --workers` on the shared test database, in its own session (as a terminal
    would run it), until its ready line; kill whatever is left at the end."""
    env = (
        os.environ
        | backing.serve_env()
        | {
            "STATE_DIR": str(tmp_path / "state"),
            "PORT": str(port),
            "SEED_DEMO": "never",
        }
    )
    stderr = tmp_path / "stderr.log"
    with stderr.open("w") as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--workers", str(workers)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            start_new_session=True,
        )
    try:
        assert process.stdout is not None
        ready = READY.search(process.stdout.readline())
        assert ready, stderr.read_text()
        assert int(ready[2]) == workers
        pids = [int(pid) for pid in ready[3].split()]
        yield Served(process, int(ready[1]), pids, stderr)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_gone(pids: list[int], timeout_s: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while (alive := [pid for pid in pids if psutil.pid_exists(pid)]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)
    return alive


def established_connections(pid: int, port: int) -> int:
    return sum(
        1
        for conn in psutil.Process(pid).net_connections("tcp")
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_ESTABLISHED
    )


def new_connection(port: int, key: str = "") -> grpc.Channel:
    # A channel of its own: by default channels to one address share a TCP connection.
    channel = grpc.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
    )
    return credentials.authorized(channel, key) if key else channel


def test_workers_share_the_port_and_sigterm_stops_them_all(
    backing: Backing, tmp_path: Path
) -> None:
    port = free_port()
    with serve_workers(backing, tmp_path, port, workers=2) as served, ExitStack() as channels:
        assert served.port == port
        parent = psutil.Process(served.process.pid)
        assert sorted(child.pid for child in parent.children()) == sorted(served.worker_pids)

        first = channels.enter_context(new_connection(port, backing.admin_key))
        created = ProfileServiceStub(first).CreateProfile(
            profile_pb2.CreateProfileRequest(profile=new_profile())
        )
        for _ in range(16):
            channel = channels.enter_context(new_connection(port, backing.admin_key))
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            got = ProfileServiceStub(channel).GetProfile(
                profile_pb2.GetProfileRequest(name=created.name)
            )
            assert got == created, "every worker reads the same database"

        # The kernel spreads the 17 connections; all on one worker has odds of 2 in 2**17.
        per_worker = [established_connections(pid, port) for pid in served.worker_pids]
        assert sum(per_worker) == 17
        assert all(per_worker), per_worker

        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(timeout=30) == 0
    assert wait_gone(served.worker_pids) == []
    lines = served.stderr.read_text().splitlines()
    logs = [json.loads(line) for line in lines if line.startswith("{")]
    stopped = {
        (entry["worker"], entry["pid"]) for entry in logs if entry["msg"] == "server stopped"
    }
    assert stopped == set(enumerate(served.worker_pids)), "each worker stops gracefully"


def test_only_worker_0_competes_for_the_periodic_jobs(backing: Backing) -> None:
    def running_tasks(run_jobs: bool) -> set[str]:
        async def start_and_stop() -> set[str]:
            app = application(
                test_settings(), backing.database_url, backing.redis_url, run_jobs=run_jobs
            )
            await app.start()
            try:
                return {task.get_name() for task in asyncio.all_tasks()}
            finally:
                await app.stop()

        # A loop in a thread of its own, as the test server has (tests.harness.ServerThread).
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, start_and_stop()).result(60)

    # Which replica then runs them is settled by a lock (tests/core/test_replicas.py).
    assert "job-leadership" in running_tasks(run_jobs=True)
    assert "job-leadership" not in running_tasks(run_jobs=False)


def test_ctrl_c_stops_every_process_without_a_traceback(backing: Backing, tmp_path: Path) -> None:
    with serve_workers(backing, tmp_path, free_port(), workers=2) as served:
        # A terminal sends SIGINT to the whole foreground process group.
        os.killpg(served.process.pid, signal.SIGINT)
        assert served.process.wait(timeout=30) == 0
    assert wait_gone(served.worker_pids) == []
    assert "Traceback" not in served.stderr.read_text()


def test_port_0_is_resolved_once_and_a_dead_worker_stops_the_service(
    backing: Backing, tmp_path: Path
) -> None:
    with serve_workers(backing, tmp_path, 0, workers=2) as served:
        assert served.port != 0
        with new_connection(served.port) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert health.status == health_pb2.HealthCheckResponse.SERVING

        os.kill(served.worker_pids[0], signal.SIGKILL)
        assert served.process.wait(timeout=30) == 1, "fail fast: the supervisor restarts it"
    assert wait_gone(served.worker_pids) == []
    assert "worker exited" in served.stderr.read_text()


def test_a_busy_port_fails_before_any_worker_starts(backing: Backing, tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        done = subprocess.run(
            [sys.executable, "-m", "server", "serve", "--workers", "2"],
            env=os.environ
            | backing.serve_env()
            | {
                "PORT": str(port),
                "SEED_DEMO": "never",
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert f"cannot serve on 127.0.0.1:{port}" in done.stderr
    assert done.stdout == ""
