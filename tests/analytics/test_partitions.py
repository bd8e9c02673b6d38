"""The snapshot partitions: made ahead and dropped past retention by the job, made on demand
for a backfill, and every snapshot lands in its month's partition."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import psycopg
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from server.analytics.partitions import Partitions
from server.analytics.settings import AnalyticsSettings
from server.core import migrate
from server.core.db import async_url
from tests.harness import Backing


def partitions(backing: Backing, database_url: str) -> list[str]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'analytics_metric_snapshots'::regclass ORDER BY 1"
        ).fetchall()
    return [row[0] for row in rows]


@pytest.fixture
def migrated(fresh_database: str) -> str:
    migrate.upgrade(fresh_database)
    return fresh_database


def test_the_job_makes_partitions_ahead_and_drops_expired_ones(
    backing: Backing, migrated: str
) -> None:
    settings = AnalyticsSettings(
        analytics_snapshot_retention_months=2, analytics_partitions_ahead_months=2
    )

    async def run(now: datetime) -> int:
        engine = create_async_engine(async_url(migrated))
        try:
            return await Partitions(engine, settings).maintain(now)
        finally:
            await engine.dispose()

    made_by_migration = partitions(backing, migrated)
    assert len(made_by_migration) == 5
    # Far ahead: three new months, and everything the migration made is past retention.
    changed = asyncio.run(run(datetime(2031, 5, 20, tzinfo=UTC)))
    assert partitions(backing, migrated) == [
        "metric_snapshots_y2031m05",
        "metric_snapshots_y2031m06",
        "metric_snapshots_y2031m07",
    ]
    assert changed == 3 + 5
    # Again: nothing to do (the job is idempotent).
    assert asyncio.run(run(datetime(2031, 5, 21, tzinfo=UTC))) == 0
    # A month later: one more ahead; 2031-05 is kept (retention: the two months before this one).
    asyncio.run(run(datetime(2031, 6, 2, tzinfo=UTC)))
    assert partitions(backing, migrated)[0] == "metric_snapshots_y2031m05"
    assert partitions(backing, migrated)[-1] == "metric_snapshots_y2031m08"
    asyncio.run(run(datetime(2031, 8, 2, tzinfo=UTC)))
    assert partitions(backing, migrated)[0] == "metric_snapshots_y2031m06"
