"""Several `socialhub serve` processes over one PostgreSQL and one Redis, as replicas run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from server.core.embedded import free_port


@dataclass
class Replica:
    process: subprocess.Popen[str]
    port: int
    stderr: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def logs(self) -> list[dict[str, Any]]:
        lines = self.stderr.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def wait_ready(self) -> None:
        """Until its ready line (pytest's timeout bounds the wait)."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert "ready on" in line, self.stderr.read_text()


def start_replica(env: dict[str, str], stderr: Path) -> Replica:
    port = free_port()
    with stderr.open("w") as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", "server", "serve"],
            env=os.environ | env | {"PORT": str(port)},
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
    return Replica(process, port, stderr)


@contextmanager
def replicas(env: dict[str, str], tmp_path: Path, count: int) -> Iterator[list[Replica]]:
    """Start `count` replicas at the same moment and wait until each serves."""
    with ExitStack() as stack:
        started = [start_replica(env, tmp_path / f"replica-{i}.log") for i in range(count)]
        for replica in started:
            stack.callback(_kill, replica)
        for replica in started:
            replica.wait_ready()
        yield started


def _kill(replica: Replica) -> None:
    if replica.process.poll() is None:
        replica.process.send_signal(signal.SIGKILL)
    replica.process.wait(30)


# Round robin over the replicas that the health service calls SERVING: a replica that starts
# to drain stops getting new calls before it closes its listener (client-side health checks).
SERVICE_CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "healthCheckConfig": {"serviceName": ""},
}


def round_robin_channel(replicas: Sequence[Replica], **options: Any) -> grpc.Channel:
    """One channel over every replica, as a client-side load balancer sends calls."""
    targets = ",".join(f"127.0.0.1:{replica.port}" for replica in replicas)
    return grpc.insecure_channel(
        f"ipv4:{targets}",
        options=[("grpc.service_config", json.dumps(SERVICE_CONFIG)), *options.items()],
    )


def wait_for(condition: Callable[[], bool], timeout_s: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        time.sleep(0.05)
