"""Post use cases: create (now, at a time, or in posting slots), read, list, update, cancel,
delete, attempts, watch.

A new post and its targets are written in one transaction, with a NOTIFY that wakes the
replicas' workers once it commits; the call returns at once, every target PUBLISHING (or
SCHEDULED). Update and cancel lock the targets as delete does, and only while no worker has
claimed any (timing.py turns a schedule into the targets' rows).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from socialhub.v1 import publishing_pb2
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.core import idempotency
from server.core.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from server.core.pagination import PageTokens, next_token
from server.publishing import repository
from server.publishing.accounts import account_not_found
from server.publishing.adapters.base import Adapter, Content, Platform
from server.publishing.businesses import require_business
from server.publishing.mapping import (
    account_name,
    attempt_from_row,
    post_from_rows,
    post_name,
)
from server.publishing.model import NewPost, Page, PostChanges, PostFilter, Schedule
from server.publishing.notify import Changes
from server.publishing.tables import FINAL_TARGET_STATES
from server.publishing.timing import business_zone, resolve_schedule, take_slots, target_timing

CREATE_SCOPE = "CreateBusinessPost"
# A watcher re-reads the post at least this often, notification or not.
WATCH_POLL_S = 1.0
PLATFORM_NAMES = {
    Platform.X: "X",
    Platform.LINKEDIN: "LinkedIn",
    Platform.FACEBOOK: "Facebook",
    Platform.INSTAGRAM: "Instagram",
}


def post_not_found(business_id: int, post_id: int) -> NotFound:
    return NotFound(
        f"{post_name(business_id, post_id)} does not exist", reason="BUSINESS_POST_NOT_FOUND"
    )


def _already_sent(business_id: int, post_id: int) -> FailedPrecondition:
    return FailedPrecondition(
        f"{post_name(business_id, post_id)} is being sent, was sent or was cancelled",
        reason="BUSINESS_POST_ALREADY_SENT",
    )


def _merged_content(post: Any, changes: PostChanges) -> Content:
    """The post's content with the masked fields replaced."""
    new, paths = changes.content, changes.paths
    return Content(
        text=new.text if "text" in paths else post.text,
        media_urls=tuple(new.media_urls if "media_uris" in paths else post.media_uris),
        first_comment=new.first_comment if "first_comment" in paths else post.first_comment,
        thread=tuple(new.thread if "thread" in paths else post.thread),
    )


def _new_schedule(post: Any, changes: PostChanges) -> Schedule:
    """The schedule an update asks for, completed from the post's: "time_zone" alone moves
    the post's local time to that zone; a local time without "time_zone" keeps the post's."""
    schedule = changes.schedule
    assert schedule is not None
    if not changes.paths & {"schedule_time", "schedule_local_time"}:
        if post.schedule_local_time is None:
            raise InvalidArgument.single(
                "business_post.time_zone", "is only for a post scheduled at a local time"
            )
        local = datetime.fromisoformat(post.schedule_local_time)
        return Schedule(local_time=local, time_zone=schedule.time_zone)
    if schedule.local_time is not None and "time_zone" not in changes.paths:
        return replace(schedule, time_zone=post.schedule_time_zone or "")
    return schedule


