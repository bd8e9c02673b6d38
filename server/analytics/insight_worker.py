"""The insights worker: from the feed queue to posts' insights, profiles' aggregates and the
engagement of FeedService posts, off the request path, on every replica.

Feed's hook (`enqueue_post_changes`) queues each changed post in the feed's own writing
transaction. A worker claims the oldest queued posts with FOR UPDATE SKIP LOCKED, so two
workers (of one replica or of two) never hold one post at once, and handles a batch in one
transaction: it reads the posts through server.feed.public, analyses the ones whose text or
model changed (in a thread: the models are CPU work), stores their insights, drops those of
deleted posts, recomputes the touched profiles' aggregates, removes the queue rows and
commits; then it invalidates the cached insights and analytics of those profiles and posts.
A write to a post the worker holds waits for the batch to commit, then queues the post again.

A batch that fails (outages aside) is tried again one post at a time, so the others go on and
the post at fault has its failure counted; at MAX_FAILURES it is dead-lettered: left queued
but no longer claimed, until an edit queues it for its text again or an operator requeues it.

Engagement (likes and comments) of created or engaged-with posts, as read in the batch, is
recorded after it commits through the ingestion use case, as metric snapshots of the platform
"socialhub" observed when they were read. After, not inside: ingestion locks profiles, and a
profile deletion waiting on a post whose feed write waits on the batch's queue rows would make
a cycle PostgreSQL cannot see (it spans two connections). If that ingestion fails, the posts
are queued again for their metrics; a later change of a post is read (and stamped) later, so
its snapshot wins whichever lands first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.analytics import insight_repository as repository
from server.analytics.cache_tags import post_insights_tag, profile_tag
from server.analytics.ingestion import Ingestion
from server.analytics.insight_models import text_hash
from server.analytics.insight_tables import ERROR_MAX
from server.analytics.model import Snapshot
from server.core.cache import Cache
from server.core.db import is_database_unavailable
from server.core.errors import NotFound
from server.core.metrics import Metrics
from server.core.tasks import stop_task
from server.feed.public import PostChange, PostKind, PostState, posts_by_ids

if TYPE_CHECKING:
    from prometheus_client import Gauge

    # Types only: the package loads numpy (see insight_models.py).
    from server.analytics.insights import Insight, InsightModels

log = logging.getLogger("socialhub.analytics")

# The platform FeedService posts are recorded under (Platform.PLATFORM_SOCIALHUB).
SOCIALHUB = "socialhub"


def _queue_row(change: PostChange) -> dict[str, Any]:
    return {
        "post_id": change.post_id,
        "needs_insight": change.kind in (PostKind.CREATED, PostKind.EDITED, PostKind.DELETED),
        "needs_metrics": change.kind in (PostKind.CREATED, PostKind.ENGAGED),
    }


async def enqueue_post_changes(conn: AsyncConnection, changes: Sequence[PostChange]) -> None:
    """Feed's post-change hook: queue the posts in the feed's writing transaction."""
    rows = {change.post_id: _queue_row(change) for change in changes}
    await repository.enqueue(conn, [rows[post_id] for post_id in sorted(rows)])


# A queued post whose handling failed this many times (outages aside) is dead-lettered: it
# stays queued but is no longer claimed (docs/ANALYTICS.md, "Dead letters").
MAX_FAILURES = 5
# How often a worker counts the queue for its gauges (a count of the queue's rows: cheap
# while it is short, tens of milliseconds under a backfill of a million posts).
QUEUE_REPORT_S = 15.0


class ModelsUnavailable(Exception):
    """The content models could not be loaded."""


def _posts_fault(error: BaseException) -> bool:
    """Whether a failed handling may be its posts' fault: not when the models cannot load
    (the replica's), nor when PostgreSQL is unreachable (a passing outage; the posts stay
    queued, their failures uncounted). Redis is only used after the commit, so its outages
    never reach here."""
    return not isinstance(error, ModelsUnavailable) and not is_database_unavailable(error)


def describe_error(error: BaseException) -> str:
    """The "Class: message" of a failure, cut to fit the queue row. A database error is described
    by the driver's error alone: SQLAlchemy's message also carries the statement's
    parameters (posts' text), which do not belong in an operator's view of the queue."""
    if isinstance(error, StatementError) and error.orig is not None:
        error = error.orig.__cause__ or error.orig
    message = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {message[0]}" if message else type(error).__name__
    return text[:ERROR_MAX]


@dataclass(frozen=True)
class _Handled:
    """What a committed batch leaves to do after its commit."""

    claimed: int
    analysed: list[PostState]
    gone: list[int]
    touched: list[int]
    engaged: list[PostState]
    observed: datetime


@dataclass(frozen=True)
class BatchResult:
    claimed: int
    analysed: int
    removed: int
    snapshots: int


@dataclass(frozen=True)
class QueueGauges:
    """The queue as Prometheus sees it: the posts waiting to be handled, and the dead letters
    (an alert on the second is how an operator learns of a post that always fails)."""

    queued: Gauge
    dead_letters: Gauge

    @classmethod
    def create(cls, metrics: Metrics) -> QueueGauges:
        # Every replica counts the same table: the fleet's figure is any replica's.
        return cls(
            queued=metrics.gauge(
                "socialhub_analytics_insights_queued",
                "Posts queued for their insights or engagement, not dead-lettered (the whole "
                "fleet's queue, as this replica last counted it).",
                multiprocess_mode="livemax",
            ),
            dead_letters=metrics.gauge(
                "socialhub_analytics_insights_dead_letters",
                f"Posts whose insights failed {MAX_FAILURES} times and are no longer tried "
                "(docs/ANALYTICS.md, dead letters).",
                multiprocess_mode="livemax",
            ),
        )


class InsightWorker:
    """Plugin.workers' start/stop around a polling loop; `run_once` is one batch."""

    def __init__(
        self,
        engine: AsyncEngine,
        cache: Cache,
        ingestion: Ingestion,
        models: Callable[[], InsightModels],
        version: str,
        *,
        batch_size: int,
        poll_s: float,
        owns_engine: bool = False,
        gauges: QueueGauges | None = None,
    ) -> None:
        self._engine = engine
        self._owns_engine = owns_engine
        self._cache = cache
        self._ingestion = ingestion
        self._load_models = models
        self._models: InsightModels | None = None
        self._version = version
        self._batch_size = batch_size
        self._poll_s = poll_s
        self._gauges = gauges
        self._task: asyncio.Task[None] | None = None

    @property
    def batch_size(self) -> int:
        return self._batch_size

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="analytics-insights")

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None
        if self._owns_engine:
            await self._engine.dispose()

    async def _run(self) -> None:
        reported = -QUEUE_REPORT_S
        loop = asyncio.get_running_loop()
        while True:
            if loop.time() - reported >= QUEUE_REPORT_S:
                reported = loop.time()
                await self.report_queue()
            try:
                result = await self.run_once()
            except ModelsUnavailable:
                # A broken install, not a passing outage: posts stay queued for another
                # replica, or for this one once it is fixed and restarted.
                log.exception(
                    "cannot load the insights models; this replica's insights worker stops"
                )
                return
            except Exception:
                # A database or Redis outage (a post's own failure is counted in run_once, not
                # here): the batch rolled back and stays queued.
                log.exception("insights batch failed; retrying")
                await asyncio.sleep(self._poll_s)
                continue
            if result.claimed < self._batch_size:
                await asyncio.sleep(self._poll_s)

    async def report_queue(self) -> None:
        """Count the queue into the gauges; an outage leaves them as they were."""
        if self._gauges is None:
            return
        try:
            async with self._engine.connect() as conn:
                queued, dead = await repository.queue_counts(conn)
        except Exception as error:
            log.debug("insights queue not counted: %s", error)
            return
        self._gauges.queued.set(queued)
        self._gauges.dead_letters.set(dead)

    async def _loaded_models(self) -> InsightModels:
        """The models, loaded (in a thread: the server answers meanwhile) when a post first
        needs them: a replica that never analyses a post, as most test servers, does not pay
        their second of CPU and 160 MB."""
        if self._models is None:
            try:
                self._models = await asyncio.to_thread(self._load_models)
            except Exception as error:
                raise ModelsUnavailable from error
        return self._models

    async def run_once(self) -> BatchResult:
        """One batch of the oldest live queued posts, in one transaction. If it fails for
        anything but an outage, its posts are tried again one at a time, so the post at fault
        is found (and its failure counted) while the others are handled."""
        post_ids: list[int] = []
        try:
            async with self._engine.begin() as conn:
                claimed = await repository.claim(conn, self._batch_size)
                post_ids = [row.post_id for row in claimed]
                handled = await self._handle(conn, claimed)
        except Exception as error:
            if not post_ids or not _posts_fault(error):
                raise
            log.warning(
                "insights batch of %d posts failed; trying them one at a time",
                len(post_ids),
                exc_info=True,
            )
            return await self._one_at_a_time(post_ids)
        return await self._finish(handled)

    async def _one_at_a_time(self, post_ids: Sequence[int]) -> BatchResult:
        """Each post in its own transaction; a failure is the post's own, and counted."""
        analysed = removed = snapshots = 0
        for post_id in post_ids:
            try:
                async with self._engine.begin() as conn:
                    handled = await self._handle(conn, await repository.claim_post(conn, post_id))
            except Exception as error:
                if not _posts_fault(error):
                    raise
                await self._count_failure(post_id, error)
                continue
            done = await self._finish(handled)
            analysed, removed = analysed + done.analysed, removed + done.removed
            snapshots += done.snapshots
        return BatchResult(len(post_ids), analysed, removed, snapshots)

    async def _count_failure(self, post_id: int, error: BaseException) -> None:
        description = describe_error(error)
        async with self._engine.begin() as conn:
            row = await repository.record_failure(conn, post_id, description, MAX_FAILURES)
        if row is None:
            return  # handled, deleted or dead-lettered by another worker meanwhile
        if row.dead_lettered_at is not None:
            # Once: a dead letter is not claimed again until the post is queued for its text.
            log.error(
                "insights of post %d failed %d times; dead-lettered (last error: %s)",
                post_id,
                row.failures,
                description,
            )
        else:
            log.warning(
                "insights of post %d failed (%d of %d): %s",
                post_id,
                row.failures,
                MAX_FAILURES,
                description,
            )

    async def _handle(self, conn: AsyncConnection, claimed: Sequence[Row[Any]]) -> _Handled:
        """Analyse, store and dequeue the claimed posts in the caller's transaction."""
        post_ids = [row.post_id for row in claimed]
        if not post_ids:
            return _Handled(0, [], [], [], [], datetime.now(UTC))
        posts = await posts_by_ids(conn, post_ids)
        observed = datetime.now(UTC)
        stored = await repository.stored_versions(conn, post_ids)
        engaged = [
            posts[row.post_id] for row in claimed if row.needs_metrics and row.post_id in posts
        ]
        todo = [
            posts[row.post_id]
            for row in claimed
            if row.needs_insight
            and row.post_id in posts
            and stored.get(row.post_id, (0, "", ""))[1:]
            != (text_hash(posts[row.post_id].body), self._version)
        ]
        insights = (
            await asyncio.to_thread(
                (await self._loaded_models()).analyze_many, [post.body for post in todo]
            )
            if todo
            else []
        )
        await repository.upsert_insights(
            conn,
            [self._row(post, insight) for post, insight in zip(todo, insights, strict=True)],
        )
        gone = [post_id for post_id in post_ids if post_id not in posts and post_id in stored]
        await repository.delete_insights(conn, gone)
        touched = {post.author_id for post in todo} | {stored[p][0] for p in gone}
        await repository.recompute_profiles(conn, sorted(touched))
        await repository.dequeue(conn, post_ids)
        return _Handled(len(post_ids), todo, gone, sorted(touched), engaged, observed)

    async def _finish(self, handled: _Handled) -> BatchResult:
        """After the commit: a read from now on must not be served what was cached before."""
        await self._cache.invalidate(
            *(profile_tag(profile_id) for profile_id in handled.touched),
            *(post_insights_tag(post.post_id) for post in handled.analysed),
            *(post_insights_tag(post_id) for post_id in handled.gone),
        )
        snapshots = await self._record_engagement(handled.engaged, handled.observed)
        return BatchResult(handled.claimed, len(handled.analysed), len(handled.gone), snapshots)

    def _row(self, post: PostState, insight: Insight) -> dict[str, Any]:
        return {
            "post_id": post.post_id,
            "profile_id": post.author_id,
            "sentiment": insight.sentiment,
            "sentiment_score": max(-1.0, min(1.0, insight.sentiment_score)),
            "sentiment_confidence": insight.sentiment_confidence,
            "category": insight.category,
            "category_confidence": insight.category_confidence,
            "language": insight.language,
            "language_confidence": insight.language_confidence,
            "model_version": self._version,
            "text_hash": text_hash(post.body),
            "post_create_time": post.created_at,
            "post_update_time": post.updated_at,
        }

    async def _record_engagement(self, posts: Sequence[PostState], observed: datetime) -> int:
        """Record the posts' likes and comments as snapshots: one ingestion for the batch, or,
        if an author was deleted meanwhile, one per author (so that profile costs only its
        own, already deleted, posts)."""
        by_author: dict[int, list[Snapshot]] = {}
        for post in posts:
            by_author.setdefault(post.author_id, []).append(
                Snapshot(
                    profile_id=post.author_id,
                    platform=SOCIALHUB,
                    post_id=str(post.post_id),
                    publish_time=post.created_at,
                    observe_time=observed,
                    metrics=(post.like_count, post.comment_count, 0, 0, 0, 0),
                )
            )
        if not by_author:
            return 0
        try:
            whole = await self._ingestion.metric_snapshots(
                [s for author_id in sorted(by_author) for s in by_author[author_id]]
            )
            return whole.created
        except NotFound:
            pass  # an author went meanwhile: per author, below
        except Exception:
            log.exception("recording engagement failed; queueing the posts again")
            await self._queue_again([post.post_id for post in posts])
            return 0
        recorded = 0
        for author_id in sorted(by_author):
            try:
                result = await self._ingestion.metric_snapshots(by_author[author_id])
            except NotFound:
                continue  # the author is gone, and its posts with it
            except Exception:
                log.exception("recording engagement failed; queueing the posts again")
                await self._queue_again([int(s.post_id) for s in by_author[author_id]])
                continue
            recorded += result.created
        return recorded

    async def _queue_again(self, post_ids: Sequence[int]) -> None:
        rows = [{"post_id": p, "needs_insight": False, "needs_metrics": True} for p in post_ids]
        try:
            async with self._engine.begin() as conn:
                await repository.enqueue(conn, rows)
        except Exception:
            # PostgreSQL is gone too: the counts are recorded at the posts' next change.
            log.exception("queueing posts again for their engagement failed")
