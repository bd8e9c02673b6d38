"""Prometheus metrics: what each server process counts, and the /metrics endpoint.

Calls are counted where they are served (the per-method wrapper in interceptors.py, with
label children bound once per method), cache reads where the cache counts them, and the
up gauges where health probes. State that only the process holds (pool checkouts, calls
in flight) is sampled into gauges every `SAMPLE_INTERVAL_S`, so no call pays for it.

`serve --workers N` forks N processes; each writes its values to files in a directory
the parent creates before forking (prometheus-client's multiprocess mode, see
`multiprocess_dir`) and worker 0 serves the merged view, so one scrape shows every
worker. That mode reads nothing but those files at scrape time, which is why nothing
here is a custom collector or a callback gauge.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.multiprocess import MultiProcessCollector

from server.core import probes
from server.core.db import CountingPool
from server.core.tasks import stop_task

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("socialhub.metrics")

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# How a gauge's values from several `serve --workers` processes combine (prometheus-client's).
MultiprocessMode = Literal["livemin", "livemax", "livesum", "liveall", "livemostrecent"]
SAMPLE_INTERVAL_S = 1.0
# Most calls take well under a millisecond (a cached GetProfile ~0.3 ms): the default
# buckets, which start at 5 ms, would put nearly all of them in the first one.
LATENCY_BUCKETS = (
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class MethodMetrics:
    """One RPC method's label children, bound when the method is registered: a call then
    costs a dict lookup, a counter increment and a histogram observation, no `labels()`."""

    __slots__ = ("_by_code", "_calls", "_duration", "_method")

    def __init__(self, calls: Counter, duration: Histogram, method: str) -> None:
        self._calls = calls
        self._method = method
        self._by_code = {"OK": calls.labels(method, "OK")}
        self._duration = duration.labels(method)

    def observe(self, code: str, seconds: float) -> None:
        calls = self._by_code.get(code)
        if calls is None:
            # Error codes get their series on first use: most methods never see most codes.
            calls = self._by_code[code] = self._calls.labels(self._method, code)
        calls.inc()
        self._duration.observe(seconds)


@dataclass(frozen=True)
class RpcMetrics:
    calls: Counter
    duration: Histogram
    in_flight: Gauge
    shed: Counter

    def for_method(self, method: str) -> MethodMetrics:
        return MethodMetrics(self.calls, self.duration, method)


@dataclass(frozen=True)
class CacheCounters:
    hits: Counter
    misses: Counter
    errors: Counter
    bypassed: Counter


@dataclass
class Metrics:
    """Every metric of one server process, registered in a registry of its own (so tests can
    run several servers in one process) or, with `serve --workers`, written to files."""

    registry: CollectorRegistry
    rpc: RpcMetrics
    cache: CacheCounters
    postgres_up: Gauge
    redis_up: Gauge
    pool_in_use: Gauge
    pool_waiting: Gauge
    pool_capacity: Gauge
    pool_waits: Counter
    loop_lag: Histogram
    port: int = 0
    # Where this process's metric objects register: None with `serve --workers` (files).
    _own: CollectorRegistry | None = None
    _http: WSGIServer | None = None
    _sampler: asyncio.Task[None] | None = None
    _waits_seen: int = field(default=0, repr=False)

    @classmethod
    def create(cls) -> Metrics:
        multiprocess = bool(os.environ.get(MULTIPROCESS_ENV))
        if multiprocess and not getattr(values.ValueClass, "_multiprocess", False):
            # prometheus-client chooses where values live when it is first imported, from
            # that variable; `serve --workers` sets it later (in the parent, before forking).
            values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
        registry = CollectorRegistry()
        # In multiprocess mode the values are read back from the files, never from these
        # objects: registering them as well would show this process's values twice.
        own = None if multiprocess else registry
        if multiprocess:
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        # Gauges of several workers add up (in flight, pool) or take the worst (up).
        rpc = RpcMetrics(
            calls=Counter(
                "socialhub_rpc_calls",
                "RPCs finished, by method and status code.",
                ["method", "code"],
                registry=own,
            ),
            duration=Histogram(
                "socialhub_rpc_duration_seconds",
                "RPC latency in the server, from the handler's start to its answer.",
                ["method"],
                buckets=LATENCY_BUCKETS,
                registry=own,
            ),
            in_flight=Gauge(
                "socialhub_rpc_in_flight",
                "Socialhub RPCs being served (those MAX_CONCURRENT_RPCS limits).",
                registry=own,
                multiprocess_mode="livesum",
            ),
            shed=Counter(
                "socialhub_rpc_shed",
                "RPCs refused with RESOURCE_EXHAUSTED at the in-flight limit.",
                registry=own,
            ),
        )
        cache = CacheCounters(
            hits=Counter("socialhub_cache_hits", "Cache reads answered by Redis.", registry=own),
            misses=Counter(
                "socialhub_cache_misses", "Cache reads loaded from the database.", registry=own
            ),
            errors=Counter(
                "socialhub_cache_errors", "Failed Redis commands and probes.", registry=own
            ),
            bypassed=Counter(
                "socialhub_cache_bypassed",
                "Cache reads sent to the database while Redis was considered down.",
                registry=own,
            ),
        )
        return cls(
            registry=registry,
            rpc=rpc,
            cache=cache,
            postgres_up=Gauge(
                "socialhub_postgres_up",
                "1 while PostgreSQL answers the health probe.",
                registry=own,
                multiprocess_mode="livemin",
            ),
            redis_up=Gauge(
                "socialhub_redis_up",
                "1 while Redis answers the health probe.",
                registry=own,
                multiprocess_mode="livemin",
            ),
            pool_in_use=Gauge(
                "socialhub_db_pool_in_use",
                "Database connections checked out of the pool.",
                registry=own,
                multiprocess_mode="livesum",
            ),
            pool_waiting=Gauge(
                "socialhub_db_pool_waiting",
                "Callers waiting for a connection: the pool and its overflow are all in use.",
                registry=own,
                multiprocess_mode="livesum",
            ),
            pool_capacity=Gauge(
                "socialhub_db_pool_capacity",
                "Connections the pool may open (DB_POOL_SIZE + DB_MAX_OVERFLOW).",
                registry=own,
                multiprocess_mode="livesum",
            ),
            pool_waits=Counter(
                "socialhub_db_pool_waits",
                "Checkouts that had to wait for a connection.",
                registry=own,
            ),
            loop_lag=Histogram(
                "socialhub_event_loop_lag_seconds",
                "How late the event loop ran a 0.1 s timer: what every call waited on top of "
                "its own work (server/core/loopwatch.py).",
                buckets=LATENCY_BUCKETS,
                registry=own,
            ),
            _own=own,
        )

    def gauge(self, name: str, documentation: str, *, multiprocess_mode: MultiprocessMode) -> Gauge:
        """A domain's own gauge, registered as the process's others are (in `serve --workers`
        mode, in the workers' files; `multiprocess_mode` says how their values combine)."""
        return Gauge(name, documentation, registry=self._own, multiprocess_mode=multiprocess_mode)

    async def start(
        self,
        engine: AsyncEngine,
        in_flight: _InFlight,
        *,
        host: str,
        port: int,
        serve: bool,
        ready: Callable[[], bool] = lambda: True,
    ) -> int:
        """Sample the process's gauges from now on and, if `serve`, answer /metrics (and
        /readyz, from `ready()`, server/core/probes.py) on host:port (0: a free port); return
        the bound port (0 when not serving)."""
        if serve:
            # An HTTP thread: the event loop never waits on a scraper's socket. Rendering
            # holds the GIL for about 10 ms (40 methods) per scrape.
            try:
                self._http = probes.serve(host, port, self.registry, ready)
            except OSError as error:
                # Say which port: the gRPC one is in the settings too.
                raise OSError(error.errno, f"metrics on {host}:{port}: {error.strerror}") from error
            self.port = self._http.server_port
            log.info("serving metrics", extra={"url": f"http://{host}:{self.port}/metrics"})
        self._sample(engine, in_flight)
        self._sampler = asyncio.create_task(
            self._sample_every(engine, in_flight), name="metrics-sampler"
        )
        return self.port

    async def stop(self) -> None:
        if self._sampler is not None:
            await stop_task(self._sampler)
        if self._http is not None:
            # shutdown() waits for the serving thread's next poll (up to half a second).
            await asyncio.to_thread(self._http.shutdown)
            self._http.server_close()
            self._http = None

    async def _sample_every(self, engine: AsyncEngine, in_flight: _InFlight) -> None:
        while True:
            await asyncio.sleep(SAMPLE_INTERVAL_S)
            self._sample(engine, in_flight)

    def _sample(self, engine: AsyncEngine, in_flight: _InFlight) -> None:
        self.rpc.in_flight.set(in_flight.current)
        pool = engine.pool  # a new object after the engine recycles its pool
        if isinstance(pool, CountingPool):
            self.pool_in_use.set(pool.checkedout())
            self.pool_waiting.set(pool.waiting)
            self.pool_capacity.set(pool.capacity)
            if pool.waits > self._waits_seen:
                self.pool_waits.inc(pool.waits - self._waits_seen)
            self._waits_seen = pool.waits


class _InFlight(Protocol):
    """What the sampler reads from the in-flight limit (interceptors.InFlightLimit)."""

    current: int


@contextlib.contextmanager
def multiprocess_dir() -> Iterator[Path]:
    """The directory `serve --workers N` shares between its workers, set in the environment
    before the fork so every worker inherits it.

    It starts empty: files left by an earlier run would add its counts to this one's.
    PROMETHEUS_MULTIPROC_DIR, when set, names it (emptied, kept); otherwise it is a new
    temporary directory, removed afterwards.
    """
    given = os.environ.get(MULTIPROCESS_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix="socialhub-metrics-"))
    os.environ[MULTIPROCESS_ENV] = str(path)
    try:
        yield path
    finally:
        os.environ.pop(MULTIPROCESS_ENV, None)
        shutil.rmtree(path, ignore_errors=True)
