"""The publishing domain, as the composition root plugs it in."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

import asyncpg
from socialhub.v1 import publishing_pb2, publishing_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from server.core.config import DEV_PAGE_TOKEN_SECRET, Settings
from server.core.db import async_url
from server.core.domain import Domain, DomainContext, Job, Plugin, Service
from server.core.stopping import PartStops
from server.publishing import repository
from server.publishing.accounts import AccountService
from server.publishing.adapters import build_adapters
from server.publishing.adapters.base import Adapter, Platform
from server.publishing.businesses import BusinessService
from server.publishing.credentials import TokenKeeper
from server.publishing.notify import Changes
from server.publishing.posts import PostService
from server.publishing.publisher import Publisher, WorkerSettings
from server.publishing.ratelimits import Limits, RateGate
from server.publishing.servicer import PublishingServicer
from server.publishing.settings import PublishingSettings
from server.publishing.tables import TABLES
from server.publishing.tokens import NoKeys, Sealer, TokenCipher, development_key

log = logging.getLogger("socialhub.publishing")

SERVICE_NAME = publishing_pb2.DESCRIPTOR.services_by_name["PublishingService"].full_name
CONNECTION_PURGE_INTERVAL_S = 3600.0


def token_cipher(settings: PublishingSettings, core: Settings) -> Sealer:
    """TOKEN_ENCRYPTION_KEYS. Unset: on the embedded default (the development page-token
    secret, which `serve` allows nowhere else), a key derived from it; elsewhere none, and
    connecting accounts is refused until keys are set (the other services run regardless)."""
    if settings.token_encryption_keys:
        return TokenCipher(settings.token_encryption_keys)
    if core.page_token_secret == DEV_PAGE_TOKEN_SECRET:
        return TokenCipher([development_key(DEV_PAGE_TOKEN_SECRET)])
    log.warning(
        "TOKEN_ENCRYPTION_KEYS is not set: PublishingService refuses to connect accounts "
        "(`socialhub tokens new-key` makes a key)"
    )
    return NoKeys()


def listen_dsn(database_url: str) -> str:
    return async_url(database_url).replace("postgresql+asyncpg://", "postgresql://", 1)


class PublishingRuntime:
    """The replica's LISTEN connection and publishing worker, and the adapters' clients."""

    def __init__(
        self, changes: Changes, publisher: Publisher, adapters: Mapping[Platform, Adapter]
    ) -> None:
        self._changes = changes
        self._publisher = publisher
        self._adapters = adapters

    def start(self) -> None:
        self._changes.start()
        self._publisher.start()

    async def stop(self) -> None:
        parts = PartStops()
        await parts.stop("the publishing worker", self._publisher.stop())
        await parts.stop("the publishing notifications' listener", self._changes.stop())
        for platform, adapter in self._adapters.items():
            await parts.stop(f"the {platform} adapter's HTTP client", adapter.aclose())
        parts.raise_failures("publishing")


def build(context: DomainContext) -> Plugin:
    # httpx logs every request's URL at INFO: one line per platform call is noise here (the
    # attempts are in publish_attempts), and a URL may carry an OAuth code.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = context.settings_for(PublishingSettings)
    cipher = token_cipher(settings, context.settings)
    adapters = build_adapters(settings)
    dsn = listen_dsn(context.database_url)
    changes = Changes(lambda: asyncpg.connect(dsn, timeout=context.settings.db_pool_timeout_s))
    engine = context.engine
    keeper = TokenKeeper(engine, cipher, adapters, settings.token_refresh_margin_s)
    gate = RateGate(
        engine,
        context.cache.redis,
        Limits(
            meta_usage_threshold_percent=settings.meta_usage_threshold_percent,
            meta_usage_backoff_s=settings.meta_usage_backoff_s,
            x_daily_post_cap=settings.x_daily_post_cap,
            x_app_daily_post_cap=settings.x_app_daily_post_cap,
        ),
        retry_after_s=context.settings.redis_retry_after_s,
    )
    publisher = Publisher(
        engine,
        adapters,
        keeper,
        changes,
        gate,
        WorkerSettings(
            lease_s=settings.publish_lease_s,
            poll_s=settings.publish_poll_s,
            concurrency=settings.publish_concurrency,
            max_attempts=settings.publish_max_attempts,
            max_sends=settings.publish_max_sends,
            retry_base_s=settings.publish_retry_base_s,
            retry_max_s=settings.publish_retry_max_s,
        ),
    )
    servicer = PublishingServicer(
        BusinessService(engine, context.tokens),
        AccountService(engine, context.tokens, cipher, adapters, settings),
        PostService(engine, context.tokens, adapters, changes),
    )
    return Plugin(
        services=[
            Service(
                SERVICE_NAME,
                scope="publishing",
                register=lambda server: publishing_pb2_grpc.add_PublishingServiceServicer_to_server(
                    servicer, server
                ),
            )
        ],
        jobs=[Job("oauth-state-purge", CONNECTION_PURGE_INTERVAL_S, _purger(engine))],
        workers=[PublishingRuntime(changes, publisher, adapters)],
    )


def _purger(engine: AsyncEngine) -> Callable[[], Awaitable[int]]:
    async def purge() -> int:
        async with engine.begin() as conn:
            return await repository.purge_connections(conn)

    return purge


DOMAIN = Domain(
    name="publishing",
    tables=TABLES,
    build=build,
    settings=PublishingSettings,
)
