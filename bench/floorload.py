"""Floors: the cheapest way to get the same answer straight from PostgreSQL or Redis.

A floor runs the closed loop of bench/loadgen.py with a bare driver and no application
in between: a prepared asyncpg statement per connection, or a redis-py GET per
connection. Its server CPU per call is what the datastore alone costs, so it bounds
what any application server in front of it can reach.

A query returning no row, or a GET finding no key, counts as an error: a floor that
silently measured misses would be a floor for the wrong work.

`python -m bench.floorload clients` compares Redis clients on the cache's hot read (the
EVALSHA of server/core/cache.py on a cached serialized profile): the hand-written
pipelined client (server/core/resp.py), redis-py's asyncio client and coredis, each shared
by all callers as the cache shares its client, and prints the client's CPU per read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import psutil
import redis.asyncio
import redis.exceptions

from bench import loadgen

# Takes the call number, returns the statement's arguments / the key. Must be picklable
# (a module-level class instance) to reach the spawned load-generator process.
ArgsFactory = Callable[[int], tuple[Any, ...]]
KeyFactory = Callable[[int], str]


class MissingRow(Exception):
    """The statement returned no row."""


class MissingKey(Exception):
    """GET found no value."""


@dataclass(frozen=True)
class ArgsCycle:
    """Cycle through a fixed list of argument tuples."""

    args: Sequence[tuple[Any, ...]]

    def __call__(self, i: int) -> tuple[Any, ...]:
        return self.args[i % len(self.args)]


@dataclass(frozen=True)
class KeyCycle:
    """Cycle through a fixed list of keys."""

    keys: Sequence[str]

    def __call__(self, i: int) -> str:
        return self.keys[i % len(self.keys)]


def asyncpg_dsn(url: str) -> str:
    """asyncpg takes postgresql:// only; accept the SQLAlchemy spelling too."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def postgres_server_pid(dsn: str) -> int:
    """The postmaster's pid: the parent of this connection's backend (a local server only)."""
    conn = await asyncpg.connect(asyncpg_dsn(dsn))
    try:
        # Asked while connected: the backend exits with the connection.
        return psutil.Process(int(await conn.fetchval("SELECT pg_backend_pid()"))).ppid()
    finally:
        await conn.close()


async def redis_server_pid(redis_url: str) -> int:
    """redis-server's pid, as it reports it (a local server only)."""
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        info = await client.info("server")
    finally:
        await client.aclose()
    return int(info["process_id"])


class _FetchRow:
    def __init__(self, statement: Any, args_factory: ArgsFactory) -> None:
        self._statement = statement
        self._args = args_factory

    async def __call__(self, i: int) -> None:
        if await self._statement.fetchrow(*self._args(i)) is None:
            raise MissingRow


async def drive_asyncpg(
    dsn: str,
    scenario: str,
    sql: str,
    args_factory: ArgsFactory,
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    server_pid: loadgen.Pids,
    backing_pids: loadgen.Pids = None,
) -> loadgen.Result:
    """One connection per caller, the statement prepared once on each, then fetchrow."""
    connections = await asyncio.gather(
        *(asyncpg.connect(asyncpg_dsn(dsn)) for _ in range(concurrency))
    )
    try:
        statements = await asyncio.gather(*(conn.prepare(sql) for conn in connections))
        return await loadgen.closed_loop(
            scenario,
            [_FetchRow(statement, args_factory) for statement in statements],
            duration_s=duration_s,
            warmup_s=warmup_s,
            expected_errors=(MissingRow, asyncpg.PostgresError, asyncpg.InterfaceError, OSError),
            server_pid=server_pid,
            backing_pids=backing_pids,
        )
    finally:
        await asyncio.gather(*(conn.close() for conn in connections))


class _Get:
    def __init__(self, client: redis.asyncio.Redis, key_factory: KeyFactory) -> None:
        self._client = client
        self._keys = key_factory

    async def __call__(self, i: int) -> None:
        if await self._client.get(self._keys(i)) is None:
            raise MissingKey


async def drive_redis(
    redis_url: str,
    scenario: str,
    key_factory: KeyFactory,
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    server_pid: loadgen.Pids,
    backing_pids: loadgen.Pids = None,
) -> loadgen.Result:
    """One single-connection client per caller: no pool checkout on the hot path."""
    clients = [
        redis.asyncio.Redis.from_url(redis_url, single_connection_client=True)
        for _ in range(concurrency)
    ]
    try:
        await asyncio.gather(*(client.ping() for client in clients))
        return await loadgen.closed_loop(
            scenario,
            [_Get(client, key_factory) for client in clients],
            duration_s=duration_s,
            warmup_s=warmup_s,
            expected_errors=(MissingKey, redis.exceptions.RedisError, OSError),
            server_pid=server_pid,
            backing_pids=backing_pids,
        )
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))


