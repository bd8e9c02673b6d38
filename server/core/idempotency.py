"""Request ids (AIP-155): a retried mutation returns what the first call created.

The claim is written in the caller's transaction, so a failed request leaves no
claim behind and a concurrent retry waits on the primary key until the first
call commits or rolls back.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from google.protobuf.message import Message
from sqlalchemy import BigInteger, Column, DateTime, Index, String, Table, delete, func, select
from sqlalchemy.dialects.postgresql import UUID, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.core.db import metadata
from server.core.errors import InvalidArgument

request_ids = Table(
    "request_ids",
    metadata,
    Column("scope", String(64), primary_key=True),
    Column("request_id", UUID(as_uuid=True), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("resource_id", BigInteger),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_request_ids_created_at", "created_at"),
)

RETENTION = timedelta(days=1)
T = TypeVar("T")


def parse_request_id(value: str, field: str = "request_id") -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument.single(field, "must be a UUID") from None


def request_hash(request: Message) -> str:
    return hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()


async def claim(
    conn: AsyncConnection, scope: str, request_id: uuid.UUID, digest: str
) -> int | None:
    """Claim `request_id`; return the resource id recorded by an earlier call, if any."""
    inserted = await conn.execute(
        insert(request_ids)
        .values(scope=scope, request_id=request_id, request_hash=digest)
        .on_conflict_do_nothing()
        .returning(request_ids.c.request_id)
    )
    if inserted.first() is not None:
        return None
    earlier = (
        await conn.execute(
            select(request_ids.c.request_hash, request_ids.c.resource_id).where(
                request_ids.c.scope == scope, request_ids.c.request_id == request_id
            )
        )
    ).one()
    if earlier.request_hash != digest:
        raise InvalidArgument.single(
            "request_id", "was already used for a different request", reason="REQUEST_ID_REUSED"
        )
    return int(earlier.resource_id)


async def replay(
    conn: AsyncConnection,
    scope: str,
    request_id: uuid.UUID | None,
    digest: str,
    load: Callable[[AsyncConnection, int], Awaitable[T]],
) -> T | None:
    """Claim `request_id`; if an earlier call used it, `load` the resource that call made."""
    if request_id is None:
        return None
    earlier_id = await claim(conn, scope, request_id, digest)
    return None if earlier_id is None else await load(conn, earlier_id)


async def record(
    conn: AsyncConnection, scope: str, request_id: uuid.UUID, resource_id: int
) -> None:
    await conn.execute(
        request_ids.update()
        .where(request_ids.c.scope == scope, request_ids.c.request_id == request_id)
        .values(resource_id=resource_id)
    )


async def purge_expired_request_ids(engine: AsyncEngine) -> int:
    """Forget request ids older than RETENTION; a retry that late is a new request."""
    async with engine.begin() as conn:
        result = await conn.execute(
            delete(request_ids).where(request_ids.c.created_at < func.now() - RETENTION)
        )
    return int(result.rowcount)
