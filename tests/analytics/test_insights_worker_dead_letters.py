"""A post whose handling always fails is found, counted and dead-lettered, and holds up nobody.

These run the real InsightWorker in the test's event loop on a database of their own (migrated
to head on the session's PostgreSQL), so the session server's worker, which would analyse the
"poison" post with the real models, never claims their rows. The only double is the models'
wrapper, which raises for one text.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import psycopg
import pytest
from redis.asyncio import Redis
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from server.analytics import insight_repository
from server.analytics.backfill import queue_lacking
from server.analytics.ingestion import Ingestion
from server.analytics.insight_models import model_version, shared_models
from server.analytics.insight_tables import ERROR_MAX
from server.analytics.insight_worker import (
    MAX_FAILURES,
    InsightWorker,
    QueueGauges,
    enqueue_post_changes,
)
from server.analytics.insights import Insight, InsightModels
from server.analytics.partitions import Partitions
from server.analytics.settings import AnalyticsSettings
from server.core import migrate
from server.core.cache import Cache
from server.core.db import create_engine, is_database_unavailable
from server.core.metrics import Metrics
from server.feed.public import PostChange, PostKind
from tests.harness import Backing, test_settings

GOOD = [
    "I absolutely love this wonderful pasta recipe, best dinner ever!",
    "The match last night was incredible, what a comeback by the team",
    "Our trip to the mountains was amazing, beautiful views everywhere",
    "Stock markets fell sharply today after the announcement",
]
POISON = "a text the models choke on"


class PoisonError(Exception):
    pass


class Poisoned:
    """The real models, but raising for every batch that holds POISON (as a model bug would)."""

    def __init__(self, models: InsightModels) -> None:
        self._models = models
        self.calls = 0

    def analyze_many(self, texts: Sequence[str]) -> list[Insight]:
        self.calls += 1
        if POISON in texts:
            raise PoisonError("cannot tokenise the text\nsecond line left out")
        return self._models.analyze_many(texts)


@pytest.fixture
def own_database(fresh_database: str) -> str:
    migrate.upgrade(fresh_database)
    return fresh_database


def _sql(database_url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(database_url, autocommit=True)


def _one(database_url: str, sql: str, *params: Any) -> Any:
    with _sql(database_url) as conn:
        row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0] if len(row) == 1 else row


def _posts(database_url: str, bodies: Sequence[str]) -> list[int]:
    """Posts of one new author, written beside FeedService (no hook queues them)."""
    with _sql(database_url) as conn:
        author = conn.execute(
            "INSERT INTO profiles (display_name) VALUES ('Author') RETURNING id"
        ).fetchone()
        assert author is not None
        rows = conn.execute(
            "INSERT INTO posts (author_id, body) SELECT %s, unnest(%s::text[]) RETURNING id",
            (author[0], list(bodies)),
        ).fetchall()
    return [int(row[0]) for row in rows]


def _run(
    database_url: str,
    backing: Backing,
    models: Any,
    body: Callable[[AsyncEngine, InsightWorker], Awaitable[None]],
    gauges: QueueGauges | None = None,
) -> None:
    """body(engine, worker) on an event loop of its own; the worker's models are `models`."""

    async def main() -> None:
        engine = create_engine(test_settings(), database_url)
        redis = Redis.from_url(backing.redis_url)
        try:
            cache = Cache(redis)
            worker = InsightWorker(
                engine,
                cache,
                Ingestion(engine, cache, Partitions(engine, AnalyticsSettings())),
                lambda: models,
                model_version(),
                batch_size=10,
                poll_s=0,
                gauges=gauges,
            )
            await body(engine, worker)
        finally:
            await redis.aclose()
            await engine.dispose()

    asyncio.run(main())


async def _queue(engine: AsyncEngine, post_ids: Sequence[int], kind: PostKind) -> None:
    async with engine.begin() as conn:
        # The author id does not matter to the queue: the worker reads the post itself.
        await enqueue_post_changes(conn, [PostChange(p, 0, kind) for p in post_ids])


