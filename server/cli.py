"""The `socialhub` command: serve, migrate, seed, keys, tokens, insights, top, watch."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from functools import partial
from typing import Annotated, Any, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server import demo_platforms, live_cli
from server.app import DOMAINS, application
from server.core import apikeys, tls
from server.core import migrate as migrations
from server.core.app import Application
from server.core.config import DEV_PAGE_TOKEN_SECRET, Settings
from server.core.db import create_engine
from server.core.embedded import EmbeddedServerMissing
from server.core.logs import configure_logging
from server.core.metrics import multiprocess_dir
from server.core.runtime import Backing, backing_servers
from server.core.stopping import StopOverran, TeardownWatch, stop_within
from server.core.workers import STOP_SIGNALS, claim_port, run_workers
from server.demo_platforms import DemoPlatforms

log = logging.getLogger("socialhub")
T = TypeVar("T")
cli = typer.Typer(help="Socialhub gRPC service.", no_args_is_help=True, add_completion=False)


def _run(coroutine: object, watch: TeardownWatch | None = None) -> None:
    """Run the coroutine on uvloop; `watch` (armed by the coroutine when it is done) is
    disarmed once the loop's teardown is over."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is absent only on Windows
        runner: Callable[[Any], Any] = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(coroutine)
    finally:
        if watch is not None:
            watch.disarm()


def _settings() -> Settings:
    settings = Settings()
    configure_logging(settings.log_level)
    return settings


async def _seed_demo(settings: Settings, backing: Backing) -> None:
    from tqdm import tqdm

    from server.seed import first_start_volumes, seed_demo_if_empty

    # No bar is shown here, and tqdm's monitor thread would outlive the load: `serve
    # --workers` forks afterwards, which is only safe with no thread left running.
    tqdm.monitor_interval = 0
    engine = create_engine(settings, backing.database_url)
    try:
        volumes = first_start_volumes(settings.demo_profiles)
        if await seed_demo_if_empty(engine, DOMAINS, volumes):
            log.info("loaded demo data", extra={"profiles": settings.demo_profiles})
    finally:
        await engine.dispose()


def _should_seed(settings: Settings, backing: Backing) -> bool:
    return settings.seed_demo == "always" or (
        settings.seed_demo == "auto" and backing.embedded_database
    )


async def _serve(app: Application, on_ready: Callable[[int], None], watch: TeardownWatch) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully; `watch` then bounds the loop's
    own teardown (server/core/stopping.py)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    # A forked worker starts with these blocked, so that none arrives before the handlers.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    port = await app.start()
    # What starting made (modules, descriptors, metadata, pools) lives as long as the process:
    # out of the collector's reach, so that a full collection scans only what calls make. A
    # full collection of all of it paused a call for tens of milliseconds now and then (a
    # report reading a thousand rows: docs/ANALYTICS.md, "Reports at 10 million snapshots").
    gc.freeze()
    on_ready(port)
    await stop.wait()
    log.info("shutting down")
    try:
        await stop_within(app.stop(), app.settings.stop_deadline_s)
    except StopOverran:
        watch.arm(exit_code=1)
        raise SystemExit(1) from None
    except Exception:
        # In the JSON log like everything else (a traceback on stderr is missed by whoever
        # reads the logs), and the loop's teardown still bounded.
        log.exception("the graceful stop failed")
        watch.arm(exit_code=1)
        raise SystemExit(1) from None
    watch.arm(exit_code=0)


# Under STATE_DIR: the development key of the embedded default, reused by later starts.
DEV_KEY_FILE = "dev-api-key"


def _ready_line(settings: Settings, address: str, detail: str = "", key: str | None = None) -> str:
    """One line with a grpcurl call that works as printed (given the key, when one is known)."""
    flags = "" if settings.tls_cert_file else "-plaintext "
    if key is not None:
        flags += f"-H 'authorization: Bearer {key}' "
    elif settings.auth_enabled:
        flags += '-H "authorization: Bearer $SOCIALHUB_KEY" '
    call = f"""-d '{{"page_size": 2}}' {address} socialhub.v1.ProfileService/ListProfiles"""
    return f"Socialhub ready on {address}{detail} - try: grpcurl {flags}{call}"


def _refusal(settings: Settings) -> str | None:
    """Why `serve` must not start with these settings, if it must not."""
    try:
        tls.check(settings)
    except tls.TlsSettingsError as error:
        return str(error)
    if settings.database_url is not None and settings.page_token_secret == DEV_PAGE_TOKEN_SECRET:
        return (
            "PAGE_TOKEN_SECRET is the development value, which anyone can use to forge page "
            "tokens; outside the embedded default (DATABASE_URL is set) set a secret of your "
            "own, e.g. PAGE_TOKEN_SECRET=$(openssl rand -base64 32)"
        )
    return None


