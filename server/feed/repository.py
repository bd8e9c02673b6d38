"""Every SQL statement of the feed domain.

Lists page with a row comparison on the sort key and id, `(created_at, id) < (:t, :id)`,
which PostgreSQL turns into one range of a composite index. Writes that touch two
profiles lock them in id order first (server.profiles.public), so concurrent follows never
deadlock.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any

from asyncpg.exceptions import ForeignKeyViolationError
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Integer,
    Row,
    Select,
    and_,
    any_,
    bindparam,
    delete,
    exc,
    func,
    literal,
    or_,
    select,
    text,
    true,
    tuple_,
    union,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from server.core.db import CompiledQuery
from server.core.pagination import KeyValue
from server.feed.model import NewPost, Verb
from server.feed.tables import activity, comments, follows, likes, posts, profile_counters

POST_COLUMNS = tuple(posts.c)
AnyRow = Row[*tuple[Any, ...]]
AnySelect = Select[*tuple[Any, ...]]
Position = Sequence[KeyValue] | None


def _newest_first(created_at: Any, key: Any) -> tuple[Any, Any]:
    return created_at.desc(), key.desc()


def _before(created_at: Any, key: Any, position: Sequence[Any] | None) -> list[ColumnElement[bool]]:
    """Rows after `position` in newest-first order: one index range, not an OR of two."""
    if position is None:
        return []
    return [tuple_(created_at, key) < tuple_(*position)]


# --- profile counters (this domain's; profiles are reached through server.profiles.public) ---


async def add_to_profile_counter(
    conn: AsyncConnection, profile_id: int, column: str, delta: int
) -> bool:
    """Add `delta` to one counter of a profile; False if the profile does not exist.

    A profile's first count creates its row, and the foreign key proves the profile exists.
    Taking back (delta < 0) is an UPDATE: the row exists, since that count was added, and an
    upsert would check its negative insert row against the constraint first.
    """
    if delta < 0:
        await conn.execute(
            update(profile_counters)
            .where(profile_counters.c.profile_id == profile_id)
            .values({column: profile_counters.c[column] + delta})
        )
        return True
    statement = insert(profile_counters).values(profile_id=profile_id, **{column: delta})
    statement = statement.on_conflict_do_update(
        index_elements=[profile_counters.c.profile_id],
        set_={column: profile_counters.c[column] + statement.excluded[column]},
    )
    try:
        await conn.execute(statement)
    except exc.IntegrityError as error:
        if isinstance(getattr(error.orig, "__cause__", None), ForeignKeyViolationError):
            return False
        raise
    return True


@functools.cache
def _counters_of_many() -> CompiledQuery:
    ids = bindparam("profile_ids", type_=ARRAY(BigInteger))
    return CompiledQuery(select(profile_counters).where(profile_counters.c.profile_id == any_(ids)))


async def counters_of(conn: AsyncConnection, profile_ids: Sequence[int]) -> list[Any]:
    """Counter rows of those of `profile_ids` that have any (one primary-key probe each)."""
    return await _counters_of_many().fetch(conn, profile_ids=list(profile_ids))


# --- posts ---


async def insert_post(conn: AsyncConnection, new: NewPost) -> AnyRow:
    statement = (
        insert(posts)
        .values(author_id=new.author_id, body=new.body, **new.values)
        .returning(*POST_COLUMNS)
    )
    return (await conn.execute(statement)).one()


async def get_post(
    conn: AsyncConnection, post_id: int, *, for_update: bool = False
) -> AnyRow | None:
    statement = select(*POST_COLUMNS).where(posts.c.id == post_id)
    if for_update:
        statement = statement.with_for_update(key_share=True)  # FOR NO KEY UPDATE
    return (await conn.execute(statement)).first()


@functools.cache
def _posts_by_ids() -> CompiledQuery:
    return CompiledQuery(
        select(*POST_COLUMNS).where(
            posts.c.id == any_(bindparam("post_ids", type_=ARRAY(BigInteger)))
        )
    )


async def get_posts(conn: AsyncConnection, post_ids: Sequence[int]) -> dict[int, Any]:
    """Posts by id, as asyncpg Records: every cached timeline page is hydrated with this."""
    rows = await _posts_by_ids().fetch(conn, post_ids=list(set(post_ids)))
    return {row["id"]: row for row in rows}


async def update_post(conn: AsyncConnection, post_id: int, values: dict[str, Any]) -> AnyRow:
    statement = (
        update(posts)
        .where(posts.c.id == post_id)
        .values({**values, "updated_at": func.now()})
        .returning(*POST_COLUMNS)
    )
    return (await conn.execute(statement)).one()


async def delete_post(conn: AsyncConnection, post_id: int) -> AnyRow | None:
    """Delete a post; its comments and likes go with it (ON DELETE CASCADE)."""
    statement = delete(posts).where(posts.c.id == post_id).returning(posts.c.id, posts.c.author_id)
    return (await conn.execute(statement)).first()


async def add_to_post_counter(conn: AsyncConnection, post_id: int, column: str, delta: int) -> None:
    await conn.execute(
        update(posts).where(posts.c.id == post_id).values({column: posts.c[column] + delta})
    )


def author_posts(author_id: int, position: Position) -> AnySelect:
    """One author's posts, newest first: a range of ix_posts_author_id_created_at_id."""
    return (
        select(*POST_COLUMNS)
        .where(posts.c.author_id == author_id, *_before(posts.c.created_at, posts.c.id, position))
        .order_by(*_newest_first(posts.c.created_at, posts.c.id))
    )


