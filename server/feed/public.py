"""What other domains may use of the feed domain: its post-change hooks and two reads.

A domain that keeps something about posts (analytics' content insights and engagement) plugs a
hook into FeedHooks, which the feed domain provides on the DomainContext. Each hook is called
INSIDE the feed's writing transaction with the posts that changed, so whatever it records
commits or rolls back with the change itself: a post written is never missed, a write that
rolls back leaves nothing behind. Hooks must be short (one statement, say): the post's row is
locked while they run. The reads give another domain the current state of posts by id and a
keyset walk over every post id, never the feed's tables themselves.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from server.feed import repository

__all__ = [
    "FeedHooks",
    "PostChange",
    "PostChangeHook",
    "PostKind",
    "PostState",
    "count_posts",
    "post_ids_after",
    "posts_by_ids",
]


class PostKind(enum.StrEnum):
    """What happened to a post: its text may have changed (created, edited), only its
    engagement (likes, comments), or it is gone (deleted)."""

    CREATED = "created"
    EDITED = "edited"
    ENGAGED = "engaged"
    DELETED = "deleted"


@dataclass(frozen=True)
class PostChange:
    post_id: int
    author_id: int
    kind: PostKind


# Called in the feed's writing transaction; returns nothing (the hook's domain invalidates its
# own caches when it acts on what it recorded).
PostChangeHook = Callable[[AsyncConnection, Sequence[PostChange]], Awaitable[None]]


@dataclass
class FeedHooks:
    """Filled by the domains that build on feed, before the server starts."""

    post_changes: list[PostChangeHook] = field(default_factory=list)

    async def posts_changed(self, conn: AsyncConnection, changes: Sequence[PostChange]) -> None:
        for hook in self.post_changes:
            await hook(conn, changes)


@dataclass(frozen=True)
class PostState:
    """A post as it is now: its text and language tag, its times and engagement counters."""

    post_id: int
    author_id: int
    body: str
    language_code: str
    created_at: datetime
    updated_at: datetime
    like_count: int
    comment_count: int


async def posts_by_ids(conn: AsyncConnection, post_ids: Sequence[int]) -> dict[int, PostState]:
    """The posts of `post_ids` that exist, by id (a deleted one is simply absent)."""
    rows = await repository.get_posts(conn, post_ids) if post_ids else {}
    return {
        post_id: PostState(
            post_id=row["id"],
            author_id=row["author_id"],
            body=row["body"],
            language_code=row["language_code"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            like_count=row["like_count"],
            comment_count=row["comment_count"],
        )
        for post_id, row in rows.items()
    }


async def count_posts(conn: AsyncConnection) -> int:
    """Every post, counted (a full scan: for a progress bar's total, not a request)."""
    return await repository.count_posts(conn)


async def post_ids_after(conn: AsyncConnection, after_id: int, limit: int) -> list[int]:
    """Up to `limit` post ids greater than `after_id`, ascending: one primary-key range, so a
    walk over every post resumes from the last id it saw."""
    return await repository.post_ids_after(conn, after_id, limit)