def _development_key(settings: Settings, backing: Backing) -> str | None:
    if not (backing.embedded_database and settings.auth_enabled):
        return None
    return apikeys.development_key(backing.database_url, settings.state_dir / DEV_KEY_FILE)


def _serve_one_process(
    settings: Settings,
    backing: Backing,
    key: str | None,
    demo: DemoPlatforms | None,
    cleanup: Callable[[], None],
) -> None:
    """`cleanup` stops what `serve` started beside the server (embedded servers, the demo's
    fakes), should the process have to leave without its usual way out."""

    def ready(port: int) -> None:
        print(_ready_line(settings, f"{settings.host}:{port}", key=key), flush=True)
        demo_platforms.announce(f"{settings.host}:{port}", key, demo)

    app = application(settings, backing.database_url, backing.redis_url)
    watch = TeardownWatch(before_exit=cleanup)
    _run(_serve(app, ready, watch), watch)


def _serve_worker(
    settings: Settings, backing: Backing, index: int, ready: Callable[[], None]
) -> None:
    """One of `serve --workers N`, in its forked process: its own engine, Redis and server."""
    configure_logging(settings.log_level, worker=index)
    app = application(
        settings,
        backing.database_url,
        backing.redis_url,
        reuse_port=True,
        # One worker per replica competes for the periodic jobs (one replica runs them).
        run_jobs=index == 0,
        # Every worker writes its metrics to the shared directory; worker 0 serves them all.
        serve_metrics=index == 0,
    )
    # The parent owns the embedded servers: a worker has nothing of its own to clean up.
    watch = TeardownWatch()
    _run(_serve(app, lambda _port: ready(), watch), watch)


def _serve_workers(
    settings: Settings, backing: Backing, key: str | None, demo: DemoPlatforms | None
) -> int:
    try:
        # Every worker must bind the same port, so port 0 is resolved here, once.
        settings.port = claim_port(settings.host, settings.port)
    except OSError as error:
        typer.echo(f"socialhub: cannot serve on {settings.address}: {error}", err=True)
        return 1

    def ready(pids: list[int]) -> None:
        detail = f" ({len(pids)} workers, pids {' '.join(map(str, pids))})"
        print(_ready_line(settings, settings.address, detail, key), flush=True)
        demo_platforms.announce(settings.address, key, demo)

    # Made before the fork, so every worker inherits it (server/core/metrics.py).
    with multiprocess_dir():
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
    if refusal := _refusal(settings):
        typer.echo(f"socialhub: {refusal}", err=True)
        raise typer.Exit(2)
    if not settings.auth_enabled:
        log.warning("authentication is off (AUTH_ENABLED=false): every call is served as admin")
    with contextlib.ExitStack() as started:
        backing = started.enter_context(backing_servers(settings))
        demo = started.enter_context(demo_platforms.platform_fakes(backing.embedded_database))
        migrations.upgrade(backing.database_url)
        if _should_seed(settings, backing):
            # Not uvloop: libuv keeps its resolver threads, asyncio.run joins its own.
            asyncio.run(_seed_demo(settings, backing))
        key = _development_key(settings, backing)
        if settings.workers == 1:
            _serve_one_process(settings, backing, key, demo, started.close)
        elif status := _serve_workers(settings, backing, key, demo):
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
    from server.seed import seed as seed_domains

    settings = _settings()
    # Bulk loads and recounts run for minutes; the per-statement limit is for serving.
    bulk_settings = settings.model_copy(update={"db_statement_timeout_ms": 0})

    async def load(database_url: str) -> None:
        engine = create_engine(bulk_settings, database_url)
        try:
            volumes = {"profiles": profiles, "posts": posts, "follows": follows}
            await seed_domains(engine, DOMAINS, volumes)
        finally:
            await engine.dispose()
        if settings.redis_url:
            await _invalidate_cache(settings.redis_url)

    with backing_servers(settings, need_redis=False) as backing:
        migrations.upgrade(backing.database_url)
        _run(load(backing.database_url))


async def _invalidate_cache(redis_url: str) -> None:
    """Servers sharing this Redis must not keep serving anything cached before the load."""
    from redis.asyncio import Redis

    from server.core.cache import Cache

    redis = Redis.from_url(redis_url)
    try:
        await Cache(redis).invalidate_everything()
    finally:
        await redis.aclose()


insights = typer.Typer(
    help="Content insights of FeedService posts (docs/ANALYTICS.md, Content insights).",
    no_args_is_help=True,
)
cli.add_typer(insights, name="insights")


