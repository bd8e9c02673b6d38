"""The monthly partitions of analytics_metric_snapshots: made ahead, dropped past retention.

Partitions are named `analytics_partitions.metric_snapshots_yYYYYmMM` and cover one UTC month
each. A periodic job (run by the jobs' leader) makes the current month's and the next ones and
drops every partition that ends before the retention cutoff; ingestion refuses snapshots older
than the cutoff and, for a month with no partition yet (a backfill), makes it and retries.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from server.analytics import repository
from server.analytics.settings import AnalyticsSettings
from server.analytics.tables import PARTITION_SCHEMA

log = logging.getLogger("socialhub.analytics.partitions")

_NAME = re.compile(r"^metric_snapshots_y(\d{4})m(\d{2})$")


def month_start(value: date | datetime) -> date:
    return date(value.year, value.month, 1)


def add_months(month: date, count: int) -> date:
    index = month.year * 12 + month.month - 1 + count
    return date(index // 12, index % 12 + 1, 1)


def partition_name(month: date) -> str:
    return f"metric_snapshots_y{month:%Y}m{month:%m}"


def month_of_partition(name: str) -> date | None:
    match = _NAME.match(name)
    return date(int(match[1]), int(match[2]), 1) if match else None


def retention_cutoff(settings: AnalyticsSettings, now: datetime) -> datetime:
    """The first instant still kept: the start of the month `retention` months back."""
    first = add_months(month_start(now), -settings.analytics_snapshot_retention_months)
    return datetime(first.year, first.month, 1, tzinfo=UTC)


class Partitions:
    def __init__(self, engine: AsyncEngine, settings: AnalyticsSettings) -> None:
        self._engine = engine
        self._settings = settings

    async def ensure(self, months: Iterable[date]) -> int:
        """Make the partitions of `months` that do not exist; return how many were made."""
        made = 0
        for month in sorted(set(months)):
            async with self._engine.begin() as conn:
                if await repository.create_partition(
                    conn, PARTITION_SCHEMA, partition_name(month), month, add_months(month, 1)
                ):
                    made += 1
        return made

    async def maintain(self, now: datetime | None = None) -> int:
        """The job: partitions ahead made, expired ones dropped; returns how many changed."""
        now = now or datetime.now(UTC)
        current = month_start(now)
        ahead = self._settings.analytics_partitions_ahead_months
        changed = await self.ensure(add_months(current, n) for n in range(ahead + 1))
        cutoff = month_start(retention_cutoff(self._settings, now))
        async with self._engine.connect() as conn:
            existing = await repository.partition_names(conn, PARTITION_SCHEMA)
        for name in existing:
            month = month_of_partition(name)
            if month is not None and add_months(month, 1) <= cutoff:
                async with self._engine.begin() as conn:
                    await repository.drop_partition(conn, PARTITION_SCHEMA, name)
                log.info("dropped an expired metric snapshot partition", extra={"partition": name})
                changed += 1
        return changed
