"""API keys: the `api_keys` table and every statement on it.

A key is `sh_<prefix>_<secret>`: the prefix is public (it names the key in lists and logs),
the secret is 32 random bytes from `secrets` and is shown once, at creation. Only the
SHA-256 of the whole key is stored. A fast hash is right here, and argon2 or bcrypt would
be wrong: slow, salted hashes protect low-entropy passwords from guessing, but guessing a
256-bit random secret is hopeless at any hash speed, and an unsalted digest lets a call be
looked up by one unique-index probe instead of verifying candidates one by one.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    LargeBinary,
    String,
    Table,
    Text,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.core.db import metadata

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("key_hash", LargeBinary, nullable=False, unique=True),
    Column("scopes", ARRAY(Text), nullable=False),
    # Resource names (`businesses/7`) the key is bound to; empty: not bound to any tenant.
    Column("tenants", ARRAY(Text), nullable=False, server_default="{}"),
    Column("expire_time", DateTime(timezone=True)),
    Column("create_time", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_used_time", DateTime(timezone=True)),
    Column("revoke_time", DateTime(timezone=True)),
)

T = TypeVar("T")

KEY_PREFIX = "sh_"
ADMIN_SCOPE = "admin"
# `admin`, or `<service prefix>.read|write` (profiles.read, feed.write, ...).
SCOPE_PATTERN = re.compile(r"^(admin|[a-z][a-z0-9_]*\.(read|write))$")
TENANT_PATTERN = re.compile(r"^[a-z][a-zA-Z0-9]*/[^/\s]+(/[a-z][a-zA-Z0-9]*/[^/\s]+)*$")
_KEY_PATTERN = re.compile(r"^sh_([0-9a-f]{8})_([A-Za-z0-9_-]{43})$")
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def is_well_formed(key: str) -> bool:
    """A key this code could have issued; anything else is rejected without a query."""
    return _KEY_PATTERN.match(key) is not None


def parse_duration(text: str) -> timedelta:
    """`30d`, `12h`, `90m` or `3600s`."""
    match = _DURATION.match(text.strip())
    if match is None or int(match[1]) == 0:
        raise ValueError(f"not a duration like 30d, 12h, 90m or 3600s: {text!r}")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def check_scopes(scopes: Iterable[str]) -> list[str]:
    checked = list(dict.fromkeys(scopes))
    if not checked:
        raise ValueError("a key needs at least one scope")
    for scope in checked:
        if not SCOPE_PATTERN.match(scope):
            raise ValueError(f"not a scope (admin, or <service>.read / <service>.write): {scope!r}")
    return checked


def check_tenants(tenants: Iterable[str]) -> list[str]:
    checked = list(dict.fromkeys(tenants))
    for tenant in checked:
        if not TENANT_PATTERN.match(tenant):
            raise ValueError(f"not a resource name such as businesses/7: {tenant!r}")
    return checked


@dataclass(frozen=True)
class ApiKey:
    """A stored key, without its secret."""

    id: int
    name: str
    prefix: str
    scopes: tuple[str, ...]
    tenants: tuple[str, ...]
    expire_time: datetime | None
    create_time: datetime
    last_used_time: datetime | None
    revoke_time: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> ApiKey:
        return cls(
            id=row.id,
            name=row.name,
            prefix=row.prefix,
            scopes=tuple(row.scopes),
            tenants=tuple(row.tenants),
            expire_time=row.expire_time,
            create_time=row.create_time,
            last_used_time=row.last_used_time,
            revoke_time=row.revoke_time,
        )

    def state(self, now: datetime) -> str:
        if self.revoke_time is not None:
            return "revoked"
        if self.expire_time is not None and self.expire_time <= now:
            return "expired"
        return "active"


@dataclass(frozen=True)
class IssuedKey:
    """A key just created: the only time its plaintext exists outside the client."""

    key: str
    stored: ApiKey


_COLUMNS = (
    api_keys.c.id,
    api_keys.c.name,
    api_keys.c.prefix,
    api_keys.c.scopes,
    api_keys.c.tenants,
    api_keys.c.expire_time,
    api_keys.c.create_time,
    api_keys.c.last_used_time,
    api_keys.c.revoke_time,
)


def new_key() -> tuple[str, str]:
    """(key, prefix). token_urlsafe(32): 32 random bytes, 43 characters."""
    prefix = secrets.token_hex(4)
    return f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}", prefix


async def create(
    conn: AsyncConnection,
    *,
    name: str,
    scopes: Sequence[str],
    tenants: Sequence[str] = (),
    expires_in: timedelta | None = None,
) -> IssuedKey:
    if not name.strip():
        raise ValueError("a key needs a name")
    key, prefix = new_key()
    row = (
        await conn.execute(
            api_keys.insert()
            .values(
                name=name,
                prefix=prefix,
                key_hash=digest(key),
                scopes=check_scopes(scopes),
                tenants=check_tenants(tenants),
                expire_time=None if expires_in is None else func.now() + expires_in,
            )
            .returning(*_COLUMNS)
        )
    ).one()
    return IssuedKey(key, ApiKey.from_row(row))


async def find(conn: AsyncConnection, key: str) -> ApiKey | None:
    return await find_digest(conn, digest(key))


async def find_digest(conn: AsyncConnection, key_hash: bytes) -> ApiKey | None:
    row = (await conn.execute(select(*_COLUMNS).where(api_keys.c.key_hash == key_hash))).first()
    return None if row is None else ApiKey.from_row(row)


async def list_all(conn: AsyncConnection) -> list[ApiKey]:
    rows = await conn.execute(select(*_COLUMNS).order_by(api_keys.c.id))
    return [ApiKey.from_row(row) for row in rows]


async def revoke(conn: AsyncConnection, key_id: int) -> ApiKey | None:
    """Revoke an active key; None if there is no such key or it was revoked already."""
    row = (
        await conn.execute(
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.revoke_time.is_(None))
            .values(revoke_time=func.now())
            .returning(*_COLUMNS)
        )
    ).first()
    return None if row is None else ApiKey.from_row(row)


async def mark_used(conn: AsyncConnection, key_ids: Iterable[int]) -> None:
    await conn.execute(
        update(api_keys)
        .where(api_keys.c.id.in_(sorted(set(key_ids))))
        .values(last_used_time=func.now())
    )


async def now(conn: AsyncConnection) -> datetime:
    value: datetime = (await conn.execute(select(func.now()))).scalar_one()
    return value


# ---------------------------------------------------------------- outside a server
# The CLI, the development key of `make run`, and the key tests and benchmarks use.


def issue(
    database_url: str,
    *,
    name: str,
    scopes: Sequence[str],
    tenants: Sequence[str] = (),
    expires_in: timedelta | None = None,
) -> IssuedKey:
    """Create a key from synchronous code (no event loop running in this thread)."""

    async def run(engine: AsyncEngine) -> IssuedKey:
        async with engine.begin() as conn:
            return await create(
                conn, name=name, scopes=scopes, tenants=tenants, expires_in=expires_in
            )

    return run_on(database_url, run)


def run_on(database_url: str, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """Run `await work(engine)` on a short-lived engine in a fresh event loop."""
    from server.core.config import Settings
    from server.core.db import create_engine

    async def main() -> T:
        engine = create_engine(Settings(db_pool_size=1, db_max_overflow=0), database_url)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def development_key(database_url: str, path: Path) -> str:
    """The admin key `make run` prints: created on first start, kept in `path` (mode 0600).

    A later start reuses it while it is still active in this database; if it was revoked
    or the database is new, a fresh one replaces the file.
    """
    kept = path.read_text().strip() if path.exists() else ""

    async def ensure(engine: AsyncEngine) -> str | None:
        async with engine.begin() as conn:
            stored = await find(conn, kept) if is_well_formed(kept) else None
            if stored is not None and stored.state(await now(conn)) == "active":
                return None
            issued = await create(conn, name="development (make run)", scopes=[ADMIN_SCOPE])
            return issued.key

    fresh = run_on(database_url, ensure)
    if fresh is None:
        return kept
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(fresh + "\n")
    # O_CREAT's mode applies to new files only: an older file keeps its own.
    path.chmod(0o600)
    return fresh
