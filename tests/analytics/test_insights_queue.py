"""The feed queue: filled in the feed's own transaction, claimed by one worker at a time.

These run the real FeedService and InsightWorker in the test's event loop, on the session's
PostgreSQL and Redis (the session server's own worker runs beside them, as another replica
would).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.analytics import insight_repository
from server.analytics.ingestion import Ingestion
from server.analytics.insight_models import model_version, shared_models
from server.analytics.insight_worker import InsightWorker, enqueue_post_changes
from server.analytics.insights import Insight, InsightModels
from server.analytics.partitions import Partitions
from server.analytics.settings import AnalyticsSettings
from server.core.cache import Cache
from server.core.db import create_engine
from server.core.errors import NotFound
from server.core.pagination import PageTokens
from server.feed.model import NewPost
from server.feed.public import FeedHooks, PostChange, PostKind
from server.feed.service import FeedService
from server.feed.settings import FeedSettings
from tests.harness import Backing, test_settings


class Refused(Exception):
    pass


async def _refuse(conn: AsyncConnection, changes: Sequence[PostChange]) -> None:
    raise Refused  # a hook after analytics' one fails: the whole write must roll back


def _run(backing: Backing, body: Callable[[AsyncEngine, Cache], Awaitable[None]]) -> None:
    """body(engine, cache) on an event loop of its own, on the session's servers."""

    async def main() -> None:
        engine = create_engine(test_settings(), backing.database_url)
        redis = Redis.from_url(backing.redis_url)
        try:
            await body(engine, Cache(redis))
        finally:
            await redis.aclose()
            await engine.dispose()

    asyncio.run(main())


def _feed(engine: AsyncEngine, cache: Cache, *hooks: Any) -> FeedService:
    return FeedService(
        engine,
        cache,
        PageTokens("test-secret"),
        FeedSettings(),
        FeedHooks(post_changes=list(hooks)),
    )


def _profile(backing: Backing, name: str = "Author") -> int:
    with backing.sql() as conn:
        row = conn.execute(
            "INSERT INTO profiles (display_name) VALUES (%s) RETURNING id", (name,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def _count(backing: Backing, sql: str) -> int:
    with backing.sql() as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def test_a_write_queues_its_post_and_a_rolled_back_one_nothing(backing: Backing) -> None:
    _run(backing, lambda engine, cache: _queues_or_not(backing, engine, cache))


async def _queues_or_not(backing: Backing, engine: AsyncEngine, cache: Cache) -> None:
    author = _profile(backing)
    # Analytics' hook runs, then a later one fails: the post and its queue row both go.
    failing = _feed(engine, cache, enqueue_post_changes, _refuse)
    with pytest.raises(Refused):
        await failing.create_post(NewPost(author, "never written", {}), None, "")
    assert _count(backing, "SELECT count(*) FROM posts") == 0
    assert _count(backing, "SELECT count(*) FROM analytics_feed_queue") == 0

    # The same write without the failing hook queues its post (unless the session server's
    # worker has already handled it: then its insights are there, or on their way).
    feed = _feed(engine, cache, enqueue_post_changes)
    created = await feed.create_post(NewPost(author, "written", {}), None, "")
    post_id = int(created.name.rsplit("/", 1)[1])
    queued_or_done = (
        f"SELECT (SELECT count(*) FROM analytics_feed_queue WHERE post_id = {post_id})"
        f" + (SELECT count(*) FROM analytics_post_insights WHERE post_id = {post_id})"
    )
    assert _count(backing, queued_or_done) >= 1


def test_a_failed_write_of_a_missing_post_queues_nothing(backing: Backing) -> None:
    async def body(engine: AsyncEngine, cache: Cache) -> None:
        feed = _feed(engine, cache, enqueue_post_changes)
        with pytest.raises(NotFound):
            await feed.delete_post(123456)

    _run(backing, body)
    assert _count(backing, "SELECT count(*) FROM analytics_feed_queue") == 0


def test_two_claims_never_hold_one_post(backing: Backing) -> None:
    _run(backing, lambda engine, cache: _claims(engine))


async def _claims(engine: AsyncEngine) -> None:
    # The session server's worker may take rows first; a round where it took every row proves
    # nothing, so it is tried again (it polls every half second, so a round rarely loses).
    for _ in range(5):
        async with engine.begin() as conn:
            await insight_repository.enqueue(
                conn,
                [
                    {"post_id": 10_000 + i, "needs_insight": True, "needs_metrics": False}
                    for i in range(40)
                ],
            )
        async with engine.begin() as first, engine.begin() as second:
            mine = {row.post_id for row in await insight_repository.claim(first, 15)}
            theirs = {row.post_id for row in await insight_repository.claim(second, 15)}
            if mine and theirs:
                assert not mine & theirs
                await insight_repository.dequeue(first, list(mine))
                await insight_repository.dequeue(second, list(theirs))
                return
    pytest.fail("the session server's worker took every row in five rounds")


class Recording:
    """The real models, noting which texts each worker analysed (and slow enough that the
    workers' batches overlap)."""

    def __init__(self, models: InsightModels) -> None:
        self._models = models
        self.texts: list[str] = []
        self._lock = threading.Lock()

    def analyze_many(self, texts: Sequence[str]) -> list[Insight]:
        with self._lock:
            self.texts.extend(texts)
        threading.Event().wait(0.05)
        return self._models.analyze_many(texts)


def test_two_workers_never_analyse_one_post_twice(backing: Backing) -> None:
    _run(backing, lambda engine, cache: _two_workers(backing, engine, cache))


async def _two_workers(backing: Backing, engine: AsyncEngine, cache: Cache) -> None:
    author = _profile(backing)
    # Written without the hook, then queued at once. The session server's worker may wake
    # and take a share (a batch of 200 at a time): more posts than two of its batches leave
    # both of these workers theirs (with 60, one of them once got none under load).
    feed = _feed(engine, cache)
    bodies = [f"post number {i} about football and the match tonight" for i in range(450)]
    created = [await feed.create_post(NewPost(author, body, {}), None, "") for body in bodies]
    async with engine.begin() as conn:
        await enqueue_post_changes(
            conn,
            [
                PostChange(int(post.name.rsplit("/", 1)[1]), author, PostKind.CREATED)
                for post in created
            ],
        )
    models = shared_models()
    recorders = [Recording(models), Recording(models)]
    ingestion = Ingestion(engine, cache, Partitions(engine, AnalyticsSettings()))
    workers = [
        InsightWorker(
            engine,
            cache,
            ingestion,
            lambda recorder=recorder: recorder,  # type: ignore[misc]
            model_version(),
            batch_size=7,
            poll_s=0,
        )
        for recorder in recorders
    ]

    async def drain(worker: InsightWorker) -> None:
        while (await worker.run_once()).claimed:
            pass

    await asyncio.gather(*(drain(worker) for worker in workers))
    analysed = [text for recorder in recorders for text in recorder.texts]
    assert len(analysed) == len(set(analysed))
    assert all(recorder.texts for recorder in recorders), "both workers took part"
    # Every post has its insights: the session server's worker may have done some, and may
    # still be committing its last batch when these two find nothing left to claim.
    deadline = asyncio.get_running_loop().time() + 20
    while _count(backing, "SELECT count(*) FROM analytics_feed_queue"):
        assert asyncio.get_running_loop().time() < deadline, "the queue never emptied"
        await asyncio.sleep(0.05)
    assert _count(backing, "SELECT count(*) FROM analytics_post_insights") == len(bodies)
    assert _count(backing, "SELECT posts FROM analytics_profile_insights") == len(bodies)
