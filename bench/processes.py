"""The servers a benchmark drives, each in its own process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from server.core.embedded import free_port

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Process:
    popen: subprocess.Popen[str]
    address: str

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            self.popen.wait(60)


def start_socialhub(
    database_url: str, redis_url: str, *, module: str, cache: bool = True, workers: int = 1
) -> Process:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "PORT": str(port),
        "SEED_DEMO": "never",
        "LOG_LEVEL": "WARNING",
        "CACHE_ENABLED": "true" if cache else "false",
        "WORKERS": str(workers),
    }
    command = [sys.executable, "-m", module] + (["serve"] if module == "server" else [])
    popen = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert popen.stdout is not None
    if "ready" not in popen.stdout.readline():
        popen.kill()
        raise RuntimeError(f"{module} did not start")
    return Process(popen, f"127.0.0.1:{port}")


def start_baseline(database_url: str, redis_url: str) -> Process:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url}
    popen = subprocess.Popen(
        [sys.executable, "-m", "bench.baselines.seed000", "--port", str(port)],
        env=env,
        text=True,
        cwd=REPO,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=1):
                return Process(popen, base_url)
        except OSError:
            time.sleep(0.2)
    popen.kill()
    raise RuntimeError("the baseline did not start")
