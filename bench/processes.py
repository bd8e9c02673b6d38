"""The servers a benchmark drives, each in its own process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import credentials
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
    database_url: str,
    redis_url: str,
    *,
    module: str,
    cache: bool = True,
    workers: int = 1,
    auth: bool = True,
    wrapper: Sequence[str] = (),
    settings: Mapping[str, str] | None = None,
) -> Process:
    """A server as production runs it (authentication on); its clients send this run's key
    (bench.credentials). `wrapper` runs it under another command (valgrind, say); `settings`
    are environment variables over the defaults below."""
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
        "PAGE_TOKEN_SECRET": credentials.PAGE_TOKEN_SECRET,
        "AUTH_ENABLED": "true" if auth else "false",
        # Metrics stay on (as in production) but several servers may run side by side.
        "METRICS_PORT": "0",
        **(settings or {}),
    }
    command = [*wrapper, sys.executable, "-m", module] + (["serve"] if module == "server" else [])
    popen = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert popen.stdout is not None
    if "ready" not in popen.stdout.readline():
        popen.kill()
        raise RuntimeError(f"{module} did not start")
    # Once it is up the schema exists; the key is issued once per run.
    credentials.bench_key(database_url)
    return Process(popen, f"127.0.0.1:{port}")


def start_baseline(database_url: str, redis_url: str) -> Process:
    """The seed-000 peer (FastAPI, SQLAlchemy ORM, Pydantic)."""
    return _start_peer("seed000", database_url, redis_url)


def start_lean(database_url: str, redis_url: str) -> Process:
    """The lean peer (Starlette, asyncpg prepared statements, orjson, Socialhub's caching)."""
    return _start_peer("lean", database_url, redis_url)


def _start_peer(name: str, database_url: str, redis_url: str) -> Process:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url}
    popen = subprocess.Popen(
        [sys.executable, "-m", f"bench.baselines.{name}", "--port", str(port)],
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
    raise RuntimeError(f"the {name} peer did not start")
