"""Every SQL statement of the analytics domain."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    Integer,
    Row,
    String,
    and_,
    bindparam,
    cast,
    exists,
    func,
    literal,
    select,
    text,
    true,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, distinct_on, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from server.analytics.insight_tables import analytics_profile_insights as profile_insights
from server.analytics.mapping import PLATFORM_BY_ENUM
from server.analytics.model import (
    AudienceValues,
    CreatorSearch,
    FollowerCountValues,
    ReportQuery,
    SnapshotBatch,
    midnight,
)
from server.analytics.tables import (
    METRICS,
    analytics_audiences,
    analytics_creators,
    analytics_daily,
    analytics_follower_counts,
    analytics_metric_snapshots,
    analytics_posting_slots,
    analytics_posts,
)
from server.core.pg_arrays import int_array, text_array

PLATFORM_NAMES = tuple(PLATFORM_BY_ENUM.values())
ONE_DAY = timedelta(days=1)

posts = analytics_posts
snapshots = analytics_metric_snapshots
daily = analytics_daily
followers = analytics_follower_counts
audiences = analytics_audiences
creators = analytics_creators
posting_slots = analytics_posting_slots

POST_COLUMNS = (
    posts.c.id,
    posts.c.profile_id,
    posts.c.platform,
    posts.c.external_id,
    posts.c.publish_time,
    posts.c.observe_time,
    *(posts.c[m] for m in METRICS),
    posts.c.engagement,
)

# --- ingestion -------------------------------------------------------------------------------


# A batch of snapshots is three statements, each over the whole batch as arrays (unnest), so
# neither SQLAlchemy's compiler nor a row-by-row round trip sees its rows. The first locks the
# batch's profiles (server.profiles.public.lock_profiles: FOR NO KEY UPDATE, in id order),
# which every ingestion of a profile takes first: two batches of one profile run one after
# the other, and the posts and rollup rows below (all of them a locked profile's) need no
# row locks of their own. Every statement after it reads what the one before committed.

# Times travel as microseconds since the epoch (no datetime object per snapshot in Python).
_EPOCH_US = "timestamptz 'epoch' + {} * interval '1 microsecond'"
_US = "(extract(epoch FROM {}) * 1000000)::bigint"
# The batch's posts looked up by key, ids taken for the new ones, and the rows of the rollups
# the new ones may move made with zeros where missing. A new post's row is inserted by the
# next statement, with its latest metrics: inserted here and updated there, as it was, a row
# cost a second version with its three index entries, and the update of a row inserted by
# the same transaction checks its foreign key again. A post found has had its rollup rows
# since the batch that inserted it (they go only with their profile, and so does the post),
# so only new posts' are looked for. Found and new posts come back apart, as arrays (a CTE's
# arrays are aggregated in one pass over it, so they pair up row by row with no sort). A
# rollup row made here gets its deltas from an UPDATE in the next statement, so a negative
# delta never meets the CHECK constraints of an INSERT.
_POSTS_AND_ROLLUP_ROWS = f"""
WITH k AS (
    SELECT * FROM unnest($1::text::bigint[], $2::text::text[], $3::text::text[],
                         $4::text::bigint[])
        WITH ORDINALITY AS k(profile_id, platform, external_id, publish_us, ord)
), looked_up AS MATERIALIZED (
    SELECT k.*, p.id, p.publish_time
    FROM k LEFT JOIN analytics_posts p USING (profile_id, platform, external_id)
), new AS MATERIALIZED (
    -- The identity's own sequence: the next statement inserts these ids.
    SELECT ord, nextval('analytics_posts_id_seq') AS id, profile_id, platform,
           {_EPOCH_US.format("publish_us")} AS publish_time
    FROM looked_up
    WHERE id IS NULL
), batch AS MATERIALIZED (
    SELECT profile_id, platform, publish_time FROM new
), daily_rows AS (
    INSERT INTO analytics_daily AS d
        (profile_id, day, platform, posts, likes, comments, shares, saves, views, reach,
         max_engagement)
    SELECT DISTINCT profile_id, (publish_time AT TIME ZONE 'UTC')::date, platform,
           0, 0, 0, 0, 0, 0, 0, 0
    FROM batch
    ORDER BY 1, 2, 3
    ON CONFLICT (profile_id, day, platform) DO NOTHING
), slot_rows AS (
    INSERT INTO analytics_posting_slots AS s
        (profile_id, platform, weekday, hour, posts, engagement)
    SELECT DISTINCT profile_id, platform,
           date_part('isodow', publish_time AT TIME ZONE 'UTC')::smallint,
           date_part('hour', publish_time AT TIME ZONE 'UTC')::smallint, 0, 0
    FROM batch
    ORDER BY 1, 2, 3, 4
    ON CONFLICT (profile_id, platform, weekday, hour) DO NOTHING
), creator_rows AS (
    INSERT INTO analytics_creators AS c
        (profile_id, platform, followers, posts, engagement, countries)
    SELECT DISTINCT profile_id, platform, 0, 0, 0, '{{}}'::jsonb FROM batch
    ORDER BY profile_id, platform
    ON CONFLICT (profile_id, platform) DO NOTHING
)
SELECT f.*, n.*
FROM (SELECT array_agg(ord) AS ords, array_agg(id) AS ids,
             array_agg({_US.format("publish_time")}) AS publish_us
      FROM looked_up WHERE id IS NOT NULL) f,
     (SELECT array_agg(ord) AS ords, array_agg(id) AS ids FROM new) n