# Hot pages run one statement object per shape, built once with bind parameters: building
# a select and computing its cache key cost more CPU than the query itself.
_AUTHOR = bindparam("author_id", type_=BigInteger)
_VIEWER = bindparam("viewer_id", type_=BigInteger)
_LIMIT = bindparam("limit", type_=Integer)
_AFTER = (
    bindparam("after_time", type_=DateTime(timezone=True)),
    bindparam("after_id", type_=BigInteger),
)


def _page_params(position: Position, limit: int, **values: int) -> dict[str, Any]:
    after = {} if position is None else {"after_time": position[0], "after_id": position[1]}
    return {**values, **after, "limit": limit}


@functools.cache
def _author_page_template(after: bool) -> AnySelect:
    return (
        select(*POST_COLUMNS)
        .where(
            posts.c.author_id == _AUTHOR, *_before(posts.c.created_at, posts.c.id, _after(after))
        )
        .order_by(*_newest_first(posts.c.created_at, posts.c.id))
        .limit(_LIMIT)
    )


@functools.cache
def _compiled(template: Callable[[bool], AnySelect], *, after: bool) -> CompiledQuery:
    """Hot pages skip SQLAlchemy's per-call execution too: asyncpg runs the compiled SQL and
    the rows come back as asyncpg Records."""
    return CompiledQuery(template(after))


def _after(after: bool) -> Sequence[Any] | None:
    return _AFTER if after else None


def author_page_statement(author_id: int, position: Position, limit: int) -> AnySelect:
    """The statement author_page runs, with its values bound (for EXPLAIN)."""
    template = _author_page_template(position is not None)
    return template.params(_page_params(position, limit, author_id=author_id))


async def author_page(
    conn: AsyncConnection, author_id: int, position: Position, limit: int
) -> Sequence[Any]:
    query = _compiled(_author_page_template, after=position is not None)
    return await query.fetch(conn, **_page_params(position, limit, author_id=author_id))


def _timeline_authors(viewer_id: Any) -> AnySelect:
    return select(follows.c.followee_id.label("author_id")).where(
        follows.c.follower_id == viewer_id
    )


