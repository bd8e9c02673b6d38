"""Reports read rollups by index and never the raw snapshots, but for one post's series, an
index range of each partition (on 200,000 snapshots and 30,000 daily rows).

Creator search's statements use the (platform, order column, profile_id) indexes on a table
of 100,000 creators, first page and later pages, with every filter: no Seq Scan, and no Sort
but where a followers range is read from its index.

Each statement is the repository's own, EXPLAINed with its values inlined (the custom plan) and
as a generic plan over $n parameters (what asyncpg's prepared statements settle on).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import grpc
import pytest
from socialhub.v1 import analytics_pb2, profile_pb2
from socialhub.v1.analytics_pb2_grpc import AnalyticsServiceStub
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.sql import ClauseElement

from server.analytics import repository
from server.analytics.insights import CATEGORIES
from server.analytics.model import CreatorSearch, ReportQuery
from server.analytics.servicer import CREATOR_PAGE_SIZE
from tests.analytics.support import DAY
from tests.harness import Backing

PROFILES = 20_000
PLATFORMS = ("facebook", "x", "instagram", "youtube", "linkedin")
INDEX_SCANS = {"Index Scan", "Index Only Scan", "Bitmap Index Scan"}
LIMIT = CREATOR_PAGE_SIZE.default + 1


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _sql_forms(statement: ClauseElement) -> list[tuple[bool, str]]:
    inlined = statement.compile(
        dialect=postgresql.dialect(),  # type: ignore[no-untyped-call]
        compile_kwargs={"literal_binds": True},
    )
    parameterised = statement.compile(dialect=asyncpg_dialect.dialect())  # type: ignore[no-untyped-call]
    return [(False, str(inlined)), (True, str(parameterised))]


def _problems(
    conn: Any, label: str, statement: ClauseElement, *, sort_allowed: bool = False
) -> list[str]:
    problems = []
    for generic, sql in _sql_forms(statement):
        options = "FORMAT JSON, GENERIC_PLAN" if generic else "FORMAT JSON"
        (document,) = conn.execute(f"EXPLAIN ({options}) {sql}").fetchone()
        if isinstance(document, str):
            document = json.loads(document)
        nodes = list(_nodes(document[0]["Plan"]))
        kind = "generic" if generic else "custom"
        if any(n["Node Type"] == "Seq Scan" for n in nodes):
            problems.append(f"{label} ({kind}): Seq Scan")
        if not sort_allowed and any(n["Node Type"] in {"Sort", "Incremental Sort"} for n in nodes):
            problems.append(f"{label} ({kind}): Sort")
        scans = {n.get("Index Name") for n in nodes if n["Node Type"] in INDEX_SCANS}
        if not any(name and name.startswith("ix_analytics_creators_platform_") for name in scans):
            problems.append(f"{label} ({kind}): not the order's index ({scans})")
    return problems


@pytest.fixture
def large_table(backing: Backing) -> Iterator[Any]:
    with backing.sql() as conn:
        conn.execute(
            "INSERT INTO profiles (display_name, x_handle)"
            " SELECT 'Creator ' || g, 'c' || g FROM generate_series(1, %s) g",
            (PROFILES,),
        )
        conn.execute(
            "INSERT INTO analytics_creators"
            " (profile_id, platform, followers, posts, engagement, countries)"
            " SELECT p.id, platform, (p.id * 7919) %% 1000000, p.id %% 40,"
            " (p.id * 104729) %% 50000,"
            " CASE p.id %% 4 WHEN 0 THEN '{\"DE\": 0.3}' WHEN 1 THEN '{\"FR\": 0.2}'"
            " ELSE '{}' END::jsonb"
            " FROM profiles p, unnest(%s::text[]) platform",
            (list(PLATFORMS),),
        )
        conn.execute("VACUUM ANALYZE analytics_creators")
        yield conn


SEARCHES: dict[str, dict[str, Any]] = {
    "none": {},
    "min_followers": {"min_followers": 10_000},
    "followers range": {"min_followers": 10_000, "max_followers": 500_000},
    "min_engagement_rate": {"min_engagement_rate": 0.001},
    "audience_country": {"audience_country": "DE"},
    "everything": {"min_followers": 1000, "min_engagement_rate": 0.0001, "audience_country": "FR"},
}


def test_every_search_uses_its_order_index(large_table: Any) -> None:
    conn = large_table
    problems: list[str] = []
    for column in ("engagement_rate", "followers"):
        later = conn.execute(
            f"SELECT {column}, profile_id FROM analytics_creators WHERE platform = 'instagram'"
            f" ORDER BY {column} DESC, profile_id DESC OFFSET %s LIMIT 1",
            (PROFILES // 3,),
        ).fetchone()
        for label, filters in SEARCHES.items():
            search = CreatorSearch(platform="instagram", order_column=column, **filters)
            for page, position in (("first", None), ("later", tuple(later))):
                statement = repository.search_creators_statement(search, position, LIMIT)
                # A followers range ordered by engagement rate may be read from the followers
                # index and sorted (the generic plan guesses a two-sided range is narrow): still
                # an index range, never a scan of the table.
                sort_allowed = column == "engagement_rate" and "max_followers" in filters
                problems += _problems(
                    conn, f"{label} by {column}, {page} page", statement, sort_allowed=sort_allowed
                )
    assert not problems, "\n".join(problems)


def test_a_page_size_above_the_maximum_is_clamped(large_table: Any, channel: grpc.Channel) -> None:
    response = AnalyticsServiceStub(channel).SearchCreators(
        analytics_pb2.SearchCreatorsRequest(
            platform=profile_pb2.PLATFORM_INSTAGRAM, page_size=100_000
        )
    )
    assert len(response.creators) == CREATOR_PAGE_SIZE.maximum == 500
    assert response.next_page_token


def _plan(conn: Any, statement: ClauseElement, *, generic: bool) -> list[dict[str, Any]]:
    sql = dict((g, text) for g, text in _sql_forms(statement))[generic]
    options = "FORMAT JSON, GENERIC_PLAN" if generic else "FORMAT JSON"
    (document,) = conn.execute(f"EXPLAIN ({options}) {sql}").fetchone()
    if isinstance(document, str):
        document = json.loads(document)
    return list(_nodes(document[0]["Plan"]))


@pytest.fixture
def history(backing: Backing) -> Iterator[Any]:
    with backing.sql() as conn:
        conn.execute(
            "INSERT INTO profiles (display_name, x_handle)"
            " SELECT 'Creator ' || g, 'c' || g FROM generate_series(1, 500) g"
        )
        conn.execute(
            "INSERT INTO analytics_posts (profile_id, platform, external_id, publish_time,"
            " observe_time, likes, comments, shares, saves, views, reach)"
            " SELECT p.id, 'instagram', 'post-' || n, now() - n * interval '13 hours',"
            " now(), n, 1, 1, 0, 10, 10 FROM profiles p, generate_series(1, 40) n"
            # As a live feed records them: each profile's posts spread over the table.
            " ORDER BY n, p.id"
        )
        conn.execute(
            "INSERT INTO analytics_metric_snapshots (post_id, observe_time, likes, comments,"
            " shares, saves, views, reach)"
            " SELECT a.id, now() - n * interval '37 hours', n, 0, 0, 0, 0, 0"
            " FROM analytics_posts a, generate_series(1, 10) n"
        )
        conn.execute(
            "INSERT INTO analytics_daily (profile_id, day, platform, posts, likes, comments,"
            " shares, saves, views, reach)"
            " SELECT p.id, current_date - n, 'instagram', 1, n, 0, 0, 0, 0, 0"
            " FROM profiles p, generate_series(1, 60) n"
        )
        conn.execute(
            "INSERT INTO analytics_follower_counts (profile_id, platform, day, followers,"
            " observe_time) SELECT p.id, 'instagram', current_date - n, 1000 + n, now()"
            " FROM profiles p, generate_series(1, 60) n"
        )
        conn.execute(
            "INSERT INTO analytics_posting_slots (profile_id, platform, weekday, hour, posts,"
            " engagement) SELECT profile_id, platform,"
            " date_part('isodow', publish_time AT TIME ZONE 'UTC'),"
            " date_part('hour', publish_time AT TIME ZONE 'UTC'), count(*), sum(engagement)"
            " FROM analytics_posts GROUP BY 1, 2, 3, 4"
        )
        _vacuum_until_all_visible(
            conn,
            (
                "analytics_posts",
                "analytics_metric_snapshots",
                "analytics_daily",
                "analytics_follower_counts",
                "analytics_posting_slots",
            ),
        )
        yield conn


def _vacuum_until_all_visible(conn: Any, tables: tuple[str, ...]) -> None:
    """VACUUM ANALYZE until the posts' and daily rows' pages are all-visible, as autovacuum
    keeps them. A transaction that began before the inserts committed (an autoanalyze, a
    server job's) holds the horizon back while it runs, and one VACUUM then marks nothing:
    seen as relallvisible = 0 and bitmap heap scans. A transaction held open for good (the
    jobs' leader once did) still fails the tests after these tries."""
    for _ in range(20):
        conn.execute(f"VACUUM ANALYZE {', '.join(tables)}")
        pages = conn.execute(
            "SELECT bool_and(relallvisible >= relpages) FROM pg_class"
            " WHERE relname IN ('analytics_posts', 'analytics_daily')"
        ).fetchone()
        if pages == (True,):
            return
        time.sleep(0.25)


def test_reports_read_rollups_by_index_and_a_series_reads_one_post(history: Any) -> None:
    conn = history
    profile_id, post_id = conn.execute(
        "SELECT profile_id, id FROM analytics_posts ORDER BY id OFFSET 5000 LIMIT 1"
    ).fetchone()
    query = ReportQuery(
        profile_id=profile_id,
        first_day=(DAY - timedelta(days=30)).date(),
        last_day=DAY.date(),
        start_time=DAY - timedelta(days=30),
        end_time=DAY + timedelta(days=1),
        granularity="week",
        platform=None,
    )
    reports = {
        "periods": repository.periods_statement(query),
        "best hours and weekdays": repository.slots_statement(query),
        "best hours and weekdays from the rollup": repository.slots_from_rollup_statement(query),
        "posts of all time": repository.post_total_statement(query),
        "follower bounds": repository.follower_bounds_statement(query),
        "day bounds (top posts)": repository.day_bounds_statement(query),
        "top posts of days": repository.top_posts_of_days_statement(
            query, [query.last_day - timedelta(days=n) for n in range(5)], 10
        ),
    }
    filled = {
        row[0]
        for row in conn.execute(
            "SELECT DISTINCT tableoid::regclass::text FROM analytics_metric_snapshots"
        ).fetchall()
    }
    filled = {name.rpartition(".")[2] for name in filled}
    assert filled
    problems = []
    for generic in (False, True):
        for label, statement in reports.items():
            nodes = _plan(conn, statement, generic=generic)
            relations = {n.get("Relation Name") for n in nodes} - {None}
            if any(str(r).startswith("metric_snapshots") for r in relations):
                problems.append(f"{label}: reads raw snapshots ({relations})")
            if any(n["Node Type"] == "Seq Scan" for n in nodes):
                problems.append(f"{label} (generic={generic}): Seq Scan")
        # Partitions that hold rows are read by their primary key; an empty one (a month ahead)
        # costs nothing to scan, and PostgreSQL rightly reads it so.
        series = _plan(conn, repository.series_statement(post_id), generic=generic)
        scanned = [n for n in series if n.get("Relation Name", "") in filled]
        if len(scanned) != len(filled) or any(n["Node Type"] not in INDEX_SCANS for n in scanned):
            problems.append(f"series (generic={generic}): {[n['Node Type'] for n in scanned]}")
    assert not problems, "\n".join(problems)


def test_best_slots_read_the_rollup_and_top_posts_read_only_the_chosen_days(
    history: Any,
) -> None:
    """Best hours and weekdays read the profile's slot rollup by key, less its posts outside
    the interval (two ranges of the (profile_id, publish_time) index); the top posts read the
    interval's day bounds by the daily rollup's key, then the posts of the chosen days, one
    range of that index per day (migration 0016: no index holds engagement, so a post's new
    latest metrics are a HOT update)."""
    conn = history
    (profile_id,) = conn.execute("SELECT profile_id FROM analytics_posts LIMIT 1").fetchone()
    query = ReportQuery(
        profile_id=profile_id,
        first_day=(DAY - timedelta(days=30)).date(),
        last_day=DAY.date(),
        start_time=DAY - timedelta(days=30),
        end_time=DAY + timedelta(days=1),
        granularity="day",
        platform=None,
    )
    index = "ix_analytics_posts_profile_id_publish_time"
    statements = {
        "best hours and weekdays from the rollup": (
            repository.slots_from_rollup_statement(query),
            {"pk_analytics_posting_slots", index},
        ),
        "day bounds": (repository.day_bounds_statement(query), {"pk_analytics_daily"}),
        "top posts of the chosen days": (
            repository.top_posts_of_days_statement(
                query, [query.last_day - timedelta(days=n) for n in (0, 3, 7)], 10
            ),
            {index},
        ),
    }
    problems = []
    for generic in (False, True):
        for label, (statement, wanted) in statements.items():
            nodes = _plan(conn, statement, generic=generic)
            # An index scan, or a bitmap of the index then the rows it found.
            indexes = {n.get("Index Name") for n in nodes if n["Node Type"] in INDEX_SCANS}
            scans = [n["Node Type"] for n in nodes if n["Node Type"] == "Seq Scan"]
            if indexes != wanted or scans:
                problems.append(f"{label} (generic={generic}): {sorted(map(str, indexes))} {scans}")
            if label.startswith("top posts"):
                # A range per day, not all of the profile's posts filtered by the days.
                conditions = [n.get("Index Cond", "") for n in nodes if n.get("Index Name")]
                if not all("publish_time" in c for c in conditions):
                    problems.append(f"{label} (generic={generic}): reads by {conditions}")
    assert not problems, "\n".join(problems)


CONTENT_SEARCHES: dict[str, dict[str, Any]] = {
    "category": {"category": "Music"},
    "language": {"language": "de"},
    "category and language": {"category": "Music", "language": "de"},
    "category and the rest": {
        "category": "Sports",
        "min_followers": 1000,
        "audience_country": "DE",
    },
}


@pytest.fixture
def with_topics(large_table: Any) -> Any:
    """Every creator's profile with aggregates: 16 categories and 5 languages, evenly."""
    conn = large_table
    conn.execute(
        "INSERT INTO analytics_profile_insights (profile_id, posts, sentiment_sum, positive,"
        " neutral, negative, confident, primary_category, primary_language)"
        " SELECT id, 10, 1.0, 4, 4, 2, 7, (%s::text[])[1 + id %% 16],"
        " (ARRAY['en', 'de', 'fr', 'es', 'it'])[1 + id %% 5] FROM profiles",
        (list(CATEGORIES),),
    )
    conn.execute("VACUUM ANALYZE analytics_profile_insights")
    return conn


def _content_problems(conn: Any, label: str, statement: ClauseElement) -> list[str]:
    """No Seq Scan. Either the order's index range, its rows' aggregates probed by primary key
    (no Sort); or, for a narrow combination (a category in one language: 1/80 of creators
    here), the aggregates' (primary_*, profile_id) indexes first, their creators by primary
    key, and a Sort of those few."""
    problems = []
    for generic, sql in _sql_forms(statement):
        options = "FORMAT JSON, GENERIC_PLAN" if generic else "FORMAT JSON"
        (document,) = conn.execute(f"EXPLAIN ({options}) {sql}").fetchone()
        if isinstance(document, str):
            document = json.loads(document)
        nodes = list(_nodes(document[0]["Plan"]))
        kind = "generic" if generic else "custom"
        if any(n["Node Type"] == "Seq Scan" for n in nodes):
            problems.append(f"{label} ({kind}): Seq Scan")
        scans = {n.get("Index Name") or "" for n in nodes if n["Node Type"] in INDEX_SCANS}
        by_order = any(name.startswith("ix_analytics_creators_platform_") for name in scans)
        by_topic = any(name.startswith("ix_analytics_profile_insights_primary_") for name in scans)
        sorted_ = any(n["Node Type"] in {"Sort", "Incremental Sort"} for n in nodes)
        if not (by_order and not sorted_) and not by_topic:
            problems.append(f"{label} ({kind}): neither index-backed plan ({scans})")
    return problems


def test_content_filters_are_index_backed(with_topics: Any) -> None:
    """The category and language filters are answered from indexes, whatever the order."""
    conn = with_topics
    problems: list[str] = []
    for column in ("engagement_rate", "followers"):
        later = conn.execute(
            f"SELECT {column}, profile_id FROM analytics_creators WHERE platform = 'instagram'"
            f" ORDER BY {column} DESC, profile_id DESC OFFSET %s LIMIT 1",
            (PROFILES // 3,),
        ).fetchone()
        for label, filters in CONTENT_SEARCHES.items():
            search = CreatorSearch(platform="instagram", order_column=column, **filters)
            for page, position in (("first", None), ("later", tuple(later))):
                statement = repository.search_creators_statement(search, position, LIMIT)
                problems += _content_problems(conn, f"{label} by {column}, {page} page", statement)
    assert not problems, "\n".join(problems)
