"""The profile counters this domain keeps, as ProfileService reads them (its CounterSource)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from server.core.cache import Cache
from server.core.db import autocommit_reads
from server.feed import repository
from server.profiles.public import NO_COUNTERS, ProfileCounters

_COUNTERS = ProfileCounters._fields


def counters_tag(profile_id: int) -> str:
    """One profile's counters entry; every follow, unfollow, post or deletion touching the
    profile bumps it after commit."""
    return f"feed:counters:{profile_id}"


def _encode(counters: ProfileCounters) -> bytes:
    return ",".join(map(str, counters)).encode()


def _decode(payload: bytes) -> ProfileCounters:
    return ProfileCounters(*map(int, payload.split(b",")))


def _from_row(row: Mapping[str, int]) -> ProfileCounters:
    return ProfileCounters(row["followers_count"], row["following_count"], row["posts_count"])


class CounterReads:
    """One profile (GetProfile): cached under its own tag, so the hit costs one Redis read.
    Many profiles (a list page): one primary-key read per call, so listed counters are exact
    while the pages themselves stay cached until a profile changes."""

    def __init__(self, engine: AsyncEngine, cache: Cache, ttl_s: int) -> None:
        self._reads = autocommit_reads(engine)
        self._cache = cache
        self._ttl_s = ttl_s

    async def counters_of(self, profile_id: int) -> ProfileCounters:
        async def load() -> bytes:
            return _encode((await self._read([profile_id])).get(profile_id, NO_COUNTERS))

        payload = await self._cache.read_through(
            f"feed:counters:{profile_id}",
            tag=counters_tag(profile_id),
            ttl_s=self._ttl_s,
            load=load,
        )
        return _decode(payload)

    async def counters_of_many(self, profile_ids: Sequence[int]) -> Mapping[int, ProfileCounters]:
        if not profile_ids:
            return {}
        return await self._read(profile_ids)

    async def _read(self, profile_ids: Sequence[int]) -> dict[int, ProfileCounters]:
        async with self._reads.connect() as conn:
            rows = await repository.counters_of(conn, profile_ids)
        return {row["profile_id"]: _from_row(row) for row in rows}
