"""Demo data of every domain, in the composition root's order (profiles before their posts)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from server.core.domain import Domain, Volumes

log = logging.getLogger("socialhub.seed")


def first_start_volumes(profiles: int) -> Volumes:
    """What a first start loads: `profiles` profiles, and a network of proportionate size."""
    return {"profiles": profiles, "posts": profiles * 8, "follows": profiles * 12}


async def seed(
    engine: AsyncEngine, domains: Sequence[Domain], volumes: Volumes, *, progress: bool = True
) -> None:
    for domain in domains:
        if domain.demo is not None:
            await domain.demo.load(engine, volumes, progress=progress)


async def seed_demo_if_empty(
    engine: AsyncEngine, domains: Sequence[Domain], volumes: Volumes
) -> bool:
    """Load each domain's demo data if that domain holds nothing yet; True if any loaded."""
    loaded = False
    for domain in domains:
        if domain.demo is not None and await domain.demo.is_empty(engine):
            await domain.demo.load(engine, volumes, progress=False)
            loaded = True
    return loaded
