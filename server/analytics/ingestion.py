"""Ingestion use cases: snapshots, follower counts and audiences, each batch one transaction.

A metric snapshot moves its post's latest metrics only when it is newer than the latest one,
and the daily rollup of the post's publication day moves by the same difference, in the same
transaction. So re-sending a snapshot changes nothing (its key is already recorded), an older
one arriving late only joins the series, and no report has to read raw snapshots.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import asyncpg
from socialhub.v1 import analytics_pb2
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.analytics import repository
from server.analytics.cache_tags import profile_tag
from server.analytics.live import Event, ProfileEvents
from server.analytics.mapping import ENUM_BY_PLATFORM, PROFILE_COLLECTION
from server.analytics.model import AudienceValues, FollowerCountValues, IngestResult, Snapshot
from server.analytics.partitions import Partitions, month_start
from server.analytics.tables import ENGAGEMENT, METRICS
from server.core.cache import Cache
from server.core.errors import NotFound
from server.core.names import format_name
from server.profiles.public import lock_profiles

# A post's row before its first snapshot is applied (in the same transaction): older than any
# snapshot validation lets in, so the first snapshot always becomes the latest.
NO_SNAPSHOT_YET = datetime(1970, 1, 1, tzinfo=UTC)


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
        cache: Cache,
        partitions: Partitions,
        live: ProfileEvents | None = None,
    ) -> None:
        self._engine = engine
        self._cache = cache
        self._partitions = partitions
        self._live = live

    async def metric_snapshots(self, items: Sequence[Snapshot]) -> IngestResult:
        # The first of a repeated (post, observe_time) in a batch is the one recorded.
        unique = list({(s.post_key, s.observe_time): s for s in reversed(items)}.values())[::-1]
        try:
            events = await self._apply_snapshots(unique)
        except exc.IntegrityError as error:
            if not _no_partition(error):
                raise
            # A month no partition covers yet (a backfill, or the job has not run): make it and
            # run the batch again; nothing of the failed attempt was committed.
            await self._partitions.ensure(month_start(s.observe_time) for s in unique)
            events = await self._apply_snapshots(unique)
        await self._invalidate(s.profile_id for s in unique)
        if self._live is not None:
            # Committed: now the watchers may hear of it (best effort, see live.py).
            stamp = datetime.now(UTC)
            for _, event in events:
                event.record_time.FromDatetime(stamp)
            await self._live.publish(events)
        created = len(events)
        return IngestResult(created=created, unchanged=len(items) - created)

    async def _apply_snapshots(self, items: Sequence[Snapshot]) -> list[tuple[int, Event]]:
        """Apply the batch; return an event per snapshot recorded, in the batch's order."""
        async with self._engine.begin() as conn:
            await lock_existing_profiles(conn, [s.profile_id for s in items])
            first_of_post = {s.post_key: s for s in reversed(items)}
            await repository.insert_missing_posts(
                conn, list(first_of_post.values()), NO_SNAPSHOT_YET
            )
            posts = {
                (row.profile_id, row.platform, row.external_id): row
                for row in await repository.lock_posts(conn, list(first_of_post))
            }
            created = await repository.insert_snapshots(
                conn,
                [
                    {
                        "post_id": posts[s.post_key].id,
                        "observe_time": s.observe_time,
                        **dict(zip(METRICS, s.metrics, strict=True)),
                    }
                    for s in items
                ],
            )
            changes = _changes(items, posts, created)
            if changes.latest:
                await repository.set_latest(conn, changes.latest)
                await repository.add_to_daily(
                    conn,
                    [
                        {
                            "profile_id": profile_id,
                            "day": day,
                            "platform": platform,
                            **dict(zip(("posts", *METRICS), sums, strict=True)),
                        }
                        for (profile_id, day, platform), sums in sorted(changes.daily.items())
                    ],
                )
                await repository.add_to_creators(
                    conn,
                    [
                        {
                            "profile_id": profile_id,
                            "platform": platform,
                            "posts": new_posts,
                            "engagement": engagement,
                        }
                        for (profile_id, platform), (new_posts, engagement) in sorted(
                            changes.creators.items()
                        )
                    ],
                )
        return _events(items, posts, created, changes)

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
        await self._cache.invalidate(*(profile_tag(i) for i in sorted(set(profile_ids))))


def _events(
    items: Sequence[Snapshot],
    posts: Mapping[tuple[int, str, str], Any],
    created: set[tuple[int, datetime]],
    changes: _Changes,
) -> list[tuple[int, Event]]:
    moved = {(c["b_id"], c["b_observe_time"]) for c in changes.latest}
    events = []
    for s in items:
        post = posts[s.post_key]
        if (post.id, s.observe_time) not in created:
            continue
        values = dict(zip(METRICS, s.metrics, strict=True))
        engagement = sum(values[m] for m in ENGAGEMENT)
        latest = (post.id, s.observe_time) in moved
        before = sum(getattr(post, m) for m in ENGAGEMENT)
        metrics = analytics_pb2.PostMetrics(
            platform=ENUM_BY_PLATFORM[s.platform],  # type: ignore[arg-type]
            post_id=s.post_id,
            engagement=engagement,
            **values,  # type: ignore[arg-type]
        )
        metrics.publish_time.FromDatetime(post.publish_time)
        metrics.observe_time.FromDatetime(s.observe_time)
        events.append(
            (
                s.profile_id,
                Event(
                    profile=format_name(PROFILE_COLLECTION, s.profile_id),
                    metrics=metrics,
                    latest=latest,
                    engagement_change=engagement - before if latest else 0,
                ),
            )
        )
    return events


@dataclass
class _Changes:
    """What a batch changes besides its snapshots: the posts whose latest moves, and the deltas
    of the rollups (per profile, publication day and platform: posts and METRICS; per profile
    and platform: posts and engagement, for creator search)."""

    latest: list[dict[str, Any]] = field(default_factory=list)
    daily: dict[tuple[int, date, str], list[int]] = field(default_factory=dict)
    creators: dict[tuple[int, str], list[int]] = field(default_factory=dict)


def _changes(
    items: Sequence[Snapshot],
    posts: Mapping[tuple[int, str, str], Any],
    created: set[tuple[int, datetime]],
) -> _Changes:
    newest: dict[tuple[int, str, str], Snapshot] = {}
    for s in items:
        if (posts[s.post_key].id, s.observe_time) not in created:
            continue  # recorded before: a resend
        best = newest.get(s.post_key)
        if best is None or s.observe_time > best.observe_time:
            newest[s.post_key] = s
    changes = _Changes()
    for key, s in newest.items():
        post = posts[key]
        if s.observe_time <= post.observe_time:
            continue  # a late, older snapshot: part of the series only
        changes.latest.append(
            {
                "b_id": post.id,
                "b_observe_time": s.observe_time,
                **{f"b_{m}": v for m, v in zip(METRICS, s.metrics, strict=True)},
            }
        )
        is_new = 1 if post.observe_time == NO_SNAPSHOT_YET else 0
        delta = [
            value - getattr(post, metric) for metric, value in zip(METRICS, s.metrics, strict=True)
        ]
        day_key = (post.profile_id, post.publish_time.astimezone(UTC).date(), post.platform)
        sums = changes.daily.setdefault(day_key, [0] * (1 + len(METRICS)))
        for index, value in enumerate([is_new, *delta]):
            sums[index] += value
        creator = changes.creators.setdefault((post.profile_id, post.platform), [0, 0])
        creator[0] += is_new
        creator[1] += sum(delta[METRICS.index(metric)] for metric in ENGAGEMENT)
    return changes


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