def _analysed(database_url: str) -> set[int]:
    with _sql(database_url) as conn:
        return {row[0] for row in conn.execute("SELECT post_id FROM analytics_post_insights")}


def _queue_row(database_url: str, post_id: int) -> tuple[int, str | None, bool]:
    """(failures, last error, dead-lettered?) of the post's queue row."""
    failures, last_error, dead = _one(
        database_url,
        "SELECT failures, last_error, dead_lettered_at IS NOT NULL"
        " FROM analytics_feed_queue WHERE post_id = %s",
        post_id,
    )
    return int(failures), last_error, bool(dead)


def test_a_poison_post_is_dead_lettered_and_the_others_are_analysed(
    own_database: str, backing: Backing, caplog: pytest.LogCaptureFixture
) -> None:
    *first, poison = _posts(own_database, [*GOOD[:2], POISON])
    later = _posts(own_database, GOOD[2:])
    models = Poisoned(shared_models())

    async def body(engine: AsyncEngine, worker: InsightWorker) -> None:
        await _queue(engine, [*first, poison], PostKind.EDITED)
        result = await worker.run_once()
        # The batch failed; one at a time, the innocent posts were analysed.
        assert (result.claimed, result.analysed) == (3, 2)
        assert _analysed(own_database) == set(first)
        assert _queue_row(own_database, poison) == (
            1,
            "PoisonError: cannot tokenise the text",
            False,
        )

        # Posts queued behind the poison one are not held up by it either.
        await _queue(engine, later, PostKind.EDITED)
        assert (await worker.run_once()).analysed == len(later)
        assert _analysed(own_database) == {*first, *later}

        for _ in range(MAX_FAILURES - 2):
            assert (await worker.run_once()).claimed == 1
        assert _queue_row(own_database, poison)[0::2] == (MAX_FAILURES, True)
        # Dead-lettered: still queued, no longer claimed.
        calls = models.calls
        assert (await worker.run_once()).claimed == 0
        assert models.calls == calls
        async with engine.connect() as conn:
            assert await insight_repository.dead_lettered(conn) == [poison]

    with caplog.at_level(logging.WARNING, logger="socialhub.analytics"):
        _run(own_database, backing, models, body)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        f"insights of post {poison} failed {MAX_FAILURES} times; dead-lettered"
        " (last error: PoisonError: cannot tokenise the text)"
    ]


def test_an_edit_revives_a_dead_letter_and_engagement_or_backfill_do_not(
    own_database: str, backing: Backing
) -> None:
    (poison,) = _posts(own_database, [POISON])

    async def body(engine: AsyncEngine, worker: InsightWorker) -> None:
        await _queue(engine, [poison], PostKind.EDITED)
        for _ in range(MAX_FAILURES):
            await worker.run_once()
        assert _queue_row(own_database, poison)[0::2] == (MAX_FAILURES, True)

        # A like queues the post for its engagement only: its text is still poison.
        await _queue(engine, [poison], PostKind.ENGAGED)
        assert _queue_row(own_database, poison)[0::2] == (MAX_FAILURES, True)
        # The backfill would revive it on every run: it leaves it to an operator.
        async with engine.begin() as conn:
            assert await queue_lacking(conn, [poison], model_version()) == 0
        assert _queue_row(own_database, poison)[0::2] == (MAX_FAILURES, True)

        # An edit queues it for its (new) text: live again, its failures afresh.
        with _sql(own_database) as conn:
            conn.execute("UPDATE posts SET body = %s WHERE id = %s", (GOOD[0], poison))
        await _queue(engine, [poison], PostKind.EDITED)
        assert _queue_row(own_database, poison) == (0, None, False)
        assert (await worker.run_once()).analysed == 1
        assert _analysed(own_database) == {poison}

    _run(own_database, backing, Poisoned(shared_models()), body)