@functools.cache
def _timeline_keys_template(after: bool) -> AnySelect:
    """Fan-out on read: each followed author (and the viewer) contributes its newest `limit`
    posts after the position through one index range, and the union is cut to `limit`.

    The cost is (followees + 1) short index scans whatever the page depth, because the
    keyset position is pushed into every per-author scan. Only (created_at, id) is read,
    which the index holds, so the scans never touch the heap.
    """
    authors = (
        _timeline_authors(_VIEWER).union_all(select(_VIEWER.label("author_id"))).subquery("authors")
    )
    newest = (
        select(posts.c.created_at, posts.c.id)
        .where(
            posts.c.author_id == authors.c.author_id,
            *_before(posts.c.created_at, posts.c.id, _after(after)),
        )
        .order_by(*_newest_first(posts.c.created_at, posts.c.id))
        .limit(_LIMIT)
        .lateral("newest")
    )
    return (
        select(newest.c.created_at, newest.c.id)
        .select_from(authors.join(newest, true()))
        .order_by(*_newest_first(newest.c.created_at, newest.c.id))
        .limit(_LIMIT)
    )


@functools.cache
def _timeline_template(after: bool) -> AnySelect:
    """The page's posts: the heap is read for the `limit` posts kept, not for `limit`
    posts of every followee."""
    page = _timeline_keys_template(after).subquery("page")
    return (
        select(*POST_COLUMNS)
        .join_from(page, posts, posts.c.id == page.c.id)
        .order_by(*_newest_first(page.c.created_at, page.c.id))
    )


def timeline_statement(viewer_id: int, position: Position, limit: int) -> AnySelect:
    """The statement timeline_page runs, with its values bound (for EXPLAIN)."""
    template = _timeline_template(position is not None)
    return template.params(_page_params(position, limit, viewer_id=viewer_id))


async def timeline_page(
    conn: AsyncConnection, viewer_id: int, position: Position, limit: int
) -> Sequence[Any]:
    query = _compiled(_timeline_template, after=position is not None)
    return await query.fetch(conn, **_page_params(position, limit, viewer_id=viewer_id))


async def timeline_keys(
    conn: AsyncConnection, viewer_id: int, position: Position, limit: int
) -> Sequence[Any]:
    """(created_at, id) of a timeline page, from indexes alone."""
    query = _compiled(_timeline_keys_template, after=position is not None)
    return await query.fetch(conn, **_page_params(position, limit, viewer_id=viewer_id))


def timeline_posts(viewer_id: int, position: Position) -> AnySelect:
    """A whole timeline, newest first, for streaming."""
    return (
        select(*POST_COLUMNS)
        .where(
            posts.c.author_id.in_(
                _timeline_authors(viewer_id).union_all(select(literal(viewer_id, BigInteger)))
            ),
            *_before(posts.c.created_at, posts.c.id, position),
        )
        .order_by(*_newest_first(posts.c.created_at, posts.c.id))
    )


def tag_statement(tags: Sequence[str], position: Position, limit: int) -> AnySelect:
    """Posts whose tags contain all `tags` (`tags @> ARRAY[...]`, GIN ix_posts_tags), newest
    first. The array column has element statistics, so PostgreSQL estimates a combination of
    tags from each tag's frequency and picks the GIN bitmap or the newest-first walk well."""
    return (
        select(*POST_COLUMNS)
        .where(
            posts.c.tags.contains(list(tags)),
            *_before(posts.c.created_at, posts.c.id, position),
        )
        .order_by(*_newest_first(posts.c.created_at, posts.c.id))
        .limit(limit)
    )


async def tag_page(
    conn: AsyncConnection, tags: Sequence[str], position: Position, limit: int
) -> Sequence[AnyRow]:
    return (await conn.execute(tag_statement(tags, position, limit))).all()


async def stream_rows(
    conn: AsyncConnection, statement: AnySelect, batch_size: int
) -> AsyncIterator[Sequence[Any]]:
    """Batches of rows (asyncpg Records) from a server-side cursor: memory holds one batch,
    whatever the total. Compiled once per stream, then read through asyncpg directly: at
    hundreds of thousands of rows SQLAlchemy's per-row result processing is the bottleneck."""
    async for batch in CompiledQuery(statement).batches(conn, batch_size):
        yield batch


# --- follows ---


