"""Read-through Redis cache with tag versions, single-flight, and graceful degradation.

Invalidation works by version tags instead of deleting keys: an entry is stored
under `<key>@<version of its tag>`, and a write gives the tag a new random version
once it has committed. A reader that started before the commit stores its (old)
answer under the old version, which no later reader looks at, so a reader that
starts after a write returns can never see data from before it. List-style
entries share one tag per domain, so one write invalidates all of them, bulk
deletes included. Versions are random, never counters: if Redis evicts a tag,
the next reader starts a new version instead of reusing an old one.

If Redis fails, calls go straight to the database for `retry_after_s` and
errors are counted. An invalidation that fails after its tries is remembered: its
tags get new versions as soon as Redis answers again (a background task keeps
trying, and this replica's reads skip the cache until then), so no stale entry
survives an outage.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from server.core.resp import RespClient
from server.core.tasks import stop_task

log = logging.getLogger("socialhub.cache")

REDIS_FAILURES = (redis_errors.RedisError, OSError, asyncio.TimeoutError)
# How long a stopping replica tries to settle a lost invalidation (Cache.aclose).
WIPE_ON_CLOSE_S = 2.0
# Tries of an invalidation before the write answers (each bounded by the invalidation
# timeout), while no earlier invalidation of this replica is still lost.
INVALIDATE_ATTEMPTS = 3
# How often the background task tries again to settle lost invalidations.
SETTLE_RETRY_S = 0.1
# Past this many lost tags, settling wipes the namespace instead of re-versioning each.
MAX_LOST_TAGS = 10_000
# Invalidation connections opened at start (Cache.connect); app.py sizes its pool to them.
WARM_INVALIDATOR_CONNECTIONS = 4

# One round trip for a read: the tag's version (a new one if the tag is missing), then the
# entry stored under it.
_READ_SCRIPT = """
local version = redis.call('GET', KEYS[1])
if not version then
  version = ARGV[2]
  redis.call('SET', KEYS[1], version, 'EX', ARGV[3])
end
return {version, redis.call('GET', ARGV[1] .. '@' .. version)}
"""
_READ_SCRIPT_SHA = hashlib.sha1(_READ_SCRIPT.encode()).hexdigest()


def describe(error: BaseException) -> str:
    """The error's class and message: redis-py 8's repr() drops the message, which is what
    tells a connect timeout from a read timeout (its messages hold no credentials)."""
    return f"{type(error).__name__}: {error}"[:300]


def _new_version() -> str:
    return os.urandom(8).hex()


class _Counter(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class ExportedCounters(Protocol):
    """Where the counts also go (Prometheus counters: server/core/metrics.py)."""

    @property
    def hits(self) -> _Counter: ...
    @property
    def misses(self) -> _Counter: ...
    @property
    def errors(self) -> _Counter: ...
    @property
    def bypassed(self) -> _Counter: ...


@dataclass
class CacheStats:
    """This process's cache reads and Redis failures, counted as they happen."""

    hits: int = 0
    misses: int = 0
    errors: int = 0
    bypassed: int = 0
    exported: ExportedCounters | None = field(default=None, repr=False)

    def export(self, counters: ExportedCounters) -> None:
        self.exported = counters

    def hit(self) -> None:
        self.hits += 1
        if self.exported is not None:
            self.exported.hits.inc()

    def miss(self) -> None:
        self.misses += 1
        if self.exported is not None:
            self.exported.misses.inc()

    def error(self) -> None:
        self.errors += 1
        if self.exported is not None:
            self.exported.errors.inc()

    def bypass(self) -> None:
        self.bypassed += 1
        if self.exported is not None:
            self.exported.bypassed.inc()


