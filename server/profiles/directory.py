"""Counts over the whole profile directory, for other domains (AnalyticsService's
GetDirectoryStats): one statement over the profiles table, cached under the listings tag, so
every profile write (create, update, delete) makes the next read fresh."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from server.core.cache import Cache
from server.core.db import autocommit_reads
from server.profiles import repository
from server.profiles.cache_tags import LISTINGS_TAG
from server.profiles.tables import PLATFORMS

CACHE_KEY = "profiles:directory-stats"
# GROUPING(zone, designation): 0 for the total row, 1 per zone, 2 per designation.
_TOTAL, _PER_ZONE, _PER_DESIGNATION = 3, 1, 2


@dataclass(frozen=True)
class PlatformCounts:
    platform: str
    handles: int
    active: int
    verified: int
    followers: int


@dataclass(frozen=True)
class GroupCounts:
    value: str | None
    profiles: int
    total_followers: int


@dataclass(frozen=True)
class DirectoryStats:
    profiles: int
    total_followers: int
    platforms: list[PlatformCounts]
    zones: list[GroupCounts]
    designations: list[GroupCounts]


def _from_rows(rows: Any) -> DirectoryStats:
    total: Any = None
    zones: list[GroupCounts] = []
    designations: list[GroupCounts] = []
    for row in rows:
        if row.grouping_id == _TOTAL:
            total = row
        elif row.grouping_id == _PER_ZONE:
            zones.append(GroupCounts(row.zone, row.profiles, int(row.total_followers)))
        elif row.grouping_id == _PER_DESIGNATION:
            designations.append(
                GroupCounts(row.designation, row.profiles, int(row.total_followers))
            )
    platforms = [
        PlatformCounts(
            platform,
            getattr(total, f"{platform}_handles", 0),
            getattr(total, f"{platform}_active", 0),
            getattr(total, f"{platform}_verified", 0),
            int(getattr(total, f"{platform}_followers", 0)),
        )
        for platform in PLATFORMS
    ]

    def biggest_first(group: GroupCounts) -> tuple[int, str]:
        return (-group.profiles, group.value or "")

    return DirectoryStats(
        profiles=total.profiles if total is not None else 0,
        total_followers=int(total.total_followers) if total is not None else 0,
        platforms=platforms,
        zones=sorted(zones, key=biggest_first),
        designations=sorted(designations, key=biggest_first),
    )


def _decode(payload: bytes) -> DirectoryStats:
    data = json.loads(payload)
    return DirectoryStats(
        profiles=data["profiles"],
        total_followers=data["total_followers"],
        platforms=[PlatformCounts(**p) for p in data["platforms"]],
        zones=[GroupCounts(**g) for g in data["zones"]],
        designations=[GroupCounts(**g) for g in data["designations"]],
    )


class DirectoryReader:
    """Provided on the DomainContext by the profiles domain; required by the domains that
    report on the directory."""

    def __init__(self, engine: AsyncEngine, cache: Cache, ttl_s: int) -> None:
        self._reads = autocommit_reads(engine)
        self._cache = cache
        self._ttl_s = ttl_s

    async def stats(self) -> DirectoryStats:
        async def load() -> bytes:
            async with self._reads.connect() as conn:
                rows = await repository.directory_stats(conn)
            return json.dumps(asdict(_from_rows(rows))).encode()

        payload = await self._cache.read_through(
            CACHE_KEY, tag=LISTINGS_TAG, ttl_s=self._ttl_s, load=load
        )
        return _decode(payload)