"""

# Everything else in one statement (its CTEs see one snapshot): the new posts are inserted
# with the metrics of their newest snapshot in the batch ($14-$20, picked in Python)
# and all of them go to the rollups (posts + 1); the snapshots not recorded before are
# inserted; per post found the newest of those, if newer than the post's latest, becomes the
# latest, and the differences go to the rollups. (A new post's snapshots are all recorded:
# its id is fresh and the batch has no repeats.) Returns one
# row of arrays: the snapshots recorded (post id, observe time), and the posts whose latest
# moved, to which observe time and by how much engagement. (Arrays, not joins of the CTEs:
# the planner guesses one row for each and nested loops over 1,000 rows each. Unsorted: the
# arrays of one CTE come from one pass over it, so they pair up; order matters to no one.)
_APPLY_SNAPSHOTS = f"""
WITH sent AS (
    SELECT post_id, {_EPOCH_US.format("observe_us")} AS observe_time,
           likes, comments, shares, saves, views, reach
    FROM unnest($1::text::bigint[], $2::text::bigint[], $3::text::bigint[],
                $4::text::bigint[], $5::text::bigint[], $6::text::bigint[],
                $7::text::bigint[], $8::text::bigint[])
        AS i(post_id, observe_us, likes, comments, shares, saves, views, reach)
), new_posts AS MATERIALIZED (
    SELECT id, profile_id, platform, external_id,
           {_EPOCH_US.format("publish_us")} AS publish_time,
           {_EPOCH_US.format("observe_us")} AS observe_time,
           likes, comments, shares, saves, views, reach
    FROM unnest($9::text::bigint[], $10::text::bigint[], $11::text::text[], $12::text::text[],
                $13::text::bigint[], $14::text::bigint[], $15::text::bigint[],
                $16::text::bigint[], $17::text::bigint[], $18::text::bigint[],
                $19::text::bigint[], $20::text::bigint[])
        AS n(id, profile_id, platform, external_id, publish_us, observe_us,
             likes, comments, shares, saves, views, reach)
), made AS (
    -- Not ON CONFLICT: the profiles are locked, so a key taken meanwhile is a bug to hear of.
    INSERT INTO analytics_posts
        (id, profile_id, platform, external_id, publish_time, observe_time,
         likes, comments, shares, saves, views, reach)
    SELECT id, profile_id, platform, external_id, publish_time, observe_time,
           likes, comments, shares, saves, views, reach
    FROM new_posts
), recorded AS MATERIALIZED (
    INSERT INTO analytics_metric_snapshots
        (post_id, observe_time, likes, comments, shares, saves, views, reach)
    SELECT post_id, observe_time, likes, comments, shares, saves, views, reach FROM sent
    ON CONFLICT (post_id, observe_time) DO NOTHING
    RETURNING post_id, observe_time, likes, comments, shares, saves, views, reach
), newest AS (
    SELECT DISTINCT ON (post_id) * FROM recorded ORDER BY post_id, observe_time DESC
), moved_found AS MATERIALIZED (
    -- Only the posts found: this statement's snapshot has no row of the new ones.
    SELECT n.post_id, n.observe_time, n.likes, n.comments, n.shares, n.saves, n.views,
           n.reach, p.profile_id, p.platform, p.publish_time, false AS is_new,
           n.likes - p.likes AS d_likes, n.comments - p.comments AS d_comments,
           n.shares - p.shares AS d_shares, n.saves - p.saves AS d_saves,
           n.views - p.views AS d_views, n.reach - p.reach AS d_reach,
           n.likes + n.comments + n.shares - p.engagement AS d_engagement,
           n.likes + n.comments + n.shares AS engagement, p.ctid AS row
    FROM newest n JOIN analytics_posts p ON p.id = n.post_id
    WHERE n.observe_time > p.observe_time
), moved AS MATERIALIZED (
    SELECT post_id, observe_time, profile_id, platform,
           (publish_time AT TIME ZONE 'UTC')::date AS day,
           date_part('isodow', publish_time AT TIME ZONE 'UTC')::smallint AS weekday,
           date_part('hour', publish_time AT TIME ZONE 'UTC')::smallint AS hour,
           is_new, d_likes, d_comments, d_shares, d_saves, d_views, d_reach, d_engagement,
           engagement
    FROM (
        SELECT post_id, observe_time, profile_id, platform, publish_time, is_new, d_likes,
               d_comments, d_shares, d_saves, d_views, d_reach, d_engagement, engagement
        FROM moved_found
        UNION ALL
        SELECT id, observe_time, profile_id, platform, publish_time, true, likes, comments,
               shares, saves, views, reach, likes + comments + shares,
               likes + comments + shares
        FROM new_posts
    ) m
), set_latest AS (
    -- By the row moved_found read (this statement's snapshot: it is still there), not by
    -- the primary key a second time. No indexed column changes: a HOT update (migration
    -- 0016), and the day's max_engagement below keeps the top posts findable.
    UPDATE analytics_posts p
    SET observe_time = m.observe_time, likes = m.likes, comments = m.comments,
        shares = m.shares, saves = m.saves, views = m.views, reach = m.reach
    FROM moved_found m WHERE p.ctid = m.row
), add_to_daily AS (
    UPDATE analytics_daily d
    SET posts = d.posts + x.posts, likes = d.likes + x.likes,
        comments = d.comments + x.comments, shares = d.shares + x.shares,
        saves = d.saves + x.saves, views = d.views + x.views, reach = d.reach + x.reach,
        max_engagement = greatest(d.max_engagement, x.max_engagement)
    FROM (
        SELECT profile_id, day, platform, count(*) FILTER (WHERE is_new) AS posts,
               sum(d_likes)::bigint AS likes, sum(d_comments)::bigint AS comments,
               sum(d_shares)::bigint AS shares, sum(d_saves)::bigint AS saves,
               sum(d_views)::bigint AS views, sum(d_reach)::bigint AS reach,
               max(engagement) AS max_engagement
        FROM moved GROUP BY profile_id, day, platform
    ) x
    WHERE (d.profile_id, d.day, d.platform) = (x.profile_id, x.day, x.platform)
), add_to_slots AS (
    UPDATE analytics_posting_slots s
    SET posts = s.posts + x.posts, engagement = s.engagement + x.engagement
    FROM (
        SELECT profile_id, platform, weekday, hour, count(*) FILTER (WHERE is_new) AS posts,
               sum(d_engagement)::bigint AS engagement
        FROM moved GROUP BY profile_id, platform, weekday, hour
    ) x
    WHERE (s.profile_id, s.platform, s.weekday, s.hour)
        = (x.profile_id, x.platform, x.weekday, x.hour)
), add_to_creators AS (
    UPDATE analytics_creators c
    SET posts = c.posts + x.posts, engagement = c.engagement + x.engagement
    FROM (
        SELECT profile_id, platform, count(*) FILTER (WHERE is_new) AS posts,
               sum(d_engagement)::bigint AS engagement
        FROM moved GROUP BY profile_id, platform
    ) x
    WHERE (c.profile_id, c.platform) = (x.profile_id, x.platform)
)
SELECT r.*, m.*
FROM (SELECT array_agg(post_id) AS post_ids,
             array_agg({_US.format("observe_time")}) AS observe_us
      FROM recorded) r,
     (SELECT array_agg(post_id) AS post_ids,
             array_agg({_US.format("observe_time")}) AS observe_us,
             array_agg(d_engagement) AS engagement_changes
      FROM moved) m
"""


@dataclass(frozen=True)
class Applied:
    """Per snapshot recorded (the others were recorded before): its index in the batch,
    whether it became its post's latest, how much that moved the post's engagement, and the
    post's publish time (microseconds since the epoch)."""

    indexes: list[int]
    latest: list[bool]
    engagement_changes: list[int]
    publish_us: list[int]


async def _posts_and_rollup_rows(
    conn: AsyncConnection, first: dict[tuple[int, str, str], int], publish_us: list[int]
) -> tuple[list[int], list[int], list[int]]:
    """The ids and publish times of the batch's posts (`first`'s keys, in its order), and
    the indexes among them of the new ones (whose ids are taken, their rows not inserted
    yet); their rollup rows made."""
    row: Any = (
        await conn.exec_driver_sql(
            _POSTS_AND_ROLLUP_ROWS,
            (
                int_array([key[0] for key in first]),
                text_array([key[1] for key in first]),
                text_array([key[2] for key in first]),
                int_array(publish_us),
            ),
        )
    ).one()
    found_ords, found_ids, found_published, new_ords, new_ids = (column or () for column in row)
    post_ids = [0] * len(first)
    published = list(publish_us)  # a new post's is its first snapshot's
    for ord_, post_id, publish in zip(found_ords, found_ids, found_published, strict=True):
        post_ids[ord_ - 1] = post_id
        published[ord_ - 1] = publish
    for ord_, post_id in zip(new_ords, new_ids, strict=True):
        post_ids[ord_ - 1] = post_id
    return post_ids, published, [ord_ - 1 for ord_ in new_ords]


def _new_posts(
    batch: SnapshotBatch,
    keys: list[tuple[int, str, str]],
    slots: list[int],
    post_ids: list[int],
    publish_us: list[int],
    new: list[int],
) -> tuple[str, ...]:
    """The new posts' columns for _APPLY_SNAPSHOTS: id, profile, platform, external id,
    publish time, and the observe time and metrics of the post's newest snapshot in the
    batch."""
    newest = dict.fromkeys(new, -1)
    observe_us = batch.observe_us
    for index, slot in enumerate(slots):
        best = newest.get(slot)
        if best is not None and (best < 0 or observe_us[index] > observe_us[best]):
            newest[slot] = index
    return (
        int_array([post_ids[slot] for slot in new]),
        int_array([keys[slot][0] for slot in new]),
        text_array([keys[slot][1] for slot in new]),
        text_array([keys[slot][2] for slot in new]),
        int_array([publish_us[slot] for slot in new]),
        *(
            int_array([column[newest[slot]] for slot in new])
            for column in (observe_us, *batch.metrics)
        ),
    )


async def apply_snapshots(conn: AsyncConnection, batch: SnapshotBatch) -> Applied:
    """Apply a batch (the caller's transaction, its profiles locked)."""
    first: dict[tuple[int, str, str], int] = {}  # post -> its index among the batch's posts
    slots = [
        first.setdefault(key, len(first))
        for key in zip(batch.profile_ids, batch.platforms, batch.post_ids, strict=True)
    ]
    # A new post's publish time is its first snapshot's.
    publish_us = [0] * len(first)
    for index in reversed(range(len(slots))):
        publish_us[slots[index]] = batch.publish_us[index]
    post_ids, published, new = await _posts_and_rollup_rows(conn, first, publish_us)
    post_of = [post_ids[slot] for slot in slots]
    new_posts = _new_posts(batch, list(first), slots, post_ids, publish_us, new)
    row: Any = (
        await conn.exec_driver_sql(
            _APPLY_SNAPSHOTS,
            (
                int_array(post_of),
                int_array(batch.observe_us),
                *map(int_array, batch.metrics),
                *new_posts,
            ),
        )
    ).one()
    recorded_posts, recorded_us, moved_posts, moved_us, changes = row
    recorded = set(zip(recorded_posts or (), recorded_us or (), strict=True))
    # Per post whose latest moved: to which snapshot, and by how much engagement.
    moved = {
        post: (observed, change)
        for post, observed, change in zip(
            moved_posts or (), moved_us or (), changes or (), strict=True
        )
    }
    applied = Applied([], [], [], [])
    for index, (post, observed) in enumerate(zip(post_of, batch.observe_us, strict=True)):
        if (post, observed) not in recorded:
            continue  # recorded before
        move = moved.get(post)
        latest = move is not None and move[0] == observed
        applied.indexes.append(index)
        applied.latest.append(latest)
        applied.engagement_changes.append(move[1] if move is not None and latest else 0)
        applied.publish_us.append(published[slots[index]])
    return applied


async def upsert_follower_counts(
    conn: AsyncConnection, counts: Sequence[FollowerCountValues]
) -> int:
    """One row per profile, platform and day; a later observation replaces an earlier one.
    Returns how many rows were written (new or changed)."""
    statement = insert(followers).values(
        [
            {
                "profile_id": c.profile_id,
                "platform": c.platform,
                "day": c.day,
                "followers": c.followers,
                "observe_time": c.observe_time,
            }
            for c in counts
        ]
    )
    excluded = statement.excluded
    result = await conn.execute(
        statement.on_conflict_do_update(
            index_elements=["profile_id", "platform", "day"],
            set_={"followers": excluded.followers, "observe_time": excluded.observe_time},
            where=and_(
                excluded.observe_time >= followers.c.observe_time,
                tuple_(followers.c.followers, followers.c.observe_time).is_distinct_from(
                    tuple_(excluded.followers, excluded.observe_time)
                ),
            ),
        ).returning(literal(1))
    )
    return len(result.all())


async def upsert_audiences(conn: AsyncConnection, values: Sequence[AudienceValues]) -> int:
    dimensions = ("ages", "genders", "countries", "cities")
    statement = insert(audiences).values(
        [
            {
                "profile_id": v.profile_id,
                "platform": v.platform,
                "day": v.day,
                "observe_time": v.observe_time,
                **{name: getattr(v, name) for name in dimensions},
            }
            for v in values
        ]
    )
    excluded = statement.excluded
    result = await conn.execute(
        statement.on_conflict_do_update(
            index_elements=["profile_id", "platform", "day"],
            set_={name: excluded[name] for name in ("observe_time", *dimensions)},
            where=excluded.observe_time >= audiences.c.observe_time,
        ).returning(literal(1))
    )
    return len(result.all())


async def _ensure_creators(conn: AsyncConnection, keys: Sequence[tuple[int, str]]) -> None:
    await conn.execute(
        insert(creators)
        .values(
            [
                {
                    "profile_id": profile_id,
                    "platform": platform,
                    "followers": 0,
                    "posts": 0,
                    "engagement": 0,
                    "countries": {},
                }
                for profile_id, platform in sorted(set(keys))
            ]
        )
        .on_conflict_do_nothing(index_elements=["profile_id", "platform"])
    )


def _latest_per_key(table: Any, keys: Sequence[tuple[int, str]], *columns: Any) -> Any:
    return (
        select(table.c.profile_id, table.c.platform, *columns)
        .ext(distinct_on(table.c.profile_id, table.c.platform))
        .where(tuple_(table.c.profile_id, table.c.platform).in_(sorted(set(keys))))
        .order_by(table.c.profile_id, table.c.platform, table.c.day.desc())
        .subquery()
    )


async def refresh_creator_followers(conn: AsyncConnection, keys: Sequence[tuple[int, str]]) -> None:
    """Each creator's followers: the count of its latest day."""
    await _ensure_creators(conn, keys)
    latest = _latest_per_key(followers, keys, followers.c.followers)
    await conn.execute(
        update(creators)
        .where(
            creators.c.profile_id == latest.c.profile_id,
            creators.c.platform == latest.c.platform,
        )
        .values(followers=latest.c.followers)
    )


async def refresh_creator_countries(conn: AsyncConnection, keys: Sequence[tuple[int, str]]) -> None:
    """Each creator's audience countries: those of its latest audience snapshot."""
    await _ensure_creators(conn, keys)
    latest = _latest_per_key(audiences, keys, audiences.c.countries)
    await conn.execute(
        update(creators)
        .where(
            creators.c.profile_id == latest.c.profile_id,
            creators.c.platform == latest.c.platform,
        )
        .values(countries=latest.c.countries)
    )


CREATOR_COLUMNS = (
    creators.c.profile_id,
    creators.c.platform,
    creators.c.followers,
    creators.c.posts,
    creators.c.engagement,
    creators.c.engagement_rate,
    creators.c.countries,
)


def search_creators_statement(
    search: CreatorSearch, position: Sequence[Any] | None, limit: int
) -> Any:
    """Most first by the order's column, then by profile id: one backward range of the
    (platform, column, profile_id) index, the other filters checked on its rows."""
    key = creators.c[search.order_column]
    conditions = [creators.c.platform == search.platform]
    if search.min_followers:
        conditions.append(creators.c.followers >= search.min_followers)
    if search.max_followers:
        conditions.append(creators.c.followers <= search.max_followers)
    if search.min_engagement_rate:
        conditions.append(creators.c.engagement_rate >= search.min_engagement_rate)
    if search.audience_country:
        conditions.append(creators.c.countries.has_key(search.audience_country))
    # The content filters probe the profile's aggregates by primary key for each creator of
    # the order's range (or, for a rare value, read its (primary_*, profile_id) index first).
    topics = profile_insights.c
    if search.category:
        conditions.append(
            exists().where(
                topics.profile_id == creators.c.profile_id,
                topics.primary_category == search.category,
            )
        )
    if search.language:
        conditions.append(
            exists().where(
                topics.profile_id == creators.c.profile_id,
                topics.primary_language == search.language,
            )
        )
    if position is not None:
        conditions.append(tuple_(key, creators.c.profile_id) < tuple(position))
    return (
        select(*CREATOR_COLUMNS)
        .where(*conditions)
        .order_by(key.desc(), creators.c.profile_id.desc())
        .limit(limit)
    )


async def search_creators(
    conn: AsyncConnection, search: CreatorSearch, position: Sequence[Any] | None, limit: int
) -> list[Row[Any]]:
    return list(await conn.execute(search_creators_statement(search, position, limit)))


# --- partitions ------------------------------------------------------------------------------


async def create_partition(
    conn: AsyncConnection, schema: str, name: str, start: date, end: date
) -> bool:
    """Make one monthly partition unless it exists; whether it was made. Names and bounds come
    from server/analytics/partitions.py, never from a request."""
    # Two batches backfilling the same month (or a batch and the job) make it one at a time:
    # concurrent CREATE TABLEs of one name collide in the catalog, IF NOT EXISTS or not.
    await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name})
    exists = await conn.scalar(
        text("SELECT to_regclass(:qualified) IS NOT NULL"), {"qualified": f"{schema}.{name}"}
    )
    if exists:
        return False
    # The locks CREATE TABLE ... PARTITION OF took (the parent, and analytics_posts for the
    # foreign key the snapshots had until migration 0014), taken up front in the order
    # ingestion takes its own (posts, then the parent): taken one at a time by CREATE, they
    # deadlocked with a batch inserting there. Kept in that order: harmless without the key.
    await conn.execute(text(f"LOCK TABLE {posts.name} IN SHARE ROW EXCLUSIVE MODE"))
    await conn.execute(text(f"LOCK TABLE {snapshots.name} IN ACCESS EXCLUSIVE MODE"))
    await conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
    await conn.execute(
        text(
            f"CREATE TABLE IF NOT EXISTS {schema}.{name} PARTITION OF {snapshots.name} "
            f"FOR VALUES FROM ('{start.isoformat()}+00') TO ('{end.isoformat()}+00')"
        )
    )
    return True


