"""The `socialhub` command: serve, migrate, seed."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from functools import partial
from typing import Annotated

import typer

from server.core import migrate as migrations
from server.core.app import Application
from server.core.config import Settings
from server.core.db import create_engine
from server.core.embedded import EmbeddedServerMissing
from server.core.logs import configure_logging
from server.core.runtime import Backing, backing_servers
from server.core.workers import STOP_SIGNALS, claim_port, run_workers

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


async def _seed_demo(settings: Settings, backing: Backing) -> None:
    from tqdm import tqdm

    from server.seed import seed_demo_if_empty

    # No bar is shown here, and tqdm's monitor thread would outlive the load: `serve
    # --workers` forks afterwards, which is only safe with no thread left running.
    tqdm.monitor_interval = 0
    engine = create_engine(settings, backing.database_url)
    try:
        if await seed_demo_if_empty(engine, settings.demo_profiles):
            log.info("loaded demo data", extra={"profiles": settings.demo_profiles})
    finally:
        await engine.dispose()


def _should_seed(settings: Settings, backing: Backing) -> bool:
    return settings.seed_demo == "always" or (
        settings.seed_demo == "auto" and backing.embedded_database
    )


async def _serve(app: Application, on_ready: Callable[[int], None]) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    # A forked worker starts with these blocked, so that none arrives before the handlers.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    on_ready(await app.start())
    await stop.wait()
    log.info("shutting down")
    await app.stop()


def _ready_line(address: str, detail: str = "") -> str:
    return f"Socialhub ready on {address}{detail} - try: grpcurl -plaintext {address} list"


def _serve_one_process(settings: Settings, backing: Backing) -> None:
    def ready(port: int) -> None:
        print(_ready_line(f"{settings.host}:{port}"), flush=True)

    app = Application(settings, backing.database_url, backing.redis_url)
    _run(_serve(app, ready))


def _serve_worker(
    settings: Settings, backing: Backing, index: int, ready: Callable[[], None]
) -> None:
    """One of `serve --workers N`, in its forked process: its own engine, Redis and server."""
    configure_logging(settings.log_level, worker=index)
    app = Application(
        settings,
        backing.database_url,
        backing.redis_url,
        reuse_port=True,
        # The periodic jobs purge shared tables: once per service is enough.
        run_jobs=index == 0,
    )
    _run(_serve(app, lambda _port: ready()))


def _serve_workers(settings: Settings, backing: Backing) -> int:
    try:
        # Every worker must bind the same port, so port 0 is resolved here, once.
        settings.port = claim_port(settings.host, settings.port)
    except OSError as error:
        typer.echo(f"socialhub: cannot serve on {settings.address}: {error}", err=True)
        return 1

    def ready(pids: list[int]) -> None:
        detail = f" ({len(pids)} workers, pids {' '.join(map(str, pids))})"
        print(_ready_line(settings.address, detail), flush=True)

    return run_workers(settings.workers, partial(_serve_worker, settings, backing), ready)


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (env HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind (env PORT).")] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, help="Server processes sharing the port, for more cores (env WORKERS)."
        ),
    ] = None,
) -> None:
    """Migrate, load demo data on first start of an embedded database, and serve until SIGTERM."""
    settings = _settings()
    if host is not None:
        settings.host = host
    if port is not None:
        settings.port = port
    if workers is not None:
        settings.workers = workers
    with backing_servers(settings) as backing:
        migrations.upgrade(backing.database_url)
        if _should_seed(settings, backing):
            # Not uvloop: libuv keeps its resolver threads, asyncio.run joins its own.
            asyncio.run(_seed_demo(settings, backing))
        if settings.workers == 1:
            _serve_one_process(settings, backing)
        elif status := _serve_workers(settings, backing):
            raise typer.Exit(status)


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
    from server.profiles.cache_tags import LISTINGS_TAG

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