async def insert_follow(conn: AsyncConnection, follower_id: int, followee_id: int) -> AnyRow | None:
    """The new follow, or None if it already existed."""
    statement = (
        insert(follows)
        .values(follower_id=follower_id, followee_id=followee_id)
        .on_conflict_do_nothing()
        .returning(follows.c.follower_id, follows.c.followee_id, follows.c.created_at)
    )
    return (await conn.execute(statement)).first()


async def get_follow(conn: AsyncConnection, follower_id: int, followee_id: int) -> AnyRow | None:
    statement = select(follows.c.follower_id, follows.c.followee_id, follows.c.created_at).where(
        follows.c.follower_id == follower_id, follows.c.followee_id == followee_id
    )
    return (await conn.execute(statement)).first()


async def delete_follow(conn: AsyncConnection, follower_id: int, followee_id: int) -> bool:
    statement = (
        delete(follows)
        .where(follows.c.follower_id == follower_id, follows.c.followee_id == followee_id)
        .returning(follows.c.follower_id)
    )
    return (await conn.execute(statement)).first() is not None


def _follow_list(
    profile_column: Any, other_column: Any, profile_id: int, position: Position, limit: int
) -> AnySelect:
    return (
        select(follows.c.follower_id, follows.c.followee_id, follows.c.created_at)
        .where(profile_column == profile_id, *_before(follows.c.created_at, other_column, position))
        .order_by(*_newest_first(follows.c.created_at, other_column))
        .limit(limit)
    )


def follows_statement(
    follower_id: int | None, followee_id: int | None, position: Position, limit: int
) -> AnySelect:
    """Follows by a follower (ix_follows_follower_id_created_at), of a followee
    (ix_follows_followee_id_created_at), or the one follow between both, newest first."""
    if follower_id is None:
        assert followee_id is not None
        return followers_statement(followee_id, position, limit)
    statement = following_statement(follower_id, position, limit)
    if followee_id is not None:
        statement = statement.where(follows.c.followee_id == followee_id)
    return statement


async def follows_page(
    conn: AsyncConnection,
    follower_id: int | None,
    followee_id: int | None,
    position: Position,
    limit: int,
) -> Sequence[AnyRow]:
    statement = follows_statement(follower_id, followee_id, position, limit)
    return (await conn.execute(statement)).all()


def followers_statement(followee_id: int, position: Position, limit: int) -> AnySelect:
    """A backward range of ix_follows_followee_id_created_at."""
    return _follow_list(follows.c.followee_id, follows.c.follower_id, followee_id, position, limit)


def following_statement(follower_id: int, position: Position, limit: int) -> AnySelect:
    """A backward range of ix_follows_follower_id_created_at."""
    return _follow_list(follows.c.follower_id, follows.c.followee_id, follower_id, position, limit)


async def follower_ids(conn: AsyncConnection, followee_id: int, limit: int) -> list[int]:
    statement = (
        select(follows.c.follower_id).where(follows.c.followee_id == followee_id).limit(limit)
    )
    return [row.follower_id for row in await conn.execute(statement)]


async def follow_pairs(conn: AsyncConnection, first: int, second: int) -> set[tuple[int, int]]:
    """Which of (first follows second) and (second follows first) exist."""
    statement = select(follows.c.follower_id, follows.c.followee_id).where(
        or_(
            and_(follows.c.follower_id == first, follows.c.followee_id == second),
            and_(follows.c.follower_id == second, follows.c.followee_id == first),
        )
    )
    return {(row.follower_id, row.followee_id) for row in await conn.execute(statement)}


# --- comments ---


async def insert_comment(conn: AsyncConnection, post_id: int, author_id: int, body: str) -> AnyRow:
    statement = (
        insert(comments)
        .values(post_id=post_id, author_id=author_id, body=body)
        .returning(*comments.c)
    )
    return (await conn.execute(statement)).one()


async def delete_comment(conn: AsyncConnection, post_id: int, comment_id: int) -> AnyRow | None:
    statement = (
        delete(comments)
        .where(comments.c.post_id == post_id, comments.c.id == comment_id)
        .returning(comments.c.id, comments.c.author_id)
    )
    return (await conn.execute(statement)).first()


