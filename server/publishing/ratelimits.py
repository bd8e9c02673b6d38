"""The platforms' rate limits, shared by every replica: the gate a target passes before it is
sent, and what each platform answer teaches it.

A limit is a block: a gate key (a platform and an account, or a whole app) closed until an
instant, with the reason shown to users. Blocks come from the platforms' own answers:

- X: `x-rate-limit-remaining` 0 closes the account until `x-rate-limit-reset`; a 429 until
  the latest exhausted reset (the adapter computes it), the whole app when X says its app
  limit is spent (`x-app-limit-24hour-remaining` 0). X's 24-hour post caps, per user
  (`X_DAILY_POST_CAP`) and per app (`X_APP_DAILY_POST_CAP`), are also counted ahead in
  PostgreSQL, from the posts published, so the cap is not first learnt from a 429.
- Meta (Facebook and Instagram share one app): usage at or above
  `META_USAGE_THRESHOLD_PERCENT` closes the app (x-app-usage) or the Page (the
  business-use-case usage) for `META_USAGE_BACKOFF_S`; a throttling code until Meta's
  `estimated_time_to_regain_access` (the adapter's `retry_at`).
- LinkedIn: its daily 429 (no headers) closes the account until the next 00:00 UTC.

Every block is written to PostgreSQL (`publishing_rate_limits`, the truth) and to Redis (the
fast path every replica reads before each send). Reads go to Redis; on any Redis failure
they go to PostgreSQL for `retry_after_s`. Redis may have lost blocks (it was down when one
was written, or restarted empty): a marker key says whether Redis holds PostgreSQL's blocks,
and it is rebuilt from the table whenever the marker is missing or Redis failed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from server.core.cache import REDIS_FAILURES
from server.publishing import repository
from server.publishing.adapters.base import Platform, PublishOutcome, Quota, Throttled

log = logging.getLogger("socialhub.publishing")

ACCOUNT = "account"
APP = "app"
X_CAP_WINDOW = timedelta(hours=24)

# Sets a block unless the key already holds a later one (GREATEST, as in PostgreSQL).
# KEYS[1]: the gate key; ARGV: until (epoch ms), reason, TTL in ms.
_BLOCK_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if current then
  local until_ms = tonumber(string.match(current, '^(%d+)|'))
  if until_ms and until_ms >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'PX', ARGV[3])
return 1
"""


@dataclass(frozen=True)
class Limits:
    """The thresholds (PublishingSettings)."""

    meta_usage_threshold_percent: float = 90.0
    meta_usage_backoff_s: float = 300.0
    x_daily_post_cap: int = 100
    x_app_daily_post_cap: int = 1667


@dataclass(frozen=True)
class Block:
    until: datetime
    reason: str


@dataclass(frozen=True)
class GateKey:
    platform: str
    scope: str
    key: str


def app_of(platform: str) -> str:
    """The app whose limits a platform's calls count against (Meta's for both of its)."""
    return "meta" if platform in (Platform.FACEBOOK, Platform.INSTAGRAM) else platform


def keys_of(platform: str, account_id: int) -> tuple[GateKey, GateKey]:
    app = app_of(platform)
    return GateKey(platform, ACCOUNT, str(account_id)), GateKey(app, APP, app)


