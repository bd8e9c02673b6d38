"""AnalyticsService reports at 10 million snapshots: a deep profile against a fresh one.

    .venv/bin/python -m bench.analytics_reports            # full size; docs/ANALYTICS.md
    .venv/bin/python -m bench.analytics_reports --other-profiles 20 --deep-posts 500 \\
        --calls 20 --state-dir .state/bench-analytics-smoke   # smoke

The data set: one "deep" profile with 5,000 posts published over a year, 200 snapshots each
(1,000,000); 2,000 other profiles with 150 posts each, 30 snapshots per post (9,000,000); a
"fresh" profile with 5 posts of the last month, 4 snapshots each; a follower count per day
and platform for every profile. Sent through the API it would take hours, so it is written
with set-based SQL straight into the tables, and the rollups (each post's latest metrics,
analytics_daily, analytics_creators) are then computed from the snapshots from scratch with
the definition tests/analytics/test_ingestion.py checks ingestion against: per post the
latest snapshot, summed per profile, UTC day of publication and platform. A check follows on
a sample of profiles: the recomputation equals what is stored, and still does after a few
snapshots (newer, late and older, resent, a new post) and a follower count go through the
API. The data set stays in --state-dir and later runs reuse it (the deep profile's bio marks
a finished load).

Then one server (authentication on, CACHE_ENABLED=false so every call reads PostgreSQL)
answers GetProfileAnalytics for a year at GRANULARITY_DAY for the deep and the fresh
profile, alternately, one call at a time through a real channel; GetPostAnalytics of a deep
post and a SearchCreators page likewise. `--explain` prints EXPLAIN ANALYZE of the report's
statements for both profiles.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp
from socialhub.v1 import analytics_pb2, analytics_pb2_grpc, profile_pb2
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import create_async_engine

from bench import credentials
from bench.feed_bench import _asyncpg_url, machine
from bench.processes import Process, start_socialhub
from server.analytics import repository
from server.analytics.mapping import ENUM_BY_PLATFORM
from server.analytics.model import ReportQuery
from server.analytics.partitions import Partitions, add_months, month_start
from server.analytics.settings import AnalyticsSettings
from server.core.embedded import EmbeddedPostgres, EmbeddedRedis

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
DEEP = "abench-deep"
FRESH = "abench-fresh"
LOADED = "analytics bench data set, anchored at "
DEEP_PLATFORMS = ("instagram", "x", "facebook")
PLATFORMS = ("facebook", "x", "instagram", "youtube", "linkedin")
FRESH_POSTS, FRESH_SNAPSHOTS = 5, 4
CHECKED_PROFILES = 3
METRIC_COLUMNS = "likes, comments, shares, saves, views, reach"
SUMS = ", ".join(f"sum({m})::bigint AS {m}" for m in METRIC_COLUMNS.split(", "))

# --- the definition of the rollups, from scratch ------------------------------------------------
# Each post's latest metrics: its snapshot with the greatest observe_time ((post_id,
# observe_time) is the key, so there are no ties: the stored one is the first sent). Ordered as
# the primary key read backwards, so PostgreSQL merges the partitions' indexes without a sort.
LATEST = (
    "SELECT DISTINCT ON (s.post_id) s.post_id, s.observe_time, {metrics}"
    " FROM analytics_metric_snapshots s {where}"
    " ORDER BY s.post_id DESC, s.observe_time DESC"
)
# analytics_daily: per profile, UTC day of publication and platform, the posts and the sums of
# their latest metrics.
DAILY = (
    "SELECT profile_id, (publish_time AT TIME ZONE 'UTC')::date AS day, platform,"
    " count(*)::bigint AS posts, {sums} FROM ({posts}) p GROUP BY 1, 2, 3"
)
# analytics_posting_slots: per profile, platform, ISO weekday and hour of publication (UTC), the
# posts and the sum of their latest engagement.
SLOTS = (
    "SELECT profile_id, platform,"
    " date_part('isodow', publish_time AT TIME ZONE 'UTC')::smallint AS weekday,"
    " date_part('hour', publish_time AT TIME ZONE 'UTC')::smallint AS hour,"
    " count(*)::bigint AS posts, sum(likes + comments + shares)::bigint AS engagement"
    " FROM ({posts}) p GROUP BY 1, 2, 3, 4"
)
# analytics_creators: per profile and platform with posts or follower counts (or audiences),
# the latest day's followers, the posts and the sum of their latest engagement, the latest
# audience's countries.
CREATORS = """
SELECT k.profile_id, k.platform, coalesce(f.followers, 0)::bigint AS followers,
       coalesce(p.posts, 0)::bigint AS posts, coalesce(p.engagement, 0)::bigint AS engagement,
       coalesce(a.countries, '{{}}'::jsonb) AS countries