async def partition_names(conn: AsyncConnection, schema: str) -> list[str]:
    result = await conn.execute(
        text(
            "SELECT child.relname FROM pg_inherits"
            " JOIN pg_class child ON child.oid = pg_inherits.inhrelid"
            " JOIN pg_namespace ns ON ns.oid = child.relnamespace"
            " WHERE pg_inherits.inhparent = CAST(:parent AS regclass) AND ns.nspname = :schema"
            " ORDER BY child.relname"
        ),
        {"parent": snapshots.name, "schema": schema},
    )
    return [row[0] for row in result]


async def drop_partition(conn: AsyncConnection, schema: str, name: str) -> None:
    # A short wait for the parent's lock: the job tries again next round rather than queueing
    # every ingestion behind it.
    await conn.execute(text("SET LOCAL lock_timeout = '5s'"))
    # In ingestion's order, as create_partition does.
    await conn.execute(text(f"LOCK TABLE {posts.name} IN SHARE ROW EXCLUSIVE MODE"))
    await conn.execute(text(f"LOCK TABLE {snapshots.name} IN ACCESS EXCLUSIVE MODE"))
    await conn.execute(text(f"DROP TABLE IF EXISTS {schema}.{name}"))


# --- reports ---------------------------------------------------------------------------------


def _day_conditions(query: ReportQuery, table: Any) -> list[Any]:
    conditions = [
        table.c.profile_id == query.profile_id,
        table.c.day >= query.first_day,
        table.c.day <= query.last_day,
    ]
    if query.platform is not None:
        conditions.append(table.c.platform == query.platform)
    return conditions