async def comments_page(
    conn: AsyncConnection, post_id: int, position: Position, limit: int
) -> Sequence[AnyRow]:
    """Oldest first: ascending range of ix_comments_post_id_created_at_id."""
    after = [] if position is None else [tuple_(comments.c.created_at, comments.c.id) > position]
    statement = (
        select(*comments.c)
        .where(comments.c.post_id == post_id, *after)
        .order_by(comments.c.created_at, comments.c.id)
        .limit(limit)
    )
    return (await conn.execute(statement)).all()


# --- likes ---


async def insert_like(conn: AsyncConnection, post_id: int, profile_id: int) -> datetime | None:
    """When the new like was given, or None if it already existed."""
    statement = (
        insert(likes)
        .values(post_id=post_id, profile_id=profile_id)
        .on_conflict_do_nothing()
        .returning(likes.c.created_at)
    )
    row = (await conn.execute(statement)).first()
    return None if row is None else row.created_at


async def like_time(conn: AsyncConnection, post_id: int, profile_id: int) -> datetime | None:
    statement = select(likes.c.created_at).where(
        likes.c.post_id == post_id, likes.c.profile_id == profile_id
    )
    row = (await conn.execute(statement)).first()
    return None if row is None else row.created_at


async def delete_like(conn: AsyncConnection, post_id: int, profile_id: int) -> bool:
    statement = (
        delete(likes)
        .where(likes.c.post_id == post_id, likes.c.profile_id == profile_id)
        .returning(likes.c.post_id)
    )
    return (await conn.execute(statement)).first() is not None


# --- activity ---


async def append_event(
    conn: AsyncConnection, actor_id: int, verb: Verb, obj: str, payload: dict[str, Any]
) -> None:
    await conn.execute(
        activity.insert().values(actor_id=actor_id, verb=verb.value, object=obj, payload=payload)
    )


async def activity_page(
    conn: AsyncConnection, actor_id: int, position: Position, limit: int
) -> Sequence[AnyRow]:
    statement = (
        select(*activity.c)
        .where(
            activity.c.actor_id == actor_id,
            *_before(activity.c.created_at, activity.c.id, position),
        )
        .order_by(*_newest_first(activity.c.created_at, activity.c.id))
        .limit(limit)
    )
    return (await conn.execute(statement)).all()


async def purge_activity(conn: AsyncConnection, older_than: datetime, batch: int) -> int:
    """Delete up to `batch` of the oldest events before `older_than` (ix_activity_created_at)."""
    oldest = (
        select(activity.c.id)
        .where(activity.c.created_at < older_than)
        .order_by(activity.c.created_at)
        .limit(batch)
    )
    result = await conn.execute(delete(activity).where(activity.c.id.in_(oldest.scalar_subquery())))
    return int(result.rowcount)


# --- bulk loading (seed) ---


async def copy_records(
    conn: AsyncConnection, table: str, columns: Sequence[str], records: Sequence[tuple[Any, ...]]
) -> None:
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    await driver.copy_records_to_table(table, records=records, columns=list(columns))


async def posts_since(conn: AsyncConnection, first_id: int) -> list[tuple[int, datetime]]:
    """(id, created_at) of the posts with id >= first_id: what a bulk load just added."""
    statement = (
        select(posts.c.id, posts.c.created_at).where(posts.c.id >= first_id).order_by(posts.c.id)
    )
    return [(row.id, row.created_at) for row in await conn.execute(statement)]


async def copy_follows_skipping_existing(
    conn: AsyncConnection, columns: Sequence[str], records: Sequence[tuple[Any, ...]]
) -> None:
    """COPY into a scratch table, then insert what is not there yet: reseeding stays valid."""
    await conn.execute(
        text("CREATE TEMP TABLE IF NOT EXISTS follows_load (LIKE follows) ON COMMIT DROP")
    )
    await copy_records(conn, "follows_load", columns, records)
    await conn.execute(
        text("INSERT INTO follows SELECT * FROM follows_load ON CONFLICT DO NOTHING")
    )
    await conn.execute(text("TRUNCATE follows_load"))