class Cache:
    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = "sh",
        retry_after_s: float = 1.0,
        tag_ttl_s: int = 7 * 24 * 3600,
        enabled: bool = True,
        invalidator: Redis | None = None,
    ) -> None:
        self._redis = redis
        # Invalidations may go through a client of their own with a longer timeout than
        # reads (server/core/app.py): a read that times out only costs a database query, an
        # invalidation that times out lets other replicas serve a retired entry. Under load
        # (the compose drill on a busy machine) Redis answers a SET within 0.25 s most of
        # the time, not every time.
        self._invalidator = invalidator or redis
        self._enabled = enabled
        self._prefix = prefix
        self._retry_after_s = retry_after_s
        # Outliving the entries under it keeps a tag's entries reachable for their whole TTL.
        self._tag_ttl_s = tag_ttl_s
        self._down_until = 0.0
        self._wipe_pending = False
        # Tags whose new version Redis has not taken yet, and the task that keeps trying.
        self._lost_tags: set[str] = set()
        self._settling: asyncio.Task[None] | None = None
        self._inflight: dict[str, asyncio.Task[bytes]] = {}
        # The read is the hot path: it always goes through the lean pipelined client, over
        # the same TCP, TLS or Unix socket connection settings, credentials and database as
        # `redis` (it connects on first use, so a Cache that only invalidates never opens
        # it). A client it cannot copy (Sentinel, Cluster) raises here, at startup.
        self._fast = RespClient.for_redis(redis)
        self.stats = CacheStats()

    @property
    def redis(self) -> Redis:
        """The redis-py client, for shared state of a domain's own that is not a cache entry
        (the caller handles REDIS_FAILURES itself)."""
        return self._redis

    @property
    def degraded(self) -> bool:
        return time.monotonic() < self._down_until

    async def read_through(
        self, key: str, *, tag: str, ttl_s: int, load: Callable[[], Awaitable[bytes]]
    ) -> bytes:
        """Return the cached bytes for `key`, or `load()` them once and cache them."""
        if not self._enabled:
            return await load()
        # The common case (Redis up, nothing to settle) costs no extra coroutine.
        if (self.degraded or self._wipe_pending or self._lost_tags) and not await self._usable():
            self.stats.bypass()
            return await load()
        full_key = f"{self._prefix}:{key}"
        try:
            keys = [self._tag_key(tag)]
            args: list[str | int] = [full_key, _new_version(), self._tag_ttl_s]
            version, cached = await self._fast.evalsha(_READ_SCRIPT_SHA, _READ_SCRIPT, keys, args)
        except REDIS_FAILURES as error:
            self._record_failure("read", error)
            return await load()
        if cached is not None:
            self.stats.hit()
            payload: bytes = cached  # bulk strings arrive as bytes: no copy needed
            return payload
        self.stats.miss()
        entry = f"{full_key}@{version.decode()}"
        # Concurrent misses of the same entry (same version) share one load.
        flight = self._inflight.get(entry)
        if flight is None:
            flight = asyncio.create_task(self._load_and_store(entry, ttl_s, load))
            self._inflight[entry] = flight
            flight.add_done_callback(lambda done: self._finish_flight(entry, done))
        return await asyncio.shield(flight)

    async def connect(self) -> None:
        """Open the read connections and up to WARM_INVALIDATOR_CONNECTIONS invalidation
        connections before the replica takes calls (best effort: Redis may be down; the
        cache then degrades as usual).

        A new connection starts with a name lookup, and lookups can stall for seconds while
        Redis itself answers: podman's resolver held every replica's lookups for 5 to 15 s
        while a container joined or left the network (measured), and clusters' DNS has its
        own 5 s timeouts. A replica that opened its connections on first use lost its
        first writes' invalidations to that in the compose drill, and the other replicas
        served the retired entries. With the connections open before the first call, and
        an invalidation pool that waits for one of them rather than dial more (app.py), a
        write needs a lookup only after Redis dropped a connection."""
        pool = self._invalidator.connection_pool
        warm = min(WARM_INVALIDATOR_CONNECTIONS, pool.max_connections)
        opened = await asyncio.gather(
            self._fast.connect(),
            *(pool.get_connection() for _ in range(warm)),  # type: ignore[no-untyped-call]
            return_exceptions=True,
        )
        failures = [error for error in opened if isinstance(error, BaseException)]
        for connection in opened[1:]:
            if not isinstance(connection, BaseException):
                await pool.release(connection)
        if failures:
            log.warning(
                "redis connections not opened at start; they open on first use",
                extra={"error": describe(failures[0]), "failed": len(failures)},
            )

    async def invalidate(self, *tags: str) -> None:
        """Give each tag a new version. Call after the write has committed.

        Until a lost invalidation is settled, the other replicas serve the retired entry,
        and the writer's caller may read from one of them as soon as the write answers (the
        compose drill saw it under load, with Redis calls timing out). So the write waits:
        an invalidation is tried INVALIDATE_ATTEMPTS times, each with the invalidation
        timeout, before it is given up to the background settling. While an earlier one is
        still lost (Redis is not taking writes), a write tries once and does not wait more."""
        if not tags:
            return
        attempts = 1 if self._lost_tags or self._wipe_pending else INVALIDATE_ATTEMPTS
        for attempt in range(1, attempts + 1):
            try:
                await self._new_versions(tags)
                return
            except REDIS_FAILURES as error:
                if attempt == attempts:
                    self._record_failure("invalidate", error)
                    self._lose(tags)

    async def _new_versions(self, tags: Any) -> None:
        async with self._invalidator.pipeline(transaction=False) as pipe:
            for tag in tags:
                pipe.set(self._tag_key(tag), _new_version(), ex=self._tag_ttl_s)
            await pipe.execute()

    def _lose(self, tags: tuple[str, ...]) -> None:
        if len(self._lost_tags) + len(tags) > MAX_LOST_TAGS:
            self._wipe_pending = True
            self._lost_tags.clear()
        elif not self._wipe_pending:
            self._lost_tags.update(tags)
        if self._settling is None or self._settling.done():
            self._settling = asyncio.create_task(self._settle_soon(), name="cache-settle")

    async def _settle_soon(self) -> None:
        """Keep trying until the lost invalidations are settled: the replica may make no
        other Redis call for a while, and the other replicas serve retired entries until
        then."""
        failures = 0
        while self._lost_tags or self._wipe_pending:
            try:
                await self._settle()
            except REDIS_FAILURES as error:
                failures += 1
                if failures == 1:
                    log.warning(
                        "a lost invalidation is not settled yet", extra={"error": describe(error)}
                    )
                # Fresh connections for the next try, should one be stuck.
                await self._invalidator.connection_pool.disconnect()
                await asyncio.sleep(SETTLE_RETRY_S)
        log.info("lost invalidations settled", extra={"failed_tries": failures})

    async def _settle(self) -> None:
        """New versions for the lost tags (or a wipe); raises REDIS_FAILURES."""
        if self._wipe_pending:
            await self._wipe()
        if self._lost_tags:
            tags = tuple(self._lost_tags)
            await self._new_versions(tags)
            self._lost_tags.difference_update(tags)

    async def invalidate_everything(self) -> None:
        """Drop every entry of this namespace (after a bulk load that bypassed the services)."""
        await self._wipe()

    async def aclose(self) -> None:
        """Close the cache's own connections; the redis-py client stays the caller's to close.

        A lost invalidation still unsettled is tried first: no later call of this replica
        would make it, and the other replicas would serve the entries it should have retired
        until their TTL (seen once in the compose drill, on a replica that stopped while its
        Redis calls timed out)."""
        await stop_task(self._settling)
        if self._lost_tags or self._wipe_pending:
            try:
                await asyncio.wait_for(self._settle(), timeout=WIPE_ON_CLOSE_S)
            except REDIS_FAILURES as error:
                log.error(
                    "a lost invalidation could not be settled before stopping",
                    extra={"error": describe(error)},
                )
        await self._fast.aclose()

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except REDIS_FAILURES:
            return False

    def _tag_key(self, tag: str) -> str:
        return f"{self._prefix}:tag:{tag}"

    async def _usable(self) -> bool:
        if self.degraded:
            return False
        if self._wipe_pending or self._lost_tags:
            try:
                await self._settle()
            except REDIS_FAILURES as error:
                self._record_failure("settle", error)
                return False
        return True

    async def _wipe(self) -> None:
        """Drop every entry and tag: too many invalidations were lost to remember them."""
        async for batch in self._scan_batches(f"{self._prefix}:*"):
            await self._redis.unlink(*batch)
        self._wipe_pending = False
        self._lost_tags.clear()
        log.warning("cache namespace wiped after a failed invalidation")

    async def _scan_batches(self, pattern: str) -> Any:
        batch: list[bytes] = []
        async for key in self._redis.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                yield batch
                batch = []
        if batch:
            yield batch

    async def _load_and_store(
        self, entry: str, ttl_s: int, load: Callable[[], Awaitable[bytes]]
    ) -> bytes:
        value = await load()
        try:
            await self._redis.set(entry, value, ex=ttl_s)
        except REDIS_FAILURES as error:
            self._record_failure("store", error)
        return value

    def _finish_flight(self, entry: str, done: asyncio.Task[bytes]) -> None:
        self._inflight.pop(entry, None)
        if not done.cancelled():
            done.exception()  # every waiter sees it; this only marks it as retrieved

    def _record_failure(self, operation: str, error: BaseException) -> None:
        self.stats.error()
        was_up = not self.degraded
        self._down_until = time.monotonic() + self._retry_after_s
        if was_up:
            log.warning(
                "redis unavailable; serving from the database",
                extra={
                    "operation": operation,
                    "error": describe(error),
                    "errors": self.stats.errors,
                },
            )
