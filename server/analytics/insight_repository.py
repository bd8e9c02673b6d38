"""Every SQL statement of content insights: the feed queue, posts' insights, profiles'
aggregates and what the content-quality score reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, Select, case, delete, func, literal, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from server.analytics.insight_tables import (
    analytics_feed_queue as queue,
)
from server.analytics.insight_tables import (
    analytics_post_insights as post_insights,
)
from server.analytics.insight_tables import (
    analytics_profile_insights as profile_insights,
)
from server.analytics.tables import analytics_creators as creators

# A post "has a confident category" from this confidence up (the quality score's clarity).
CONFIDENT_CATEGORY = 0.5
# Consistency counts the weeks with a post among this many, ending now.
CONSISTENCY_WEEKS = 12

# --- queue -----------------------------------------------------------------------------------


async def enqueue(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Queue posts (one row per post, needs OR-ed with a row already queued). A row the worker
    holds makes this wait for its batch to commit, then queue the post again.

    A row queued for its text (created, edited, deleted) starts its failures afresh and leaves
    the dead letters: the new text may well be analysed. One queued only for its engagement
    keeps them: its text, the likely culprit, is unchanged."""
    if not rows:
        return
    statement = insert(queue).values(list(rows))
    for_text = statement.excluded.needs_insight
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[queue.c.post_id],
            set_={
                "needs_insight": queue.c.needs_insight | for_text,
                "needs_metrics": queue.c.needs_metrics | statement.excluded.needs_metrics,
                "failures": case((for_text, 0), else_=queue.c.failures),
                "last_error": case((for_text, None), else_=queue.c.last_error),
                "dead_lettered_at": case((for_text, None), else_=queue.c.dead_lettered_at),
            },
        )
    )


def _live_rows() -> Select[Any]:
    """What a claim reads of the queued posts that are not dead letters."""
    return select(queue.c.post_id, queue.c.needs_insight, queue.c.needs_metrics).where(
        queue.c.dead_lettered_at.is_(None)
    )


def claim_statement(limit: int) -> Select[Any]:
    """The oldest live queued posts no other worker holds, in the claim index's order."""
    return (
        _live_rows()
        .order_by(queue.c.enqueued_at, queue.c.post_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


async def claim(conn: AsyncConnection, limit: int) -> list[Row[Any]]:
    """The oldest live queued posts no other worker holds, locked until this transaction
    ends."""
    return list(await conn.execute(claim_statement(limit)))


async def claim_post(conn: AsyncConnection, post_id: int) -> list[Row[Any]]:
    """The post's live queue row, if no other worker holds it (retrying a failed batch's posts
    one at a time: it may have been handled, queued again or dead-lettered meanwhile)."""
    statement = _live_rows().where(queue.c.post_id == post_id).with_for_update(skip_locked=True)
    return list(await conn.execute(statement))


async def record_failure(
    conn: AsyncConnection, post_id: int, error: str, max_failures: int
) -> Row[Any] | None:
    """Count a failed handling of the post's live row, dead-lettering it at `max_failures`;
    the row's (failures, dead_lettered_at), or None if it is no longer queued and live."""
    failures = queue.c.failures + 1
    statement = (
        update(queue)
        .where(queue.c.post_id == post_id, queue.c.dead_lettered_at.is_(None))
        .values(
            failures=failures,
            last_error=error,
            dead_lettered_at=case((failures >= literal(max_failures), func.now()), else_=None),
        )
        .returning(queue.c.failures, queue.c.dead_lettered_at)
    )
    return (await conn.execute(statement)).first()


async def dead_lettered(conn: AsyncConnection, post_ids: Sequence[int] | None = None) -> list[int]:
    """The dead-lettered posts (of `post_ids`, if given), by post id."""
    statement = select(queue.c.post_id).where(queue.c.dead_lettered_at.is_not(None))
    if post_ids is not None:
        statement = statement.where(queue.c.post_id.in_(post_ids))
    return list((await conn.execute(statement.order_by(queue.c.post_id))).scalars())


async def dead_letters(conn: AsyncConnection) -> list[Row[Any]]:
    """Every dead letter's post id, failures, last error and time, oldest first."""
    statement = (
        select(queue.c.post_id, queue.c.failures, queue.c.last_error, queue.c.dead_lettered_at)
        .where(queue.c.dead_lettered_at.is_not(None))
        .order_by(queue.c.dead_lettered_at, queue.c.post_id)
    )
    return list(await conn.execute(statement))


async def requeue_dead_letters(
    conn: AsyncConnection, post_ids: Sequence[int] | None = None
) -> list[int]:
    """Make dead-lettered posts (those of `post_ids`, or all) live again with no failures;
    return their ids."""
    statement = (
        update(queue)
        .where(queue.c.dead_lettered_at.is_not(None))
        .values(failures=0, last_error=None, dead_lettered_at=None)
        .returning(queue.c.post_id)
    )
    if post_ids is not None:
        statement = statement.where(queue.c.post_id.in_(post_ids))
    return sorted((await conn.execute(statement)).scalars())


async def dequeue(conn: AsyncConnection, post_ids: Sequence[int]) -> None:
    await conn.execute(delete(queue).where(queue.c.post_id.in_(post_ids)))


async def queued(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(func.count()).select_from(queue))).scalar_one())