def _post_conditions(query: ReportQuery) -> list[Any]:
    conditions = [
        posts.c.profile_id == query.profile_id,
        posts.c.publish_time >= query.start_time,
        posts.c.publish_time < query.end_time,
    ]
    if query.platform is not None:
        conditions.append(posts.c.platform == query.platform)
    return conditions


def periods_statement(query: ReportQuery) -> Any:
    if query.granularity == "day":
        # A day is its own period: the rows as the primary key orders them, no grouping.
        return (
            select(
                daily.c.day.label("period"),
                daily.c.platform,
                *(daily.c[name] for name in ("posts", *METRICS, "max_engagement")),
            )
            .where(*_day_conditions(query, daily))
            .order_by(daily.c.day, daily.c.platform)
        )
    period = cast(func.date_trunc(query.granularity, daily.c.day), Date).label("period")
    return (
        select(
            period,
            daily.c.platform,
            *(
                cast(func.sum(daily.c[name]), BigInteger).label(name)
                for name in ("posts", *METRICS)
            ),
            func.max(daily.c.max_engagement).label("max_engagement"),
        )
        .where(*_day_conditions(query, daily))
        .group_by(period, daily.c.platform)
        .order_by(period, daily.c.platform)
    )


async def periods(conn: AsyncConnection, query: ReportQuery) -> list[Row[Any]]:
    return list(await conn.execute(periods_statement(query)))


