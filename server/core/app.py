"""Builds the gRPC server with every service and owns its lifecycle."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from pydantic_settings import BaseSettings
from redis.asyncio import BlockingConnectionPool, Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from server.core import tls
from server.core.auth import Authenticator
from server.core.cache import WARM_INVALIDATOR_CONNECTIONS, Cache
from server.core.config import Settings
from server.core.db import create_engine
from server.core.domain import Domain, DomainContext, Job, Plugin, Worker
from server.core.health import HealthMonitor
from server.core.idempotency import purge_expired_request_ids
from server.core.interceptors import InFlightLimit, InstrumentedServer
from server.core.leader import JobLeadership
from server.core.loopwatch import LoopWatch
from server.core.metrics import Metrics
from server.core.pagination import PageTokens
from server.core.stopping import PartStops
from server.core.tracing import Tracing

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

log = logging.getLogger("socialhub.server")


def server_options(*, reuse_port: bool) -> list[tuple[str, int]]:
    """SO_REUSEPORT only for `serve --workers N`: a lone server on a busy port must fail loudly."""
    return [
        ("grpc.so_reuseport", int(reuse_port)),
        ("grpc.max_receive_message_length", 4 * 1024 * 1024),
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.http2.max_pings_without_data", 0),
    ]


@dataclass
class Application:
    """One server process: engine, Redis, gRPC server and health, started and stopped together."""

    settings: Settings
    database_url: str
    redis_url: str
    # The composition root's list (server/app.py), in build order.
    domains: Sequence[Domain] = ()
    # Tests and benchmarks may give a domain settings other than the environment's.
    domain_settings: Mapping[type[BaseSettings], BaseSettings] = field(default_factory=dict)
    engine: AsyncEngine | None = None
    jobs_engine: AsyncEngine | None = None
    redis: Redis | None = None
    invalidator: Redis | None = None
    cache: Cache | None = None
    server: InstrumentedServer | None = None
    health: HealthMonitor | None = None
    auth: Authenticator | None = None
    plugins: list[Plugin] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    leadership: JobLeadership | None = None
    port: int = 0
    # Worker processes of `serve --workers N` share the port; only one of them competes for
    # the periodic jobs' leadership (which one replica of the deployment wins).
    reuse_port: bool = False
    run_jobs: bool = True
    # The domains' background workers (Plugin.workers); off for servers that only answer.
    run_workers: bool = True
    # More services on the same instrumented server (the benchmark's empty-RPC floor).
    extra_services: list[Callable[[InstrumentedServer], None]] = field(default_factory=list)
    # Service full name -> scope prefix, from the domains (authorization).
    scopes_by_service: dict[str, str] = field(default_factory=dict)
    metrics: Metrics | None = None
    # Answer /metrics here; with `serve --workers` only worker 0 does, for all of them.
    serve_metrics: bool = True
    metrics_port: int = 0
    tracing: Tracing | None = None
    loop_watch: LoopWatch | None = None
    # Spans go here (tests pass one with an in-memory exporter); else OTLP if configured.
    tracer_provider: TracerProvider | None = None

    async def start(self) -> int:
        settings = self.settings
        self.engine = create_engine(settings, self.database_url)
        self.redis = Redis.from_url(
            self.redis_url,
            socket_timeout=settings.redis_timeout_s,
            socket_connect_timeout=settings.redis_timeout_s,
            health_check_interval=30,
        )
        # A fixed set of connections opened at start: a write waits for a free one (up to
        # its try's timeout) instead of dialing, and so looking up, a new one (Cache.connect).
        self.invalidator = Redis.from_pool(
            BlockingConnectionPool.from_url(
                self.redis_url,
                max_connections=WARM_INVALIDATOR_CONNECTIONS,
                timeout=settings.redis_invalidate_timeout_s,
                socket_timeout=settings.redis_invalidate_timeout_s,
                socket_connect_timeout=settings.redis_invalidate_timeout_s,
                health_check_interval=30,
            )
        )
        self.cache = Cache(
            self.redis,
            retry_after_s=settings.redis_retry_after_s,
            enabled=settings.cache_enabled,
            invalidator=self.invalidator,
        )
        await self.cache.connect()
        tokens = PageTokens(settings.page_token_secret)

        self.metrics = Metrics.create() if settings.metrics_enabled else None
        if self.metrics is not None:
            self.cache.stats.export(self.metrics.cache)
        self.tracing = Tracing.start(settings, self.tracer_provider)
        limit = InFlightLimit(
            settings.max_concurrent_rpcs, self.metrics.rpc.shed if self.metrics else None
        )
        self.server = InstrumentedServer(
            grpc.aio.server(options=server_options(reuse_port=self.reuse_port)),
            limit,
            metrics=self.metrics.rpc if self.metrics else None,
            tracing=self.tracing,
        )
        context = DomainContext(
            self.engine,
            self.cache,
            tokens,
            settings,
            domain_settings=self.domain_settings,
            database_url=self.database_url,
            metrics=self.metrics,
        )
        self.plugins = [domain.build(context) for domain in self.domains]
        services = [service for plugin in self.plugins for service in plugin.services]
        self.scopes_by_service = {service.name: service.scope for service in services}
        self.auth = Authenticator(
            self.engine,
            enabled=settings.auth_enabled,
            cache_ttl_s=settings.api_key_cache_ttl_s,
            scopes_by_service=self.scopes_by_service,
            client_principals=tls.client_principals(settings),
        )
        # Each method's guard is decided as it registers, from the scopes above.
        self.server.guard_for = self.auth.guard
        for service in services:
            service.register(self.server)
        for register in self.extra_services:
            register(self.server)
        engine = self.engine
        self.jobs = jobs = [
            Job(
                "request-id-purge",
                settings.request_id_purge_interval_s,
                lambda: purge_expired_request_ids(engine),
            ),
            *(job for plugin in self.plugins for job in plugin.jobs),
        ]
        # Its own connection, so the lock never holds one of the calls' pooled connections.
        one_connection = settings.model_copy(update={"db_pool_size": 1, "db_max_overflow": 0})
        self.jobs_engine = create_engine(one_connection, self.database_url)
        self.leadership = JobLeadership(self.jobs_engine, jobs, poll_s=settings.job_leader_poll_s)
        service_names = [service.name for service in services]

        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, self.server)
        if settings.reflection_enabled:
            reflection.enable_server_reflection(
                [
                    *service_names,
                    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                    reflection.SERVICE_NAME,
                ],
                self.server,
            )
        credentials = tls.server_credentials(settings)
        if credentials is None:
            self.port = self.server.add_insecure_port(settings.address)
        else:
            self.port = self.server.add_secure_port(settings.address, credentials)
        self.health = HealthMonitor(
            health_servicer,
            self.engine,
            self.cache,
            service_names,
            settings.health_check_interval_s,
            metrics=self.metrics,
        )
        if self.metrics is not None:
            health_monitor = self.health
            self.metrics_port = await self.metrics.start(
                self.engine,
                limit,
                host=settings.metrics_host or settings.host,
                port=settings.metrics_port,
                serve=self.serve_metrics,
                ready=lambda: health_monitor.ready,
            )
        if settings.loop_stall_warn_s > 0:
            self.loop_watch = LoopWatch(
                stall_s=settings.loop_stall_warn_s,
                lag=self.metrics.loop_lag if self.metrics is not None else None,
            )
            self.loop_watch.start()
        await self.health.start()
        await self.server.start()
        self.auth.start()
        if self.run_jobs:
            self.leadership.start()
        if self.run_workers:
            for worker in self.workers():
                worker.start()
        return self.port

    def workers(self) -> list[Worker]:
        return [worker for plugin in self.plugins for worker in plugin.workers]

    def job(self, name: str) -> Job:
        return next(job for job in self.jobs if job.name == name)

    async def stop(self) -> None:
        """Flip health to NOT_SERVING first (so load balancers and clients start moving
        away), hand the jobs over and keep serving for the rest of the drain time, then
        refuse new calls with UNAVAILABLE, let in-flight ones finish, and close the pools.

        A part whose stop fails (its database gone, say) does not keep the others running:
        every part is stopped, and the failures are raised together at the end."""
        parts = PartStops()
        drain_ends = asyncio.get_running_loop().time() + self.settings.shutdown_drain_s
        if self.health is not None:
            await parts.stop("the health service", self.health.stop())
        if self.leadership is not None:
            await parts.stop("the jobs' leadership", self.leadership.stop())
        # The workers' own grace (sends in flight) runs beside the drain and the calls' grace,
        # so a stop takes the longer of the two, not their sum.
        workers = asyncio.gather(
            *(
                parts.stop(f"the worker {type(worker).__name__}", worker.stop())
                for worker in (self.workers() if self.run_workers else [])
            )
        )
        remaining = drain_ends - asyncio.get_running_loop().time()
        if self.health is not None and remaining > 0:
            await asyncio.sleep(remaining)
        if self.server is not None:
            await parts.stop("the gRPC server", self.server.stop(self.settings.shutdown_grace_s))
        await workers
        closers: list[tuple[str, Callable[[], Awaitable[object]] | None]] = [
            ("the metrics", None if self.metrics is None else self.metrics.stop),
            ("the event-loop watch", None if self.loop_watch is None else self.loop_watch.stop),
            ("tracing", None if self.tracing is None else self.tracing.stop),
            ("the API keys' authenticator", None if self.auth is None else self.auth.stop),
            ("the cache", None if self.cache is None else self.cache.aclose),
            ("the Redis client", None if self.redis is None else self.redis.aclose),
            (
                "the cache invalidator's Redis client",
                None if self.invalidator is None else self.invalidator.aclose,
            ),
            ("the database pool", None if self.engine is None else self.engine.dispose),
            (
                "the jobs' database pool",
                None if self.jobs_engine is None else self.jobs_engine.dispose,
            ),
        ]
        for part, close in closers:
            if close is not None:
                await parts.stop(part, close())
        parts.raise_failures("the server")
        log.info("server stopped")
