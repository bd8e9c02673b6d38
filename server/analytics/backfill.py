"""`socialhub insights backfill`: insights for every FeedService post that lacks current ones.

It walks post ids in keyset batches (server.feed.public), queues the posts with no insights
(with their engagement, never recorded either) or with another model version's, and handles
the queue at once with the worker's own batch, so the queue stays short whatever the number of
posts. Queueing is an upsert and the batches claim with SKIP LOCKED, so it is safe while
replicas serve (their workers simply take part), and running it again does only what is left:
it is idempotent and resumable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.analytics import insight_repository as repository
from server.analytics.ingestion import Ingestion
from server.analytics.insight_models import model_version, shared_models
from server.analytics.insight_worker import InsightWorker
from server.analytics.partitions import Partitions
from server.analytics.settings import AnalyticsSettings
from server.core.cache import Cache
from server.core.config import Settings
from server.core.db import create_engine
from server.feed.public import count_posts, post_ids_after


@dataclass
class BackfillTotals:
    posts: int = 0
    queued: int = 0
    analysed: int = 0
    removed: int = 0
    snapshots: int = 0


async def total_posts(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return await count_posts(conn)


async def queue_lacking(conn: AsyncConnection, post_ids: Sequence[int], version: str) -> int:
    """Queue those of `post_ids` with no insights (and their engagement, never recorded
    either) or with another model version's; return how many.

    Dead-lettered posts are left as they are: queueing one for its text would make it live
    again, and every run would spend MAX_FAILURES failing batches on each. An operator
    requeues them deliberately (docs/ANALYTICS.md, "Dead letters")."""
    missing, stale = await repository.missing_or_stale(conn, post_ids, version)
    dead = set(await repository.dead_lettered(conn, post_ids))
    missing = [post_id for post_id in missing if post_id not in dead]
    stale = [post_id for post_id in stale if post_id not in dead]
    await repository.enqueue(
        conn,
        [{"post_id": p, "needs_insight": True, "needs_metrics": True} for p in missing]
        + [{"post_id": p, "needs_insight": True, "needs_metrics": False} for p in stale],
    )
    return len(missing) + len(stale)


async def queue_all_lacking(engine: AsyncEngine, version: str, *, batch_size: int) -> int:
    """Queue every post lacking current insights for the replicas' workers (the demo load,
    whose posts are copied in beside FeedService); return how many."""
    queued, after = 0, 0
    while True:
        async with engine.begin() as conn:
            post_ids = await post_ids_after(conn, after, batch_size)
            if not post_ids:
                return queued
            queued += await queue_lacking(conn, post_ids, version)
        after = post_ids[-1]


async def backfill(
    engine: AsyncEngine,
    worker: InsightWorker,
    version: str,
    *,
    batch_size: int,
    progress: Callable[[int], None] = lambda _: None,
) -> BackfillTotals:
    totals = BackfillTotals()
    after = 0
    while True:
        async with engine.begin() as conn:
            post_ids = await post_ids_after(conn, after, batch_size)
            if not post_ids:
                break
            queued = await queue_lacking(conn, post_ids, version)
        after = post_ids[-1]
        totals.posts += len(post_ids)
        totals.queued += queued
        while True:
            result = await worker.run_once()
            totals.analysed += result.analysed
            totals.removed += result.removed
            totals.snapshots += result.snapshots
            if result.claimed < worker.batch_size:
                break
        progress(len(post_ids))
    return totals


async def run_backfill(
    settings: Settings,
    database_url: str,
    redis_url: str,
    *,
    batch_size: int,
    on_total: Callable[[int], None],
    progress: Callable[[int], None],
) -> BackfillTotals:
    """The command's own engine, Redis (to retire what replicas cached of the profiles it
    touches), ingestion and worker; the models loaded here, once."""
    from redis.asyncio import Redis

    engine = create_engine(settings, database_url)
    redis = Redis.from_url(redis_url)
    try:
        analytics = AnalyticsSettings()
        cache = Cache(redis, retry_after_s=settings.redis_retry_after_s)
        ingestion = Ingestion(engine, cache, Partitions(engine, analytics))
        models = shared_models()
        worker = InsightWorker(
            engine,
            cache,
            ingestion,
            lambda: models,
            model_version(),
            batch_size=batch_size,
            poll_s=0,
        )
        on_total(await total_posts(engine))
        return await backfill(
            engine, worker, model_version(), batch_size=batch_size, progress=progress
        )
    finally:
        await redis.aclose()
        await engine.dispose()
