"""Background maintenance jobs that run every few minutes for the life of the server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from server.core.db import is_database_unavailable
from server.core.tasks import stop_task

log = logging.getLogger("socialhub.periodic")


class PeriodicJob:
    def __init__(
        self, name: str, interval_s: float, run_once: Callable[[], Awaitable[int]]
    ) -> None:
        self.name = name
        self._interval_s = interval_s
        self._run_once = run_once
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            await stop_task(self._task)
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                done = await self._run_once()
                if done:
                    log.info("maintenance job ran", extra={"job": self.name, "rows": done})
            except Exception as error:
                # Retried next round: an outage must not end the job for good.
                level = logging.WARNING if is_database_unavailable(error) else logging.ERROR
                log.log(level, "maintenance job failed", extra={"job": self.name}, exc_info=error)
            await asyncio.sleep(self._interval_s)
