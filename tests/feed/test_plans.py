"""The feed's hot queries use their indexes: EXPLAIN on a realistic, analyzed data set."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect

from server.feed import repository
from tests.feed.support import T0, copy_follows, copy_posts, copy_profiles
from tests.harness import Backing

TAGS = [f"tag{i}" for i in range(40)]
COMMON_TAGS = ["education", "budget"]


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _tags(rng: random.Random) -> list[str]:
    """1 to 3 of 40 rare tags, plus two common ones (each on a fifth of the posts): the
    combination is on about 4% of posts. On a JSONB document PostgreSQL estimated such a pair
    from its sample and took a bitmap scan that sorted every match (211 ms, docs/FEED.md);
    the text[] column's element statistics estimate it from each tag's frequency."""
    tags = rng.sample(TAGS, rng.randint(1, 3))
    tags += [common for common in COMMON_TAGS if rng.random() < 0.2]
    return tags


@pytest.fixture
def seeded(backing: Backing) -> dict[str, int]:
    rng = random.Random(3)
    ids = copy_profiles(backing, 2_000)
    copy_posts(
        backing,
        (
            (
                rng.choice(ids),
                f"post {i}",
                _tags(rng),
                T0 + timedelta(seconds=i * 7),
            )
            for i in range(50_000)
        ),
    )
    pairs = {(a, b) for a in ids for b in rng.sample(ids, 20) if a != b}
    copy_follows(backing, sorted(pairs))
    with backing.sql() as conn:
        conn.execute("ANALYZE profiles, posts, follows")
        (busiest,) = conn.execute(
            "SELECT followee_id FROM follows GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
        ).fetchone() or (0,)
    return {"viewer": ids[10], "author": ids[20], "busiest": busiest}


def _plan(backing: Backing, statement: Any) -> list[dict[str, Any]]:
    sql = statement.compile(dialect=psycopg_dialect())  # type: ignore[no-untyped-call]
    engine = create_engine(
        backing.database_url.replace("postgresql://", "postgresql+psycopg://", 1)
    )
    try:
        with engine.connect() as conn:
            # Bind processors (JSONB, timestamps) run as they do for the real query.
            params = sql.construct_params()
            processors = sql._bind_processors
            bound = {k: processors[k](v) if k in processors else v for k, v in params.items()}
            raw = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {sql}", bound).scalar_one()
    finally:
        engine.dispose()
    document = raw if isinstance(raw, list) else json.loads(raw)
    return list(_nodes(document[0]["Plan"]))


def _assert_indexed(nodes: list[dict[str, Any]], relation: str) -> None:
    scans = [n for n in nodes if n.get("Relation Name") in ("posts", "follows")]
    assert scans, nodes
    assert not [n for n in scans if n["Node Type"] == "Seq Scan"], json.dumps(nodes, indent=1)
    assert any(
        n.get("Relation Name") == relation
        and n["Node Type"] in ("Index Scan", "Index Only Scan", "Bitmap Heap Scan")
        for n in nodes
    ), json.dumps(nodes, indent=1)


def test_hot_queries_use_indexes(backing: Backing, seeded: dict[str, int]) -> None:
    deep = (T0 + timedelta(days=2), 10**9)
    statements = {
        "timeline": (repository.timeline_statement(seeded["viewer"], None, 21), "posts"),
        "timeline deep": (repository.timeline_statement(seeded["viewer"], deep, 21), "posts"),
        "author": (repository.author_page_statement(seeded["author"], None, 21), "posts"),
        "author deep": (repository.author_page_statement(seeded["author"], deep, 21), "posts"),
        "author stream": (repository.author_posts(seeded["author"], deep).limit(21), "posts"),
        "tag": (repository.tag_statement(["tag7"], None, 21), "posts"),
        "two tags": (repository.tag_statement(["tag7", "tag8"], deep, 21), "posts"),
        "two common tags": (repository.tag_statement(COMMON_TAGS, None, 21), "posts"),
        "two common tags deep": (repository.tag_statement(COMMON_TAGS, deep, 21), "posts"),
        "followers": (repository.followers_statement(seeded["busiest"], None, 51), "follows"),
        "followers deep": (
            repository.followers_statement(seeded["busiest"], (T0, 10**9), 51),
            "follows",
        ),
        "following": (repository.following_statement(seeded["viewer"], None, 51), "follows"),
    }
    for name, (statement, relation) in statements.items():
        nodes = _plan(backing, statement)
        try:
            _assert_indexed(nodes, relation)
        except AssertionError as error:
            raise AssertionError(f"{name}: {error}") from None
    timeline = _plan(backing, repository.timeline_statement(seeded["viewer"], None, 21))
    per_author = [n for n in timeline if n.get("Relation Name") == "posts"]
    assert per_author[0].get("Index Name") == "ix_posts_author_id_created_at_id"