FROM (
    SELECT profile_id, platform FROM ({posts}) x
    UNION SELECT profile_id, platform FROM analytics_follower_counts WHERE {profiles}
    UNION SELECT profile_id, platform FROM analytics_audiences WHERE {profiles}
) k
LEFT JOIN (
    SELECT profile_id, platform, count(*) AS posts, sum(likes + comments + shares) AS engagement
    FROM ({posts}) x GROUP BY 1, 2
) p USING (profile_id, platform)
LEFT JOIN (
    SELECT DISTINCT ON (profile_id, platform) profile_id, platform, followers
    FROM analytics_follower_counts WHERE {profiles} ORDER BY profile_id, platform, day DESC
) f USING (profile_id, platform)
LEFT JOIN (
    SELECT DISTINCT ON (profile_id, platform) profile_id, platform, countries
    FROM analytics_audiences WHERE {profiles} ORDER BY profile_id, platform, day DESC
) a USING (profile_id, platform)
"""


def latest_posts(where: str) -> str:
    """analytics_posts' rows as the snapshots of the posts matching `where` define them."""
    latest = LATEST.format(
        metrics=", ".join(f"s.{m}" for m in METRIC_COLUMNS.split(", ")),
        where=f"WHERE s.post_id IN (SELECT id FROM analytics_posts WHERE {where})",
    )
    return (
        "SELECT p.id, p.profile_id, p.platform, p.external_id, p.publish_time, l.observe_time,"
        f" {', '.join(f'l.{m}' for m in METRIC_COLUMNS.split(', '))}"
        f" FROM analytics_posts p JOIN ({latest}) l ON l.post_id = p.id"
    )


async def rollup_mismatches(conn: asyncpg.Connection, profile_ids: list[int]) -> dict[str, int]:
    """Rows that differ (either way) between the stored rollups of `profile_ids` and their
    recomputation from the snapshots."""
    profiles = f"profile_id = ANY(ARRAY{sorted(profile_ids)}::bigint[])"
    posts = latest_posts(profiles)
    pairs = {
        "analytics_posts": (
            posts,
            "SELECT id, profile_id, platform, external_id, publish_time, observe_time,"
            f" {METRIC_COLUMNS} FROM analytics_posts WHERE {profiles}",
        ),
        "analytics_daily": (
            DAILY.format(sums=SUMS, posts=posts),
            f"SELECT profile_id, day, platform, posts, {METRIC_COLUMNS} FROM analytics_daily"
            f" WHERE {profiles}",
        ),
        "analytics_posting_slots": (
            SLOTS.format(posts=posts),
            "SELECT profile_id, platform, weekday, hour, posts, engagement"
            f" FROM analytics_posting_slots WHERE {profiles}",
        ),
        "analytics_creators": (
            CREATORS.format(posts=posts, profiles=profiles),
            "SELECT profile_id, platform, followers, posts, engagement, countries"
            f" FROM analytics_creators WHERE {profiles}",
        ),
    }
    counts = {}
    for table, (recomputed, stored) in pairs.items():
        counts[table] = int(
            await conn.fetchval(
                f"SELECT (SELECT count(*) FROM (({recomputed}) EXCEPT ({stored})) a)"
                f" + (SELECT count(*) FROM (({stored}) EXCEPT ({recomputed})) b)"
            )
        )
    return counts