def follower_bounds_statement(query: ReportQuery) -> Any:
    """Per platform: the count at the start (the latest on or before the first day, else the
    first in the interval) and at the end (the latest on or before the last day).

    Three probes of the primary key (profile_id, platform, day) per platform, one row each,
    so the cost does not grow with the days of counts a profile has (DISTINCT ON over them
    read and sorted every one)."""
    names = [query.platform] if query.platform is not None else list(PLATFORM_NAMES)
    # The names as a bound array (not VALUES, whose literal rows kept the statement out of
    # SQLAlchemy's compiled cache: compiled anew on every call, 3 ms).
    platforms = (
        func.unnest(bindparam("platforms", names, type_=ARRAY(String)))
        .table_valued("platform")
        .render_derived(name="platforms")
    )

    def probe(*conditions: Any, newest: bool) -> Any:
        return (
            select(followers.c.followers)
            .where(
                followers.c.profile_id == query.profile_id,
                followers.c.platform == platforms.c.platform,
                *conditions,
            )
            .order_by(followers.c.day.desc() if newest else followers.c.day)
            .limit(1)
            .lateral()
        )

    end = probe(followers.c.day <= query.last_day, newest=True)
    before = probe(followers.c.day <= query.first_day, newest=True)
    first = probe(
        followers.c.day >= query.first_day, followers.c.day <= query.last_day, newest=False
    )
    return select(
        platforms.c.platform,
        func.coalesce(before.c.followers, first.c.followers).label("start"),
        end.c.followers.label("end"),
    ).select_from(platforms.join(end, true()).outerjoin(before, true()).outerjoin(first, true()))


