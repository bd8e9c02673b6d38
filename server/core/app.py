"""Builds the gRPC server with every service and owns its lifecycle."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from redis.asyncio import Redis
from socialhub.v1 import feed_pb2, feed_pb2_grpc, profile_pb2, profile_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from server.core.cache import Cache
from server.core.config import Settings
from server.core.db import create_engine
from server.core.health import HealthMonitor
from server.core.idempotency import purge_expired_request_ids
from server.core.interceptors import InFlightLimit, InstrumentedServer
from server.core.pagination import PageTokens
from server.core.periodic import PeriodicJob
from server.feed.retention import ActivityRetention
from server.feed.service import FeedService
from server.feed.servicer import FeedServicer
from server.profiles.service import ProfileService
from server.profiles.servicer import ProfileServicer

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
    engine: AsyncEngine | None = None
    redis: Redis | None = None
    cache: Cache | None = None
    server: InstrumentedServer | None = None
    health: HealthMonitor | None = None
    retention: ActivityRetention | None = None
    jobs: list[PeriodicJob] = field(default_factory=list)
    port: int = 0
    # Worker processes of `serve --workers N` share the port; only one runs the periodic jobs.
    reuse_port: bool = False
    run_jobs: bool = True
    # More services on the same instrumented server (the benchmark's empty-RPC floor).
    extra_services: list[Callable[[InstrumentedServer], None]] = field(default_factory=list)

    async def start(self) -> int:
        settings = self.settings
        self.engine = create_engine(settings, self.database_url)
        self.redis = Redis.from_url(
            self.redis_url,
            socket_timeout=settings.redis_timeout_s,
            socket_connect_timeout=settings.redis_timeout_s,
            health_check_interval=30,
        )
        self.cache = Cache(
            self.redis, retry_after_s=settings.redis_retry_after_s, enabled=settings.cache_enabled
        )
        tokens = PageTokens(settings.page_token_secret)

        self.server = InstrumentedServer(
            grpc.aio.server(options=server_options(reuse_port=self.reuse_port)),
            InFlightLimit(settings.max_concurrent_rpcs),
        )
        feed = FeedService(self.engine, self.cache, tokens, settings)
        profiles = ProfileService(
            self.engine, self.cache, tokens, settings, deletion_hooks=[feed.release_profiles]
        )
        profile_pb2_grpc.add_ProfileServiceServicer_to_server(
            ProfileServicer(profiles), self.server
        )
        feed_pb2_grpc.add_FeedServiceServicer_to_server(FeedServicer(feed), self.server)
        for register in self.extra_services:
            register(self.server)
        self.retention = ActivityRetention(self.engine, settings)
        engine = self.engine
        self.jobs = [
            PeriodicJob(
                "activity-retention", settings.activity_purge_interval_s, self.retention.purge_once
            ),
            PeriodicJob(
                "request-id-purge",
                settings.request_id_purge_interval_s,
                lambda: purge_expired_request_ids(engine),
            ),
        ]
        service_names = [
            profile_pb2.DESCRIPTOR.services_by_name["ProfileService"].full_name,
            feed_pb2.DESCRIPTOR.services_by_name["FeedService"].full_name,
        ]

        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, self.server)
        reflection.enable_server_reflection(
            [
                *service_names,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            self.server,
        )
        self.port = self.server.add_insecure_port(settings.address)
        self.health = HealthMonitor(
            health_servicer,
            self.engine,
            self.cache,
            service_names,
            settings.health_check_interval_s,
        )
        await self.health.start()
        await self.server.start()
        if self.run_jobs:
            for job in self.jobs:
                job.start()
        return self.port

    async def stop(self) -> None:
        """Flip health to NOT_SERVING, refuse new calls, let in-flight ones finish, close pools."""
        for job in self.jobs:
            await job.stop()
        if self.health is not None:
            await self.health.stop()
        if self.server is not None:
            await self.server.stop(self.settings.shutdown_grace_s)
        if self.cache is not None:
            await self.cache.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        if self.engine is not None:
            await self.engine.dispose()
        log.info("server stopped")
