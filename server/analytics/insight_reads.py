"""Content-insight reads: one post's insights, a profile's aggregates and quality score.

Both are cached (for days: only the worker's writes change them, and it retires the entries
it changed after each batch commits, so a read after the worker wrote is fresh). A profile's
entry is under its analytics tag, which ingestion bumps too, so the engagement part of the
quality score follows the profile's own metrics at once; other creators' moves (the peers it
is ranked against) show within the TTL.
"""

from __future__ import annotations

from typing import Any

from socialhub.v1 import analytics_pb2
from sqlalchemy.ext.asyncio import AsyncEngine

from server.analytics import insight_repository as repository
from server.analytics.cache_tags import post_insights_tag, profile_tag
from server.analytics.ingestion import profile_not_found
from server.analytics.insight_repository import CONSISTENCY_WEEKS
from server.core.cache import Cache
from server.core.db import autocommit_reads
from server.core.errors import NotFound
from server.core.names import format_name
from server.core.timestamps import timestamp
from server.feed.public import posts_by_ids
from server.profiles.public import profile_exists

SENTIMENT_ENUM = {
    "positive": analytics_pb2.SENTIMENT_POSITIVE,
    "neutral": analytics_pb2.SENTIMENT_NEUTRAL,
    "negative": analytics_pb2.SENTIMENT_NEGATIVE,
}
# The quality score's weights (docs/ANALYTICS.md, "Content quality score").
WEIGHTS = {"engagement": 0.35, "sentiment": 0.25, "consistency": 0.20, "clarity": 0.20}


def post_insights_name(post_id: int) -> str:
    return f"{format_name('posts', post_id)}/insights"


def profile_insights_name(profile_id: int) -> str:
    return f"{format_name('profiles', profile_id)}/insights"


def _post_not_found(post_id: int) -> NotFound:
    return NotFound(f"{format_name('posts', post_id)} does not exist", reason="POST_NOT_FOUND")


def _not_ready(post_id: int) -> NotFound:
    return NotFound(
        f"{format_name('posts', post_id)} has no insights yet: ask again shortly",
        reason="INSIGHTS_NOT_READY",
    )


def quality(
    posts: int, average_sentiment: float, active_weeks: int, confident: int, standing: float | None
) -> analytics_pb2.ContentQuality:
    if posts == 0:
        return analytics_pb2.ContentQuality()
    parts = {
        "engagement": standing or 0.0,
        "sentiment": (average_sentiment + 1) / 2,
        "consistency": min(active_weeks, CONSISTENCY_WEEKS) / CONSISTENCY_WEEKS,
        "clarity": confident / posts,
    }
    score = round(100 * sum(WEIGHTS[name] * value for name, value in parts.items()))
    return analytics_pb2.ContentQuality(score=max(0, min(100, score)), **parts)


def _shares(counts: dict[str, Any], posts: int) -> list[tuple[str, int, float]]:
    ordered = sorted(counts.items(), key=lambda item: (-int(item[1]), item[0]))
    return [(name, int(n), int(n) / posts) for name, n in ordered]


class InsightReads:
    def __init__(self, engine: AsyncEngine, cache: Cache, ttl_s: int) -> None:
        self._reads = autocommit_reads(engine)
        self._cache = cache
        self._ttl_s = ttl_s

    async def post_insights(self, post_id: int) -> analytics_pb2.PostInsights:
        payload = await self._cache.read_through(
            f"analytics:post-insights:{post_id}",
            tag=post_insights_tag(post_id),
            ttl_s=self._ttl_s,
            load=lambda: self._load_post(post_id),
        )
        return analytics_pb2.PostInsights.FromString(payload)

    async def _load_post(self, post_id: int) -> bytes:
        # A missing answer raises, so it is never cached: the next read looks again.
        async with self._reads.connect() as conn:
            row = await repository.post_insights_row(conn, post_id)
            if row is None:
                if not await posts_by_ids(conn, [post_id]):
                    raise _post_not_found(post_id)
                raise _not_ready(post_id)
        return analytics_pb2.PostInsights(
            name=post_insights_name(post_id),
            profile=format_name("profiles", row.profile_id),
            sentiment=SENTIMENT_ENUM[row.sentiment],
            sentiment_score=row.sentiment_score,
            sentiment_confidence=row.sentiment_confidence,
            category=row.category,
            category_confidence=row.category_confidence,
            language_code=row.language,
            language_confidence=row.language_confidence,
            model_version=row.model_version,
            post_update_time=timestamp(row.post_update_time),
            analyze_time=timestamp(row.analyze_time),
        ).SerializeToString()

    async def profile_insights(self, profile_id: int) -> analytics_pb2.ProfileInsights:
        payload = await self._cache.read_through(
            f"analytics:insights:{profile_id}",
            tag=profile_tag(profile_id),
            ttl_s=self._ttl_s,
            load=lambda: self._load_profile(profile_id),
        )
        return analytics_pb2.ProfileInsights.FromString(payload)

    async def _load_profile(self, profile_id: int) -> bytes:
        name = profile_insights_name(profile_id)
        async with self._reads.connect() as conn:
            row = await repository.profile_insights_row(conn, profile_id)
            if row is None:
                if not await profile_exists(conn, profile_id):
                    raise profile_not_found(profile_id)
                return analytics_pb2.ProfileInsights(name=name).SerializeToString()
            weeks = await repository.active_weeks(conn, profile_id)
            standing = await repository.engagement_standing(conn, profile_id)
        posts = row.posts
        average = row.sentiment_sum / posts
        return analytics_pb2.ProfileInsights(
            name=name,
            post_count=posts,
            categories=[
                analytics_pb2.CategoryShare(category=c, post_count=n, share=share)
                for c, n, share in _shares(row.categories, posts)
            ],
            languages=[
                analytics_pb2.LanguageShare(language_code=code, post_count=n, share=share)
                for code, n, share in _shares(row.languages, posts)
            ],
            primary_category=row.primary_category,
            primary_language_code=row.primary_language,
            average_sentiment_score=average,
            positive_share=row.positive / posts,
            neutral_share=row.neutral / posts,
            negative_share=row.negative / posts,
            quality=quality(posts, average, weeks, row.confident, standing),
        ).SerializeToString()