# --- loading ------------------------------------------------------------------------------------


async def loaded_anchor(conn: asyncpg.Connection) -> datetime | None:
    bio = await conn.fetchval("SELECT bio FROM profiles WHERE username = $1", DEEP)
    if bio and bio.startswith(LOADED):
        return datetime.fromisoformat(bio.removeprefix(LOADED))
    return None


def year_of(anchor: datetime) -> tuple[datetime, datetime]:
    """The reports' interval: the 365 whole UTC days up to the anchor's."""
    last = datetime(anchor.year, anchor.month, anchor.day, tzinfo=UTC)
    return last - timedelta(days=364), last + timedelta(days=1)


async def _step(conn: asyncpg.Connection, label: str, sql: str, *args: Any) -> None:
    started = time.perf_counter()
    status = await conn.execute(sql, *args)
    print(f"  {label}: {status} in {time.perf_counter() - started:.1f} s", flush=True)


async def load(database_url: str, args: argparse.Namespace) -> datetime:
    anchor = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    first, _ = year_of(anchor)
    # The snapshots' months, made as the partition job makes them.
    engine = create_async_engine(database_url)
    try:
        month, months = month_start(first), []
        while month <= month_start(anchor):
            months.append(month)
            month = add_months(month, 1)
        await Partitions(engine, AnalyticsSettings()).ensure(months)
    finally:
        await engine.dispose()
    conn = await asyncpg.connect(_asyncpg_url(database_url))
    started = time.perf_counter()
    try:
        await conn.execute("SET TIME ZONE 'UTC'; SET work_mem = '512MB'")
        # One transaction: a load cut short leaves nothing behind (but empty partitions).
        transaction = conn.transaction()
        await transaction.start()
        await conn.execute("SELECT setseed(0.42)")
        await _step(
            conn,
            "profiles",
            "INSERT INTO profiles (display_name, username)"
            " SELECT 'Analytics bench ' || n, 'abench-' || n FROM generate_series(1, $1) n"
            " UNION ALL SELECT 'Deep', $2 UNION ALL SELECT 'Fresh', $3",
            args.other_profiles,
            DEEP,
            FRESH,
        )
        deep = await conn.fetchval("SELECT id FROM profiles WHERE username = $1", DEEP)
        fresh = await conn.fetchval("SELECT id FROM profiles WHERE username = $1", FRESH)
        # Every post: who, where, when, how many snapshots and how big it ends. Ids are given
        # in publication order, so the posts of all profiles are interleaved in the table as
        # they would be after a year of ingestion.
        await _step(
            conn,
            "posts to generate",
            """
            CREATE TEMP TABLE gen AS
            -- Publication times: from the year's first instant to an hour before the anchor.
            WITH b AS (
                SELECT $7::timestamptz AS first, $8::timestamptz - interval '1 hour' AS last
            ), raw AS (
                SELECT $1::bigint AS profile_id, ($5::text[])[1 + n % 3] AS platform,
                       'deep-' || n AS external_id,
                       b.first + random() * (b.last - b.first) AS publish_time,
                       $2::int AS snapshots
                FROM generate_series(1, $3::int) n, b
                UNION ALL
                SELECT p.id, ($6::text[])[1 + p.id % 5], 'post-' || n,
                       b.first + random() * (b.last - b.first), $4::int
                FROM profiles p, generate_series(1, $9::int) n, b
                WHERE p.username NOT IN ('abench-deep', 'abench-fresh')
                UNION ALL
                SELECT $10::bigint, 'instagram', 'fresh-' || n,
                       $8::timestamptz - n * interval '5 days', $11::int
                FROM generate_series(1, $12::int) n
            )
            SELECT row_number() OVER (ORDER BY publish_time) AS id, raw.*,
                   (100 + random() * 10000)::bigint AS size
            FROM raw ORDER BY publish_time
            """,
            deep,
            args.deep_snapshots,
            args.deep_posts,
            args.other_snapshots,
            list(DEEP_PLATFORMS),
            list(PLATFORMS),
            first,
            anchor,
            args.other_posts,
            fresh,
            FRESH_SNAPSHOTS,
            FRESH_POSTS,
        )
        # The foreign key to analytics_posts is not checked row by row (replica role skips
        # the triggers): every post_id comes from `gen`, whose rows become analytics_posts.
        await conn.execute("SET session_replication_role = replica")
        total = await conn.fetchval("SELECT max(id) FROM gen")
        chunk = 20_000
        for low in range(1, total + 1, chunk):
            # A post's snapshots run from its publication to the anchor, denser at first;
            # its metrics grow to their final values, reached at the anchor.
            await _step(
                conn,
                f"snapshots of posts {low:,}-{min(low + chunk - 1, total):,} of {total:,}",
                """
                INSERT INTO analytics_metric_snapshots
                    (post_id, observe_time, likes, comments, shares, saves, views, reach)
                SELECT g.id,
                       g.publish_time + (($1::timestamptz - g.publish_time)
                                         * ((k::float8 / g.snapshots) ^ 2)),
                       g.size * k / g.snapshots / 20, g.size * k / g.snapshots / 200,
                       g.size * k / g.snapshots / 400, g.size * k / g.snapshots / 300,
                       g.size * k / g.snapshots, g.size * k / g.snapshots * 4 / 5
                FROM gen g CROSS JOIN LATERAL generate_series(1, g.snapshots) k
                WHERE g.id BETWEEN $2 AND $3
                """,
                anchor,
                low,
                low + chunk - 1,
            )
        latest = LATEST.format(
            metrics=", ".join(f"s.{m}" for m in METRIC_COLUMNS.split(", ")), where=""
        )
        await _step(
            conn,
            "analytics_posts (latest metrics, from the snapshots)",
            "INSERT INTO analytics_posts (id, profile_id, platform, external_id, publish_time,"
            f" observe_time, {METRIC_COLUMNS})"
            " SELECT g.id, g.profile_id, g.platform, g.external_id, g.publish_time,"
            f" l.observe_time, {', '.join(f'l.{m}' for m in METRIC_COLUMNS.split(', '))}"
            f" FROM gen g JOIN ({latest}) l ON l.post_id = g.id ORDER BY g.id",
        )
        await conn.execute("RESET session_replication_role")
        await conn.execute(
            "SELECT setval(pg_get_serial_sequence('analytics_posts', 'id'),"
            " (SELECT max(id) FROM analytics_posts))"
        )
        await _step(
            conn,
            "analytics_daily",
            "INSERT INTO analytics_daily"
            f" (profile_id, day, platform, posts, {METRIC_COLUMNS}, max_engagement) "
            # The bound of the day's posts' engagement (migration 0016): here, exactly their
            # greatest.
            + DAILY.format(
                sums=f"{SUMS}, max(likes + comments + shares)::bigint",
                posts="SELECT * FROM analytics_posts",
            ),
        )
        await _step(
            conn,
            "analytics_posting_slots",
            "INSERT INTO analytics_posting_slots"
            " (profile_id, platform, weekday, hour, posts, engagement) "
            + SLOTS.format(posts="SELECT * FROM analytics_posts"),
        )
        # A count per day of the year on each platform a profile posts on (the fresh profile:
        # its last month only), growing.
        await _step(
            conn,
            "analytics_follower_counts",
            """
            INSERT INTO analytics_follower_counts (profile_id, platform, day, followers,
                                                   observe_time)
            SELECT k.profile_id, k.platform, d::date,
                   1000 + k.profile_id % 5000 * 10 + (d::date - $1::date) * (k.profile_id % 7),
                   d + interval '12 hours'
            FROM (SELECT DISTINCT profile_id, platform FROM gen) k,
                 generate_series($1::timestamptz, $2::timestamptz, interval '1 day') d
            WHERE k.profile_id <> $3 OR d > $2::timestamptz - interval '30 days'
            """,
            first,
            anchor,
            fresh,
        )
        await _step(
            conn,
            "analytics_creators",
            "INSERT INTO analytics_creators"
            " (profile_id, platform, followers, posts, engagement, countries) "
            + CREATORS.format(posts="SELECT * FROM analytics_posts", profiles="true"),
        )
        await conn.execute("DROP TABLE gen")
        await transaction.commit()
        for table in (
            "analytics_metric_snapshots",
            "analytics_posts",
            "analytics_daily",
            "analytics_posting_slots",
            "analytics_follower_counts",
            "analytics_creators",
            "profiles",
        ):
            await _step(conn, f"vacuum {table}", f"VACUUM ANALYZE {table}")
        await conn.execute(
            "UPDATE profiles SET bio = $1 WHERE id = $2", LOADED + anchor.isoformat(), deep
        )
        print(f"loaded in {time.perf_counter() - started:.0f} s", flush=True)
    finally:
        await conn.close()
    return anchor