def run_asyncpg_in_subprocess(
    dsn: str,
    scenario: str,
    sql: str,
    args_factory: ArgsFactory,
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    server_pid: loadgen.Pids,
    backing_pids: loadgen.Pids = None,
) -> loadgen.Result:
    """The asyncpg floor from a spawned process. `server_pid` is the postmaster's: the CPU
    of all its backends (and background workers) is charged."""
    return loadgen.run_driver_in_subprocess(
        drive_asyncpg,
        dsn,
        scenario,
        sql,
        args_factory,
        concurrency=concurrency,
        duration_s=duration_s,
        warmup_s=warmup_s,
        server_pid=server_pid,
        backing_pids=backing_pids,
    )


def run_redis_in_subprocess(
    redis_url: str,
    scenario: str,
    key_factory: KeyFactory,
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    server_pid: loadgen.Pids,
    backing_pids: loadgen.Pids = None,
) -> loadgen.Result:
    """The Redis GET floor from a spawned process. `server_pid` is redis-server's."""
    return loadgen.run_driver_in_subprocess(
        drive_redis,
        redis_url,
        scenario,
        key_factory,
        concurrency=concurrency,
        duration_s=duration_s,
        warmup_s=warmup_s,
        server_pid=server_pid,
        backing_pids=backing_pids,
    )


# ---------------------------------------------------------------- Redis clients, cache read
# The cache's hot read (server/core/cache.py): the same script, keys and arguments, against a
# warm cache, so every call finds its entry. Each client is shared by every caller, as the
# server's one Cache shares its client.

CACHE_READ_CLIENTS = ("resp.py", "redis-py", "coredis")
CACHE_READ_TAG = "sh:tag:bench-clients"
CACHE_READ_TAG_TTL_S = 7 * 24 * 3600


def cached_profile_payload() -> bytes:
    """A serialized profile like the ones GetProfile caches (383 bytes)."""
    from google.protobuf.timestamp_pb2 import Timestamp
    from socialhub.v1 import profile_pb2

    presence = profile_pb2.PlatformPresence
    return profile_pb2.Profile(
        name="profiles/123456",
        display_name="Aarav Sharma",
        username="aarav.sharma",
        designation="Member of the Legislative Assembly",
        zone="North",
        party_district="Central District",
        constituency="Riverside East",
        date_of_birth="1975-04-12",
        email="aarav.sharma@example.org",
        phone="+91 98765 43210",
        bio="Public servant focused on healthcare, education and clean water for every village.",
        facebook=presence(handle="aarav.sharma.official", followers=182_345),
        x=presence(handle="aaravsharma", followers=96_120),
        instagram=presence(handle="aarav.sharma", followers=54_002),
        youtube=presence(handle="AaravSharmaTV", followers=12_870),
        total_followers=345_337,
        create_time=Timestamp(seconds=1_700_000_000),
        update_time=Timestamp(seconds=1_720_000_000),
        followers_count=1_234,
        following_count=321,
        posts_count=87,
    ).SerializeToString()


@dataclass(frozen=True)
class CacheReadKeys:
    """Entries stored as the cache stores them: `<key>@<version of the tag>`."""

    keys: Sequence[str]
    tag: str = CACHE_READ_TAG

    def __call__(self, i: int) -> tuple[list[str], list[str | int]]:
        from server.core.cache import _new_version

        key = self.keys[i % len(self.keys)]
        return [self.tag], [key, _new_version(), CACHE_READ_TAG_TTL_S]


async def prime_cache_reads(redis_url: str, count: int = 1_000) -> CacheReadKeys:
    """Store `count` copies of the payload under one tag version and load the script."""
    from server.core.cache import _READ_SCRIPT

    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        version = "0123456789abcdef"
        keys = [f"sh:bench-clients:{i}" for i in range(count)]
        payload = cached_profile_payload()
        async with client.pipeline(transaction=False) as pipe:
            pipe.set(CACHE_READ_TAG, version, ex=CACHE_READ_TAG_TTL_S)
            for key in keys:
                pipe.set(f"{key}@{version}", payload, ex=3600)
            await pipe.execute()
        await client.script_load(_READ_SCRIPT)
    finally:
        await client.aclose()
    return CacheReadKeys(keys)


class _ReadViaResp:
    def __init__(self, client: Any, keys: CacheReadKeys, sha: str, script: str) -> None:
        self._client, self._keys, self._sha, self._script = client, keys, sha, script

    async def __call__(self, i: int) -> None:
        keys, args = self._keys(i)
        _version, cached = await self._client.evalsha(self._sha, self._script, keys, args)
        if cached is None:
            raise MissingKey


