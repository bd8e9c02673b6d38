"""The `socialhub` command: serve, migrate, seed."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Annotated

import typer

from server.core import migrate as migrations
from server.core.app import Application
from server.core.config import Settings
from server.core.db import create_engine
from server.core.embedded import EmbeddedServerMissing
from server.core.logs import configure_logging
from server.core.runtime import Backing, backing_servers

log = logging.getLogger("socialhub")
cli = typer.Typer(help="Socialhub gRPC service.", no_args_is_help=True, add_completion=False)


def _run(coroutine: object) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is absent only on Windows
        asyncio.run(coroutine)  # type: ignore[arg-type]
    else:
        uvloop.run(coroutine)  # type: ignore[arg-type]


def _settings() -> Settings:
    settings = Settings()
    configure_logging(settings.log_level)
    return settings


async def _serve(settings: Settings, backing: Backing) -> None:
    if _should_seed(settings, backing):
        from server.seed import seed_demo_if_empty

        engine = create_engine(settings, backing.database_url)
        try:
            if await seed_demo_if_empty(engine, settings.demo_profiles):
                log.info("loaded demo data", extra={"profiles": settings.demo_profiles})
        finally:
            await engine.dispose()

    app = Application(settings, backing.database_url, backing.redis_url)
    port = await app.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    address = f"{settings.host}:{port}"
    print(
        f"Socialhub ready on {address} - try: grpcurl -plaintext {address} list",
        flush=True,
    )
    await stop.wait()
    log.info("shutting down")
    await app.stop()


def _should_seed(settings: Settings, backing: Backing) -> bool:
    return settings.seed_demo == "always" or (
        settings.seed_demo == "auto" and backing.embedded_database
    )


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (env HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind (env PORT).")] = None,
) -> None:
    """Migrate, load demo data on first start of an embedded database, and serve until SIGTERM."""
    settings = _settings()
    if host is not None:
        settings.host = host
    if port is not None:
        settings.port = port
    with backing_servers(settings) as backing:
        migrations.upgrade(backing.database_url)
        _run(_serve(settings, backing))


@cli.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply database migrations up to REVISION."""
    settings = _settings()
    with backing_servers(settings, need_redis=False) as backing:
        migrations.upgrade(backing.database_url, revision)


@cli.command()
def seed(
    profiles: Annotated[int, typer.Option(min=0, help="Profiles to add.")] = 3000,
    posts: Annotated[int, typer.Option(min=0, help="Posts to add (with comments and likes).")] = 0,
    follows: Annotated[int, typer.Option(min=0, help="Follows to add.")] = 0,
) -> None:
    """Add bulk demo data with COPY, showing progress."""
    from server.seed import FeedVolumes, seed_feed, seed_profiles

    settings = _settings()
    # Bulk loads and recounts run for minutes; the per-statement limit is for serving.
    bulk_settings = settings.model_copy(update={"db_statement_timeout_ms": 0})

    async def load(database_url: str) -> None:
        engine = create_engine(bulk_settings, database_url)
        try:
            await seed_profiles(engine, profiles)
            if posts or follows:
                await seed_feed(engine, FeedVolumes.for_posts(posts, follows))
        finally:
            await engine.dispose()
        if settings.redis_url:
            await _invalidate_listings(settings.redis_url)

    with backing_servers(settings, need_redis=False) as backing:
        migrations.upgrade(backing.database_url)
        _run(load(backing.database_url))


async def _invalidate_listings(redis_url: str) -> None:
    """Servers sharing this Redis must not keep serving counts and lists from before the load."""
    from redis.asyncio import Redis

    from server.core.cache import Cache
    from server.profiles.service import LISTINGS_TAG

    redis = Redis.from_url(redis_url)
    try:
        await Cache(redis).invalidate(LISTINGS_TAG)
    finally:
        await redis.aclose()


def main() -> None:
    try:
        cli()
    except EmbeddedServerMissing as missing:
        typer.echo(f"socialhub: {missing}", err=True)
        raise SystemExit(2) from None
