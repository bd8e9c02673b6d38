"""Every SQL statement of the publishing domain.

Target state changes are UPDATEs conditional on the state they leave (and, for a worker, on
its lease), so a lost race changes nothing and is seen as zero rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, Row, Select, case, delete, exists, func, insert, select, tuple_
from sqlalchemy import update as sql_update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from server.publishing.tables import (
    ACTIVE_TARGET_STATES,
    SLOT_FREE_STATES,
    accounts,
    attempts,
    businesses,
    connections,
    posts,
    rate_limits,
    targets,
)

# The channel every replica LISTENs on (notify.py): "due" wakes the workers, "post:<id>" the
# watchers of that post.
CHANNEL = "socialhub_publishing"

KeysetPosition = tuple[Any, ...] | None


async def notify(conn: AsyncConnection, payload: str) -> None:
    """Delivered to every listener when (and only if) the transaction commits."""
    await conn.execute(select(func.pg_notify(CHANNEL, payload)))


# --- businesses ---


async def insert_business(conn: AsyncConnection, display_name: str, time_zone: str) -> Row[Any]:
    return (
        await conn.execute(
            insert(businesses)
            .values(display_name=display_name, time_zone=time_zone)
            .returning(*businesses.c)
        )
    ).one()


async def get_business(conn: AsyncConnection, business_id: int) -> Row[Any] | None:
    return (await conn.execute(select(businesses).where(businesses.c.id == business_id))).first()


async def business_exists(conn: AsyncConnection, business_id: int) -> bool:
    return bool(await conn.scalar(select(exists().where(businesses.c.id == business_id))))


async def list_businesses(
    conn: AsyncConnection, only: Sequence[int] | None, after: int | None, limit: int
) -> Sequence[Row[Any]]:
    query = select(businesses).order_by(businesses.c.id).limit(limit)
    if only is not None:
        query = query.where(businesses.c.id.in_(only))
    if after is not None:
        query = query.where(businesses.c.id > after)
    return (await conn.execute(query)).all()


async def update_business(
    conn: AsyncConnection, business_id: int, values: Mapping[str, Any]
) -> Row[Any] | None:
    return (
        await conn.execute(
            sql_update(businesses)
            .where(businesses.c.id == business_id)
            .values(**values, update_time=func.now())
            .returning(*businesses.c)
        )
    ).first()


# --- accounts ---

# Everything but the tokens: what responses are made of.
ACCOUNT_COLUMNS = [
    column for column in accounts.c if column.name not in ("access_token", "refresh_token")
]


async def upsert_account(conn: AsyncConnection, values: Mapping[str, Any]) -> Row[Any]:
    """Connect an account, or reconnect the one the business already has (same platform id)."""
    statement = pg_insert(accounts).values(**values)
    changed = {
        name: statement.excluded[name]
        for name in values
        if name not in ("business_id", "platform", "platform_account_id")
    }
    return (
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=["business_id", "platform", "platform_account_id"],
                set_={
                    **changed,
                    "state": "connected",
                    "state_reason": "",
                    "token_version": accounts.c.token_version + 1,
                    "update_time": func.now(),
                },
            ).returning(*ACCOUNT_COLUMNS)
        )
    ).one()


async def get_account(conn: AsyncConnection, business_id: int, account_id: int) -> Row[Any] | None:
    return (
        await conn.execute(
            select(*ACCOUNT_COLUMNS).where(
                accounts.c.business_id == business_id, accounts.c.id == account_id
            )
        )
    ).first()


async def accounts_of(
    conn: AsyncConnection, business_id: int, account_ids: Sequence[int]
) -> Sequence[Row[Any]]:
    return (
        await conn.execute(
            select(*ACCOUNT_COLUMNS).where(
                accounts.c.business_id == business_id, accounts.c.id.in_(account_ids)
            )
        )
    ).all()


async def list_accounts(
    conn: AsyncConnection, business_id: int, after: int | None, limit: int
) -> Sequence[Row[Any]]:
    query = (
        select(*ACCOUNT_COLUMNS)
        .where(accounts.c.business_id == business_id)
        .order_by(accounts.c.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(accounts.c.id > after)
    return (await conn.execute(query)).all()


async def disconnect_account(
    conn: AsyncConnection, business_id: int, account_id: int
) -> Row[Any] | None:
    return (
        await conn.execute(
            sql_update(accounts)
            .where(accounts.c.business_id == business_id, accounts.c.id == account_id)
            .values(
                state="disconnected",
                state_reason="",
                access_token=None,
                refresh_token=None,
                token_expire_time=None,
                refresh_expire_time=None,
                token_version=accounts.c.token_version + 1,
                update_time=func.now(),
            )
            .returning(*ACCOUNT_COLUMNS)
        )
    ).first()


async def account_secrets(
    conn: AsyncConnection, account_id: int, *, lock: bool = False
) -> Row[Any] | None:
    """The account with its encrypted tokens; `lock`: FOR UPDATE, so one refresh at a time."""
    query = select(accounts).where(accounts.c.id == account_id)
    if lock:
        query = query.with_for_update()
    return (await conn.execute(query)).first()


async def store_tokens(conn: AsyncConnection, account_id: int, values: Mapping[str, Any]) -> None:
    await conn.execute(
        sql_update(accounts)
        .where(accounts.c.id == account_id)
        .values(**values, token_version=accounts.c.token_version + 1, update_time=func.now())
    )


async def mark_needs_reconnect(conn: AsyncConnection, account_id: int, reason: str) -> None:
    await conn.execute(
        sql_update(accounts)
        .where(accounts.c.id == account_id, accounts.c.state == "connected")
        .values(state="needs_reconnect", state_reason=reason, update_time=func.now())
    )


async def all_token_rows(conn: AsyncConnection) -> Sequence[Any]:
    return (
        await conn.execute(
            select(
                accounts.c.id,
                accounts.c.business_id,
                accounts.c.access_token,
                accounts.c.refresh_token,
            )
            .where(accounts.c.access_token.is_not(None))
            .order_by(accounts.c.id)
            .with_for_update()
        )
    ).all()


async def replace_ciphertexts(
    conn: AsyncConnection, account_id: int, access: bytes, refresh: bytes | None
) -> None:
    # Same tokens, new key: token_version stays (no worker needs to re-read anything).
    await conn.execute(
        sql_update(accounts)
        .where(accounts.c.id == account_id)
        .values(access_token=access, refresh_token=refresh)
    )


# --- connections (OAuth states) ---


async def insert_connection(conn: AsyncConnection, values: Mapping[str, Any]) -> None:
    await conn.execute(insert(connections).values(**values))


async def take_connection(conn: AsyncConnection, state: str, business_id: int) -> Row[Any] | None:
    """Use a state of this business once: it is deleted as it is read (expired ones too);
    another business's attempt leaves it alone."""
    return (
        await conn.execute(
            delete(connections)
            .where(connections.c.state == state, connections.c.business_id == business_id)
            .returning(*connections.c)
        )
    ).first()