class _ReadViaRedisPy:
    def __init__(self, script: Any, keys: CacheReadKeys) -> None:
        self._script, self._keys = script, keys

    async def __call__(self, i: int) -> None:
        keys, args = self._keys(i)
        _version, cached = await self._script(keys=keys, args=args)
        if cached is None:
            raise MissingKey


class _ReadViaCoredis:
    def __init__(self, client: Any, keys: CacheReadKeys, sha: str) -> None:
        self._client, self._keys, self._sha = client, keys, sha

    async def __call__(self, i: int) -> None:
        keys, args = self._keys(i)
        _version, cached = await self._client.evalsha(self._sha, keys=keys, args=args)
        if cached is None:
            raise MissingKey


async def drive_cache_read(
    redis_url: str,
    scenario: str,
    client_name: str,
    keys: CacheReadKeys,
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    server_pid: loadgen.Pids,
) -> loadgen.Result:
    """`concurrency` callers sharing one client of kind `client_name`, each doing the read."""
    import hashlib

    from server.core.cache import _READ_SCRIPT

    sha = hashlib.sha1(_READ_SCRIPT.encode()).hexdigest()
    # The server's Redis settings (server/core/app.py): the same timeouts for every client.
    timeout_s = 1.0
    errors: tuple[type[BaseException], ...] = (MissingKey, redis.exceptions.RedisError, OSError)
    if client_name == "resp.py":
        from server.core.resp import RespClient

        settings = redis.asyncio.Redis.from_url(
            redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        fast = RespClient.for_redis(settings)
        assert fast is not None, f"resp.py cannot connect to {redis_url}"
        try:
            return await loadgen.closed_loop(
                scenario,
                [_ReadViaResp(fast, keys, sha, _READ_SCRIPT)] * concurrency,
                duration_s=duration_s,
                warmup_s=warmup_s,
                expected_errors=errors,
                server_pid=server_pid,
            )
        finally:
            await fast.aclose()
            await settings.aclose()
    if client_name == "redis-py":
        client = redis.asyncio.Redis.from_url(
            redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        try:
            script = client.register_script(_READ_SCRIPT)
            return await loadgen.closed_loop(
                scenario,
                [_ReadViaRedisPy(script, keys)] * concurrency,
                duration_s=duration_s,
                warmup_s=warmup_s,
                expected_errors=errors,
                server_pid=server_pid,
            )
        finally:
            await client.aclose()
    if client_name == "coredis":
        import coredis
        import coredis.exceptions

        core = coredis.Redis.from_url(
            redis_url, stream_timeout=timeout_s, connect_timeout=timeout_s
        )
        # coredis 6 scopes its pool's connections to this block (structured concurrency).
        async with core:
            return await loadgen.closed_loop(
                scenario,
                [_ReadViaCoredis(core, keys, sha)] * concurrency,
                duration_s=duration_s,
                warmup_s=warmup_s,
                expected_errors=(*errors, coredis.exceptions.RedisError),
                server_pid=server_pid,
            )
    raise ValueError(f"unknown client {client_name!r}; one of {CACHE_READ_CLIENTS}")


def run_cache_read_in_subprocess(
    redis_url: str,
    scenario: str,
    client_name: str,
    keys: CacheReadKeys,
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    server_pid: loadgen.Pids,
) -> loadgen.Result:
    """One client's cache-read run from a spawned process: its own CPU is the client's."""
    return loadgen.run_driver_in_subprocess(
        drive_cache_read,
        redis_url,
        scenario,
        client_name,
        keys,
        concurrency=concurrency,
        duration_s=duration_s,
        warmup_s=warmup_s,
        server_pid=server_pid,
    )


@dataclass(frozen=True)
class ClientFigures:
    client: str
    transport: str
    # Medians over the repeats; the spread of the client CPU shows how noisy the machine was.
    calls_per_s: float
    client_cpu_us: float
    client_cpu_us_min: float
    client_cpu_us_max: float
    redis_cpu_us: float
    p50_ms: float
    p99_ms: float
    errors: int


def compare_clients(
    targets: Sequence[tuple[str, str]],
    clients: Sequence[str] = CACHE_READ_CLIENTS,
    *,
    concurrency: int = 32,
    duration_s: float = 4.0,
    warmup_s: float = 1.0,
    repeats: int = 3,
) -> list[ClientFigures]:
    """Every client against every (transport, URL) target, interleaved `repeats` times so a
    burst of other work on the machine is spread over all of them."""
    import statistics

    results: dict[tuple[str, str], list[loadgen.Result]] = {}
    for transport, url in targets:
        keys = asyncio.run(prime_cache_reads(url))
        pid = asyncio.run(redis_server_pid(url))
        for _ in range(repeats):
            for client in clients:
                results.setdefault((client, transport), []).append(
                    run_cache_read_in_subprocess(
                        url,
                        f"cache read {client} {transport}",
                        client,
                        keys,
                        concurrency=concurrency,
                        duration_s=duration_s,
                        warmup_s=warmup_s,
                        server_pid=pid,
                    )
                )

    def median(runs: list[loadgen.Result], field: str) -> float:
        return round(statistics.median(float(getattr(run, field) or 0.0) for run in runs), 1)

    figures = []
    for (client, transport), runs in results.items():
        cpu = [float(run.client_cpu_us_per_call or 0.0) for run in runs]
        figures.append(
            ClientFigures(
                client=client,
                transport=transport,
                calls_per_s=median(runs, "calls_per_s"),
                client_cpu_us=round(statistics.median(cpu), 1),
                client_cpu_us_min=min(cpu),
                client_cpu_us_max=max(cpu),
                redis_cpu_us=median(runs, "server_cpu_us_per_call"),
                p50_ms=round(statistics.median(run.p50_ms for run in runs), 3),
                p99_ms=round(statistics.median(run.p99_ms for run in runs), 3),
                errors=sum(run.errors for run in runs),
            )
        )
    return figures


def clients_table(figures: Sequence[ClientFigures]) -> str:
    """A Markdown table, with each client's CPU per read against resp.py's on its transport."""
    reference = {f.transport: f.client_cpu_us for f in figures if f.client == "resp.py"}
    lines = [
        "| client | transport | reads/s | client CPU µs/read (min-max) | vs resp.py | "
        "Redis CPU µs/read | p50 ms | p99 ms | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for f in figures:
        base = reference.get(f.transport)
        delta = "" if base is None or f.client == "resp.py" else f"{f.client_cpu_us - base:+.1f}"
        lines.append(
            f"| {f.client} | {f.transport} | {f.calls_per_s:,.0f} | {f.client_cpu_us:.1f} "
            f"({f.client_cpu_us_min:.1f}-{f.client_cpu_us_max:.1f}) | {delta} | "
            f"{f.redis_cpu_us:.1f} | {f.p50_ms:.3f} | {f.p99_ms:.3f} | {f.errors} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    import argparse
    import contextlib
    import tempfile
    from pathlib import Path

    from server.core.embedded import EmbeddedRedis

    parser = argparse.ArgumentParser(prog="python -m bench.floorload")
    commands = parser.add_subparsers(dest="command", required=True)
    clients = commands.add_parser("clients", help="Redis clients on the cache's hot read")
    clients.add_argument("--concurrency", type=int, default=32)
    clients.add_argument("--duration", type=float, default=4.0, help="seconds measured per run")
    clients.add_argument("--warmup", type=float, default=1.0)
    clients.add_argument("--repeats", type=int, default=3, help="runs per client, interleaved")
    clients.add_argument(
        "--client", action="append", choices=CACHE_READ_CLIENTS, help="default: all"
    )
    clients.add_argument(
        "--tls",
        action="store_true",
        help="also to a redis-server built with TLS (tests/tls_servers.py finds or fetches "
        "Debian's), over TLS and over plain TCP",
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="floorload-") as tmp, contextlib.ExitStack() as stack:
        plain = EmbeddedRedis(Path(tmp) / "redis")
        targets = [("tcp", plain.start())]
        stack.callback(plain.stop)
        if args.tls:
            # Test support, not part of the server: a redis-server built with TLS and a
            # throwaway CA (the embedded one has no TLS).
            from tests.tls_servers import TlsRedis, test_ca

            tls = TlsRedis(Path(tmp) / "tls-redis", test_ca(Path(tmp) / "ca"), plain_port=True)
            tls_url = tls.start()
            stack.callback(tls.stop)
            # The TLS cost per read compares this server's two ports: same build, same data.
            targets += [("tcp, Debian build", tls.plain_url), ("tls, Debian build", tls_url)]
        figures = compare_clients(
            targets,
            args.client or CACHE_READ_CLIENTS,
            concurrency=args.concurrency,
            duration_s=args.duration,
            warmup_s=args.warmup,
            repeats=args.repeats,
        )
    print(
        f"Cache read (EVALSHA of server/core/cache.py, {len(cached_profile_payload())}-byte "
        f"payload), {args.concurrency} callers sharing one client, {args.duration:g} s x "
        f"{args.repeats} per client, on uvloop:"
    )
    print(clients_table(figures))


if __name__ == "__main__":
    main()
