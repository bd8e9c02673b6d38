"""Bulk demo data for every domain, loaded with COPY behind a progress bar."""

from __future__ import annotations

import itertools
import logging

from sqlalchemy.ext.asyncio import AsyncEngine
from tqdm import tqdm

from server.profiles import demo as profile_demo
from server.profiles import repository as profile_repository

log = logging.getLogger("socialhub.seed")

BATCH = 10_000


async def seed_profiles(engine: AsyncEngine, count: int, *, progress: bool = True) -> None:
    async with engine.begin() as conn:
        start = await _next_index(engine)
        records = profile_demo.profile_records(count, start=start)
        with tqdm(total=count, unit="profile", desc="profiles", disable=not progress) as bar:
            while batch := list(itertools.islice(records, BATCH)):
                await profile_repository.copy_rows(conn, profile_demo.COLUMNS, batch)
                bar.update(len(batch))
    log.info("seeded profiles", extra={"count": count})


async def _next_index(engine: AsyncEngine) -> int:
    """Continue numbering after existing profiles so generated usernames stay unique."""
    async with engine.connect() as conn:
        return await profile_repository.max_id(conn)


async def seed_demo_if_empty(engine: AsyncEngine, profiles: int) -> bool:
    async with engine.connect() as conn:
        empty = await profile_repository.is_empty(conn)
    if empty:
        await seed_profiles(engine, profiles, progress=False)
    return empty
