"""Health: each service is SERVING only while PostgreSQL answers.

Redis is a cache, so its outage leaves services SERVING; it is logged once per
transition and counted in the cache's stats. The `liveness` name only says the process
serves: a liveness probe on it does not restart every replica during a database outage.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from grpc_health.v1 import health, health_pb2
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.core.cache import Cache
from server.core.tasks import stop_task

if TYPE_CHECKING:
    from server.core.metrics import Metrics

log = logging.getLogger("socialhub.health")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
OVERALL = ""
LIVENESS = "liveness"


class HealthMonitor:
    def __init__(
        self,
        servicer: health.aio.HealthServicer,
        engine: AsyncEngine,
        cache: Cache,
        service_names: Sequence[str],
        interval_s: float,
        *,
        metrics: Metrics | None = None,
    ) -> None:
        self.servicer = servicer
        self._metrics = metrics
        self._engine = engine
        self._cache = cache
        self._names = [OVERALL, *service_names]
        self._interval_s = interval_s
        self._database_up: bool | None = None
        self._redis_up: bool | None = None
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        """Taking calls: PostgreSQL answers and no stop has begun (the HTTP /readyz)."""
        return self._database_up is True and not self._stopping

    async def start(self) -> None:
        await self.servicer.set(LIVENESS, SERVING)
        await self.check_once()
        self._task = asyncio.create_task(self._run(), name="health-monitor")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            await stop_task(self._task)
        await self.servicer.enter_graceful_shutdown()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.check_once()

    async def check_once(self) -> None:
        database_up = await self._database_answers()
        if database_up != self._database_up:
            self._database_up = database_up
            for name in self._names:
                await self.servicer.set(name, SERVING if database_up else NOT_SERVING)
            log.log(
                logging.INFO if database_up else logging.ERROR,
                "database is up" if database_up else "database is unreachable",
            )
        redis_up = await self._cache.ping()
        if self._metrics is not None:
            self._metrics.postgres_up.set(database_up)
            self._metrics.redis_up.set(redis_up)
        if redis_up != self._redis_up:
            self._redis_up = redis_up
            if not redis_up:
                self._cache.stats.error()
            log.log(
                logging.INFO if redis_up else logging.WARNING,
                "redis is up" if redis_up else "redis is unreachable; caching is off",
            )

    async def _database_answers(self) -> bool:
        try:
            async with asyncio.timeout(max(self._interval_s, 1.0)):
                async with self._engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            return True
        except Exception:  # any failure to answer means not serving
            return False
