"""Demo profiles for `socialhub seed` and a first start, loaded with COPY."""

from __future__ import annotations

import itertools
import logging

from sqlalchemy.ext.asyncio import AsyncEngine
from tqdm import tqdm

from server.core.domain import Volumes
from server.profiles import demo, repository

log = logging.getLogger("socialhub.profiles.seed")

BATCH = 10_000


class ProfileDemo:
    """Reads the "profiles" volume."""

    async def is_empty(self, engine: AsyncEngine) -> bool:
        async with engine.connect() as conn:
            return await repository.is_empty(conn)

    async def load(self, engine: AsyncEngine, volumes: Volumes, *, progress: bool) -> None:
        count = volumes.get("profiles", 0)
        if count:
            await seed_profiles(engine, count, progress=progress)


async def seed_profiles(engine: AsyncEngine, count: int, *, progress: bool = True) -> None:
    async with engine.connect() as conn:
        # Continue numbering after existing profiles so generated usernames stay unique.
        start = await repository.max_id(conn)
    async with engine.begin() as conn:
        records = demo.profile_records(count, start=start)
        with tqdm(total=count, unit="profile", desc="profiles", disable=not progress) as bar:
            while batch := list(itertools.islice(records, BATCH)):
                await repository.copy_rows(conn, demo.COLUMNS, batch)
                bar.update(len(batch))
    log.info("seeded profiles", extra={"count": count})
