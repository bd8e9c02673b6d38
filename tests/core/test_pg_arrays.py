"""An array literal is read by PostgreSQL as the list it was made from."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from server.core.pg_arrays import int_array, text_array
from tests.harness import Backing

LISTS = [
    [],
    [0],
    [1, -2, 3],
    [2**63 - 1, -(2**63)],  # bigint's bounds
    list(range(-500, 500)),
]


@pytest.mark.parametrize("cast", ["bigint[]", "int[]"])
def test_postgres_reads_the_literal_as_the_list(backing: Backing, cast: str) -> None:
    async def read_back() -> list[tuple[list[int], list[int]]]:
        conn = await asyncpg.connect(backing.database_url)
        try:
            statement = await conn.prepare(f"SELECT $1::text::{cast}")
            fits = [v for v in LISTS if cast == "bigint[]" or all(abs(x) < 2**31 for x in v)]
            return [(v, await statement.fetchval(int_array(v))) for v in fits]
        finally:
            await conn.close()

    for sent, read in asyncio.run(read_back()):
        assert read == sent


TEXTS = [
    [],
    [""],
    ["a", "b"],
    ["NULL", "null", " spaced ", "{braces}", "a,b", "x y"],
    ['"quoted"', "back\\slash", '\\"', "\\", '"'],
    ["ünïcødé", "日本語", "emoji 🎉", "tab\tnewline\n"],
]


def test_postgres_reads_the_text_literal_as_the_list(backing: Backing) -> None:
    async def read_back() -> list[tuple[list[str], list[str]]]:
        conn = await asyncpg.connect(backing.database_url)
        try:
            statement = await conn.prepare("SELECT $1::text::text[]")
            return [(v, await statement.fetchval(text_array(v))) for v in TEXTS]
        finally:
            await conn.close()

    for sent, read in asyncio.run(read_back()):
        assert read == sent