async def follower_bounds(conn: AsyncConnection, query: ReportQuery) -> list[Row[Any]]:
    return list(await conn.execute(follower_bounds_statement(query)))


def _slot_columns(publish_time: Any) -> tuple[Any, Any]:
    local = func.timezone("UTC", publish_time)
    # date_part, not EXTRACT: EXTRACT computes a numeric, twice as slow over 5,000 posts
    # (2.3 ms against 4.6, bench/analytics_reports.py's deep profile); the values are equal.
    return (
        cast(func.date_part("hour", local), Integer).label("hour"),
        cast(func.date_part("isodow", local), Integer).label("weekday"),
    )


def slots_statement(query: ReportQuery) -> Any:
    """Posts of the interval and their average engagement per hour and per ISO weekday (UTC),
    in one pass: a row per hour (weekday NULL), then a row per weekday (hour NULL)."""
    hour, weekday = _slot_columns(posts.c.publish_time)
    return (
        select(
            hour,
            weekday,
            func.count().label("posts"),
            func.avg(posts.c.engagement).label("average"),
        )
        .where(*_post_conditions(query))
        .group_by(func.grouping_sets(hour, weekday))
    )


def slots_from_rollup_statement(query: ReportQuery) -> Any:
    """What slots_statement returns, from the profile's slot rollup (at most 168 rows per
    platform) less its posts published outside the interval (two ranges of the
    (profile_id, publish_time) index, and those posts' rows for their engagement). One
    statement, so both parts see one snapshot. The average is the same numeric division avg()
    makes."""
    platform = [] if query.platform is None else [posting_slots.c.platform == query.platform]
    whole = select(
        cast(posting_slots.c.hour, Integer).label("hour"),
        cast(posting_slots.c.weekday, Integer).label("weekday"),
        posting_slots.c.posts,
        posting_slots.c.engagement,
    ).where(posting_slots.c.profile_id == query.profile_id, *platform)
    others = [posts.c.profile_id == query.profile_id]
    if query.platform is not None:
        others.append(posts.c.platform == query.platform)

    def outside(*conditions: Any) -> Any:
        # Two ranges rather than an OR, which would become a bitmap scan of the heap.
        return select(
            *_slot_columns(posts.c.publish_time),
            literal(-1, BigInteger).label("posts"),
            (-posts.c.engagement).label("engagement"),
        ).where(*others, *conditions)

    parts = union_all(
        whole,
        outside(posts.c.publish_time < query.start_time),
        outside(posts.c.publish_time >= query.end_time),
    ).subquery("parts")
    total = func.sum(parts.c.posts)
    return (
        select(
            parts.c.hour,
            parts.c.weekday,
            cast(total, BigInteger).label("posts"),
            (func.sum(parts.c.engagement) / total).label("average"),
        )
        .group_by(func.grouping_sets(parts.c.hour, parts.c.weekday))
        .having(total > 0)
    )