async def all_verifier_rows(conn: AsyncConnection) -> Sequence[Any]:
    """Every pending connection's encrypted PKCE verifier, locked (token rotation)."""
    return (
        await conn.execute(
            select(connections.c.state, connections.c.code_verifier)
            .order_by(connections.c.state)
            .with_for_update()
        )
    ).all()


async def replace_verifier(conn: AsyncConnection, state: str, code_verifier: bytes) -> None:
    await conn.execute(
        sql_update(connections)
        .where(connections.c.state == state)
        .values(code_verifier=code_verifier)
    )


async def purge_connections(conn: AsyncConnection) -> int:
    result = await conn.execute(delete(connections).where(connections.c.expire_time < func.now()))
    return int(result.rowcount)


# --- posts and targets ---


async def insert_post(conn: AsyncConnection, values: Mapping[str, Any]) -> Row[Any]:
    return (await conn.execute(insert(posts).values(**values).returning(*posts.c))).one()


async def insert_targets(conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
    # One multi-row VALUES (not executemany): a value may be SQL, e.g. due_time = now().
    await conn.execute(insert(targets).values(list(rows)))


async def get_post(conn: AsyncConnection, business_id: int, post_id: int) -> Row[Any] | None:
    return (
        await conn.execute(
            select(posts).where(posts.c.business_id == business_id, posts.c.id == post_id)
        )
    ).first()


async def get_post_by_id(conn: AsyncConnection, post_id: int) -> Row[Any] | None:
    return (await conn.execute(select(posts).where(posts.c.id == post_id))).first()


async def targets_of(conn: AsyncConnection, post_ids: Sequence[int]) -> Sequence[Row[Any]]:
    return (
        await conn.execute(
            select(targets).where(targets.c.post_id.in_(post_ids)).order_by(targets.c.id)
        )
    ).all()


def post_filter_clauses(
    states: Sequence[str] | None,
    account_id: int | None,
    since: datetime | None,
    until: datetime | None,
) -> list[Any]:
    clauses: list[Any] = []
    if states is not None:
        clauses.append(exists().where(targets.c.post_id == posts.c.id, targets.c.state.in_(states)))
    if account_id is not None:
        clauses.append(
            exists().where(targets.c.post_id == posts.c.id, targets.c.account_id == account_id)
        )
    if since is not None:
        clauses.append(posts.c.create_time >= since)
    if until is not None:
        clauses.append(posts.c.create_time < until)
    return clauses


def list_posts_statement(
    business_id: int, clauses: Sequence[Any], after: KeysetPosition, limit: int
) -> Any:
    query = (
        select(posts)
        .where(posts.c.business_id == business_id, *clauses)
        .order_by(posts.c.create_time.desc(), posts.c.id.desc())
        .limit(limit)
    )
    if after is not None:
        created, post_id = after
        # Row-value comparison: the (business_id, create_time, id) index serves it.
        query = query.where(tuple_(posts.c.create_time, posts.c.id) < tuple_(created, post_id))
    return query


async def list_posts(
    conn: AsyncConnection,
    business_id: int,
    clauses: Sequence[Any],
    after: KeysetPosition,
    limit: int,
) -> Sequence[Row[Any]]:
    return (await conn.execute(list_posts_statement(business_id, clauses, after, limit))).all()


async def delete_unsent_post(conn: AsyncConnection, business_id: int, post_id: int) -> str:
    """ "deleted", "missing" or "sent": only while no worker holds or ever sent a target
    (checked on the rows as locked, as for an update), or once the post was cancelled."""
    post, locked = await lock_unsent_targets(
        conn, business_id, post_id, allowed=(*UNSENT_STATES, "cancelled")
    )
    if post is None:
        return "missing"
    if locked is None:
        return "sent"
    await conn.execute(delete(posts).where(posts.c.id == post_id))
    return "deleted"


# --- schedules: UpdateBusinessPost, CancelBusinessPost, posting slots ---

UNSENT_STATES = ("scheduled", "pending", "deferred")


async def lock_unsent_targets(
    conn: AsyncConnection,
    business_id: int,
    post_id: int,
    *,
    allowed: Sequence[str] = UNSENT_STATES,
) -> tuple[Row[Any] | None, Sequence[Row[Any]] | None]:
    """(the post, locked FOR UPDATE; its targets, locked) while no worker holds or ever sent
    any of them; (post, None) once one has been claimed, sent (even maybe: send_time or a
    checkpoint set) or is final; (None, None) if the post does not exist. The targets are
    locked first (SKIP LOCKED: a worker claiming one now wins) and checked after, on the rows
    as locked, so a claim committed in between is seen."""
    post = (
        await conn.execute(
            select(posts)
            .where(posts.c.business_id == business_id, posts.c.id == post_id)
            .with_for_update()
        )
    ).first()
    if post is None:
        return None, None
    locked = (
        await conn.execute(
            select(targets)
            .where(targets.c.post_id == post_id)
            .order_by(targets.c.id)
            .with_for_update(skip_locked=True)
        )
    ).all()
    total = await conn.scalar(select(func.count()).where(targets.c.post_id == post_id))
    untouched = all(
        row.state in allowed and row.send_time is None and not row.checkpoints for row in locked
    )
    if len(locked) != total or not untouched:
        return post, None
    return post, locked


async def update_post(conn: AsyncConnection, post_id: int, values: Mapping[str, Any]) -> None:
    await conn.execute(
        sql_update(posts).where(posts.c.id == post_id).values(**values, update_time=func.now())
    )


async def update_targets(
    conn: AsyncConnection, target_ids: Sequence[int], values: Mapping[str, Any]
) -> None:
    await conn.execute(
        sql_update(targets)
        .where(targets.c.id.in_(target_ids))
        .values(**values, update_time=func.now())
    )


async def delete_targets(conn: AsyncConnection, target_ids: Sequence[int]) -> None:
    await conn.execute(delete(targets).where(targets.c.id.in_(target_ids)))


async def lock_slot_accounts(
    conn: AsyncConnection, business_id: int, account_ids: Sequence[int]
) -> Sequence[Any]:
    """The accounts' posting schedules, their rows locked FOR UPDATE in id order (two
    requests over the same accounts never deadlock): one transaction at a time picks an
    account's slot, and the next one sees the slot taken once it gets the lock."""
    return (
        await conn.execute(
            select(accounts.c.id, accounts.c.posting_schedule)
            .where(accounts.c.business_id == business_id, accounts.c.id.in_(account_ids))
            .order_by(accounts.c.id)
            .with_for_update()
        )
    ).all()


async def taken_slots(conn: AsyncConnection, account_id: int, after: datetime) -> set[datetime]:
    """The account's slot instants after `after` that a live target holds."""
    rows = await conn.scalars(
        select(targets.c.slot_time).where(
            targets.c.account_id == account_id,
            targets.c.slot_time > after,
            targets.c.state.not_in(SLOT_FREE_STATES),
        )
    )
    return set(rows)


async def set_posting_schedule(
    conn: AsyncConnection, business_id: int, account_id: int, schedule: Sequence[Any]
) -> Row[Any] | None:
    return (
        await conn.execute(
            sql_update(accounts)
            .where(accounts.c.business_id == business_id, accounts.c.id == account_id)
            .values(posting_schedule=list(schedule), update_time=func.now())
            .returning(*ACCOUNT_COLUMNS)
        )
    ).first()


async def list_attempts(
    conn: AsyncConnection, post_id: int, after: int | None, limit: int
) -> Sequence[Any]:
    query = (
        select(attempts, targets.c.account_id)
        .join(targets, targets.c.id == attempts.c.target_id)
        .where(attempts.c.post_id == post_id)
        .order_by(attempts.c.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(attempts.c.id > after)
    return (await conn.execute(query)).all()


# --- the workers' claims and transitions ---


def claim_statement(owner: str, lease_s: float, limit: int, *, expired: bool) -> Any:
    """Lease up to `limit` targets to `owner`: due ones in due order, or (`expired`) those
    whose lease ran out because their worker died. SKIP LOCKED: replicas claiming at once
    take different rows. Each kind has its partial index (EXPLAIN in tests/publishing)."""
    if expired:
        chosen = (
            select(targets.c.id)
            .where(
                targets.c.state.in_(("claimed", "sending")),
                targets.c.lease_expire_time < func.now(),
            )
            .order_by(targets.c.lease_expire_time)
        )
    else:
        chosen = (
            select(targets.c.id)
            .where(
                targets.c.state.in_(("pending", "deferred", "scheduled")),
                targets.c.due_time <= func.now(),
            )
            .order_by(targets.c.due_time)
        )
    return (
        sql_update(targets)
        .where(
            targets.c.id.in_(
                chosen.limit(limit).with_for_update(skip_locked=True).scalar_subquery()
            )
        )
        .values(
            state="claimed",
            lease_owner=owner,
            lease_expire_time=func.now() + timedelta(seconds=lease_s),
            update_time=func.now(),
        )
        .returning(*targets.c)
    )


async def claim_due(
    conn: AsyncConnection, owner: str, lease_s: float, limit: int
) -> Sequence[Row[Any]]:
    """Targets whose worker died first (they are the oldest work), then due ones."""
    expired = (await conn.execute(claim_statement(owner, lease_s, limit, expired=True))).all()
    if len(expired) >= limit:
        return expired
    due = (
        await conn.execute(claim_statement(owner, lease_s, limit - len(expired), expired=False))
    ).all()
    return [*expired, *due]


async def transition(
    conn: AsyncConnection,
    target_id: int,
    *,
    owner: str,
    leaving: str,
    values: Mapping[str, Any],
) -> Row[Any] | None:
    """Move a target out of `leaving`, only while `owner` holds its lease."""
    return (
        await conn.execute(
            sql_update(targets)
            .where(
                targets.c.id == target_id,
                targets.c.state == leaving,
                targets.c.lease_owner == owner,
            )
            .values(**values, update_time=func.now())
            .returning(*targets.c)
        )
    ).first()


async def save_checkpoint(
    conn: AsyncConnection, target_id: int, owner: str, key: str, value: str
) -> bool:
    result = await conn.execute(
        sql_update(targets)
        .where(
            targets.c.id == target_id,
            targets.c.state == "sending",
            targets.c.lease_owner == owner,
        )
        .values(checkpoints=targets.c.checkpoints.op("||")(func.jsonb_build_object(key, value)))
    )
    return bool(result.rowcount)


async def extend_lease(conn: AsyncConnection, target_id: int, owner: str, lease_s: float) -> bool:
    result = await conn.execute(
        sql_update(targets)
        .where(
            targets.c.id == target_id,
            targets.c.state.in_(("claimed", "sending")),
            targets.c.lease_owner == owner,
        )
        .values(lease_expire_time=func.now() + timedelta(seconds=lease_s))
    )
    return bool(result.rowcount)


async def insert_attempt(conn: AsyncConnection, values: Mapping[str, Any]) -> None:
    await conn.execute(insert(attempts).values(**values))


async def last_attempt_message(conn: AsyncConnection, target_id: int) -> str:
    """The latest attempt's message (why a target that gives up failed)."""
    message: str | None = await conn.scalar(
        select(attempts.c.message)
        .where(attempts.c.target_id == target_id)
        .order_by(attempts.c.id.desc())
        .limit(1)
    )
    return message or ""


async def touch_post(conn: AsyncConnection, post_id: int) -> None:
    await conn.execute(
        sql_update(posts).where(posts.c.id == post_id).values(update_time=func.now())
    )


async def next_due_time(conn: AsyncConnection) -> datetime | None:
    """When the earliest waiting target is due (the workers sleep until then at most)."""
    value: datetime | None = await conn.scalar(
        select(func.min(targets.c.due_time)).where(
            targets.c.state.in_(("pending", "deferred", "scheduled"))
        )
    )
    return value


async def active_target_count(conn: AsyncConnection, post_id: int) -> int:
    return int(
        await conn.scalar(
            select(func.count()).where(
                targets.c.post_id == post_id, targets.c.state.in_(ACTIVE_TARGET_STATES)
            )
        )
        or 0
    )


# --- rate limits (ratelimits.py): blocks, and the posts X counts against its daily caps ---

RateLimitKey = tuple[str, str, str]  # platform, scope, key


async def save_rate_limits(
    conn: AsyncConnection, blocks: Sequence[tuple[RateLimitKey, datetime, str]]
) -> None:
    """Close each key until the later of its current block and the new one."""
    statement = pg_insert(rate_limits).values(
        [
            {
                "platform": platform,
                "scope": scope,
                "key": key,
                "blocked_until": until,
                "reason": reason,
            }
            for (platform, scope, key), until, reason in blocks
        ]
    )
    later = statement.excluded.blocked_until > rate_limits.c.blocked_until
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=["platform", "scope", "key"],
            set_={
                "blocked_until": func.greatest(
                    rate_limits.c.blocked_until, statement.excluded.blocked_until
                ),
                # The reason goes with the block that wins.
                "reason": case((later, statement.excluded.reason), else_=rate_limits.c.reason),
                "update_time": func.now(),
            },
        )
    )


async def rate_limits_in_force(
    conn: AsyncConnection, keys: Sequence[RateLimitKey] | None = None
) -> Sequence[Row[Any]]:
    """Blocks not yet over: of these keys, or every one (to rebuild Redis's copy)."""
    query = select(rate_limits).where(rate_limits.c.blocked_until > func.now())
    if keys is not None:
        query = query.where(
            tuple_(rate_limits.c.platform, rate_limits.c.scope, rate_limits.c.key).in_(keys)
        )
    return (await conn.execute(query)).all()


def x_posts_statement(window: timedelta, account_id: int | None) -> Select[Any]:
    """Posts X counted in the last `window` (of one account, or of the whole app), each post of
    a thread and a first comment counting one, and the oldest publish time among them."""
    weight = (
        1
        + func.coalesce(func.cardinality(posts.c.thread), 0)
        + (posts.c.first_comment != "").cast(Integer)
    )
    query = (
        select(func.coalesce(func.sum(weight), 0), func.min(targets.c.publish_time))
        .select_from(targets.join(posts, posts.c.id == targets.c.post_id))
        .where(
            targets.c.platform == "x",
            targets.c.state == "published",
            targets.c.publish_time > func.now() - window,
        )
    )
    if account_id is not None:
        query = query.where(targets.c.account_id == account_id)
    return query


async def x_posts_since(
    conn: AsyncConnection, window: timedelta, account_id: int | None
) -> tuple[int, datetime | None]:
    row = (await conn.execute(x_posts_statement(window, account_id))).one()
    return int(row[0]), row[1]