def test_an_operator_requeues_dead_letters(own_database: str, backing: Backing) -> None:
    (post_id,) = _posts(own_database, [GOOD[0]])

    async def body(engine: AsyncEngine, worker: InsightWorker) -> None:
        await _queue(engine, [post_id], PostKind.EDITED)
        async with engine.begin() as conn:
            for _ in range(MAX_FAILURES):
                await insight_repository.record_failure(conn, post_id, "Bug: fixed", MAX_FAILURES)
        assert (await worker.run_once()).claimed == 0
        async with engine.begin() as conn:
            assert await insight_repository.requeue_dead_letters(conn, [post_id]) == [post_id]
        assert _queue_row(own_database, post_id) == (0, None, False)
        assert (await worker.run_once()).analysed == 1

    _run(own_database, backing, shared_models(), body)


class OverlongCategory:
    """The real models, but the poison text gets a category (quoting the text) longer than its
    column: the row the worker writes is rejected by PostgreSQL, not by the models."""

    def __init__(self, models: InsightModels) -> None:
        self._models = models

    def analyze_many(self, texts: Sequence[str]) -> list[Insight]:
        insights = self._models.analyze_many(texts)
        return [
            replace(insight, category=f"Other: {text}" * 3) if text == POISON else insight
            for text, insight in zip(texts, insights, strict=True)
        ]


def test_a_row_the_database_rejects_is_counted_without_the_posts_text(
    own_database: str, backing: Backing
) -> None:
    good, poison = _posts(own_database, [GOOD[0], POISON])

    async def body(engine: AsyncEngine, worker: InsightWorker) -> None:
        await _queue(engine, [good, poison], PostKind.EDITED)
        assert (await worker.run_once()).analysed == 1
        failures, last_error, dead = _queue_row(own_database, poison)
        assert (failures, dead) == (1, False)
        assert last_error is not None
        assert last_error.startswith("StringDataRightTruncationError: ")
        # SQLAlchemy's message would carry the statement's parameters: the post's text.
        assert POISON not in last_error
        assert len(last_error) <= ERROR_MAX

    _run(own_database, backing, OverlongCategory(shared_models()), body)
    assert _analysed(own_database) == {good}


def test_the_migration_keeps_queued_rows_both_ways(fresh_database: str) -> None:
    migrate.upgrade(fresh_database, "0014_analytics_snapshots_no_fk")
    with _sql(fresh_database) as conn:
        conn.execute(
            "INSERT INTO analytics_feed_queue (post_id, needs_insight, needs_metrics)"
            " VALUES (1, true, false), (2, false, true)"
        )
    migrate.upgrade(fresh_database)
    with _sql(fresh_database) as conn:
        rows = conn.execute(
            "SELECT post_id, failures, last_error, dead_lettered_at FROM analytics_feed_queue"
            " ORDER BY post_id"
        ).fetchall()
        assert rows == [(1, 0, None, None), (2, 0, None, None)]
        conn.execute(
            "UPDATE analytics_feed_queue SET failures = 5, dead_lettered_at = now()"
            " WHERE post_id = 1"
        )
    migrate.downgrade(fresh_database, "0014_analytics_snapshots_no_fk")
    with _sql(fresh_database) as conn:
        # The dead letter is an ordinary queued row again, and the old index is back.
        assert conn.execute(
            "SELECT post_id FROM analytics_feed_queue ORDER BY post_id"
        ).fetchall() == [(1,), (2,)]
        indexes = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'analytics_feed_queue'"
        ).fetchall()
        names = {name for (name,) in indexes}
        assert "ix_analytics_feed_queue_enqueued_at" in names
        assert "ix_analytics_feed_queue_claim" not in names


class CuttingConnections:
    """The real models, but PostgreSQL drops the worker's connections while they run (an
    outage in the middle of a batch, as a failover or a restart makes)."""

    def __init__(self, models: InsightModels, database_url: str) -> None:
        self._models = models
        self._database_url = database_url

    def analyze_many(self, texts: Sequence[str]) -> list[Insight]:
        with _sql(self._database_url) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        return self._models.analyze_many(texts)


