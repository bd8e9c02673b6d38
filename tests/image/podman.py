"""Podman, grpcurl and polling for the image's tests (tests/image)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.readme import GRPCURL

REPO = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("IMAGE", "localhost/socialhub:latest")
SERVICES = "localhost/socialhub-services:bookworm"
# Not the development value, which `serve` refuses outside the embedded default.
PAGE_TOKEN_SECRET = "image-test-page-token-secret-not-for-production"
DATABASE_USER = "socialhub"
# At most this many calls per stop end otherwise than UNAVAILABLE when a client calls one
# replica directly (tests/image/test_image.py), with their outcome unknown to the caller:
# calls that reached the server just as `server.stop()` began, before a handler picked them
# up, are cancelled by grpc's core: CANCELLED (seen only with the CPU contended; never in the
# in-process tests). Behind the balancer, which checks /readyz, none is (test_compose.py).
# Writes carry a request_id, or are idempotent, so that a retry is safe.
UNCERTAIN_AT_STOP = 3


def podman(*args: str, timeout: float = 120, check: bool = True) -> str:
    result = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {result.returncode}\n{result.stderr}")
    return result.stdout


def wait_for(condition: Callable[[], bool], timeout_s: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        time.sleep(0.25)


def postgres_ready(container: str) -> bool:
    probe = ["exec", container, "pg_isready", "-q", "-h", "127.0.0.1", "-U", DATABASE_USER]
    return subprocess.run(["podman", *probe], capture_output=True, check=False).returncode == 0


def grpcurl(address: str, *command: str, data: str | None = None, key: str | None = None) -> str:
    flags = ["-d", data] if data is not None else []
    if key is not None:
        flags += ["-H", f"authorization: Bearer {key}"]
    result = subprocess.run(
        [GRPCURL, "-plaintext", *flags, address, *command],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, f"grpcurl {command}: {result.stderr}"
    return result.stdout


def serving(address: str) -> bool:
    result = subprocess.run(
        [GRPCURL, "-plaintext", "-max-time", "2", address, "grpc.health.v1.Health/Check"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return result.returncode == 0 and json.loads(result.stdout).get("status") == "SERVING"


def published(container: str, port: int) -> str:
    """host:port where podman publishes a container's port (run with -p 127.0.0.1::PORT)."""
    return podman("port", container, f"{port}/tcp").strip().splitlines()[0]


def logs(container: str) -> list[dict[str, Any]]:
    """The JSON log lines of a container (the server logs on stderr)."""
    result = subprocess.run(
        ["podman", "logs", container], capture_output=True, text=True, timeout=60, check=True
    )
    entries = []
    for line in (result.stdout + result.stderr).splitlines():
        if line.startswith("{"):
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return entries


@contextmanager
def network(name: str) -> Iterator[str]:
    podman("network", "rm", "-f", name, check=False)
    podman("network", "create", name)
    try:
        yield name
    finally:
        podman("network", "rm", "-f", name, check=False)


@contextmanager
def container(name: str, *args: str) -> Iterator[str]:
    """A detached container, removed afterwards with whatever it left."""
    podman("rm", "-f", name, check=False)
    podman("run", "-d", "--name", name, *args)
    try:
        yield name
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)
