"""WatchServiceMetrics: the process's Prometheus counters, differenced between ticks.

This replica's figures come from its registry (server.core.metrics_sample). For the fleet,
every replica publishes its cumulative sample to one Redis hash twice a second (a field per
replica, with the sample's time: a replica gone quiet for `STALE_S` is ignored and
removed); the stream differences each replica's samples on their own (counters of a
restarted replica start again from 0) and sums the windows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from redis.asyncio import Redis
from socialhub.v1 import analytics_pb2

from server.core.cache import REDIS_FAILURES
from server.core.errors import FailedPrecondition
from server.core.metrics import Metrics
from server.core.metrics_sample import Sample, Window, merge, quantile, sample, window
from server.core.tasks import stop_task

log = logging.getLogger("socialhub.analytics")

FLEET_KEY = "analytics:live:replicas"
PUBLISH_INTERVAL_S = 0.5
FLEET_MIN_INTERVAL_S = 1.0
STALE_S = 5.0
DEFAULT_INTERVAL_S = 2.0
MIN_INTERVAL_S = 0.5
MAX_INTERVAL_S = 60.0


def clamp_interval(seconds: float) -> float:
    if seconds == 0:
        return DEFAULT_INTERVAL_S
    return min(max(seconds, MIN_INTERVAL_S), MAX_INTERVAL_S)


@dataclass
class ServiceMetrics:
    metrics: Metrics | None
    redis: Redis
    clock: Callable[[], float] = time.time
    replica: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    )
    _task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ the worker

    def start(self) -> None:
        if self.metrics is not None:
            self._task = asyncio.create_task(self._publish_every(), name="analytics-metrics")

    async def stop(self) -> None:
        if self._task is not None:
            await stop_task(self._task)
            self._task = None
            with contextlib.suppress(*REDIS_FAILURES):
                await self.redis.hdel(FLEET_KEY, self.replica)

    async def _publish_every(self) -> None:
        assert self.metrics is not None
        while True:
            payload = json.dumps(sample(self.metrics, self.clock()).to_json())
            try:
                await self.redis.hset(FLEET_KEY, self.replica, payload)
                await self.redis.expire(FLEET_KEY, int(STALE_S * 4))
            except REDIS_FAILURES as error:
                log.debug("service metrics not published: %s", error)
            await asyncio.sleep(PUBLISH_INTERVAL_S)

    # ------------------------------------------------------------------ the stream

    async def watch(
        self, interval_s: float, *, fleet: bool
    ) -> AsyncIterator[analytics_pb2.WatchServiceMetricsResponse]:
        if self.metrics is None:
            raise FailedPrecondition(
                "this replica keeps no metrics (METRICS_ENABLED=false)",
                reason="SERVICE_METRICS_DISABLED",
            )
        read = self._fleet if fleet else self._own
        if fleet:
            # Each replica publishes twice a second: a tick then sees a new sample of each.
            interval_s = max(interval_s, FLEET_MIN_INTERVAL_S)
        before = await read()
        while True:
            await asyncio.sleep(interval_s)
            after = await read()
            windows: dict[str, Window] = {}
            for replica, now in after.items():
                then = before.get(replica)
                if then is None or now.time <= then.time:
                    continue  # new, or not republished since: its calls count next time
                if any(now.methods.get(m, c).calls < c.calls for m, c in then.methods.items()):
                    continue  # restarted: its counters began again
                windows[replica] = window(then, now)
            # A replica missing from this read keeps its last sample to difference from.
            before = {**before, **after}
            yield _response(windows, interval_s, self.clock(), max(len(after), 1))

    async def _own(self) -> dict[str, Sample]:
        assert self.metrics is not None
        return {self.replica: sample(self.metrics, self.clock())}

    async def _fleet(self) -> dict[str, Sample]:
        try:
            published = await self.redis.hgetall(FLEET_KEY)
        except REDIS_FAILURES:
            return await self._own()  # Redis down: this replica is all it can see
        now = self.clock()
        fresh: dict[str, Sample] = {}
        stale = []
        for raw_replica, raw in published.items():
            replica = raw_replica.decode() if isinstance(raw_replica, bytes) else raw_replica
            got = Sample.from_json(json.loads(raw))
            if now - got.time > STALE_S:
                stale.append(replica)
            else:
                fresh[replica] = got
        if stale:
            with contextlib.suppress(*REDIS_FAILURES):
                await self.redis.hdel(FLEET_KEY, *stale)
        return fresh or await self._own()


def _response(
    windows: dict[str, Window], interval_s: float, now: float, replicas: int
) -> analytics_pb2.WatchServiceMetricsResponse:
    # Rates add up per replica (each over its own window's length).
    rate_by_method: dict[str, float] = {}
    for w in windows.values():
        for name, m in w.methods.items():
            rate_by_method[name] = rate_by_method.get(name, 0.0) + m.calls / w.seconds
    total = merge(windows.values())
    reads = total.cache_hits + total.cache_misses
    response = analytics_pb2.WatchServiceMetricsResponse(
        interval_seconds=interval_s,
        replica_count=replicas,
        calls_per_second=sum(rate_by_method.values()),
        error_rate=total.errors / total.calls if total.calls else 0.0,
        cache_hit_ratio=total.cache_hits / reads if reads else 0.0,
        db_pool_in_use=round(total.pool_in_use),
        db_pool_capacity=round(total.pool_capacity),
    )
    response.sample_time.FromNanoseconds(int(now * 1e9))
    for name, m in sorted(total.methods.items(), key=lambda item: (-item[1].calls, item[0])):
        response.methods.append(
            analytics_pb2.MethodMetrics(
                method=name,
                call_count=round(m.calls),
                calls_per_second=rate_by_method.get(name, 0.0),
                error_rate=m.errors / m.calls if m.calls else 0.0,
                p50_latency_seconds=quantile(0.5, m.buckets),
                p99_latency_seconds=quantile(0.99, m.buckets),
            )
        )
    return response