@insights.command("backfill")
def backfill_insights(
    batch_size: Annotated[
        int, typer.Option(min=1, max=5000, help="Posts read, queued and analysed per batch.")
    ] = 500,
) -> None:
    """Compute insights for every post lacking current-model ones (and record the engagement of
    posts never seen). Safe while servers run; run it again to resume."""
    from tqdm import tqdm

    from server.analytics.backfill import run_backfill

    settings = _settings()
    bar = tqdm(desc="posts", unit="post", disable=None)

    async def run(backing: Backing) -> None:
        def on_total(total: int) -> None:
            bar.total = total
            bar.refresh()

        def advance(done: int) -> None:
            bar.update(done)

        totals = await run_backfill(
            settings,
            backing.database_url,
            backing.redis_url,
            batch_size=batch_size,
            on_total=on_total,
            progress=advance,
        )
        bar.close()
        typer.echo(
            f"walked {totals.posts} posts: queued {totals.queued}, analysed {totals.analysed}, "
            f"removed {totals.removed} insights of deleted posts, recorded "
            f"{totals.snapshots} engagement snapshots"
        )

    with backing_servers(settings) as backing:
        migrations.upgrade(backing.database_url)
        _run(run(backing))


@insights.command("dead-letters")
def list_dead_letters(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per post.")] = False,
) -> None:
    """The posts whose insights failed too often to be tried again (docs/ANALYTICS.md, "Dead
    letters"), oldest first: post id, failures, last error, when."""
    from server.analytics.insight_repository import dead_letters

    rows = [
        {
            "post_id": row.post_id,
            "failures": row.failures,
            "dead_lettered_time": _when(row.dead_lettered_at),
            "last_error": row.last_error or "",
        }
        for row in _on_database(dead_letters)
    ]
    _echo_rows(rows, ("post_id", "failures", "dead_lettered_time", "last_error"), as_json)


