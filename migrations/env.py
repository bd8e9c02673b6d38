"""Alembic environment: runs migrations over the async engine of the URL it is given."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from server.app import target_metadata
from server.core.db import engine_url

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata(),
        compare_type=True,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


# Replicas that start together migrate one at a time: the others wait here, then find the
# schema at head and do nothing.
MIGRATION_LOCK_KEY = 0x534F_4349_414C_4D47  # "SOCIALMG"


async def _run_async() -> None:
    # engine_url moves libpq's TLS parameters (sslmode, sslrootcert) where asyncpg reads them.
    url, tls_args = engine_url(config.get_main_option("sqlalchemy.url") or "")
    engine = create_async_engine(url, connect_args=tls_args)
    async with engine.connect() as connection:
        # Session-level, so it spans the transaction of every migration.
        await connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        await connection.commit()
        try:
            await connection.run_sync(_run)
            await connection.commit()
        finally:
            await connection.rollback()  # a failed migration leaves its transaction aborted
            await connection.execute(
                text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
            await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `socialhub migrate`")
asyncio.run(_run_async())
