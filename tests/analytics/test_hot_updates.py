"""A post's new latest metrics are a HOT update (migration 0016): ingestion changes no indexed
column of analytics_posts and the table leaves room on its pages, so moving a post's latest
writes one heap tuple and no index entry (it wrote one in each of the three indexes before)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from server.analytics import repository
from server.analytics.model import SnapshotBatch, epoch_us
from server.core import migrate
from server.core.db import async_url

POSTS = 300
MOVED_PER_TRANSACTION = 20


@pytest.fixture
def migrated(fresh_database: str) -> str:
    migrate.upgrade(fresh_database)
    return fresh_database


def _batch(profile_id: int, posts: list[int], observed: datetime, likes: int) -> SnapshotBatch:
    published = epoch_us(observed - timedelta(days=2))
    return SnapshotBatch(
        received=len(posts),
        profile_ids=[profile_id] * len(posts),
        platforms=["instagram"] * len(posts),
        post_ids=[f"post-{n}" for n in posts],
        publish_us=[published + n for n in posts],
        observe_us=[epoch_us(observed)] * len(posts),
        metrics=tuple([likes + n] * len(posts) for n in range(6)),
    )


async def _updates(conn: AsyncConnection) -> tuple[int, int]:
    """The backend's updates of analytics_posts not yet sent to the statistics (this
    transaction's, and earlier ones' of the same connection): all of them, and the HOT ones."""
    row: Any = (
        await conn.exec_driver_sql(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables"
            " WHERE relname = 'analytics_posts'"
        )
    ).one()
    return int(row.n_tup_upd), int(row.n_tup_hot_upd)


def test_a_post_s_new_latest_metrics_are_a_hot_update(migrated: str) -> None:
    with psycopg.connect(migrated, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO profiles (display_name, x_handle) VALUES ('Hot', 'hot') RETURNING id"
        ).fetchone()
    assert row is not None
    profile_id = row[0]
    now = datetime.now(UTC).replace(microsecond=0)

    async def run() -> list[tuple[int, int]]:
        engine = create_async_engine(async_url(migrated))
        counts = []
        try:
            async with engine.begin() as conn:
                await repository.apply_snapshots(
                    conn, _batch(profile_id, list(range(POSTS)), now - timedelta(hours=6), 1)
                )
            # As a feed's batches do: each moves a few posts of every page, then commits.
            for round_ in range(1, 6):
                moved = list(range(round_, POSTS, POSTS // MOVED_PER_TRANSACTION))
                async with engine.begin() as conn:
                    updated, hot = await _updates(conn)
                    applied = await repository.apply_snapshots(
                        conn,
                        _batch(profile_id, moved, now - timedelta(hours=6 - round_), 10 * round_),
                    )
                    assert all(applied.latest)
                    updated_after, hot_after = await _updates(conn)
                    counts.append((updated_after - updated, hot_after - hot))
        finally:
            await engine.dispose()
        return counts

    counts = asyncio.run(run())
    assert counts == [(MOVED_PER_TRANSACTION, MOVED_PER_TRANSACTION)] * 5