def post_total_statement(query: ReportQuery) -> Any:
    """The profile's posts (on the platform asked for) of all time, from creator search's
    rollup (one primary-key range)."""
    conditions = [creators.c.profile_id == query.profile_id]
    if query.platform is not None:
        conditions.append(creators.c.platform == query.platform)
    return select(cast(func.coalesce(func.sum(creators.c.posts), 0), BigInteger)).where(*conditions)


async def slots(conn: AsyncConnection, query: ReportQuery, inside: int) -> list[Row[Any]]:
    """Best hours' and weekdays' rows. `inside` is the number of the profile's posts published
    in the interval (the daily rollup's): when those are at least as many as the ones outside,
    the rollup less the outside ones reads fewer rows than the inside ones themselves."""
    total = int((await conn.execute(post_total_statement(query))).scalar_one())
    if total - inside <= inside:
        return list(await conn.execute(slots_from_rollup_statement(query)))
    return list(await conn.execute(slots_statement(query)))


@dataclass(frozen=True)
class DayBound:
    """A UTC day of a report's interval with posts: an upper bound of their engagement (the
    greatest max_engagement of its platforms' daily rows) and their number."""

    day: date
    bound: int
    posts: int


def day_bounds_statement(query: ReportQuery) -> Any:
    """The interval's days with posts, each with its bound and posts, highest bound first: a
    primary-key range of the daily rollup. (A report by day has these rows already, from its
    periods, and does not run it.)"""
    bound = func.max(daily.c.max_engagement).label("bound")
    return (
        select(daily.c.day, bound, cast(func.sum(daily.c.posts), BigInteger).label("posts"))
        .where(*_day_conditions(query, daily), daily.c.posts > 0)
        .group_by(daily.c.day)
        .order_by(bound.desc(), daily.c.day)
    )


def day_bounds_of(rows: Iterable[tuple[date, str, int, int]]) -> list[DayBound]:
    """DayBounds from a report's daily rows (day, platform, posts, max_engagement), in the
    order day_bounds_statement gives."""
    by_day: dict[date, tuple[int, int]] = {}
    for day, _, posts, bound in rows:
        if posts > 0:
            best, count = by_day.get(day, (0, 0))
            by_day[day] = (max(best, bound), count + posts)
    bounds = [DayBound(day, bound, posts) for day, (bound, posts) in by_day.items()]
    bounds.sort(key=lambda b: (-b.bound, b.day))
    return bounds


_DAY_STARTS = ARRAY(DateTime(timezone=True))