def test_a_database_outage_is_no_posts_failure(own_database: str, backing: Backing) -> None:
    post_ids = _posts(own_database, GOOD[:2])

    async def outage(engine: AsyncEngine, worker: InsightWorker) -> None:
        await _queue(engine, post_ids, PostKind.EDITED)
        for _ in range(MAX_FAILURES):
            with pytest.raises(DBAPIError) as raised:
                await worker.run_once()
            assert is_database_unavailable(raised.value)
        for post_id in post_ids:
            assert _queue_row(own_database, post_id) == (0, None, False)

    _run(own_database, backing, CuttingConnections(shared_models(), own_database), outage)

    async def recovered(engine: AsyncEngine, worker: InsightWorker) -> None:
        assert (await worker.run_once()).analysed == len(post_ids)

    _run(own_database, backing, shared_models(), recovered)
    assert _analysed(own_database) == set(post_ids)


# --- the claim stays on its index ------------------------------------------------------------

QUEUED = 20_000
DEAD = 5_000


def _plans(conn: psycopg.Connection[Any]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """The claim's plan nodes, with its values inlined and as a generic plan over $n."""
    statement = insight_repository.claim_statement(200)
    inlined = statement.compile(
        dialect=postgresql.dialect(),  # type: ignore[no-untyped-call]
        compile_kwargs={"literal_binds": True},
    )
    generic = statement.compile(dialect=asyncpg_dialect.dialect())  # type: ignore[no-untyped-call]
    for kind, sql, options in (
        ("custom", str(inlined), "FORMAT JSON"),
        ("generic", str(generic), "FORMAT JSON, GENERIC_PLAN"),
    ):
        (document,) = conn.execute(f"EXPLAIN ({options}) {sql}").fetchone()  # type: ignore[misc]
        if isinstance(document, str):
            document = json.loads(document)
        nodes, pending = [], [document[0]["Plan"]]
        while pending:
            node = pending.pop()
            nodes.append(node)
            pending.extend(node.get("Plans", []))
        yield kind, nodes


def test_the_claim_reads_its_partial_index_past_any_dead_letters(own_database: str) -> None:
    with _sql(own_database) as conn:
        # The dead letters are the oldest rows: a claim that read them would wade through all.
        conn.execute(
            "INSERT INTO analytics_feed_queue (post_id, needs_insight, needs_metrics,"
            " enqueued_at, failures, dead_lettered_at)"
            " SELECT g, true, false, now() - make_interval(secs => %s - g),"
            " CASE WHEN g <= %s THEN %s ELSE 0 END,"
            " CASE WHEN g <= %s THEN now() END"
            " FROM generate_series(1, %s) g",
            (QUEUED, DEAD, MAX_FAILURES, DEAD, QUEUED),
        )
        conn.execute("VACUUM ANALYZE analytics_feed_queue")
        for kind, nodes in _plans(conn):
            types = {node["Node Type"] for node in nodes}
            assert "Seq Scan" not in types, kind
            assert not types & {"Sort", "Incremental Sort"}, kind
            scans = {node.get("Index Name") for node in nodes}
            assert "ix_analytics_feed_queue_claim" in scans, (kind, scans)


def test_the_queue_s_gauges_count_waiting_posts_and_dead_letters(
    own_database: str, backing: Backing
) -> None:
    """What an operator alerts on: socialhub_analytics_insights_dead_letters (and the queue's
    length), counted from the table by every replica's worker."""
    (poison,) = _posts(own_database, [POISON])
    waiting = _posts(own_database, GOOD[:2])
    metrics = Metrics.create()

    def gauges() -> tuple[float | None, float | None]:
        return (
            metrics.registry.get_sample_value("socialhub_analytics_insights_queued"),
            metrics.registry.get_sample_value("socialhub_analytics_insights_dead_letters"),
        )

    async def body(engine: AsyncEngine, worker: InsightWorker) -> None:
        await _queue(engine, [poison], PostKind.EDITED)
        await worker.report_queue()
        assert gauges() == (1, 0)
        for _ in range(MAX_FAILURES):
            await worker.run_once()
        await _queue(engine, waiting, PostKind.EDITED)
        await worker.report_queue()
        assert gauges() == (2, 1)
        assert (await worker.run_once()).analysed == 2
        await worker.report_queue()
        assert gauges() == (0, 1)

    _run(own_database, backing, Poisoned(shared_models()), body, QueueGauges.create(metrics))
