"""Periodic jobs on one replica at a time, through a PostgreSQL advisory lock.

Every replica tries the lock every `poll_s`; the one that gets it keeps the connection that
holds it and runs every job. When that replica stops, dies or loses its connection, the
session ends, PostgreSQL frees the lock, and another replica takes over within `poll_s`.
The holder names itself in `application_name` (`socialhub-jobs-<pid>`), so an operator can
see in pg_stat_activity which process leads.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.core.domain import Job
from server.core.periodic import PeriodicJob
from server.core.tasks import stop_task

log = logging.getLogger("socialhub.leader")

# pg_advisory_lock keys: any 64-bit numbers, the same in every replica and release.
JOBS_LOCK_KEY = 0x534F_4349_414C_4A42  # "SOCIALJB"


class JobLeadership:
    def __init__(self, engine: AsyncEngine, jobs: Sequence[Job], *, poll_s: float) -> None:
        self._engine = engine
        self._jobs = jobs
        self._poll_s = poll_s
        self._conn: AsyncConnection | None = None
        self._running: list[PeriodicJob] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def leading(self) -> bool:
        return self._conn is not None

    def start(self) -> None:
        if self._jobs:
            self._task = asyncio.create_task(self._run(), name="job-leadership")

    async def stop(self) -> None:
        """Stop the jobs, then free the lock at once, so another replica takes over soon."""
        if self._task is not None:
            await stop_task(self._task)
            self._task = None
        await self._step_down(release=True)

    async def _run(self) -> None:
        while True:
            try:
                if self._conn is None:
                    await self._try_to_lead()
                else:
                    # A lock on a dead connection is no lock: check the session is still there.
                    await self._conn.execute(text("SELECT 1"))
                    # And end the transaction SELECT 1 began: left open, it held back the
                    # cluster's xmin horizon, so VACUUM marked no page all-visible (no
                    # index-only scans) and kept every dead row while this replica led.
                    await self._conn.commit()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("job leadership check failed", extra={"error": repr(error)})
                await self._step_down(release=False)
            await asyncio.sleep(self._poll_s)

    async def _try_to_lead(self) -> None:
        conn = await self._engine.connect()
        try:
            await conn.execute(text(f"SET application_name = 'socialhub-jobs-{os.getpid()}'"))
            got = (
                await conn.execute(
                    text("SELECT pg_try_advisory_lock(:key)"), {"key": JOBS_LOCK_KEY}
                )
            ).scalar_one()
            # Session-level: the lock outlives this transaction, until unlock or disconnect.
            await conn.commit()
        except BaseException:
            await conn.invalidate()
            raise
        if not got:
            await conn.execute(text("SET application_name = 'socialhub'"))
            await conn.commit()
            await conn.close()
            return
        self._conn = conn
        self._running = [PeriodicJob(job.name, job.interval_s, job.run_once) for job in self._jobs]
        for job in self._running:
            job.start()
        log.info("leading the periodic jobs", extra={"jobs": [job.name for job in self._jobs]})

    async def _step_down(self, *, release: bool) -> None:
        for job in self._running:
            await job.stop()
        self._running = []
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if release:
            try:
                await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": JOBS_LOCK_KEY})
                await conn.execute(text("SET application_name = 'socialhub'"))
                await conn.commit()
                await conn.close()
                log.info("stopped leading the periodic jobs")
                return
            except Exception as error:
                log.warning("could not release job leadership", extra={"error": repr(error)})
        # Never pool a connection that may still hold the lock: closing it frees the lock.
        await conn.invalidate()
        log.warning("lost the periodic jobs' leadership")
