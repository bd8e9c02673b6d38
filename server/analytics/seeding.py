"""Demo analytics for a first start (`make run`): three months of post metrics, daily follower
counts and an audience for the first demo profiles, and the demo feed's posts queued for the
insights worker.

Everything goes through the ingestion use case, so the rollups are exactly what ingestion keeps;
the numbers are made up but shaped like a platform's (views grow and flatten after a post goes
out, likes follow views, followers grow a little each day). Seeded, so every first start shows
the same figures.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from tqdm import tqdm

from server.analytics.backfill import queue_all_lacking
from server.analytics.ingestion import Ingestion
from server.analytics.insight_models import model_version
from server.analytics.model import AudienceValues, FollowerCountValues, Snapshot, SnapshotBatch
from server.analytics.partitions import Partitions
from server.analytics.settings import AnalyticsSettings
from server.analytics.tables import analytics_posts
from server.core.domain import Volumes
from server.profiles.public import all_profile_ids

# Of the demo profiles, this many get metrics (the directory stays the profiles domain's).
PROFILES = 100
DAYS = 90
POSTS_PER_PLATFORM = 12
# Hours after publication at which each post is observed (as a poller would).
OBSERVED_AFTER_H = (1, 24, 72, 168)
BATCH = 1000
PLATFORMS = ("instagram", "x", "facebook", "youtube", "linkedin")
COUNTRIES = ("US", "GB", "DE", "FR", "ES", "IT", "BR", "IN", "JP", "CA")
CITIES = ("London", "New York", "Berlin", "Paris", "Madrid", "Tokyo", "Toronto", "Mumbai")
AGES = ("13-17", "18-24", "25-34", "35-44", "45-54", "55-64", "65+")


class AnalyticsDemo:
    """Reads the "profiles" volume (the first PROFILES of them get metrics)."""

    async def is_empty(self, engine: AsyncEngine) -> bool:
        async with engine.connect() as conn:
            return (await conn.execute(select(analytics_posts.c.id).limit(1))).first() is None

    async def load(self, engine: AsyncEngine, volumes: Volumes, *, progress: bool) -> None:
        async with engine.connect() as conn:
            profile_ids = (await all_profile_ids(conn))[: min(PROFILES, volumes.get("profiles", 0))]
        ingestion = Ingestion(engine, None, Partitions(engine, AnalyticsSettings()))
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        snapshots = list(_snapshots(profile_ids, now))
        with tqdm(total=len(snapshots), unit="row", desc="analytics", disable=not progress) as bar:
            for start in range(0, len(snapshots), BATCH):
                chunk = snapshots[start : start + BATCH]
                await ingestion.apply(SnapshotBatch.of(chunk))
                bar.update(len(chunk))
        followers = list(_follower_counts(profile_ids, now))
        for start in range(0, len(followers), BATCH):
            await ingestion.follower_counts(followers[start : start + BATCH])
        await ingestion.audiences(list(_audiences(profile_ids, now)))
        # The demo feed's posts were copied in beside FeedService: the workers analyse them.
        await queue_all_lacking(engine, model_version(), batch_size=BATCH)


def _platforms(rng: random.Random) -> list[str]:
    return rng.sample(PLATFORMS, rng.randint(1, 3))


def _snapshots(profile_ids: list[int], now: datetime) -> Iterator[Snapshot]:
    for profile_id in profile_ids:
        rng = random.Random(profile_id)
        for platform in _platforms(rng):
            reach = rng.randint(500, 50_000)
            for number in range(POSTS_PER_PLATFORM):
                publish = now - timedelta(hours=rng.randint(2, DAYS * 24))
                views_at_week = int(reach * rng.uniform(0.5, 3.0))
                like_rate = rng.uniform(0.01, 0.08)
                for hours in OBSERVED_AFTER_H:
                    observe = publish + timedelta(hours=hours)
                    if observe > now:
                        break
                    views = int(views_at_week * (1 - 0.6 ** (hours / 12)))
                    likes = int(views * like_rate)
                    # likes, comments, shares, saves, views, reach
                    metrics = (likes, likes // 12, likes // 30, likes // 20, views, views * 4 // 5)
                    yield Snapshot(
                        profile_id=profile_id,
                        platform=platform,
                        post_id=f"demo-{profile_id}-{platform}-{number}",
                        publish_time=publish,
                        observe_time=observe,
                        metrics=metrics,
                    )


def _follower_counts(profile_ids: list[int], now: datetime) -> Iterator[FollowerCountValues]:
    for profile_id in profile_ids:
        rng = random.Random(profile_id)
        for platform in _platforms(rng):
            followers = rng.randint(1_000, 200_000)
            for back in range(DAYS, -1, -1):
                day: date = (now - timedelta(days=back)).date()
                followers += int(followers * rng.uniform(-0.002, 0.01))
                observed = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=12)
                yield FollowerCountValues(profile_id, platform, day, min(observed, now), followers)


def _audiences(profile_ids: list[int], now: datetime) -> Iterator[AudienceValues]:
    for profile_id in profile_ids:
        rng = random.Random(profile_id)
        for platform in _platforms(rng):
            yield AudienceValues(
                profile_id,
                platform,
                now.date(),
                now,
                ages=_shares(rng, AGES),
                genders=_shares(rng, ("female", "male", "other")),
                countries=_shares(rng, rng.sample(COUNTRIES, 5)),
                cities=_shares(rng, rng.sample(CITIES, 4)),
            )


def _shares(rng: random.Random, keys: tuple[str, ...] | list[str]) -> dict[str, float]:
    weights = [rng.random() + 0.1 for _ in keys]
    total = sum(weights)
    # Rounded down: the shares of a snapshot may add up to at most 1.
    return {
        key: math.floor(weight / total * 1000) / 1000
        for key, weight in zip(keys, weights, strict=True)
    }
