"""Database engine, schema metadata and helpers shared by every domain."""

from __future__ import annotations

import asyncio

import asyncpg
from sqlalchemy import MetaData, exc
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

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


def create_engine(settings: Settings, url: str) -> AsyncEngine:
    return create_async_engine(
        async_url(url),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_s,
        pool_recycle=settings.db_pool_recycle_s,
        pool_pre_ping=settings.db_pool_pre_ping,
        connect_args={
            "timeout": settings.db_pool_timeout_s,
            "server_settings": {
                "statement_timeout": str(settings.db_statement_timeout_ms),
                # JIT compilation costs more than it saves on short OLTP queries.
                "jit": "off",
                "application_name": "socialhub",
            },
        },
    )


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