# --- checks -------------------------------------------------------------------------------------


def _ts(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


async def checked_profiles(conn: asyncpg.Connection) -> list[int]:
    return [
        r["id"]
        for r in await conn.fetch(
            "SELECT id FROM profiles WHERE username LIKE 'abench-%' AND username <> $1"
            " AND username <> $2 ORDER BY id LIMIT $3",
            DEEP,
            FRESH,
            CHECKED_PROFILES,
        )
    ]


def ingest_a_few(address: str, database_url: str, profile_ids: list[int]) -> dict[str, int]:
    """Through the API: a newer snapshot, a late older one, a resend of a latest one, a new
    post, a follower count. Returns the counts the server answered."""

    async def posts() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(_asyncpg_url(database_url))
        try:
            return list(
                await conn.fetch(
                    "SELECT DISTINCT ON (profile_id) profile_id, platform, external_id,"
                    f" publish_time, observe_time, {METRIC_COLUMNS} FROM analytics_posts"
                    " WHERE profile_id = ANY($1) ORDER BY profile_id, id",
                    profile_ids,
                )
            )
        finally:
            await conn.close()

    rows = await_(posts())
    now = datetime.now(UTC).replace(microsecond=0)

    def snapshot(row: Any, observed: datetime, **metrics: int) -> analytics_pb2.MetricSnapshot:
        values = {m: row[m] for m in METRIC_COLUMNS.split(", ")} | metrics
        return analytics_pb2.MetricSnapshot(
            profile=f"profiles/{row['profile_id']}",
            platform=ENUM_BY_PLATFORM[row["platform"]],  # type: ignore[arg-type]
            post_id=row["external_id"],
            publish_time=_ts(row["publish_time"]),
            observe_time=_ts(observed),
            **values,
        )

    newer, older, resent = rows[0], rows[1], rows[2]
    items = [
        snapshot(
            newer, now - timedelta(minutes=1), likes=newer["likes"] + 7, views=newer["views"] + 70
        ),
        snapshot(older, older["publish_time"] + timedelta(seconds=1), likes=1),
        snapshot(resent, resent["observe_time"]),
        analytics_pb2.MetricSnapshot(
            profile=f"profiles/{profile_ids[1]}",
            platform=profile_pb2.PLATFORM_INSTAGRAM,
            post_id=f"checked-{now:%Y%m%d%H%M%S}",
            publish_time=_ts(now - timedelta(hours=2)),
            observe_time=_ts(now - timedelta(minutes=1)),
            likes=5,
            comments=1,
            views=50,
        ),
    ]
    with credentials.channel(address) as channel:
        stub = analytics_pb2_grpc.AnalyticsServiceStub(channel)
        created = stub.BatchCreateMetricSnapshots(
            analytics_pb2.BatchCreateMetricSnapshotsRequest(metric_snapshots=items)
        )
        recorded = stub.BatchCreateFollowerCounts(
            analytics_pb2.BatchCreateFollowerCountsRequest(
                follower_counts=[
                    analytics_pb2.FollowerCount(
                        profile=f"profiles/{profile_ids[2]}",
                        platform=ENUM_BY_PLATFORM[rows[2]["platform"]],  # type: ignore[arg-type]
                        observe_time=_ts(now),
                        followers=123_456,
                    )
                ]
            )
        )
    return {
        "created": created.created_count,
        "unchanged": created.unchanged_count,
        "follower_counts_recorded": recorded.recorded_count,
    }


def await_(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def mismatches(database_url: str, profile_ids: list[int]) -> dict[str, int]:
    conn = await asyncpg.connect(_asyncpg_url(database_url))
    try:
        return await rollup_mismatches(conn, profile_ids)
    finally:
        await conn.close()


# --- measuring ----------------------------------------------------------------------------------


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        # Nearest rank: the value below which q of the calls fall.
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]

    return {
        "calls": len(values),
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(at(0.99), 2),
        "max_ms": round(ordered[-1], 2),
        "mean_ms": round(statistics.fmean(ordered), 2),
    }


def timed(calls: dict[str, Callable[[], Any]], count: int, warmup: int) -> dict[str, list[float]]:
    """Each call `count` times after `warmup`, the calls taking turns so that a moment of load
    on the shared machine hits all of them alike."""
    for _ in range(warmup):
        for call in calls.values():
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(count):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - started) * 1000)
    return times


