"""Bulk demo data for every domain, loaded with COPY behind a progress bar."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from tqdm import tqdm

from server.feed import demo as feed_demo
from server.feed import repository as feed_repository
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
                await feed_repository.copy_follows_skipping_existing(conn, columns, batch)
            else:
                await feed_repository.copy_records(conn, table, columns, batch)
            bar.update(len(batch))


async def seed_feed(engine: AsyncEngine, volumes: FeedVolumes, *, progress: bool = True) -> None:
    """Posts, follows, comments and likes over the existing profiles, then exact counters."""
    async with engine.begin() as conn:
        profile_ids = await feed_repository.profile_ids(conn)
        if not profile_ids:
            log.warning("no profiles to seed the feed for")
            return
        first_post = await feed_repository.max_post_id(conn) + 1
        records = feed_demo.post_records(profile_ids, volumes.posts, start=first_post)
        await _copy(conn, "posts", feed_demo.POST_COLUMNS, records, volumes.posts, progress)
        new_posts = await feed_repository.posts_since(conn, first_post)
        follows = feed_demo.follow_records(profile_ids, volumes.follows, seed=first_post)
        await _copy(conn, "follows", feed_demo.FOLLOW_COLUMNS, follows, volumes.follows, progress)
        comments = feed_demo.comment_records(new_posts, profile_ids, volumes.comments)
        await _copy(
            conn, "comments", feed_demo.COMMENT_COLUMNS, comments, volumes.comments, progress
        )
        likes = feed_demo.like_records(new_posts, profile_ids, volumes.likes)
        await _copy(conn, "likes", feed_demo.LIKE_COLUMNS, likes, volumes.likes, progress)
        await feed_repository.recount_all(conn)
    log.info("seeded feed", extra={"volumes": volumes})


async def _next_index(engine: AsyncEngine) -> int:
    """Continue numbering after existing profiles so generated usernames stay unique."""
    async with engine.connect() as conn:
        return await profile_repository.max_id(conn)


async def seed_demo_if_empty(engine: AsyncEngine, profiles: int) -> bool:
    async with engine.connect() as conn:
        empty = await profile_repository.is_empty(conn)
    if empty:
        await seed_profiles(engine, profiles, progress=False)
        await seed_feed(
            engine, FeedVolumes.for_posts(posts=profiles * 8, follows=profiles * 12), progress=False
        )
    return empty
