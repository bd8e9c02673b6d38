"""The PostgreSQL and Redis a command runs against: configured, or embedded and owned."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from server.core.config import Settings
from server.core.embedded import EmbeddedPostgres, EmbeddedRedis


@dataclass(frozen=True)
class Backing:
    database_url: str
    redis_url: str
    embedded_database: bool


@contextlib.contextmanager
def backing_servers(settings: Settings, *, need_redis: bool = True) -> Iterator[Backing]:
    """Yield URLs; embedded servers started here are stopped on the way out, whatever happens."""
    with contextlib.ExitStack() as stack:
        database_url = settings.database_url
        if database_url is None:
            postgres = EmbeddedPostgres(settings.state_dir / "postgres")
            stack.callback(postgres.stop)
            database_url = postgres.start()
        redis_url = settings.redis_url or ""
        if not redis_url and need_redis:
            redis = EmbeddedRedis(settings.state_dir / "redis")
            stack.callback(redis.stop)
            redis_url = redis.start()
        yield Backing(database_url, redis_url, embedded_database=settings.database_url is None)
