"""Demo posts, follows, comments and likes over the existing profiles, loaded with COPY."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from tqdm import tqdm

from server.core.domain import Volumes
from server.feed import demo, repository
from server.profiles import public as profiles

log = logging.getLogger("socialhub.feed.seed")

BATCH = 10_000


@dataclass(frozen=True)
class FeedVolumes:
    posts: int
    follows: int
    comments: int
    likes: int

    @classmethod
    def for_posts(cls, posts: int, follows: int) -> FeedVolumes:
        """Comments and likes in proportion to posts, as on a real network."""
        return cls(posts=posts, follows=follows, comments=posts // 2, likes=posts * 2)


class FeedDemo:
    """Reads the "posts" and "follows" volumes."""

    async def is_empty(self, engine: AsyncEngine) -> bool:
        async with engine.connect() as conn:
            return await repository.is_empty(conn)

    async def load(self, engine: AsyncEngine, volumes: Volumes, *, progress: bool) -> None:
        posts, follows = volumes.get("posts", 0), volumes.get("follows", 0)
        if posts or follows:
            await seed_feed(engine, FeedVolumes.for_posts(posts, follows), progress=progress)


async def _copy(
    conn: AsyncConnection,
    table: str,
    columns: tuple[str, ...],
    records: Iterator[tuple[Any, ...]],
    total: int,
    progress: bool,
) -> None:
    with tqdm(total=total, unit="row", desc=table, disable=not progress) as bar:
        while batch := list(itertools.islice(records, BATCH)):
            if table == "follows":
                await repository.copy_follows_skipping_existing(conn, columns, batch)
            else:
                await repository.copy_records(conn, table, columns, batch)
            bar.update(len(batch))


async def seed_feed(engine: AsyncEngine, volumes: FeedVolumes, *, progress: bool = True) -> None:
    """Posts, follows, comments and likes over the existing profiles, then exact counters."""
    async with engine.begin() as conn:
        profile_ids = await profiles.all_profile_ids(conn)
        if not profile_ids:
            log.warning("no profiles to seed the feed for")
            return
        first_post = await repository.max_post_id(conn) + 1
        records = demo.post_records(profile_ids, volumes.posts, start=first_post)
        await _copy(conn, "posts", demo.POST_COLUMNS, records, volumes.posts, progress)
        new_posts = await repository.posts_since(conn, first_post)
        follows = demo.follow_records(profile_ids, volumes.follows, seed=first_post)
        await _copy(conn, "follows", demo.FOLLOW_COLUMNS, follows, volumes.follows, progress)
        comments = demo.comment_records(new_posts, profile_ids, volumes.comments)
        await _copy(conn, "comments", demo.COMMENT_COLUMNS, comments, volumes.comments, progress)
        likes = demo.like_records(new_posts, profile_ids, volumes.likes)
        await _copy(conn, "likes", demo.LIKE_COLUMNS, likes, volumes.likes, progress)
        await repository.recount_all(conn)
    log.info("seeded feed", extra={"volumes": volumes})
