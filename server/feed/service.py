"""Feed use cases: one transaction per call, exact counters, the activity log, cache policy.

Every mutation appends its activity event in the same transaction as the change, and
updates counters only when a row was really inserted or deleted, so retries and
duplicates never count twice.

Timeline cache: the first page of each home timeline is cached as a skeleton (post
names and the next page token) under the viewer's tag `timeline:{viewer}`; posts are
read fresh by primary key on every hit, so edits, counters and deletions show at once.
Only the page's membership can go stale, and every change of it bumps the tag after
commit: the viewer's follows, and posts created or deleted by the viewer or by an
author it follows (fan-out to at most `timeline_fanout_limit` followers; beyond that
the entry's short TTL bounds the delay). See docs/FEED.md.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from socialhub.v1 import feed_pb2
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.core import idempotency
from server.core.cache import Cache
from server.core.db import autocommit_reads, columns_of
from server.core.errors import FieldViolation, InvalidArgument, NotFound
from server.core.pagination import PageTokens, next_token
from server.feed import repository
from server.feed.counters import counters_tag
from server.feed.mapping import (
    comment_from_row,
    comment_name,
    event_from_row,
    follow_from_row,
    follow_name,
    like_message,
    like_name,
    post_from_row,
    post_id_of,
    post_name,
    profile_name,
    relationship_name,
)
from server.feed.model import NewPost, Page, PostChanges, StreamRequest, Verb
from server.feed.public import FeedHooks, PostChange, PostKind
from server.feed.settings import FeedSettings
from server.profiles import public as profiles

CREATE_SCOPE = "CreatePost"
# A stream message stops growing at this size even before batch_size posts, so it stays
# far below gRPC's default 4 MiB message limit whatever the posts hold.
STREAM_MESSAGE_BYTES = 1024 * 1024


def timeline_tag(profile_id: int) -> str:
    return f"timeline:{profile_id}"


def counter_tags(*profile_ids: int) -> list[str]:
    """What caches the profile counters this domain changes: one entry per profile, its own
    (profile lists read counters fresh, so no profile listing is invalidated)."""
    return [counters_tag(profile_id) for profile_id in profile_ids]


def _profile_not_found(profile_id: int) -> NotFound:
    return NotFound(f"{profile_name(profile_id)} does not exist", reason="PROFILE_NOT_FOUND")


def _post_not_found(post_id: int) -> NotFound:
    return NotFound(f"{post_name(post_id)} does not exist", reason="POST_NOT_FOUND")


def _comment_not_found(post_id: int, comment_id: int) -> NotFound:
    return NotFound(
        f"{comment_name(post_id, comment_id)} does not exist", reason="COMMENT_NOT_FOUND"
    )


def _follow_not_found(follower_id: int, followee_id: int) -> NotFound:
    return NotFound(
        f"{follow_name(follower_id, followee_id)} does not exist", reason="FOLLOW_NOT_FOUND"
    )


def _like_not_found(post_id: int, profile_id: int) -> NotFound:
    return NotFound(f"{like_name(post_id, profile_id)} does not exist", reason="LIKE_NOT_FOUND")


async def _existing_post(conn: AsyncConnection, post_id: int) -> feed_pb2.Post:
    row = await repository.get_post(conn, post_id)
    if row is None:
        raise _post_not_found(post_id)
    return post_from_row(row)


def _created_position(row: Any) -> tuple[Any, Any]:
    data = columns_of(row)
    return (data["created_at"], data["id"])


class FeedService:
    def __init__(
        self,
        engine: AsyncEngine,
        cache: Cache,
        tokens: PageTokens,
        settings: FeedSettings,
        hooks: FeedHooks | None = None,
    ) -> None:
        self._engine = engine
        # Other domains' post-change hooks, run in each writing transaction (feed/public.py).
        self._hooks = hooks or FeedHooks()
        self._reads = autocommit_reads(engine)
        self._cache = cache
        self._tokens = tokens
        self._settings = settings

    # --- posts ---

    async def create_post(
        self, new: NewPost, request_id: uuid.UUID | None, request_digest: str
    ) -> feed_pb2.Post:
        async with self._engine.begin() as conn:
            earlier = await idempotency.replay(
                conn, CREATE_SCOPE, request_id, request_digest, _existing_post
            )
            if earlier is not None:
                return earlier
            # Counting first also proves the author exists before anything is inserted.
            if not await repository.add_to_profile_counter(conn, new.author_id, "posts_count", 1):
                raise _profile_not_found(new.author_id)
            row = await repository.insert_post(conn, new)
            if request_id is not None:
                await idempotency.record(conn, CREATE_SCOPE, request_id, row.id)
            await repository.append_event(
                conn,
                new.author_id,
                Verb.POST_CREATED,
                post_name(row.id),
                {"tags": new.tags},
            )
            await self._changed(conn, row.id, new.author_id, PostKind.CREATED)
        await self._timeline_changed(new.author_id)
        return post_from_row(row)

    async def get_post(self, post_id: int) -> feed_pb2.Post:
        async with self._reads.connect() as conn:
            row = await repository.get_post(conn, post_id)
        if row is None:
            raise _post_not_found(post_id)
        return post_from_row(row)

    async def batch_get_posts(self, post_ids: Sequence[int]) -> list[feed_pb2.Post]:
        async with self._reads.connect() as conn:
            rows = await repository.get_posts(conn, post_ids)
        missing = [post_id for post_id in post_ids if post_id not in rows]
        if missing:
            raise _post_not_found(missing[0])
        return [post_from_row(rows[post_id]) for post_id in post_ids]

    async def update_post(self, post_id: int, changes: PostChanges) -> feed_pb2.Post:
        values = changes.values
        async with self._engine.begin() as conn:
            current = await repository.get_post(conn, post_id, for_update=True)
            if current is None:
                raise _post_not_found(post_id)
            if changes.author_id is not None and changes.author_id != current.author_id:
                raise InvalidArgument.single("post.author", "is immutable: it must be the post's")
            row = await repository.update_post(conn, post_id, values)
            await repository.append_event(
                conn,
                row.author_id,
                Verb.POST_UPDATED,
                post_name(post_id),
                {"fields": list(changes.fields)},
            )
            await self._changed(conn, post_id, row.author_id, PostKind.EDITED)
        # Cached timelines hold post names only, so an edit needs no invalidation.
        return post_from_row(row)

    async def delete_post(self, post_id: int) -> None:
        async with self._engine.begin() as conn:
            deleted = await repository.delete_post(conn, post_id)
            if deleted is None:
                raise _post_not_found(post_id)
            await repository.add_to_profile_counter(conn, deleted.author_id, "posts_count", -1)
            await repository.append_event(
                conn, deleted.author_id, Verb.POST_DELETED, post_name(post_id), {}
            )
            await self._changed(conn, post_id, deleted.author_id, PostKind.DELETED)
        await self._timeline_changed(deleted.author_id)

    async def _changed(
        self, conn: AsyncConnection, post_id: int, author_id: int, kind: PostKind
    ) -> None:
        await self._hooks.posts_changed(conn, [PostChange(post_id, author_id, kind)])

    async def _timeline_changed(self, author_id: int) -> None:
        """Bump the timeline tags of the author and its followers; call after commit.

        Followers are read after the commit on purpose: a follow that commits later bumps
        its follower's tag itself, so no timeline can cache a page missing this change.
        """
        async with self._reads.connect() as conn:
            followers = await repository.follower_ids(
                conn, author_id, self._settings.timeline_fanout_limit
            )
        await self._cache.invalidate(
            *counter_tags(author_id),
            timeline_tag(author_id),
            *(timeline_tag(follower) for follower in followers),
        )

    async def list_profile_posts(
        self, author_id: int, page: Page
    ) -> tuple[list[feed_pb2.Post], str]:
        position = self._tokens.decode(page.token, page.fingerprint)
        async with self._reads.connect() as conn:
            rows = await repository.author_page(conn, author_id, position, page.size + 1)
            # Posts go with their author, so only an empty page needs the existence check.
            if not rows and not await profiles.profile_exists(conn, author_id):
                raise _profile_not_found(author_id)
        return self._post_page(rows, page)

    async def search_by_tag(
        self, tags: Sequence[str], page: Page
    ) -> tuple[list[feed_pb2.Post], str]:
        position = self._tokens.decode(page.token, page.fingerprint)
        async with self._reads.connect() as conn:
            rows = await repository.tag_page(conn, tags, position, page.size + 1)
        return self._post_page(rows, page)

    def _post_page(self, rows: Sequence[Any], page: Page) -> tuple[list[feed_pb2.Post], str]:
        kept, token = next_token(self._tokens, rows, page.size, _created_position, page.fingerprint)
        return [post_from_row(row) for row in kept], token

    # --- timelines ---

    async def home_timeline(self, viewer_id: int, page: Page) -> tuple[list[feed_pb2.Post], str]:
        position = self._tokens.decode(page.token, page.fingerprint)
        if position is not None:
            rows = await self._timeline_rows(repository.timeline_page, viewer_id, position, page)
            return self._post_page(rows, page)

        async def load() -> bytes:
            # Only the ids are cached and the posts are re-read below, so read only the keys.
            rows = await self._timeline_rows(repository.timeline_keys, viewer_id, None, page)
            kept, token = next_token(
                self._tokens, rows, page.size, _created_position, page.fingerprint
            )
            skeleton = feed_pb2.ListPostsResponse(
                posts=[feed_pb2.Post(name=post_name(row["id"])) for row in kept],
                next_page_token=token,
            )
            return skeleton.SerializeToString()

        payload = await self._cache.read_through(
            f"timeline:{viewer_id}:{page.size}",
            tag=timeline_tag(viewer_id),
            ttl_s=self._settings.timeline_cache_ttl_s,
            load=load,
        )
        skeleton = feed_pb2.ListPostsResponse.FromString(payload)
        post_ids = [post_id_of(post.name) for post in skeleton.posts]
        # No existence check here: deleting the viewer invalidates its timeline entry, so a
        # hit proves the viewer existed when the entry was made and nothing since removed it.
        found: dict[int, Any] = {}
        if post_ids:
            async with self._reads.connect() as conn:
                found = await repository.get_posts(conn, post_ids)
        # A post deleted since the page was cached is simply left out.
        posts = [post_from_row(found[post_id]) for post_id in post_ids if post_id in found]
        return posts, skeleton.next_page_token

    async def _timeline_rows(
        self,
        read: Callable[[AsyncConnection, int, Sequence[Any] | None, int], Awaitable[Sequence[Any]]],
        viewer_id: int,
        position: Sequence[Any] | None,
        page: Page,
    ) -> Sequence[Any]:
        async with self._reads.connect() as conn:
            rows = await read(conn, viewer_id, position, page.size + 1)
            # A deleted viewer follows no one and has no posts: only an empty page can mean it.
            if not rows and not await profiles.profile_exists(conn, viewer_id):
                raise _profile_not_found(viewer_id)
        return rows

    async def stream_author_posts(
        self, author_id: int, request: StreamRequest
    ) -> AsyncIterator[tuple[list[feed_pb2.Post], str]]:
        async for batch in self._stream_of(author_id, repository.author_posts, request):
            yield batch

    async def stream_timeline(
        self, viewer_id: int, request: StreamRequest
    ) -> AsyncIterator[tuple[list[feed_pb2.Post], str]]:
        async for batch in self._stream_of(viewer_id, repository.timeline_posts, request):
            yield batch

    async def _stream_of(
        self,
        profile_id: int,
        statement_for: Callable[[int, Sequence[Any] | None], Any],
        request: StreamRequest,
    ) -> AsyncIterator[tuple[list[feed_pb2.Post], str]]:
        position = self._tokens.decode(request.cursor, request.fingerprint, "resume_cursor")
        async with self._engine.connect() as conn:
            if not await profiles.profile_exists(conn, profile_id):
                raise _profile_not_found(profile_id)
            statement = statement_for(profile_id, position)
            async for batch in self._stream(conn, statement, request):
                yield batch

    async def _stream(
        self, conn: AsyncConnection, statement: Any, request: StreamRequest
    ) -> AsyncIterator[tuple[list[feed_pb2.Post], str]]:
        """Messages of at most batch_size posts (and about 1 MiB), each with its resume cursor.

        Rows come from a server-side cursor one batch at a time and every message is sent
        (the caller's yield is awaited by grpc) before the next batch is fetched, so memory
        holds one batch whatever the total. Cancellation is never caught here.
        """
        pending: list[feed_pb2.Post] = []
        size = 0
        last: Any = None
        async for rows in repository.stream_rows(conn, statement, request.batch_size):
            for row in rows:
                post = post_from_row(row)
                pending.append(post)
                size += post.ByteSize()
                last = row
                if len(pending) >= request.batch_size or size >= STREAM_MESSAGE_BYTES:
                    cursor = self._tokens.encode(_created_position(last), request.fingerprint)
                    yield pending, cursor
                    pending, size = [], 0
        if pending:
            yield pending, self._tokens.encode(_created_position(last), request.fingerprint)

    # --- follows ---

    async def release_profiles(
        self, conn: AsyncConnection, profile_ids: Sequence[int]
    ) -> list[str]:
        """ProfileService deletion hook: keep others' counters exact when profiles go.

        Runs in the deleting transaction; returns the cache tags to invalidate after it.
        """
        neighbours = await repository.counter_neighbours(conn, profile_ids)
        await profiles.lock_profiles(conn, [*profile_ids, *neighbours])
        await repository.release_counters(conn, profile_ids)
        # Neighbours' counters changed; followers' timelines lose the deleted authors' posts;
        # the deleted profiles' own timelines must stop answering.
        return [
            *counter_tags(*sorted(neighbours)),
            *(timeline_tag(n) for n in sorted(neighbours)),
            *(timeline_tag(p) for p in profile_ids),
        ]

    async def follow(self, follower_id: int, followee_id: int) -> feed_pb2.Follow:
        if follower_id == followee_id:
            raise InvalidArgument(
                [FieldViolation("follow.followee", "a profile cannot follow itself")],
                reason="FOLLOW_SELF",
            )
        async with self._engine.begin() as conn:
            await self._lock_both(conn, follower_id, followee_id)
            row = await repository.insert_follow(conn, follower_id, followee_id)
            if row is None:
                existing = await repository.get_follow(conn, follower_id, followee_id)
                assert existing is not None  # both rows are locked; nobody can unfollow now
                return follow_from_row(existing)
            await self._count_follow(conn, follower_id, followee_id, 1)
            await repository.append_event(
                conn, follower_id, Verb.FOLLOWED, profile_name(followee_id), {}
            )
        await self._follows_changed(follower_id, followee_id)
        return follow_from_row(row)

    async def get_follow(self, follower_id: int, followee_id: int) -> feed_pb2.Follow:
        async with self._reads.connect() as conn:
            row = await repository.get_follow(conn, follower_id, followee_id)
        if row is None:
            raise _follow_not_found(follower_id, followee_id)
        return follow_from_row(row)

    async def unfollow(self, follower_id: int, followee_id: int, *, allow_missing: bool) -> None:
        async with self._engine.begin() as conn:
            await self._lock_both(conn, follower_id, followee_id)
            if not await repository.delete_follow(conn, follower_id, followee_id):
                if allow_missing:
                    return
                raise _follow_not_found(follower_id, followee_id)
            await self._count_follow(conn, follower_id, followee_id, -1)
            await repository.append_event(
                conn, follower_id, Verb.UNFOLLOWED, profile_name(followee_id), {}
            )
        await self._follows_changed(follower_id, followee_id)

    async def _lock_both(self, conn: AsyncConnection, follower_id: int, followee_id: int) -> None:
        # In id order, so two opposite follows between the same profiles cannot deadlock.
        found = await profiles.lock_profiles(conn, [follower_id, followee_id])
        for profile_id in (follower_id, followee_id):
            if profile_id not in found:
                raise _profile_not_found(profile_id)

    async def _count_follow(
        self, conn: AsyncConnection, follower_id: int, followee_id: int, delta: int
    ) -> None:
        await repository.add_to_profile_counter(conn, follower_id, "following_count", delta)
        await repository.add_to_profile_counter(conn, followee_id, "followers_count", delta)

    async def _follows_changed(self, follower_id: int, followee_id: int) -> None:
        await self._cache.invalidate(
            *counter_tags(follower_id, followee_id), timeline_tag(follower_id)
        )

    async def list_follows(
        self, follower_id: int | None, followee_id: int | None, page: Page
    ) -> tuple[list[feed_pb2.Follow], str]:
        """Follows by `follower_id`, of `followee_id`, or both (None is any), newest first."""
        position = self._tokens.decode(page.token, page.fingerprint)
        async with self._reads.connect() as conn:
            for checked in (follower_id, followee_id):
                if checked is not None and not await profiles.profile_exists(conn, checked):
                    raise _profile_not_found(checked)
            rows = await repository.follows_page(
                conn, follower_id, followee_id, position, page.size + 1
            )
        # The tie-breaker is the side the list is not keyed on, as in the index.
        other = "followee_id" if follower_id is not None else "follower_id"
        kept, token = next_token(
            self._tokens,
            rows,
            page.size,
            lambda row: (row.created_at, getattr(row, other)),
            page.fingerprint,
        )
        return [follow_from_row(row) for row in kept], token

    async def relationship(self, profile_id: int, other_id: int) -> feed_pb2.Relationship:
        async with self._reads.connect() as conn:
            for checked in dict.fromkeys((profile_id, other_id)):
                if not await profiles.profile_exists(conn, checked):
                    raise _profile_not_found(checked)
            pairs = await repository.follow_pairs(conn, profile_id, other_id)
        return feed_pb2.Relationship(
            name=relationship_name(profile_id, other_id),
            following=(profile_id, other_id) in pairs,
            followed_by=(other_id, profile_id) in pairs,
        )

    # --- comments ---

    async def create_comment(self, post_id: int, author_id: int, body: str) -> feed_pb2.Comment:
        async with self._engine.begin() as conn:
            # Locking the post first orders us after a concurrent DeletePost of it.
            post = await repository.get_post(conn, post_id, for_update=True)
            if post is None:
                raise _post_not_found(post_id)
            if not await profiles.profile_exists(conn, author_id, lock=True):
                raise _profile_not_found(author_id)
            row = await repository.insert_comment(conn, post_id, author_id, body)
            await repository.add_to_post_counter(conn, post_id, "comment_count", 1)
            await self._changed(conn, post_id, post.author_id, PostKind.ENGAGED)
            await repository.append_event(
                conn, author_id, Verb.COMMENTED, comment_name(post_id, row.id), {}
            )
        return comment_from_row(row)

    async def list_comments(self, post_id: int, page: Page) -> tuple[list[feed_pb2.Comment], str]:
        position = self._tokens.decode(page.token, page.fingerprint)
        async with self._reads.connect() as conn:
            if await repository.get_post(conn, post_id) is None:
                raise _post_not_found(post_id)
            rows = await repository.comments_page(conn, post_id, position, page.size + 1)
        kept, token = next_token(self._tokens, rows, page.size, _created_position, page.fingerprint)
        return [comment_from_row(row) for row in kept], token

    async def delete_comment(self, post_id: int, comment_id: int) -> None:
        async with self._engine.begin() as conn:
            # Post before comment: the same lock order as DeletePost, which cascades to comments.
            post = await repository.get_post(conn, post_id, for_update=True)
            if post is None:
                raise _comment_not_found(post_id, comment_id)
            deleted = await repository.delete_comment(conn, post_id, comment_id)
            if deleted is None:
                raise _comment_not_found(post_id, comment_id)
            await repository.add_to_post_counter(conn, post_id, "comment_count", -1)
            await self._changed(conn, post_id, post.author_id, PostKind.ENGAGED)
            await repository.append_event(
                conn,
                deleted.author_id,
                Verb.COMMENT_DELETED,
                comment_name(post_id, comment_id),
                {},
            )

    # --- likes ---

    async def like(self, post_id: int, profile_id: int) -> feed_pb2.Like:
        async with self._engine.begin() as conn:
            author_id = await self._lock_post_check_profile(conn, post_id, profile_id)
            created_at = await repository.insert_like(conn, post_id, profile_id)
            if created_at is None:
                existing = await repository.like_time(conn, post_id, profile_id)
                assert existing is not None  # the post row is locked; nobody can unlike now
                return like_message(post_id, profile_id, existing)
            await repository.add_to_post_counter(conn, post_id, "like_count", 1)
            await self._changed(conn, post_id, author_id, PostKind.ENGAGED)
            await repository.append_event(conn, profile_id, Verb.LIKED, post_name(post_id), {})
        return like_message(post_id, profile_id, created_at)

    async def get_like(self, post_id: int, profile_id: int) -> feed_pb2.Like:
        async with self._reads.connect() as conn:
            created_at = await repository.like_time(conn, post_id, profile_id)
        if created_at is None:
            raise _like_not_found(post_id, profile_id)
        return like_message(post_id, profile_id, created_at)

    async def unlike(self, post_id: int, profile_id: int, *, allow_missing: bool) -> None:
        async with self._engine.begin() as conn:
            author_id = await self._lock_post_check_profile(conn, post_id, profile_id)
            if not await repository.delete_like(conn, post_id, profile_id):
                if allow_missing:
                    return
                raise _like_not_found(post_id, profile_id)
            await repository.add_to_post_counter(conn, post_id, "like_count", -1)
            await self._changed(conn, post_id, author_id, PostKind.ENGAGED)
            await repository.append_event(conn, profile_id, Verb.UNLIKED, post_name(post_id), {})

    async def _lock_post_check_profile(
        self, conn: AsyncConnection, post_id: int, profile_id: int
    ) -> int:
        """Lock the post and check the profile; return the post's author."""
        post = await repository.get_post(conn, post_id, for_update=True)
        if post is None:
            raise _post_not_found(post_id)
        if not await profiles.profile_exists(conn, profile_id, lock=True):
            raise _profile_not_found(profile_id)
        return int(post.author_id)

    # --- activity ---

    async def list_activity(
        self, actor_id: int, page: Page
    ) -> tuple[list[feed_pb2.ActivityEvent], str]:
        position = self._tokens.decode(page.token, page.fingerprint)
        async with self._reads.connect() as conn:
            rows = await repository.activity_page(conn, actor_id, position, page.size + 1)
        kept, token = next_token(self._tokens, rows, page.size, _created_position, page.fingerprint)
        return [event_from_row(row) for row in kept], token
