"""Every SQL statement of the profiles domain."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Row,
    Select,
    any_,
    bindparam,
    delete,
    func,
    literal_column,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from server.core.db import CompiledQuery
from server.core.errors import InvalidArgument
from server.core.pagination import KeyValue
from server.profiles.model import ProfileFilter, ProfileOrder, ProfileValues
from server.profiles.tables import FILTER_COLUMNS, PLATFORMS, PROFILE_COLUMNS, profiles

AnySelect = Select[*tuple[Any, ...]]
SEARCH_CONFIG: ColumnElement[Any] = literal_column("'simple'::regconfig")


def _conditions(profile_filter: ProfileFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [
        profiles.c[column] == getattr(profile_filter, column)
        for column in FILTER_COLUMNS
        if getattr(profile_filter, column) is not None
    ]
    for status in profile_filter.platform_statuses:
        if status.active is not None:
            conditions.append(profiles.c[f"{status.platform}_active"].is_(status.active))
        if status.verified is not None:
            conditions.append(profiles.c[f"{status.platform}_verified"].is_(status.verified))
    return conditions


def _after(
    key: ColumnElement[Any], position: Sequence[KeyValue] | None, descending: bool
) -> list[ColumnElement[bool]]:
    """Keyset condition as a row comparison, which PostgreSQL turns into one index range."""
    if position is None:
        return []
    row = tuple_(key, profiles.c.id)
    return [row < tuple(position) if descending else row > tuple(position)]


async def insert(conn: AsyncConnection, values: ProfileValues) -> Row[Any]:
    result = await conn.execute(profiles.insert().values(values).returning(*PROFILE_COLUMNS))
    return result.one()


async def get(
    conn: AsyncConnection, profile_id: int, *, for_update: bool = False
) -> Row[Any] | None:
    statement = select(*PROFILE_COLUMNS).where(profiles.c.id == profile_id)
    if for_update:
        statement = statement.with_for_update()
    return (await conn.execute(statement)).first()


@functools.cache
def _get_by_id() -> CompiledQuery:
    return CompiledQuery(
        select(*PROFILE_COLUMNS).where(profiles.c.id == bindparam("profile_id", type_=BigInteger))
    )


async def get_for_read(conn: AsyncConnection, profile_id: int) -> Any | None:
    """The hottest read (GetProfile on a cache miss), through asyncpg directly."""
    rows = await _get_by_id().fetch(conn, profile_id=profile_id)
    return rows[0] if rows else None


async def update_values(conn: AsyncConnection, profile_id: int, values: ProfileValues) -> Row[Any]:
    result = await conn.execute(
        update(profiles)
        .where(profiles.c.id == profile_id)
        .values({**values, "updated_at": func.now()})
        .returning(*PROFILE_COLUMNS)
    )
    return result.one()


async def delete_many(conn: AsyncConnection, profile_ids: Sequence[int]) -> list[int]:
    result = await conn.execute(
        delete(profiles).where(profiles.c.id.in_(profile_ids)).returning(profiles.c.id)
    )
    return [row.id for row in result]


# The *_statement builders are pure so tests can EXPLAIN exactly what the service runs.


def list_page_statement(
    profile_filter: ProfileFilter,
    order: ProfileOrder,
    position: Sequence[KeyValue] | None,
    limit: int,
) -> AnySelect:
    key = profiles.c[order.column]
    ordering = (key.desc(), profiles.c.id.desc()) if order.descending else (key, profiles.c.id)
    return (
        select(*PROFILE_COLUMNS)
        .where(*_conditions(profile_filter), *_after(key, position, order.descending))
        .order_by(*ordering)
        .limit(limit)
    )


async def list_page(
    conn: AsyncConnection,
    profile_filter: ProfileFilter,
    order: ProfileOrder,
    position: Sequence[KeyValue] | None,
    limit: int,
) -> Sequence[Any]:
    statement = list_page_statement(profile_filter, order, position, limit)
    return (await conn.execute(statement)).all()


def count_statement(profile_filter: ProfileFilter) -> AnySelect:
    return select(func.count()).select_from(profiles).where(*_conditions(profile_filter))


async def count(conn: AsyncConnection, profile_filter: ProfileFilter) -> int:
    return int((await conn.execute(count_statement(profile_filter))).scalar_one())


def search_page_statement(
    query: str,
    profile_filter: ProfileFilter,
    position: Sequence[KeyValue] | None,
    limit: int,
) -> AnySelect:
    ts_query = func.websearch_to_tsquery(SEARCH_CONFIG, query)
    rank = func.ts_rank(profiles.c.search_vector, ts_query)
    return (
        select(*PROFILE_COLUMNS, rank.label("rank"))
        .where(
            profiles.c.search_vector.op("@@")(ts_query),
            *_conditions(profile_filter),
            *_after(rank, position, descending=True),
        )
        .order_by(rank.desc(), profiles.c.id.desc())
        .limit(limit)
    )


async def search_page(
    conn: AsyncConnection,
    query: str,
    profile_filter: ProfileFilter,
    position: Sequence[KeyValue] | None,
    limit: int,
) -> Sequence[Any]:
    statement = search_page_statement(query, profile_filter, position, limit)
    try:
        return (await conn.execute(statement)).all()
    except DBAPIError as error:
        # websearch_to_tsquery nests one operator per "-" with no word between them;
        # PostgreSQL gives up past a few dozen. That is the caller's query, not our fault.
        if "tsquery stack too small" in str(error.orig):
            raise InvalidArgument.single(
                "query", "has too many operators in a row; remove some '-'"
            ) from None
        raise


async def filter_options(conn: AsyncConnection) -> dict[str, list[tuple[str, int]]]:
    """Counts per distinct value of every filter column, in one pass over the table."""
    columns = [profiles.c[name] for name in FILTER_COLUMNS]
    grouping = func.grouping(*columns).label("grouping_id")
    statement = (
        select(*columns, grouping, func.count().label("n"))
        .group_by(func.grouping_sets(*columns))
        .order_by(literal_column("n").desc())
    )
    options: dict[str, list[tuple[str, int]]] = {name: [] for name in FILTER_COLUMNS}
    for row in await conn.execute(statement):
        # GROUPING() has a 1 bit for each column not grouped in this row's set.
        for index, name in enumerate(FILTER_COLUMNS):
            bit = 1 << (len(FILTER_COLUMNS) - 1 - index)
            if not row.grouping_id & bit and row[index] is not None:
                options[name].append((row[index], row.n))
    return options


async def copy_rows(
    conn: AsyncConnection, columns: Sequence[str], records: Sequence[tuple[Any, ...]]
) -> None:
    """Bulk load with COPY: an order of magnitude faster than INSERT for seeding."""
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    await driver.copy_records_to_table("profiles", records=records, columns=list(columns))


async def is_empty(conn: AsyncConnection) -> bool:
    return (await conn.execute(select(profiles.c.id).limit(1))).first() is None


async def max_id(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(func.coalesce(func.max(profiles.c.id), 0)))).scalar_one())


# --- for other domains, through server.profiles.public ---


async def exists(conn: AsyncConnection, profile_id: int, *, lock: bool = False) -> bool:
    statement = select(profiles.c.id).where(profiles.c.id == profile_id)
    if lock:
        # FOR KEY SHARE: blocks deletion, not updates, until the transaction ends.
        statement = statement.with_for_update(read=True, key_share=True)
    return (await conn.execute(statement)).first() is not None


async def lock_existing(conn: AsyncConnection, profile_ids: Sequence[int]) -> set[int]:
    ids = bindparam("ids", sorted(set(profile_ids)), type_=ARRAY(BigInteger))
    statement = (
        select(profiles.c.id)
        # = ANY of one array, not IN of one parameter per id: one statement text whatever
        # the number of ids, compiled and prepared once (ingestion locks a batch's profiles).
        .where(profiles.c.id == any_(ids))
        .order_by(profiles.c.id)
        .with_for_update(key_share=True)  # FOR NO KEY UPDATE
    )
    return {row.id for row in await conn.execute(statement)}


async def all_ids(conn: AsyncConnection) -> list[int]:
    return [row.id for row in await conn.execute(select(profiles.c.id).order_by(profiles.c.id))]


def directory_stats_statement() -> AnySelect:
    """Profiles in total, per zone and per designation, with every platform's handle counts:
    one pass over the table (GROUPING SETS, FILTER aggregates)."""
    zone, designation = profiles.c.zone, profiles.c.designation
    platform_columns = []
    for platform in PLATFORMS:
        has_handle = profiles.c[f"{platform}_handle"].is_not(None)
        platform_columns += [
            func.count().filter(has_handle).label(f"{platform}_handles"),
            func.count()
            .filter(has_handle & profiles.c[f"{platform}_active"])
            .label(f"{platform}_active"),
            func.count()
            .filter(has_handle & profiles.c[f"{platform}_verified"])
            .label(f"{platform}_verified"),
            func.coalesce(func.sum(profiles.c[f"{platform}_followers"]), 0).label(
                f"{platform}_followers"
            ),
        ]
    return select(
        func.grouping(zone, designation).label("grouping_id"),
        zone,
        designation,
        func.count().label("profiles"),
        func.coalesce(func.sum(profiles.c.total_followers), 0).label("total_followers"),
        *platform_columns,
    ).group_by(func.grouping_sets(tuple_(), zone, designation))


async def directory_stats(conn: AsyncConnection) -> Sequence[Any]:
    return (await conn.execute(directory_stats_statement())).all()
