"""Database engine, schema metadata and helpers shared by every domain."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from sqlalchemy import URL, ClauseElement, MetaData, Row, exc, make_url
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry

from server.core.config import Settings

# Constraint names are part of the schema that migrations compare against.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def async_url(url: str) -> str:
    """Accept plain postgres:// URLs from operators and use the asyncpg driver."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError(f"not a PostgreSQL URL: {url.split('@')[-1]}")


# libpq's TLS parameters (sslmode, sslrootcert, ...), which asyncpg reads from a DSN only.
# SQLAlchemy's asyncpg dialect hands every URL query parameter to asyncpg.connect() as a
# keyword argument, and connect() rejects these ("unexpected keyword argument 'sslmode'").
_LIBPQ_TLS_PARAMETERS = frozenset(
    {
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "sslpassword",
        "sslcrl",
        "sslnegotiation",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
    }
)


def engine_url(url: str) -> tuple[URL, dict[str, Any]]:
    """The SQLAlchemy URL for `url` (any postgres:// spelling), and the connect arguments
    that carry its libpq TLS parameters to asyncpg.

    They travel as a host-less DSN, which asyncpg merges with the host, port and credentials
    SQLAlchemy passes, so they mean what they mean to libpq and psql: `sslmode=require`
    encrypts (and checks the CA too if `sslrootcert` is given), `verify-full` also checks the
    host name, PGSSLMODE and ~/.postgresql/root.crt apply when unset.
    """
    parsed = make_url(async_url(url))
    tls = {
        name: value if isinstance(value, str) else value[-1]  # repeated: the last one, as libpq
        for name, value in parsed.query.items()
        if name in _LIBPQ_TLS_PARAMETERS
    }
    if not tls:
        return parsed, {}
    dsn = "postgresql://?" + urllib.parse.urlencode(tls)
    return parsed.difference_update_query(tls), {"dsn": dsn}


class CountingPool(AsyncAdaptedQueuePool):
    """SQLAlchemy's async pool, also counting the checkouts that wait for a connection
    (the metrics' pool waiting gauge and waits counter): SQLAlchemy keeps no such count."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waiting = 0
        self.waits = 0

    @property
    def capacity(self) -> int:
        return self.size() + max(self._max_overflow, 0)

    def _do_get(self) -> ConnectionPoolEntry:
        # As QueuePool._do_get decides: a checkout waits when no connection is idle and the
        # overflow is used up (-1 is no overflow limit). One event loop: nothing changes
        # between this test and the wait.
        if self.checkedin() or not -1 < self._max_overflow <= self._overflow:
            return super()._do_get()
        self.waiting += 1
        self.waits += 1
        try:
            return super()._do_get()
        finally:
            self.waiting -= 1

    def recreate(self) -> CountingPool:
        # After a database restart the engine swaps in a new pool: the count goes on.
        pool = super().recreate()
        assert isinstance(pool, CountingPool)
        pool.waits = self.waits
        return pool


def create_engine(settings: Settings, url: str) -> AsyncEngine:
    sqlalchemy_url, tls_args = engine_url(url)
    return create_async_engine(
        sqlalchemy_url,
        poolclass=CountingPool,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_s,
        pool_recycle=settings.db_pool_recycle_s,
        pool_pre_ping=settings.db_pool_pre_ping,
        connect_args={
            **tls_args,
            "timeout": settings.db_pool_timeout_s,
            "server_settings": {
                "statement_timeout": str(settings.db_statement_timeout_ms),
                # JIT compilation costs more than it saves on short OLTP queries.
                "jit": "off",
                "application_name": "socialhub",
            },
        },
    )


def autocommit_reads(engine: AsyncEngine) -> AsyncEngine:
    """The same pool, for reads: no BEGIN and no ROLLBACK, two round trips fewer per call.

    Reads see nothing different: under READ COMMITTED every statement takes its own
    snapshot anyway. Server-side cursors (streams) need a transaction and keep `engine`.
    """
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def columns_of(row: Any) -> Any:
    """Name -> value access to a SQLAlchemy Row or an asyncpg Record (from CompiledQuery)."""
    return row._mapping if isinstance(row, Row) else row


class CompiledQuery:
    """A hot read compiled once for asyncpg and run on the pooled connection's driver.

    SQLAlchemy spends more CPU building, keying and wrapping a one-row lookup than asyncpg
    spends running it (docs/BENCHMARKS.md); this keeps the SQL in the repository, written
    with SQLAlchemy, and skips that per-call machinery. Rows are asyncpg Records.
    """

    def __init__(self, statement: ClauseElement) -> None:
        compiled = statement.compile(dialect=asyncpg_dialect.dialect())  # type: ignore[no-untyped-call]
        self.sql = str(compiled)
        self._names = tuple(getattr(compiled, "positiontup", None) or ())
        # Values bound in the statement itself; calls may give (or override) the others.
        self._bound = dict(compiled.params)

    def _args(self, values: dict[str, Any]) -> list[Any]:
        return [values[name] if name in values else self._bound[name] for name in self._names]

    async def fetch(self, conn: AsyncConnection, **values: Any) -> list[asyncpg.Record]:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        try:
            rows: list[asyncpg.Record] = await driver.fetch(self.sql, *self._args(values))
            return rows
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as error:
            # As SQLAlchemy does for its own statements: never pool a broken connection.
            raw.invalidate(error)
            raise

    async def batches(
        self, conn: AsyncConnection, size: int, **values: Any
    ) -> AsyncIterator[list[asyncpg.Record]]:
        """The rows `size` at a time from a server-side cursor: memory holds one batch."""
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        async with contextlib.AsyncExitStack() as stack:
            # A cursor needs a transaction; join the one SQLAlchemy began on this connection.
            if not driver.is_in_transaction():
                await stack.enter_async_context(driver.transaction())
            cursor = await driver.cursor(self.sql, *self._args(values))
            while batch := await cursor.fetch(size):
                yield batch


def is_retryable_conflict(error: BaseException) -> bool:
    """A deadlock or serialization failure: the transaction was rolled back, a retry may pass."""
    cause = getattr(getattr(error, "orig", None), "__cause__", None)
    return isinstance(
        cause,
        asyncpg.exceptions.DeadlockDetectedError | asyncpg.exceptions.SerializationError,
    )


def is_database_unavailable(error: BaseException) -> bool:
    """True for errors that mean "cannot reach the database", as opposed to a bad query."""
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, exc.TimeoutError | exc.OperationalError | exc.InterfaceError):
        return True
    if isinstance(error, exc.DBAPIError) and error.orig is not None:
        error = error.orig.__cause__ or error.orig
    return isinstance(
        error,
        OSError
        | asyncio.TimeoutError
        | asyncpg.exceptions.CannotConnectNowError
        | asyncpg.exceptions.ConnectionDoesNotExistError
        | asyncpg.exceptions.AdminShutdownError
        | asyncpg.exceptions.InterfaceError,
    )


def unique_violation(error: exc.IntegrityError) -> str | None:
    """The constraint a unique violation hit, or None for any other integrity error."""
    cause = getattr(error.orig, "__cause__", None)
    if isinstance(cause, asyncpg.exceptions.UniqueViolationError):
        return str(cause.constraint_name)
    return None