async def max_post_id(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(func.coalesce(func.max(posts.c.id), 0)))).scalar_one())


async def post_ids_after(conn: AsyncConnection, after_id: int, limit: int) -> list[int]:
    statement = select(posts.c.id).where(posts.c.id > after_id).order_by(posts.c.id).limit(limit)
    return list((await conn.execute(statement)).scalars())


async def count_posts(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(func.count()).select_from(posts))).scalar_one())


async def is_empty(conn: AsyncConnection) -> bool:
    return (await conn.execute(select(posts.c.id).limit(1))).first() is None


def _recount(target: Any, column: str, key: Any) -> Any:
    """UPDATE target SET column = n FROM (SELECT key, count(*) n ... GROUP BY key).

    Rows without any counted row keep their value, which is exact already: a bulk load
    only adds rows, so a row with none after it had none before it either.
    """
    counts = select(key.label("key"), func.count().label("n")).group_by(key).subquery("counts")
    return (
        update(target)
        .where(target.c.id == counts.c.key, target.c[column] != counts.c.n)
        .values({column: counts.c.n})
    )


def _recount_profiles(column: str, key: Any) -> Any:
    """The same for a profile counter, whose row may not exist yet: an upsert."""
    counts = select(key.label("profile_id"), func.count().label(column)).group_by(key)
    statement = insert(profile_counters).from_select(["profile_id", column], counts)
    return statement.on_conflict_do_update(
        index_elements=[profile_counters.c.profile_id],
        set_={column: statement.excluded[column]},
        where=profile_counters.c[column] != statement.excluded[column],
    )


async def recount_all(conn: AsyncConnection) -> None:
    """Set every counter to the true count after a bulk load: one statement per counter."""
    for statement in (
        _recount_profiles("posts_count", posts.c.author_id),
        _recount_profiles("followers_count", follows.c.followee_id),
        _recount_profiles("following_count", follows.c.follower_id),
        _recount(posts, "like_count", likes.c.post_id),
        _recount(posts, "comment_count", comments.c.post_id),
    ):
        await conn.execute(statement)


async def counter_neighbours(conn: AsyncConnection, profile_ids: Sequence[int]) -> set[int]:
    """Profiles whose follower or following count changes when `profile_ids` are deleted."""
    followees = select(follows.c.followee_id).where(follows.c.follower_id.in_(profile_ids))
    followers = select(follows.c.follower_id).where(follows.c.followee_id.in_(profile_ids))
    rows = await conn.execute(union(followees, followers))
    return {row[0] for row in rows} - set(profile_ids)


async def release_counters(conn: AsyncConnection, profile_ids: Sequence[int]) -> None:
    """Take back what `profile_ids` added to others' counters, before their rows cascade away."""
    for counter, own, other in (
        ("followers_count", follows.c.followee_id, follows.c.follower_id),
        ("following_count", follows.c.follower_id, follows.c.followee_id),
    ):
        counts = (
            select(own.label("profile_id"), func.count().label("n"))
            .where(other.in_(profile_ids), own.not_in(profile_ids))
            .group_by(own)
            .subquery()
        )
        await conn.execute(
            update(profile_counters)
            .where(profile_counters.c.profile_id == counts.c.profile_id)
            .values({counter: profile_counters.c[counter] - counts.c.n})
        )
    for counter, table, actor in (
        ("like_count", likes, likes.c.profile_id),
        ("comment_count", comments, comments.c.author_id),
    ):
        counts = (
            select(table.c.post_id.label("post_id"), func.count().label("n"))
            .where(actor.in_(profile_ids))
            .group_by(table.c.post_id)
            .subquery()
        )
        await conn.execute(
            update(posts)
            .where(posts.c.id == counts.c.post_id, posts.c.author_id.not_in(profile_ids))
            .values({counter: posts.c[counter] - counts.c.n})
        )
