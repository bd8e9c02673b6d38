"""The jobs' leader checks its lock's session without keeping a transaction open."""

from __future__ import annotations

import asyncio
import os

from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.ext.asyncio import create_async_engine

from server.core.db import async_url
from server.core.domain import Job
from server.core.leader import JobLeadership
from tests.harness import Backing


async def _nothing() -> int:
    return 0


def test_a_leader_checking_its_session_holds_no_transaction_open(
    backing: Backing, fresh_database: str
) -> None:
    """An open transaction would hold back the cluster's xmin horizon for as long as the
    replica leads: VACUUM would keep every dead row and mark no page all-visible, so no
    index-only scan (the analytics reports' covering index) would skip the heap."""

    async def states_while_leading() -> list[tuple[str, object]]:
        engine = create_async_engine(async_url(fresh_database))
        leadership = JobLeadership(engine, [Job("nothing", 3600.0, _nothing)], poll_s=0.05)
        leadership.start()
        try:
            for _ in range(200):
                if leadership.leading:
                    break
                await asyncio.sleep(0.02)
            assert leadership.leading
            await asyncio.sleep(0.5)  # several checks of the session
            name = conninfo_to_dict(fresh_database)["dbname"]
            with backing.sql() as conn:
                rows = conn.execute(
                    "SELECT state, backend_xmin FROM pg_stat_activity"
                    " WHERE application_name = %s AND datname = %s",
                    (f"socialhub-jobs-{os.getpid()}", name),
                ).fetchall()
        finally:
            await leadership.stop()
            await engine.dispose()
        return [tuple(row) for row in rows]

    assert asyncio.run(states_while_leading()) == [("idle", None)]
