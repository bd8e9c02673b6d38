"""The fakes in a process of their own, driven through a pipe: a benchmark's servers then
spend no CPU on them, and the fakes none of the benchmark's.

    with remote_fakes() as fakes:
        env = fakes.env                              # as Fakes.env()
        account = fakes.call("x", "add_account", "Ada")
        fakes.set("meta", "usage_limit", 10**9)
        posts = fakes.call("linkedin", "posts")      # any method of fakes.x/.linkedin/.meta

Arguments and results cross the pipe pickled (FakeAccount, MetaPage and FakePost are).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import Any

import psutil

from tests.fakes import running_fakes


class RemoteFakes:
    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child,), daemon=True)
        self._process.start()
        child.close()
        self.env: dict[str, str] = self._conn.recv()

    @property
    def pid(self) -> int:
        assert self._process.pid is not None
        return self._process.pid

    def cpu_s(self) -> float:
        times = psutil.Process(self.pid).cpu_times()
        return float(times.user + times.system)

    def call(self, fake: str, method: str, *args: Any, **kwargs: Any) -> Any:
        self._conn.send((fake, method, args, kwargs))
        ok, result = self._conn.recv()
        if not ok:
            raise RuntimeError(f"fakes.{fake}.{method} failed: {result}")
        return result

    def set(self, fake: str, attribute: str, value: Any) -> None:
        self.call(fake, "__setattr__", attribute, value)

    def close(self) -> None:
        if self._process.is_alive():
            self._conn.send(None)
            self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(10)


@contextmanager
def remote_fakes() -> Iterator[RemoteFakes]:
    fakes = RemoteFakes()
    try:
        yield fakes
    finally:
        fakes.close()


def _serve(conn: Connection) -> None:
    with running_fakes() as fakes:
        conn.send(fakes.env())
        while True:
            try:
                request = conn.recv()
            except EOFError:
                return
            if request is None:
                return
            name, method, args, kwargs = request
            try:
                conn.send((True, getattr(getattr(fakes, name), method)(*args, **kwargs)))
            except Exception as error:
                conn.send((False, repr(error)))