@cache
def _best_of_days_statement(on_platform: bool) -> Any:
    """The posts with the most engagement among a profile's posts published on some UTC days
    (`day_starts`, `day_ends`): per day, its best `limit` from one range of the (profile_id,
    publish_time) index. LATERAL with a LIMIT, so that the plan stays a loop over the days
    when generic (a join on the ranges became a scan of all the profile's posts, filtered,
    once the prepared statement went generic: 70 ms on a profile with 5,000 posts, not 0.2).
    Built once per form: building it took 0.5 ms."""
    ranges = (
        func.unnest(
            cast(bindparam("day_starts", type_=_DAY_STARTS), _DAY_STARTS),
            cast(bindparam("day_ends", type_=_DAY_STARTS), _DAY_STARTS),
        )
        .table_valued("day_start", "day_end")
        .render_derived(name="days")
    )
    conditions = [
        posts.c.profile_id == bindparam("profile_id", type_=BigInteger),
        posts.c.publish_time >= ranges.c.day_start,
        posts.c.publish_time < ranges.c.day_end,
    ]
    if on_platform:
        conditions.append(posts.c.platform == bindparam("platform", type_=String))
    best_of_day = (
        select(*POST_COLUMNS)
        .where(*conditions)
        .order_by(posts.c.engagement.desc(), posts.c.id)
        .limit(bindparam("limit", type_=Integer))
        .lateral("best_of_day")
    )
    return (
        select(*best_of_day.c)
        .select_from(ranges)
        .join(best_of_day, true())
        .order_by(best_of_day.c.engagement.desc(), best_of_day.c.id)
        .limit(bindparam("limit", type_=Integer))
    )


def top_posts_of_days_statement(query: ReportQuery, days: Sequence[date], limit: int) -> Any:
    """The posts with the most engagement among those published on `days` (UTC days of the
    interval), parameters bound."""
    starts = [midnight(day) for day in days]
    values: dict[str, Any] = {
        "day_starts": starts,
        "day_ends": [start + ONE_DAY for start in starts],
        "profile_id": query.profile_id,
        "limit": limit,
    }
    if query.platform is not None:
        values["platform"] = query.platform
    return _best_of_days_statement(query.platform is not None).params(values)


async def top_posts(
    conn: AsyncConnection,
    query: ReportQuery,
    limit: int,
    bounds: Sequence[DayBound] | None = None,
) -> list[Row[Any]]:
    """The interval's `limit` posts with the most engagement (ties: the lower id first).

    No index holds engagement (a post's latest metrics are HOT updates: migration 0016), so
    the posts are ranked from the days whose bound can hold them (`bounds`, read here unless
    given). First the `limit` days of highest bound (more if they hold fewer than `limit`
    posts): a bound is the engagement some post of its day had, so their best posts are
    usually the answer, and the `limit`-th of them has an engagement v. A post that beats or
    ties v can only be on a day whose bound is at least v, so if such days are more than those
    read, their posts are ranked once more, and that is the answer. On a year of a profile
    with 5,000 posts that reads ten days' posts, not 5,000. The caller's transaction
    (repeatable read, for a report) gives the bounds and both rankings one snapshot."""
    if bounds is None:
        bounds = [
            DayBound(row.day, row.bound, row.posts)
            for row in await conn.execute(day_bounds_statement(query))
        ]
    if not bounds:
        return []
    first = min(limit, len(bounds))
    posts_so_far = sum(b.posts for b in bounds[:first])
    while first < len(bounds) and posts_so_far < limit:
        posts_so_far += bounds[first].posts
        first += 1
    days = [b.day for b in bounds]
    top = list(await conn.execute(top_posts_of_days_statement(query, days[:first], limit)))
    # Fewer than `limit` (a day's count that includes posts since deleted): any day can hold one.
    floor = top[-1].engagement if len(top) == limit else -1
    wanted = sum(1 for b in bounds if b.bound >= floor)
    if wanted <= first:
        return top
    return list(await conn.execute(top_posts_of_days_statement(query, days[:wanted], limit)))


async def post_by_key(
    conn: AsyncConnection, profile_id: int, platform: str, external_id: str
) -> Row[Any] | None:
    statement = select(*POST_COLUMNS).where(
        posts.c.profile_id == profile_id,
        posts.c.platform == platform,
        posts.c.external_id == external_id,
    )
    return (await conn.execute(statement)).first()


def series_statement(post_id: int) -> Any:
    return (
        select(snapshots.c.observe_time, *(snapshots.c[m] for m in METRICS))
        .where(snapshots.c.post_id == post_id)
        .order_by(snapshots.c.observe_time)
    )


async def series(conn: AsyncConnection, post_id: int) -> list[Row[Any]]:
    return list(await conn.execute(series_statement(post_id)))


async def latest_audiences(
    conn: AsyncConnection, profile_id: int, platform: str | None
) -> list[Row[Any]]:
    conditions = [audiences.c.profile_id == profile_id]
    if platform is not None:
        conditions.append(audiences.c.platform == platform)
    statement = (
        select(audiences)
        .ext(distinct_on(audiences.c.platform))
        .where(*conditions)
        .order_by(audiences.c.platform, audiences.c.day.desc())
    )
    return list(await conn.execute(statement))
