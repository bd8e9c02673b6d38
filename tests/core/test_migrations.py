from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from server.app import target_metadata
from server.core import migrate
from tests.harness import Backing

DATABASE = "migration_check"


@pytest.fixture
def scratch_database(backing: Backing) -> Iterator[str]:
    with backing.sql() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        conn.execute(f"CREATE DATABASE {DATABASE}")
    yield backing.database_url.replace("/postgres?", f"/{DATABASE}?")
    with backing.sql() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


def _schema_drift(database_url: str) -> list[object]:
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, target_metadata()))
    finally:
        engine.dispose()


def _tables(database_url: str) -> set[str]:
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
            return {row[0] for row in rows}
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_leaves_no_drift(scratch_database: str) -> None:
    migrate.upgrade(scratch_database)
    expected_tables = set(target_metadata().tables)
    assert expected_tables <= _tables(scratch_database)

    migrate.downgrade(scratch_database, "base")
    assert _tables(scratch_database) == {"alembic_version"}

    migrate.upgrade(scratch_database)
    assert _schema_drift(scratch_database) == []
