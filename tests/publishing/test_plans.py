"""The publishing hot queries use their indexes: the workers' claims (every replica, every
second at most) and a business's post listing, on 200,000 analyzed targets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect

from server.publishing import repository
from tests.harness import Backing

POSTS = 200_000


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


@pytest.fixture
def seeded(backing: Backing) -> None:
    """Ten businesses; nearly every target published long ago, a few due, a few leased."""
    with backing.sql() as conn:
        conn.execute(
            "INSERT INTO businesses (display_name) SELECT 'B' || i FROM generate_series(1, 10) i"
        )
        conn.execute(
            "INSERT INTO publishing_accounts (business_id, platform, platform_account_id) "
            "SELECT 1 + i % 10, 'x', i::text FROM generate_series(1, 100) i"
        )
        conn.execute(
            "INSERT INTO publishing_posts (business_id, text, create_time) "
            f"SELECT 1 + i % 10, 'post ' || i, now() - i * interval '1 minute' "
            f"FROM generate_series(1, {POSTS}) i"
        )
        conn.execute(
            "INSERT INTO publishing_targets (post_id, account_id, platform, state, due_time, "
            "lease_owner, lease_expire_time, publish_time) "
            "SELECT p.id, 1 + p.id % 100, 'x', "
            "  CASE WHEN p.id % 2000 = 0 THEN 'pending' WHEN p.id % 5000 = 1 THEN 'sending' "
            "  ELSE 'published' END, p.create_time, "
            "  CASE WHEN p.id % 5000 = 1 THEN 'w' END, "
            "  CASE WHEN p.id % 5000 = 1 THEN now() + interval '1 minute' END, "
            "  CASE WHEN p.id % 2000 <> 0 AND p.id % 5000 <> 1 THEN p.create_time END "
            "FROM publishing_posts p"
        )
        conn.execute(
            "ANALYZE businesses, publishing_accounts, publishing_posts, publishing_targets"
        )


def _plan(backing: Backing, statement: Any) -> list[dict[str, Any]]:
    sql = statement.compile(
        dialect=psycopg_dialect(),  # type: ignore[no-untyped-call]
        compile_kwargs={"render_postcompile": True},
    )
    engine = create_engine(
        backing.database_url.replace("postgresql://", "postgresql+psycopg://", 1)
    )
    try:
        with engine.connect() as conn:
            params = sql.construct_params()
            processors = sql._bind_processors
            bound = {k: processors[k](v) if k in processors else v for k, v in params.items()}
            raw = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {sql}", bound).scalar_one()
    finally:
        engine.dispose()
    document = raw if isinstance(raw, list) else json.loads(raw)
    return list(_nodes(document[0]["Plan"]))


def _index_names(nodes: list[dict[str, Any]], relation: str) -> set[str]:
    scans = [n for n in nodes if n.get("Relation Name") == relation]
    assert scans, nodes
    assert not [n for n in scans if n["Node Type"] == "Seq Scan"], json.dumps(nodes, indent=1)
    return {n.get("Index Name", "") for n in nodes}


def test_the_workers_claims_read_only_their_partial_indexes(backing: Backing, seeded: None) -> None:
    due = _plan(backing, repository.claim_statement("w", 60, 16, expired=False))
    expired = _plan(backing, repository.claim_statement("w", 60, 16, expired=True))

    assert "ix_publishing_targets_due_time" in _index_names(due, "publishing_targets")
    assert "ix_publishing_targets_lease_expire_time" in _index_names(expired, "publishing_targets")


def test_a_business_post_listing_uses_its_index(backing: Backing, seeded: None) -> None:
    first = _plan(backing, repository.list_posts_statement(3, [], None, 51))
    clauses = repository.post_filter_clauses(("published",), None, None, None)
    filtered = _plan(backing, repository.list_posts_statement(3, clauses, None, 51))

    for nodes in (first, filtered):
        assert "ix_publishing_posts_business_id_create_time_id" in _index_names(
            nodes, "publishing_posts"
        )


def test_x_daily_caps_count_from_their_indexes(backing: Backing, seeded: None) -> None:
    window = timedelta(hours=24)
    per_user = _plan(backing, repository.x_posts_statement(window, account_id=7))
    per_app = _plan(backing, repository.x_posts_statement(window, account_id=None))

    assert "ix_publishing_targets_account_id_publish_time" in _index_names(
        per_user, "publishing_targets"
    )
    assert "ix_publishing_targets_platform_state_publish_time" in _index_names(
        per_app, "publishing_targets"
    )