@insights.command("requeue")
def requeue_dead_letters(
    post: Annotated[
        list[int] | None, typer.Option(help="A dead-lettered post's id; repeatable.")
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Every dead letter.")] = False,
) -> None:
    """Make dead letters live again, once what failed them is fixed: the workers take them at
    their next poll, with their failures counted afresh."""
    from server.analytics.insight_repository import requeue_dead_letters

    if bool(post) == every:
        typer.echo("socialhub: give --post (repeatable) or --all, not both", err=True)
        raise typer.Exit(2)
    named = None if every else sorted(set(post or ()))

    async def requeue(conn: AsyncConnection) -> list[int]:
        return await requeue_dead_letters(conn, named)

    requeued = _on_database(requeue)
    typer.echo(f"requeued {len(requeued)} dead letters: {_ids(requeued)}")
    if named is not None and (left := sorted(set(named) - set(requeued))):
        typer.echo(f"socialhub: not dead letters, left as they are: {_ids(left)}", err=True)


def _ids(ids: Sequence[int]) -> str:
    return ", ".join(map(str, ids)) or "none"


keys = typer.Typer(
    help="API keys: shown once at creation, stored as a hash, revoked within API_KEY_CACHE_TTL_S.",
    no_args_is_help=True,
)
cli.add_typer(keys, name="keys")


def _on_database(work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """Run `work` in one transaction on the configured (or embedded) database."""
    settings = _settings()

    async def transaction(engine: AsyncEngine) -> T:
        async with engine.begin() as conn:
            return await work(conn)

    with backing_servers(settings, need_redis=False) as backing:
        migrations.upgrade(backing.database_url)
        return apikeys.run_on(backing.database_url, transaction)


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.isoformat(timespec="seconds")


@keys.command("create")
def create_key(
    name: Annotated[str, typer.Option(help="What the key is for (shown in lists).")],
    scope: Annotated[
        list[str],
        typer.Option(help="profiles.read, profiles.write, feed.read, ... or admin; repeatable."),
    ],
    tenant: Annotated[
        list[str] | None,
        typer.Option(help="Bind the key to a tenant (businesses/7); repeatable."),
    ] = None,
    expires_in: Annotated[
        str | None, typer.Option(help="Expire after this long: 30d, 12h, 90m, 3600s.")
    ] = None,
) -> None:
    """Create a key: prints it on stdout (the only time it is shown), the rest on stderr."""
    try:
        scopes = apikeys.check_scopes(scope)
        tenants = apikeys.check_tenants(tenant or [])
        lifetime = None if expires_in is None else apikeys.parse_duration(expires_in)
    except ValueError as error:
        typer.echo(f"socialhub: {error}", err=True)
        raise typer.Exit(2) from None

    async def create(conn: AsyncConnection) -> apikeys.IssuedKey:
        return await apikeys.create(
            conn, name=name, scopes=scopes, tenants=tenants, expires_in=lifetime
        )

    issued = _on_database(create)
    stored = issued.stored
    typer.echo(
        f"created API key {stored.id} {stored.name!r} ({stored.prefix}): scopes "
        f"{', '.join(stored.scopes)}; tenants {', '.join(stored.tenants) or 'any'}; expires "
        f"{_when(stored.expire_time)}. The key is shown once, below; keep it secret.",
        err=True,
    )
    typer.echo(issued.key)


@keys.command("list")
def list_keys(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per key.")] = False,
) -> None:
    """Every key, without secrets: id, name, prefix, state, scopes, tenants and times."""

    async def listing(conn: AsyncConnection) -> tuple[list[apikeys.ApiKey], datetime]:
        return await apikeys.list_all(conn), await apikeys.now(conn)

    stored, now = _on_database(listing)
    rows = [
        {
            "id": key.id,
            "name": key.name,
            "prefix": key.prefix,
            "state": key.state(now),
            "scopes": list(key.scopes),
            "tenants": list(key.tenants),
            "create_time": _when(key.create_time),
            "last_used_time": _when(key.last_used_time),
            "expire_time": _when(key.expire_time),
            "revoke_time": _when(key.revoke_time),
        }
        for key in stored
    ]
    _echo_rows(
        rows, ("id", "name", "prefix", "state", "scopes", "tenants", "last_used_time"), as_json
    )


def _echo_rows(rows: list[dict[str, Any]], columns: Sequence[str], as_json: bool) -> None:
    """A listing: one JSON object per row, or these columns as a table under a header."""
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    table = [[str(c).upper() for c in columns]] + [
        [",".join(v) if isinstance(v := row[c], list) else str(v) for c in columns] for row in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        typer.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )


@keys.command("revoke")
def revoke_key(key_id: Annotated[int, typer.Argument(help="The key's id (keys list).")]) -> None:
    """Revoke a key: every replica refuses it within API_KEY_CACHE_TTL_S."""

    async def revoke(conn: AsyncConnection) -> apikeys.ApiKey | None:
        return await apikeys.revoke(conn, key_id)

    revoked = _on_database(revoke)
    if revoked is None:
        typer.echo(f"socialhub: no active API key with id {key_id}", err=True)
        raise typer.Exit(1)
    ttl = Settings().api_key_cache_ttl_s
    typer.echo(
        f"revoked API key {revoked.id} {revoked.name!r} ({revoked.prefix}); servers refuse "
        f"it within API_KEY_CACHE_TTL_S ({ttl:g} s)"
    )


tokens = typer.Typer(
    help="Platform tokens at rest: TOKEN_ENCRYPTION_KEYS is a JSON list of keys; the first "
    "encrypts, every one decrypts.",
    no_args_is_help=True,
)
cli.add_typer(tokens, name="tokens")


@tokens.command("new-key")
def new_token_key() -> None:
    """Print a fresh key (base64, 32 bytes) for TOKEN_ENCRYPTION_KEYS."""
    from server.publishing.tokens import new_key

    typer.echo(new_key())


@tokens.command("rotate")
def rotate_tokens() -> None:
    """Re-encrypt every stored token and pending connection with the first key, in one
    transaction (set TOKEN_ENCRYPTION_KEYS='["<new>", "<old>", ...]' first)."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError
    from tqdm import tqdm

    from server.publishing import rotation
    from server.publishing.domain import token_cipher
    from server.publishing.settings import PublishingSettings
    from server.publishing.tokens import TokenCipher, TokenKeyError

    settings = _settings()
    try:
        # The keys the server computes from the same settings (a development one included).
        cipher = token_cipher(PublishingSettings(), settings)
    except TokenKeyError as error:
        typer.echo(f"socialhub: {error}", err=True)
        raise typer.Exit(2) from None
    except (SettingsError, ValidationError):
        # Not pydantic's text: it may echo the keys.
        typer.echo("socialhub: TOKEN_ENCRYPTION_KEYS must be a JSON list of keys", err=True)
        raise typer.Exit(2) from None
    if not isinstance(cipher, TokenCipher):
        typer.echo("socialhub: TOKEN_ENCRYPTION_KEYS is not set: no key to rotate to", err=True)
        raise typer.Exit(2)

    def track(rows: Sequence[Any], what: str) -> Iterable[Any]:
        # A bar on a terminal only (disable=None), on stderr.
        return tqdm(rows, desc=what, unit="row", disable=None)

    async def rotate(conn: AsyncConnection) -> rotation.Rotated:
        return await rotation.rotate(conn, cipher, track)

    try:
        done = _on_database(rotate)
    except rotation.RotationError as error:
        typer.echo(f"socialhub: {error}; nothing was changed", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"re-encrypted {done.tokens} tokens and {done.verifiers} connection verifiers with the "
        f"first key; {done.current} were already under it"
    )


cli.command("top")(live_cli.top)
cli.command("watch")(live_cli.watch)


def main() -> None:
    try:
        cli()
    except EmbeddedServerMissing as missing:
        typer.echo(f"socialhub: {missing}", err=True)
        raise SystemExit(2) from None