def _clock(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%H:%M:%S UTC")


def blocks_from(
    platform: str, account_id: int, outcome: PublishOutcome, limits: Limits, now: datetime
) -> list[tuple[GateKey, Block]]:
    """What one answer of the platform closes, and until when."""
    account, app = keys_of(platform, account_id)
    quota: Quota | None = outcome.quota
    found: list[tuple[GateKey, Block]] = []
    meta = app.platform == "meta"
    threshold = limits.meta_usage_threshold_percent
    app_busy = bool(
        quota
        and (
            (meta and (quota.app_usage_percent or 0.0) >= threshold)
            or quota.app_exhausted_until is not None
        )
    )
    if isinstance(outcome, Throttled):
        where = app if app_busy else account
        found.append(
            (
                where,
                Block(outcome.retry_at, f"{outcome.message} (until {_clock(outcome.retry_at)})"),
            )
        )
    if quota is None:
        return found
    if quota.remaining is not None and quota.remaining <= 0 and quota.reset_at is not None:
        reason = f"X rate limit: no requests left in the window until {_clock(quota.reset_at)}"
        found.append((account, Block(quota.reset_at, reason)))
    if quota.app_exhausted_until is not None:
        until = quota.app_exhausted_until
        reason = f"X app limit: no posts left for the app's 24 hours until {_clock(until)}"
        found.append((app, Block(until, reason)))
    if meta and quota.usage_percent is not None and quota.usage_percent >= threshold:
        until = now + timedelta(seconds=limits.meta_usage_backoff_s)
        which = "app" if app_busy else "Page"
        reason = (
            f"Meta {which} usage at {quota.usage_percent:.0f}% (backing off above "
            f"{threshold:.0f}%) until {_clock(until)}"
        )
        found.append((app if app_busy else account, Block(until, reason)))
    return found


class RateGate:
    def __init__(
        self,
        engine: AsyncEngine,
        redis: Redis | None,
        limits: Limits,
        *,
        prefix: str = "sh:publishing:rate",
        retry_after_s: float = 1.0,
    ) -> None:
        self._engine = engine
        self._redis = redis
        self.limits = limits
        self._prefix = prefix
        self._marker = f"{prefix}:synced"
        self._retry_after_s = retry_after_s
        self._down_until = 0.0
        self._resync = True

    async def blocked(self, platform: str, account_id: int) -> Block | None:
        """The latest block in force for this account (its own, its app's, X's daily cap)."""
        now = datetime.now(UTC)
        keys = keys_of(platform, account_id)
        found = await self._read_redis(keys)
        if found is None:
            found = await self._read_table(keys)
        if platform == Platform.X:
            found += await self._x_daily_caps(account_id)
        live = [block for block in found if block.until > now]
        return max(live, key=lambda block: block.until, default=None)

    async def record(
        self, platform: str, account_id: int, outcome: PublishOutcome
    ) -> list[tuple[GateKey, Block]]:
        """Close what the platform's answer says is exhausted (nothing if it is not)."""
        now = datetime.now(UTC)
        latest: dict[GateKey, Block] = {}
        for key, block in blocks_from(platform, account_id, outcome, self.limits, now):
            if block.until > now and (key not in latest or block.until > latest[key].until):
                latest[key] = block
        found = list(latest.items())
        if found:
            await self._write_table(found)
            await self._write_redis(found)
        return found

    # --- PostgreSQL: the truth ---

    async def _write_table(self, found: Sequence[tuple[GateKey, Block]]) -> None:
        blocks = [((k.platform, k.scope, k.key), block.until, block.reason) for k, block in found]
        async with self._engine.begin() as conn:
            await repository.save_rate_limits(conn, blocks)

    async def _read_table(self, keys: Sequence[GateKey]) -> list[Block]:
        async with self._engine.connect() as conn:
            rows = await repository.rate_limits_in_force(
                conn, [(k.platform, k.scope, k.key) for k in keys]
            )
        return [Block(row.blocked_until, row.reason) for row in rows]

    async def _x_daily_caps(self, account_id: int) -> list[Block]:
        """X's 24-hour post limits, per user and per app: each post of a thread and a first
        comment count. At a cap, closed until the oldest counted post leaves the window (then
        counted again)."""
        caps = (
            (self.limits.x_daily_post_cap, account_id, "X daily post cap"),
            (self.limits.x_app_daily_post_cap, None, "X app daily post cap (every account)"),
        )
        found = []
        async with self._engine.connect() as conn:
            for cap, account, what in caps:
                if cap <= 0:
                    continue
                sent, oldest = await repository.x_posts_since(conn, X_CAP_WINDOW, account)
                if sent < cap or oldest is None:
                    continue
                until = oldest + X_CAP_WINDOW
                reason = f"{what}: {sent} of {cap} posts in 24 hours, until {_clock(until)}"
                found.append(Block(until, reason))
        return found

    # --- Redis: the fast, shared path ---

    def _key(self, key: GateKey) -> str:
        return f"{self._prefix}:{key.platform}:{key.scope}:{key.key}"

    def _usable(self) -> bool:
        return self._redis is not None and time.monotonic() >= self._down_until

    def _failed(self, operation: str, error: BaseException) -> None:
        if time.monotonic() >= self._down_until:
            log.warning(
                "redis unavailable; rate limits read from PostgreSQL",
                extra={"operation": operation, "error": repr(error)},
            )
        self._down_until = time.monotonic() + self._retry_after_s
        self._resync = True

    async def _read_redis(self, keys: Sequence[GateKey]) -> list[Block] | None:
        """The blocks Redis holds, or None if Redis cannot be trusted (read the table)."""
        if not self._usable() or self._redis is None:
            return None
        try:
            if self._resync:
                await self._copy_table_to_redis()
            values = await self._redis.mget([self._marker, *(self._key(k) for k in keys)])
            if values[0] is None:  # Redis restarted empty, or was flushed
                await self._copy_table_to_redis()
                values = await self._redis.mget([self._marker, *(self._key(k) for k in keys)])
        except REDIS_FAILURES as error:
            self._failed("read", error)
            return None
        found: list[Block] = []
        for value in values[1:]:
            if value is not None:
                text = value.decode() if isinstance(value, bytes) else str(value)
                until_ms, _, reason = text.partition("|")
                found.append(Block(datetime.fromtimestamp(int(until_ms) / 1000, UTC), reason))
        return found

    async def _write_redis(self, found: Sequence[tuple[GateKey, Block]]) -> None:
        if not self._usable():
            self._resync = True
            return
        try:
            await self._set_blocks(found)
        except REDIS_FAILURES as error:
            self._failed("write", error)

    async def _set_blocks(self, found: Sequence[tuple[GateKey, Block]]) -> None:
        assert self._redis is not None
        now_ms = int(time.time() * 1000)
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, block in found:
                until_ms = int(block.until.timestamp() * 1000)
                if until_ms <= now_ms:
                    continue
                args = (until_ms, block.reason, until_ms - now_ms)
                pipe.eval(_BLOCK_SCRIPT, 1, self._key(key), *args)
            await pipe.execute()

    async def _copy_table_to_redis(self) -> None:
        async with self._engine.connect() as conn:
            rows = await repository.rate_limits_in_force(conn)
        found = [
            (GateKey(row.platform, row.scope, row.key), Block(row.blocked_until, row.reason))
            for row in rows
        ]
        if found:
            await self._set_blocks(found)
        assert self._redis is not None
        await self._redis.set(self._marker, "1")
        self._resync = False
