"""Ingestion use cases: snapshots, follower counts and audiences, each batch one transaction.

A metric snapshot moves its post's latest metrics only when it is newer than the latest one,
and the daily rollup of the post's publication day moves by the same difference, in the same
transaction. So re-sending a snapshot changes nothing (its key is already recorded), an older
one arriving late only joins the series, and no report has to read raw snapshots.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.analytics import repository
from server.analytics.cache_tags import profile_tag
from server.analytics.live import ProfileEvents, events_of
from server.analytics.model import (
    AudienceValues,
    FollowerCountValues,
    IngestResult,
    Snapshot,
    SnapshotBatch,
)
from server.analytics.partitions import Partitions, month_start
from server.core.cache import Cache
from server.core.errors import NotFound
from server.core.names import format_name
from server.profiles.public import lock_profiles

EPOCH_DAY = date(1970, 1, 1)
DAY_US = 86_400 * 1_000_000


def profile_not_found(profile_id: int) -> NotFound:
    return NotFound(
        f"{format_name('profiles', profile_id)} does not exist", reason="PROFILE_NOT_FOUND"
    )


async def lock_existing_profiles(conn: AsyncConnection, profile_ids: Sequence[int]) -> None:
    """Lock the batch's profiles against deletion, or NOT_FOUND for the first one missing (in
    request order)."""
    unique = list(dict.fromkeys(profile_ids))
    existing = await lock_profiles(conn, unique)
    for profile_id in unique:
        if profile_id not in existing:
            raise profile_not_found(profile_id)


def _no_partition(error: exc.DBAPIError) -> bool:
    cause = getattr(error.orig, "__cause__", None)
    return isinstance(cause, asyncpg.exceptions.CheckViolationError) and "no partition" in str(
        cause
    )


class Ingestion:
    def __init__(
        self,
        engine: AsyncEngine,
        cache: Cache | None,
        partitions: Partitions,
        live: ProfileEvents | None = None,
    ) -> None:
        self._engine = engine
        self._cache = cache
        self._partitions = partitions
        self._live = live

    async def metric_snapshots(self, items: Sequence[Snapshot]) -> IngestResult:
        return await self.snapshot_batch(SnapshotBatch.of(items))

    async def snapshot_batch(self, batch: SnapshotBatch) -> IngestResult:
        applied = await self.apply(batch)
        await self.announce(batch, applied)
        return IngestResult(
            created=len(applied.indexes), unchanged=batch.received - len(applied.indexes)
        )

    async def apply(self, batch: SnapshotBatch) -> repository.Applied:
        """The batch's transaction; committed when this returns. `announce` comes next (the
        servicer may apply the next message of a stream first)."""
        try:
            return await self._apply(batch)
        except exc.IntegrityError as error:
            if not _no_partition(error):
                raise
            # A month no partition covers yet (a backfill, or the job has not run): make it and
            # run the batch again; nothing of the failed attempt was committed.
            days = {us // DAY_US for us in batch.observe_us}
            await self._partitions.ensure(month_start(_day(day)) for day in days)
            return await self._apply(batch)

    async def _apply(self, batch: SnapshotBatch) -> repository.Applied:
        async with self._engine.begin() as conn:
            # FOR NO KEY UPDATE: every ingestion of these profiles waits for this one, so the
            # posts and rollup rows it changes (all of them these profiles') need no row
            # locks of their own (test_concurrent_* fail when this lock is shared).
            await lock_existing_profiles(conn, batch.profile_ids)
            return await repository.apply_snapshots(conn, batch)

    async def announce(self, batch: SnapshotBatch, applied: repository.Applied) -> None:
        """After the commit: the cached reports of the batch's profiles retired, and an event
        per recorded snapshot for the live watchers (best effort, see live.py)."""
        await self._invalidate(batch.profile_ids)
        if self._live is not None and applied.indexes:
            await self._live.publish(events_of(batch, applied, datetime.now(UTC)))

    async def follower_counts(self, items: Sequence[FollowerCountValues]) -> int:
        latest = _latest_per_day(items)
        async with self._engine.begin() as conn:
            await lock_existing_profiles(conn, [i.profile_id for i in items])
            recorded = await repository.upsert_follower_counts(
                conn, [latest[key] for key in sorted(latest)]
            )
            await repository.refresh_creator_followers(conn, [key[:2] for key in latest])
        await self._invalidate(i.profile_id for i in items)
        return recorded

    async def audiences(self, items: Sequence[AudienceValues]) -> int:
        latest = _latest_per_day(items)
        async with self._engine.begin() as conn:
            await lock_existing_profiles(conn, [i.profile_id for i in items])
            recorded = await repository.upsert_audiences(
                conn, [latest[key] for key in sorted(latest)]
            )
            await repository.refresh_creator_countries(conn, [key[:2] for key in latest])
        await self._invalidate(i.profile_id for i in items)
        return recorded

    async def _invalidate(self, profile_ids: Any) -> None:
        if self._cache is None:  # the demo load, before any replica serves
            return
        await self._cache.invalidate(*(profile_tag(i) for i in sorted(set(profile_ids))))


def _day(days: int) -> date:
    return EPOCH_DAY + timedelta(days=days)


Daily = TypeVar("Daily", FollowerCountValues, AudienceValues)


def _latest_per_day(items: Sequence[Daily]) -> dict[tuple[int, str, date], Daily]:
    """One item per profile, platform and day: of two for the same day, the later observation
    (then the last sent)."""
    latest: dict[tuple[int, str, date], Daily] = {}
    for item in items:
        key = (item.profile_id, item.platform, item.day)
        if key not in latest or item.observe_time >= latest[key].observe_time:
            latest[key] = item
    return latest
