"""Floors: the cheapest way to get the same answer straight from PostgreSQL or Redis.

A floor runs the closed loop of bench/loadgen.py with a bare driver and no application
in between: a prepared asyncpg statement per connection, or a redis-py GET per
connection. Its server CPU per call is what the datastore alone costs, so it bounds
what any application server in front of it can reach.

A query returning no row, or a GET finding no key, counts as an error: a floor that
silently measured misses would be a floor for the wrong work.
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
