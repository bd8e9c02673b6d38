"""Arrays for PostgreSQL as text literals, for statements that take thousands of values.

asyncpg encodes a list bound to an array parameter value by value in the binary format, with
an `isinstance` check against `collections.abc` for each (to find nested arrays), and it
accepts no custom codec for array types. A literal is built in C instead (`str()` of a list
of ints; one `join` of texts), and PostgreSQL parses it (`$1::text::bigint[]`,
`$1::text::text[]`). Measured on the project's machine (`python -m bench.pg_arrays`, 8 arrays
of 1,000 values, µs of CPU per value, client / PostgreSQL): bigint binary 0.19 / 0.02, text
0.10 / 0.08; text[] binary 0.33 / 0.07, literal 0.04 / 0.06. Less CPU all told, and much less
on the server's event loop, which every call of a replica shares: in the ingestion
benchmark, 1.2-2.4 µs less server CPU per snapshot (docs/ANALYTICS.md). Worth it where a
statement binds thousands of values, as ingestion's do.
"""

from __future__ import annotations


def int_array(values: list[int]) -> str:
    """The literal of `values` (Python ints; not bools, whose text is `True`), for a
    parameter cast with `::text::bigint[]` (or `int[]`, `smallint[]`)."""
    # "[1, 2]" -> "{1, 2}": array_in takes the spaces around elements.
    return "{" + str(values)[1:-1] + "}"


def text_array(values: list[str]) -> str:
    """The literal of `values` (no NUL in any, as PostgreSQL's text has none), for a
    parameter cast with `::text::text[]`."""
    if not values:
        return "{}"
    # Every element quoted, so commas, braces, spaces and NULL mean nothing in it; only a
    # quote or a backslash needs escaping, and one scan of the joined text finds either (its
    # separators hold two quotes each).
    joined = '","'.join(values)
    if joined.count('"') != 2 * (len(values) - 1) or "\\" in joined:
        joined = '","'.join(v.replace("\\", "\\\\").replace('"', '\\"') for v in values)
    return '{"' + joined + '"}'
