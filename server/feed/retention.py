"""Keeps the activity log bounded: a periodic job deletes events past their retention.

Each batch is its own short transaction over ix_activity_created_at, so the job never
holds locks for long or builds one huge delete; it stops when a batch comes back short.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from server.feed import repository
from server.feed.settings import FeedSettings

log = logging.getLogger("socialhub.feed.retention")


class ActivityRetention:
    """Run by a server.core.periodic.PeriodicJob every ACTIVITY_PURGE_INTERVAL_S."""

    def __init__(self, engine: AsyncEngine, settings: FeedSettings) -> None:
        self._engine = engine
        self._settings = settings

    async def purge_once(self, now: datetime | None = None) -> int:
        """Delete every event older than the retention period; return how many."""
        cutoff = (now or datetime.now(UTC)) - timedelta(days=self._settings.activity_retention_days)
        batch = self._settings.activity_purge_batch
        total = 0
        while True:
            async with self._engine.begin() as conn:
                deleted = await repository.purge_activity(conn, cutoff, batch)
            total += deleted
            if deleted < batch:
                break
            await asyncio.sleep(0)  # let RPCs run between batches
        if total:
            log.info("purged activity events", extra={"count": total, "before": cutoff})
        return total