async def queue_counts(conn: AsyncConnection) -> tuple[int, int]:
    """The posts queued to be handled, and the dead-lettered ones."""
    dead = queue.c.dead_lettered_at.is_not(None)
    row = (
        await conn.execute(
            select(
                func.count().filter(~dead).label("live"),
                func.count().filter(dead).label("dead"),
            ).select_from(queue)
        )
    ).one()
    return int(row.live), int(row.dead)


# --- post insights ---------------------------------------------------------------------------


async def stored_versions(
    conn: AsyncConnection, post_ids: Sequence[int]
) -> dict[int, tuple[int, str, str]]:
    """post id -> (profile id, text hash, model version) of the insights stored."""
    statement = select(
        post_insights.c.post_id,
        post_insights.c.profile_id,
        post_insights.c.text_hash,
        post_insights.c.model_version,
    ).where(post_insights.c.post_id.in_(post_ids))
    return {
        row.post_id: (row.profile_id, row.text_hash, row.model_version)
        for row in await conn.execute(statement)
    }


async def upsert_insights(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    statement = insert(post_insights).values(list(rows))
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[post_insights.c.post_id],
            set_={
                **{name: statement.excluded[name] for name in rows[0] if name != "post_id"},
                "analyze_time": func.now(),
            },
        )
    )


async def delete_insights(conn: AsyncConnection, post_ids: Sequence[int]) -> None:
    if post_ids:
        await conn.execute(delete(post_insights).where(post_insights.c.post_id.in_(post_ids)))


async def post_ids_of(conn: AsyncConnection, profile_ids: Sequence[int]) -> list[int]:
    """The posts of `profile_ids` with insights (their profile_id index)."""
    statement = select(post_insights.c.post_id).where(post_insights.c.profile_id.in_(profile_ids))
    return list((await conn.execute(statement)).scalars())


async def post_insights_row(conn: AsyncConnection, post_id: int) -> Row[Any] | None:
    statement = select(post_insights).where(post_insights.c.post_id == post_id)
    return (await conn.execute(statement)).first()


async def missing_or_stale(
    conn: AsyncConnection, post_ids: Sequence[int], version: str
) -> tuple[list[int], list[int]]:
    """Of `post_ids`, those without insights, and those with insights of another model
    version than `version` (the backfill's work)."""
    statement = select(post_insights.c.post_id, post_insights.c.model_version).where(
        post_insights.c.post_id.in_(post_ids)
    )
    have = {row.post_id: row.model_version for row in await conn.execute(statement)}
    missing = [post_id for post_id in post_ids if post_id not in have]
    stale = [post_id for post_id in post_ids if have.get(post_id, version) != version]
    return missing, stale


# --- profile aggregates ----------------------------------------------------------------------

_LOCK_PROFILE = text(
    "SELECT pg_advisory_xact_lock(hashtextextended('analytics_insights:' || :id, 0))"
)

