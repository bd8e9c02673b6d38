"""The benchmark's HTTP peers as the tests run them, and helpers to compare their answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from socialhub.v1 import profile_pb2
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from server.core.embedded import free_port
from tests.helpers import new_profile

REPO = Path(__file__).resolve().parents[2]
# The proxy-free opener: a proxy from the environment must not sit between test and server.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Peer:
    name: str  # the module under bench.baselines
    url: str
    pid: int

    def call(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """Status and decoded JSON of GET `path`, or of POST `body` to it."""
        request = urllib.request.Request(
            self.url + path,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="GET" if body is None else "POST",
        )
        try:
            with _OPENER.open(request, timeout=10) as response:
                return int(response.status), json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    def get(self, path: str) -> Any:
        status, body = self.call(path)
        assert status == 200, (path, status, body)
        return body


def _wait_until_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "the peer exited during start-up"
        try:
            with _OPENER.open(url + "/healthz", timeout=1) as response:
                if json.load(response) == {"status": "ok"}:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the peer did not answer /healthz within 30 s")


@contextmanager
def serve(name: str, database_url: str, redis_url: str) -> Iterator[Peer]:
    """`python -m bench.baselines.<name>` in a subprocess, as the benchmark runs it."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url}
    command = [sys.executable, "-m", f"bench.baselines.{name}", "--port", str(port)]
    process = subprocess.Popen([*command, "--host", "127.0.0.1"], env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_ready(url, process)
        yield Peer(name, url, process.pid)
    finally:
        process.terminate()
        process.wait(15)


def id_of(name: str) -> int:
    return int(name.rsplit("/", 1)[1])


def create(profiles: ProfileServiceStub, display_name: str, **fields: Any) -> int:
    request = profile_pb2.CreateProfileRequest(profile=new_profile(display_name, **fields))
    return id_of(profiles.CreateProfile(request).name)


def socialhub_pages(read: Callable[[str], Any]) -> list[list[int]]:
    """Every page of a Socialhub post listing, as post ids; `read` takes the page token."""
    pages, token = [], ""
    while True:
        response = read(token)
        pages.append([id_of(p.name) for p in response.posts])
        token = response.next_page_token
        if not token:
            return pages


def peer_pages(peer: Peer, path: str, page_size: int) -> list[list[int]]:
    """Every page of a peer's post listing, following `next_cursor`."""
    pages: list[list[int]] = []
    cursor = ""
    while True:
        body = peer.get(f"{path}?limit={page_size}" + (f"&cursor={cursor}" if cursor else ""))
        pages.append([p["id"] for p in body["items"]])
        cursor = body["next_cursor"]
        if not cursor:
            return pages


def flat(pages: list[list[int]]) -> list[int]:
    return [post_id for page in pages for post_id in page]