class PostService:
    def __init__(
        self,
        engine: AsyncEngine,
        tokens: PageTokens,
        adapters: Mapping[Platform, Adapter],
        changes: Changes,
    ) -> None:
        self._engine = engine
        self._tokens = tokens
        self._adapters = adapters
        self._changes = changes

    async def create(
        self, business_id: int, new: NewPost, request_id: uuid.UUID | None, digest: str
    ) -> publishing_pb2.BusinessPost:
        async with self._engine.begin() as conn:
            earlier = await idempotency.replay(
                conn, CREATE_SCOPE, request_id, digest, self._loader(business_id)
            )
            if earlier is not None:
                return earlier
            zone = await business_zone(conn, business_id)
            platforms = await self._check_targets(conn, business_id, new)
            columns, instant = resolve_schedule(new.schedule, zone)
            post = await repository.insert_post(
                conn,
                {
                    "business_id": business_id,
                    "text": new.content.text,
                    "media_uris": list(new.content.media_urls),
                    "first_comment": new.content.first_comment,
                    "thread": list(new.content.thread),
                    **columns,
                },
            )
            slots = (
                await take_slots(conn, business_id, zone, new.account_ids)
                if new.schedule.next_free_slot
                else {}
            )
            await repository.insert_targets(
                conn,
                [
                    {
                        "post_id": post.id,
                        "account_id": account_id,
                        "platform": platforms[account_id].value,
                        **target_timing(instant, slots.get(account_id)),
                    }
                    for account_id in new.account_ids
                ],
            )
            if request_id is not None:
                await idempotency.record(conn, CREATE_SCOPE, request_id, post.id)
            await repository.notify(conn, "due")
            return await self._load(conn, business_id, post.id)

    async def _check_targets(
        self, conn: AsyncConnection, business_id: int, new: NewPost
    ) -> dict[int, Platform]:
        """Every account exists, is connected, and takes this content; else nothing is made."""
        rows = {
            row.id: row for row in await repository.accounts_of(conn, business_id, new.account_ids)
        }
        violations: list[FieldViolation] = []
        platforms: dict[int, Platform] = {}
        for index, account_id in enumerate(new.account_ids):
            row = rows.get(account_id)
            if row is None:
                raise account_not_found(business_id, account_id)
            if row.state != "connected":
                raise FailedPrecondition(
                    f"{account_name(business_id, account_id)} is {row.state.replace('_', ' ')}"
                    + (f": {row.state_reason}" if row.state_reason else ""),
                    reason="ACCOUNT_NOT_CONNECTED",
                )
            platform = platforms[account_id] = Platform(row.platform)
            label = f"targets[{index}] ({PLATFORM_NAMES[platform]})"
            for field, description in self._adapters[platform].check(new.content):
                # The adapters name Content's fields; the API calls media `media_uris`.
                path = field.replace("media_urls", "media_uris", 1)
                violations.append(
                    FieldViolation(f"business_post.{path}", f"for {label}: {description}")
                )
        if violations:
            raise InvalidArgument(violations)
        return platforms

    def _loader(
        self, business_id: int
    ) -> Callable[[AsyncConnection, int], Awaitable[publishing_pb2.BusinessPost]]:
        async def load(conn: AsyncConnection, post_id: int) -> publishing_pb2.BusinessPost:
            return await self._load(conn, business_id, post_id)

        return load

    @staticmethod
    async def _load(
        conn: AsyncConnection, business_id: int, post_id: int
    ) -> publishing_pb2.BusinessPost:
        post = await repository.get_post(conn, business_id, post_id)
        if post is None:
            raise post_not_found(business_id, post_id)
        return post_from_rows(post, await repository.targets_of(conn, [post_id]))

    async def get(self, business_id: int, post_id: int) -> publishing_pb2.BusinessPost:
        async with self._engine.connect() as conn:
            return await self._load(conn, business_id, post_id)

    async def list_posts(
        self, business_id: int, where: PostFilter, page: Page
    ) -> tuple[list[publishing_pb2.BusinessPost], str]:
        position = self._tokens.decode(page.token, page.fingerprint)
        clauses = repository.post_filter_clauses(
            where.states, where.account_id, where.since, where.until
        )
        async with self._engine.connect() as conn:
            await require_business(conn, business_id)
            rows = await repository.list_posts(conn, business_id, clauses, position, page.size + 1)
            shown, token = next_token(
                self._tokens,
                rows,
                page.size,
                lambda row: (row.create_time, row.id),
                page.fingerprint,
            )
            # One query for the targets of the whole page, not one per post.
            target_rows = await repository.targets_of(conn, [row.id for row in shown])
        by_post: dict[int, list[Any]] = {}
        for target in target_rows:
            by_post.setdefault(target.post_id, []).append(target)
        return [post_from_rows(row, by_post.get(row.id, [])) for row in shown], token

    async def delete(self, business_id: int, post_id: int) -> None:
        async with self._engine.begin() as conn:
            result = await repository.delete_unsent_post(conn, business_id, post_id)
            if result == "deleted":
                await repository.notify(conn, f"post:{post_id}")
        if result == "missing":
            raise post_not_found(business_id, post_id)
        if result == "sent":
            raise FailedPrecondition(
                f"{post_name(business_id, post_id)} is being sent or was sent already",
                reason="BUSINESS_POST_ALREADY_SENT",
            )

    async def update(
        self, business_id: int, post_id: int, changes: PostChanges
    ) -> publishing_pb2.BusinessPost:
        """UpdateBusinessPost: while no target has been claimed (docs in the proto)."""
        async with self._engine.begin() as conn:
            post, held = await _lock_unsent(conn, business_id, post_id)
            zone = await business_zone(conn, business_id)
            content = _merged_content(post, changes)
            before = [target.account_id for target in held]
            account_ids = changes.account_ids if "targets" in changes.paths else tuple(before)
            platforms = await self._check_targets(
                conn, business_id, NewPost(content=content, account_ids=account_ids)
            )
            values: dict[str, Any] = {
                "text": content.text,
                "media_uris": list(content.media_urls),
                "first_comment": content.first_comment,
                "thread": list(content.thread),
            }
            instant = post.schedule_time
            if changes.schedule is not None:
                columns, instant = resolve_schedule(_new_schedule(post, changes), zone)
                values.update(columns)
                kept = [target.id for target in held if target.account_id in account_ids]
                if kept:
                    await repository.update_targets(conn, kept, target_timing(instant, None))
            await repository.update_post(conn, post_id, values)
            removed = [target.id for target in held if target.account_id not in account_ids]
            if removed:
                await repository.delete_targets(conn, removed)
            added = [account for account in account_ids if account not in before]
            # A post in posting slots (and not rescheduled now) gives new targets slots too.
            in_slots = changes.schedule is None and any(t.slot_time for t in held)
            slots = await take_slots(conn, business_id, zone, added) if in_slots and added else {}
            if added:
                await repository.insert_targets(
                    conn,
                    [
                        {
                            "post_id": post_id,
                            "account_id": account,
                            "platform": platforms[account].value,
                            **target_timing(instant, slots.get(account)),
                        }
                        for account in added
                    ],
                )
            await repository.notify(conn, "due")
            await repository.notify(conn, f"post:{post_id}")
            return await self._load(conn, business_id, post_id)

    async def cancel(self, business_id: int, post_id: int) -> publishing_pb2.BusinessPost:
        """CancelBusinessPost: every target CANCELLED (final), its slot freed."""
        async with self._engine.begin() as conn:
            _post, held = await _lock_unsent(conn, business_id, post_id)
            await repository.update_targets(
                conn, [target.id for target in held], {"state": "cancelled"}
            )
            await repository.notify(conn, f"post:{post_id}")
            return await self._load(conn, business_id, post_id)

    async def attempts(
        self, business_id: int, post_id: int, page: Page
    ) -> tuple[list[publishing_pb2.PublishAttempt], str]:
        position = self._tokens.decode(page.token, page.fingerprint)
        after = int(position[0]) if position else None  # type: ignore[arg-type]
        async with self._engine.connect() as conn:
            if await repository.get_post(conn, business_id, post_id) is None:
                raise post_not_found(business_id, post_id)
            rows = await repository.list_attempts(conn, post_id, after, page.size + 1)
        shown, token = next_token(
            self._tokens, rows, page.size, lambda row: (row.id,), page.fingerprint
        )
        return [attempt_from_row(row, business_id) for row in shown], token

    async def watch(
        self, business_id: int, post_id: int
    ) -> AsyncIterator[publishing_pb2.BusinessPost]:
        """The post now, then at each change, until every target is final."""
        with self._changes.watching(post_id) as changed:
            last: bytes | None = None
            while True:
                changed.clear()
                async with self._engine.connect() as conn:
                    post = await self._load(conn, business_id, post_id)
                serialized = post.SerializeToString(deterministic=True)
                if serialized != last:
                    last = serialized
                    yield post
                if _all_final(post.targets):
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), WATCH_POLL_S)


async def _lock_unsent(
    conn: AsyncConnection, business_id: int, post_id: int
) -> tuple[Any, Sequence[Any]]:
    """The post and its targets, locked, while none has been claimed or sent; else
    NOT_FOUND or FAILED_PRECONDITION."""
    post, held = await repository.lock_unsent_targets(conn, business_id, post_id)
    if post is None:
        raise post_not_found(business_id, post_id)
    if held is None:
        raise _already_sent(business_id, post_id)
    return post, held


def _all_final(targets: Sequence[publishing_pb2.PublishTarget]) -> bool:
    final = {
        publishing_pb2.PublishTarget.STATE_PUBLISHED,
        publishing_pb2.PublishTarget.STATE_FAILED,
        publishing_pb2.PublishTarget.STATE_NEEDS_REVIEW,
        publishing_pb2.PublishTarget.STATE_CANCELLED,
    }
    assert len(FINAL_TARGET_STATES) == len(final)
    return all(target.state in final for target in targets)