# Recomputed from the profile's rows, not adjusted by differences: exact whatever raced.
_RECOMPUTE = text(
    """
    WITH per AS (
        SELECT profile_id,
               count(*) AS posts,
               sum(sentiment_score) AS sentiment_sum,
               count(*) FILTER (WHERE sentiment = 'positive') AS positive,
               count(*) FILTER (WHERE sentiment = 'neutral') AS neutral,
               count(*) FILTER (WHERE sentiment = 'negative') AS negative,
               count(*) FILTER (WHERE category_confidence >= :confident) AS confident
        FROM analytics_post_insights WHERE profile_id = ANY(:ids) GROUP BY profile_id
    ), cats AS (
        SELECT profile_id, category AS name, count(*) AS n
        FROM analytics_post_insights WHERE profile_id = ANY(:ids) GROUP BY 1, 2
    ), langs AS (
        SELECT profile_id, language AS name, count(*) AS n
        FROM analytics_post_insights WHERE profile_id = ANY(:ids) GROUP BY 1, 2
    )
    INSERT INTO analytics_profile_insights AS p (
        profile_id, posts, sentiment_sum, positive, neutral, negative, confident,
        categories, languages, primary_category, primary_language
    )
    SELECT per.profile_id, per.posts, per.sentiment_sum, per.positive, per.neutral,
           per.negative, per.confident,
           (SELECT jsonb_object_agg(name, n) FROM cats WHERE cats.profile_id = per.profile_id),
           (SELECT jsonb_object_agg(name, n) FROM langs WHERE langs.profile_id = per.profile_id),
           (SELECT name FROM cats WHERE cats.profile_id = per.profile_id
             ORDER BY n DESC, name LIMIT 1),
           (SELECT name FROM langs WHERE langs.profile_id = per.profile_id
             ORDER BY n DESC, name LIMIT 1)
    FROM per
    ON CONFLICT (profile_id) DO UPDATE SET
        posts = excluded.posts, sentiment_sum = excluded.sentiment_sum,
        positive = excluded.positive, neutral = excluded.neutral,
        negative = excluded.negative, confident = excluded.confident,
        categories = excluded.categories, languages = excluded.languages,
        primary_category = excluded.primary_category,
        primary_language = excluded.primary_language
    """
)

_DROP_EMPTY = text(
    """
    DELETE FROM analytics_profile_insights p
    WHERE p.profile_id = ANY(:ids)
      AND NOT EXISTS (SELECT 1 FROM analytics_post_insights i WHERE i.profile_id = p.profile_id)
    """
)


async def recompute_profiles(conn: AsyncConnection, profile_ids: Sequence[int]) -> None:
    """Recompute the aggregates of `profile_ids` from their posts' insights.

    Each profile is locked first (in id order) until the transaction ends, so the statement's
    snapshot is taken after any other worker's batch for the same profile has committed:
    two batches of one profile never both compute from a state missing the other's posts.
    """
    ids = sorted(set(profile_ids))
    if not ids:
        return
    for profile_id in ids:
        await conn.execute(_LOCK_PROFILE, {"id": str(profile_id)})
    await conn.execute(_RECOMPUTE, {"ids": ids, "confident": CONFIDENT_CATEGORY})
    await conn.execute(_DROP_EMPTY, {"ids": ids})


async def profile_insights_row(conn: AsyncConnection, profile_id: int) -> Row[Any] | None:
    statement = select(profile_insights).where(profile_insights.c.profile_id == profile_id)
    return (await conn.execute(statement)).first()


async def primary_topics(
    conn: AsyncConnection, profile_ids: Sequence[int]
) -> dict[int, tuple[str, str]]:
    """profile id -> (primary category, primary language), for those with analysed posts."""
    if not profile_ids:
        return {}
    statement = select(
        profile_insights.c.profile_id,
        profile_insights.c.primary_category,
        profile_insights.c.primary_language,
    ).where(profile_insights.c.profile_id.in_(profile_ids))
    rows = await conn.execute(statement)
    return {row.profile_id: (row.primary_category, row.primary_language) for row in rows}


async def active_weeks(conn: AsyncConnection, profile_id: int) -> int:
    """Of the last CONSISTENCY_WEEKS 7-day periods ending now, those with a post created."""
    statement = text(
        """
        SELECT count(DISTINCT floor(extract(epoch FROM now() - post_create_time) / 604800))
        FROM analytics_post_insights
        WHERE profile_id = :id AND post_create_time > now() - make_interval(weeks => :weeks)
          AND post_create_time <= now()
        """
    )
    result = await conn.execute(statement, {"id": profile_id, "weeks": CONSISTENCY_WEEKS})
    return int(result.scalar_one())


async def engagement_standing(conn: AsyncConnection, profile_id: int) -> float | None:
    """The share of the other creators on the profile's best platform (by engagement rate)
    whose rate is below the profile's; 0.5 when it has no peers there; None when the profile
    has no creator row at all. Two counts over one (platform, engagement_rate) index range."""
    best = (
        select(creators.c.platform, creators.c.engagement_rate)
        .where(creators.c.profile_id == profile_id)
        .order_by(creators.c.engagement_rate.desc())
        .limit(1)
    )
    row = (await conn.execute(best)).first()
    if row is None:
        return None
    on_platform = select(func.count()).where(creators.c.platform == row.platform)
    others = int((await conn.execute(on_platform)).scalar_one()) - 1
    if others <= 0:
        return 0.5
    below = on_platform.where(creators.c.engagement_rate < row.engagement_rate)
    return int((await conn.execute(below)).scalar_one()) / others