async def targets(database_url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(_asyncpg_url(database_url))
    try:
        ids = {
            r["username"]: r["id"]
            for r in await conn.fetch(
                "SELECT username, id FROM profiles WHERE username = ANY($1)", [DEEP, FRESH]
            )
        }
        deep_post = await conn.fetchrow(
            "SELECT id, platform, external_id FROM analytics_posts WHERE profile_id = $1"
            " ORDER BY id LIMIT 1",
            ids[DEEP],
        )
        series = await conn.fetchval(
            "SELECT count(*) FROM analytics_metric_snapshots WHERE post_id = $1", deep_post["id"]
        )
        figures = {
            "snapshot_partitions": await conn.fetchval(
                "SELECT count(*) FROM pg_inherits"
                " WHERE inhparent = 'analytics_metric_snapshots'::regclass"
            ),
            "posts": await conn.fetchval("SELECT count(*) FROM analytics_posts"),
            "profiles_with_posts": await conn.fetchval(
                "SELECT count(DISTINCT profile_id) FROM analytics_posts"
            ),
            "daily_rows": await conn.fetchval("SELECT count(*) FROM analytics_daily"),
            "follower_count_rows": await conn.fetchval(
                "SELECT count(*) FROM analytics_follower_counts"
            ),
            "creators": await conn.fetchval("SELECT count(*) FROM analytics_creators"),
        }
        # pg_class's estimate is exact enough after VACUUM ANALYZE; partitions hold the rows.
        figures["snapshots"] = await conn.fetchval(
            "SELECT sum(c.reltuples)::bigint FROM pg_inherits i JOIN pg_class c"
            " ON c.oid = i.inhrelid WHERE i.inhparent = 'analytics_metric_snapshots'::regclass"
        )
        for name in (DEEP, FRESH):
            figures[f"{name}_posts"] = await conn.fetchval(
                "SELECT count(*) FROM analytics_posts WHERE profile_id = $1", ids[name]
            )
        return {
            "deep": ids[DEEP],
            "fresh": ids[FRESH],
            "deep_post": dict(deep_post),
            "deep_post_series": series,
            "data": figures,
        }
    finally:
        await conn.close()


async def vacuum(database_url: str) -> None:
    conn = await asyncpg.connect(_asyncpg_url(database_url))
    try:
        for table in ("analytics_posts", "analytics_daily", "analytics_posting_slots"):
            await _step(conn, f"vacuum {table}", f"VACUUM ANALYZE {table}")
    finally:
        await conn.close()


async def explain(database_url: str, profile_id: int, anchor: datetime) -> str:
    """EXPLAIN ANALYZE of the report's statements for one profile (values inlined), warm."""
    start, end = year_of(anchor)
    query = ReportQuery(
        profile_id=profile_id,
        first_day=start.date(),
        last_day=(end - timedelta(days=1)).date(),
        start_time=start,
        end_time=end,
        granularity="day",
        platform=None,
    )
    statements = {
        "periods": repository.periods_statement(query),
        # The form the report picks when most of the profile's posts are in the interval (the
        # year covers all of them), and the one it picks otherwise.
        "best hours and weekdays (rollup less the posts outside)": (
            repository.slots_from_rollup_statement(query)
        ),
        "best hours and weekdays (the posts inside)": repository.slots_statement(query),
        "follower bounds": repository.follower_bounds_statement(query),
        "top posts: the days' bounds (by week or month; by day the periods' rows give them)": (
            repository.day_bounds_statement(query)
        ),
        "top posts: the posts of ten days": (
            repository.top_posts_of_days_statement(
                query, [query.last_day - timedelta(days=n) for n in range(0, 100, 10)], 10
            )
        ),
    }
    conn = await asyncpg.connect(_asyncpg_url(database_url))
    lines = []
    try:
        for label, statement in statements.items():
            sql = str(
                statement.compile(
                    dialect=postgresql.dialect(),  # type: ignore[no-untyped-call]
                    compile_kwargs={"literal_binds": True},
                )
            )
            # The third run's plan: the first ones read pages from disk into shared buffers,
            # which the timed calls (warm) do not.
            for _ in range(3):
                plan = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
            lines.append(f"-- {label}")
            lines += [row[0] for row in plan]
    finally:
        await conn.close()
    return "\n".join(lines)


def measure(
    address: str, chosen: dict[str, Any], anchor: datetime, args: argparse.Namespace
) -> dict[str, Any]:
    start, end = year_of(anchor)
    post = chosen["deep_post"]
    with credentials.channel(address) as channel:
        stub = analytics_pb2_grpc.AnalyticsServiceStub(channel)

        def report(profile_id: int) -> Callable[[], Any]:
            request = analytics_pb2.GetProfileAnalyticsRequest(
                profile=f"profiles/{profile_id}",
                start_time=_ts(start),
                end_time=_ts(end),
                granularity=analytics_pb2.GRANULARITY_DAY,
            )
            return lambda: stub.GetProfileAnalytics(request)

        deep_report = stub.GetProfileAnalytics(
            analytics_pb2.GetProfileAnalyticsRequest(
                profile=f"profiles/{chosen['deep']}",
                start_time=_ts(start),
                end_time=_ts(end),
                granularity=analytics_pb2.GRANULARITY_DAY,
            )
        )
        post_request = analytics_pb2.GetPostAnalyticsRequest(
            profile=f"profiles/{chosen['deep']}",
            platform=ENUM_BY_PLATFORM[post["platform"]],  # type: ignore[arg-type]
            post_id=post["external_id"],
        )
        search_request = analytics_pb2.SearchCreatorsRequest(
            platform=profile_pb2.PLATFORM_INSTAGRAM, page_size=50
        )
        series = len(stub.GetPostAnalytics(post_request).series)
        times = timed(
            {
                "GetProfileAnalytics deep": report(chosen["deep"]),
                "GetProfileAnalytics fresh": report(chosen["fresh"]),
                "GetPostAnalytics deep post": lambda: stub.GetPostAnalytics(post_request),
                "SearchCreators first page": lambda: stub.SearchCreators(search_request),
            },
            args.calls,
            args.warmup,
        )
    results = {name: percentiles(values) for name, values in times.items()}
    deep, fresh = results["GetProfileAnalytics deep"], results["GetProfileAnalytics fresh"]
    return {
        "interval": [start.isoformat(), end.isoformat()],
        "deep_report": {
            "post_count": deep_report.post_count,
            "periods": len(deep_report.periods),
            "bytes": deep_report.ByteSize(),
        },
        "deep_post_series_points": series,
        "results": results,
        "deep_over_fresh": {
            "p50": round(deep["p50_ms"] / fresh["p50_ms"], 2),
            "p99": round(deep["p99_ms"] / fresh["p99_ms"], 2),
        },
    }


def markdown(report: dict[str, Any]) -> str:
    lines = ["| call | calls | p50 ms | p99 ms | max ms |", "|---|---|---|---|---|"]
    for name, r in report["measured"]["results"].items():
        lines.append(
            f"| {name} | {r['calls']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} |"
        )
    ratio = report["measured"]["deep_over_fresh"]
    lines.append("")
    lines.append(f"deep / fresh: p50 {ratio['p50']:.2f}x, p99 {ratio['p99']:.2f}x")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deep-posts", type=int, default=5_000)
    parser.add_argument("--deep-snapshots", type=int, default=200, help="per deep post")
    parser.add_argument("--other-profiles", type=int, default=2_000)
    parser.add_argument("--other-posts", type=int, default=150, help="per other profile")
    parser.add_argument("--other-snapshots", type=int, default=30, help="per other post")
    parser.add_argument("--calls", type=int, default=200, help="timed calls of each kind")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE the reports")
    parser.add_argument("--load-only", action="store_true")
    parser.add_argument("--state-dir", type=Path, default=REPO / ".state" / "bench-analytics")
    args = parser.parse_args()

    postgres = EmbeddedPostgres(args.state_dir / "postgres", durable=False)
    redis = EmbeddedRedis(args.state_dir / "redis")
    database_url = postgres.start()
    redis_url = redis.start()
    server: Process | None = None
    try:
        env = {**os.environ, "DATABASE_URL": database_url}
        subprocess.run([sys.executable, "-m", "server", "migrate"], env=env, check=True, cwd=REPO)

        async def anchor_if_loaded() -> datetime | None:
            conn = await asyncpg.connect(_asyncpg_url(database_url))
            try:
                return await loaded_anchor(conn)
            finally:
                await conn.close()

        anchor = asyncio.run(anchor_if_loaded())
        if anchor is None:
            anchor = asyncio.run(load(database_url, args))
        else:
            print(f"reusing the data set in {args.state_dir} (anchored at {anchor})")
        # The state autovacuum keeps a live database in: pages of old posts all-visible. The
        # load's own VACUUM can leave none so (an autoanalyze that began during the load holds
        # back its horizon: relallvisible = 0 on analytics_posts, seen 2026-12-04), and the
        # reports' index-only scans then become bitmap heap scans.
        asyncio.run(vacuum(database_url))
        if args.load_only:
            return
        chosen = asyncio.run(targets(database_url))
        print(json.dumps(chosen["data"]), flush=True)
        checked = asyncio.run(_checked(database_url))
        sample = [chosen["deep"], chosen["fresh"], *checked]
        before = asyncio.run(mismatches(database_url, sample))
        print(f"rollups against a recomputation, as loaded: {before}", flush=True)
        server = start_socialhub(database_url, redis_url, module="server", cache=False)
        ingested = ingest_a_few(server.address, database_url, checked)
        after = asyncio.run(mismatches(database_url, sample))
        print(f"after API ingestion {ingested}: {after}", flush=True)
        if any(before.values()) or any(after.values()):
            raise SystemExit("the rollups differ from their recomputation")
        plans = {}
        if args.explain:
            for name in ("deep", "fresh"):
                plans[name] = asyncio.run(explain(database_url, chosen[name], anchor))
                print(f"== {name}\n{plans[name]}", flush=True)
        measured = measure(server.address, chosen, anchor, args)
        report = {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "anchor": anchor.isoformat(),
            "data": chosen["data"],
            "deep_post_series": chosen["deep_post_series"],
            "rollup_check": {"as_loaded": before, "api_ingestion": ingested, "after": after},
            "measured": measured,
            "plans": plans,
        }
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"analytics-reports-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
        path.write_text(json.dumps(report, indent=2, default=str))
        print(markdown(report))
        print(f"written to {path}")
    finally:
        if server is not None:
            server.stop()
        redis.stop()
        postgres.stop()


async def _checked(database_url: str) -> list[int]:
    conn = await asyncpg.connect(_asyncpg_url(database_url))
    try:
        return await checked_profiles(conn)
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
