"""The plans of the statements ProfileService runs use indexes on a table of 100,000 profiles.

Each statement is built by the repository's own builders, then EXPLAINed twice: with its
values inlined (the custom plan PostgreSQL makes for the first executions) and as a generic
plan over $n parameters (what asyncpg's prepared statements settle on after five runs).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.sql import ClauseElement

from server.core.pagination import KeyValue
from server.profiles import repository
from server.profiles.model import PlatformStatus, ProfileFilter, ProfileOrder
from server.profiles.servicer import PAGE_SIZE
from server.profiles.tables import PLATFORMS
from tests.harness import Backing, ServerThread
from tests.profiles.support import seed

ROWS = 100_000
INDEX_SCANS = {"Index Scan", "Index Only Scan", "Bitmap Index Scan"}
LIMIT = PAGE_SIZE.default + 1

# The most followed profiles (once ListTopProfiles) are the followers orders, descending.
ORDERS = [
    ProfileOrder(column, descending)
    for column in (
        "display_name",
        "created_at",
        "total_followers",
        *(f"{platform}_followers" for platform in PLATFORMS),
    )
    for descending in (False, True)
]
# Filters on indexed columns; platform flags are checked separately below.
FILTERS = {
    "none": ProfileFilter(),
    "zone": ProfileFilter(zone="North"),
    "zone+designation": ProfileFilter(zone="South", designation="Mayor"),
    "party_district": ProfileFilter(party_district="East District 2"),
    "constituency": ProfileFilter(constituency="West District 3 - Ward 5"),
    "designation": ProfileFilter(designation="Councillor"),
}
QUERIES = ("councillor", "sara", "mayor or minister", '"district 2" healthcare', "kumar -north")


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _explain(conn: Any, sql: str, *, generic: bool) -> list[dict[str, Any]]:
    options = "FORMAT JSON, GENERIC_PLAN" if generic else "FORMAT JSON"
    (document,) = conn.execute(f"EXPLAIN ({options}) {sql}").fetchone()
    if isinstance(document, str):
        document = json.loads(document)
    return list(_nodes(document[0]["Plan"]))


def _sql_forms(statement: ClauseElement) -> list[tuple[bool, str]]:
    inlined = statement.compile(
        dialect=postgresql.dialect(),  # type: ignore[no-untyped-call]
        compile_kwargs={"literal_binds": True},
    )
    # The asyncpg dialect renders $n placeholders with the casts it sends to the server.
    parameterised = statement.compile(dialect=asyncpg_dialect.dialect())  # type: ignore[no-untyped-call]
    return [(False, str(inlined)), (True, str(parameterised))]


def _problems(conn: Any, label: str, statement: ClauseElement) -> list[str]:
    problems = []
    for generic, sql in _sql_forms(statement):
        nodes = _explain(conn, sql, generic=generic)
        kind = "generic" if generic else "custom"
        seq = [
            n for n in nodes if n["Node Type"] == "Seq Scan" and n["Relation Name"] == "profiles"
        ]
        if seq:
            problems.append(f"{label} ({kind}): Seq Scan on profiles")
        if not any(n["Node Type"] in INDEX_SCANS for n in nodes):
            problems.append(f"{label} ({kind}): no index scan")
    return problems


def _later_position(conn: Any, order: ProfileOrder) -> Sequence[KeyValue]:
    """The keyset position a client holds after paging about a third of the way in."""
    direction = "DESC" if order.descending else "ASC"
    row = conn.execute(
        f"SELECT {order.column}, id FROM profiles"
        f" ORDER BY {order.column} {direction}, id {direction} OFFSET %s LIMIT 1",
        (ROWS // 3,),
    ).fetchone()
    return (row[0], row[1])


def _search_position(conn: Any, query: str) -> Sequence[KeyValue]:
    row = conn.execute(
        "SELECT ts_rank(search_vector, q), id"
        " FROM profiles, websearch_to_tsquery('simple', %s) q WHERE search_vector @@ q"
        " ORDER BY 1 DESC, id DESC OFFSET 10 LIMIT 1",
        (query,),
    ).fetchone()
    return (float(row[0]), row[1])


@pytest.fixture
def large_table(server: ServerThread, backing: Backing) -> Iterator[Any]:
    seed(server, ROWS)
    with backing.sql() as conn:
        conn.execute(
            "UPDATE profiles SET created_at = created_at"
            " - ((id * 7919) % 100000) * interval '1 minute'"
        )
        conn.execute("VACUUM ANALYZE profiles")
        yield conn


def test_every_read_statement_uses_an_index(large_table: Any) -> None:
    conn = large_table
    problems: list[str] = []
    for order in ORDERS:
        later = _later_position(conn, order)
        for label, profile_filter in FILTERS.items():
            for page, position in (("first", None), ("later", later)):
                statement = repository.list_page_statement(profile_filter, order, position, LIMIT)
                name = f"list {label} by {order.column} desc={order.descending} {page} page"
                problems += _problems(conn, name, statement)
    for query in QUERIES:
        for label, profile_filter in (("none", FILTERS["none"]), ("zone", FILTERS["zone"])):
            for page, position in (("first", None), ("later", _search_position(conn, query))):
                statement = repository.search_page_statement(query, profile_filter, position, LIMIT)
                problems += _problems(conn, f"search {query!r} {label} {page} page", statement)
    # Platform flags have no index of their own: the sort key's index, filtered, serves them.
    for flag in ("active", "verified"):
        for value in (True, False):
            status = PlatformStatus("instagram", **{flag: value})
            profile_filter = ProfileFilter(platform_statuses=(status,))
            for order in ORDERS:
                statement = repository.list_page_statement(profile_filter, order, None, LIMIT)
                name = f"list instagram {flag}={value} by {order.column} desc={order.descending}"
                problems += _problems(conn, name, statement)
    # Counts behind total_size (cached). A count over a platform flag reads the whole table by
    # design, as does a search for a word nearly every profile has; neither is asserted here.
    # Nor is the count of every profile: it reads every row either way, and whether a Seq Scan
    # or an index-only scan is cheaper depends on the row width, not on a missing index.
    for label, profile_filter in FILTERS.items():
        if label == "none":
            continue
        problems += _problems(conn, f"count {label}", repository.count_statement(profile_filter))
    assert not problems, "\n".join(problems)
