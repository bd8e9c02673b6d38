"""Arrays bound to a statement: asyncpg's binary encoding against a text literal.

    .venv/bin/python -m bench.pg_arrays            # 8 arrays of 1,000 values, 1,000 calls

Ingestion binds about ten arrays of 1,000 values a message (server/core/pg_arrays.py). This
measures both ways of binding them on an embedded PostgreSQL: the CPU of the client process
(the server's event loop in production) and of the PostgreSQL backend (psutil, /proc) per
call, over a statement that does nothing with the arrays but count them, so what remains is
encoding, sending and parsing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from server.core.embedded import EmbeddedPostgres
from server.core.pg_arrays import int_array, text_array

RESULTS = Path(__file__).resolve().parent / "results"


def _statement(arrays: int, cast: str) -> str:
    # Counted, so that what is measured is binding, sending and parsing the arrays.
    counted = " + ".join(f"cardinality(${n}{cast})" for n in range(1, arrays + 1))
    return f"SELECT {counted}"


async def _measure(url: str, arrays: int, values: int, calls: int) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        backend = psutil.Process(await conn.fetchval("SELECT pg_backend_pid()"))
        rng = random.Random(1)
        numbers = [[rng.randrange(10**12) for _ in range(values)] for _ in range(arrays)]
        # Post ids as feeds send them: short, no quote or backslash (text_array's fast path).
        texts = [[f"post-{rng.randrange(10**9)}" for _ in range(values)] for _ in range(arrays)]
        ways: dict[str, tuple[Any, list[Any], Callable[[Any], Any]]] = {}
        for kind, columns, literal in (
            ("bigint[]", numbers, int_array),
            ("text[]", texts, text_array),
        ):
            ways[f"{kind}: asyncpg binary (list -> $n::{kind})"] = (
                await conn.prepare(_statement(arrays, f"::{kind}")),
                columns,
                lambda column: column,
            )
            ways[f"{kind}: text literal ({literal.__name__} -> $n::text::{kind})"] = (
                await conn.prepare(_statement(arrays, f"::text::{kind}")),
                columns,
                literal,
            )
        result: dict[str, Any] = {}
        for name, (statement, columns, bind) in ways.items():
            for _ in range(calls // 10):  # warm up
                await statement.fetchval(*map(bind, columns))
            client, server = time.process_time(), sum(backend.cpu_times()[:2])
            for _ in range(calls):
                assert await statement.fetchval(*map(bind, columns)) == arrays * values
            client_s = time.process_time() - client
            server_s = sum(backend.cpu_times()[:2]) - server
            per_value = 1e6 / (calls * arrays * values)
            result[name] = {
                "client_us_per_value": round(client_s * per_value, 3),
                "postgres_us_per_value": round(server_s * per_value, 3),
                "total_us_per_value": round((client_s + server_s) * per_value, 3),
            }
        return result
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arrays", type=int, default=8)
    parser.add_argument("--values", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as state:
        postgres = EmbeddedPostgres(Path(state) / "postgres")
        url = postgres.start()
        try:
            measured = asyncio.run(_measure(url, args.arrays, args.values, args.calls))
        finally:
            postgres.stop()
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "arguments": vars(args),
        "ways": measured,
    }
    text = json.dumps(result, indent=2)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"pg-arrays-{datetime.now(UTC):%Y%m%dT%H%M%S}.json").write_text(text + "\n")
    print(text, file=sys.stdout)


if __name__ == "__main__":
    main()
