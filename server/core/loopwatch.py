"""Tells when this process's event loop stops turning, and what held it.

Every RPC, cache call and job of a replica shares one event loop: while something blocks it
(CPU work, a synchronous write, a thread holding the GIL), Redis calls time out, health checks
lag and the replica looks broken from outside although Redis and PostgreSQL are fine. A
heartbeat task stamps the time every `beat_s`; its lateness is the loop's lag (a histogram).
A watchdog thread that sees no stamp for `stall_s` logs every thread's stack once (the
loop's thread shows what holds it), and logs again when the loop turns, with how long it
stalled. If the whole process was not scheduled (a starved host), the first line comes only
once it runs again, and the stacks show the loop idle in its poll.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Protocol

from server.core.stopping import pending_threads
from server.core.tasks import stop_task

log = logging.getLogger("socialhub.loop")


class _Observer(Protocol):
    def observe(self, amount: float) -> None: ...


class LoopWatch:
    def __init__(self, *, stall_s: float, beat_s: float = 0.1, lag: _Observer | None = None):
        self._stall_s = stall_s
        self._beat_s = beat_s
        self._lag = lag
        self._last_beat = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    def start(self) -> None:
        """Start beating on the running loop, and watching from a thread."""
        self._last_beat = time.monotonic()
        self._task = asyncio.create_task(self._beat(), name="loop-watch")
        self._stopped.clear()
        self._thread = threading.Thread(target=self._watch, name="loop-watch", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stopped.set()
        await stop_task(self._task)
        self._task = None
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 2 * self._beat_s + 1)
            self._thread = None

    async def _beat(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self._beat_s)
            self._last_beat = now = time.monotonic()
            if self._lag is not None:
                self._lag.observe(max(0.0, now - before - self._beat_s))

    def _watch(self) -> None:
        stalled_at: float | None = None
        while not self._stopped.wait(self._beat_s):
            last_beat = self._last_beat
            silent_s = time.monotonic() - last_beat
            if stalled_at is None and silent_s >= self._stall_s:
                stalled_at = last_beat
                log.warning(
                    "event loop stalled",
                    extra={"silent_s": round(silent_s, 3), "threads": pending_threads()},
                )
            elif stalled_at is not None and last_beat != stalled_at:
                log.warning(
                    "event loop turns again",
                    extra={"stalled_s": round(last_beat - stalled_at, 3)},
                )
                stalled_at = None
