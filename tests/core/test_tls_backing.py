"""PostgreSQL and Redis over TLS: the cache's fast read over rediss://, AUTH failures the
cache degrades on, sslmode/sslrootcert for the engine and migrations, and a whole server
on both. The servers (tests/tls_servers.py) accept TCP clients over TLS only."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import redis
from redis.asyncio import Redis
from socialhub.v1 import profile_pb2, profile_pb2_grpc
from sqlalchemy import text

from bench import credentials
from server.core import apikeys, migrate
from server.core.cache import Cache
from server.core.db import create_engine
from server.core.resp import RespClient
from tests.harness import ServerThread, test_settings
from tests.tls_servers import TestCA, TlsPostgres, TlsRedis, test_ca

CACHE_USER, CACHE_PASSWORD = "socialhub-cache", "cache-s3cret"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return test_ca(tmp_path_factory.mktemp("tls-backing-ca"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    """A CA that signed nothing these servers present."""
    return test_ca(tmp_path_factory.mktemp("tls-backing-other-ca"))


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory, ca: TestCA) -> Iterator[TlsRedis]:
    server = TlsRedis(tmp_path_factory.mktemp("tls-backing-redis"), ca)
    server.start()
    with redis.Redis.from_url(server.url) as admin:
        # An ACL user for the cache, as a managed Redis would hand out.
        admin.acl_setuser(
            CACHE_USER, enabled=True, passwords=[f"+{CACHE_PASSWORD}"], keys=["*"],
            categories=["+@all"],
        )  # fmt: skip
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls_postgres(ca: TestCA) -> Iterator[TlsPostgres]:
    server = TlsPostgres(ca, listen=("127.0.0.1", "127.0.0.2")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def verified_url(tls_postgres: TlsPostgres, ca: TestCA) -> str:
    """What production should use: the CA and the host name checked."""
    return tls_postgres.url(sslmode="verify-full", sslrootcert=str(ca.ca_file))


def cache_url(server: TlsRedis, password: str = CACHE_PASSWORD) -> str:
    return server.url_for(f"{CACHE_USER}:{password}")


def evalsha_calls(server: TlsRedis) -> int:
    with redis.Redis.from_url(server.url) as admin:
        stats = admin.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


# ---------------------------------------------------------------- Redis


def test_cache_reads_over_rediss_go_through_the_fast_client(tls_redis: TlsRedis) -> None:
    loads = 0

    async def load() -> bytes:
        nonlocal loads
        loads += 1
        return b"serialized profile"

    async def main() -> tuple[list[bytes], Any]:
        client = Redis.from_url(cache_url(tls_redis), socket_timeout=1.0)
        cache = Cache(client, prefix="tls-fast")
        try:
            # The fast path is the only read path now: no redis-py script to fall back on.
            assert isinstance(cache._fast, RespClient)
            assert cache._fast.uses_tls
            values = [
                await cache.read_through("profile:1", tag="profiles", ttl_s=60, load=load)
                for _ in range(3)
            ]
            return values, cache.stats
        finally:
            await cache.aclose()
            await client.aclose()

    before = evalsha_calls(tls_redis)
    values, stats = asyncio.run(main())
    assert values == [b"serialized profile"] * 3
    assert (loads, stats.misses, stats.hits, stats.errors) == (1, 1, 2, 0)
    # Three reads reached Redis over TLS (it has no plain port) as the cache's EVALSHA.
    assert evalsha_calls(tls_redis) - before == 3


def test_a_wrong_password_is_a_redis_error_the_cache_degrades_on(tls_redis: TlsRedis) -> None:
    async def main() -> tuple[bytes, Any, bool]:
        client = Redis.from_url(cache_url(tls_redis, "wrong"), socket_timeout=1.0)
        cache = Cache(client, prefix="tls-wrong", retry_after_s=30)

        async def load() -> bytes:
            return b"from the database"

        try:
            value = await cache.read_through("profile:1", tag="profiles", ttl_s=60, load=load)
            again = await cache.read_through("profile:1", tag="profiles", ttl_s=60, load=load)
            assert again == value
            return value, cache.stats, cache.degraded
        finally:
            await cache.aclose()
            await client.aclose()

    value, stats, degraded = asyncio.run(main())
    assert value == b"from the database"
    # One failed AUTH, then the database only, for retry_after_s: no AUTH per call.
    assert (stats.errors, stats.bypassed, stats.hits, stats.misses) == (1, 1, 0, 0)
    assert degraded


def test_the_cache_refuses_a_redis_it_cannot_read_fast() -> None:
    from redis.asyncio.sentinel import Sentinel

    from server.core.config import Settings
    from server.core.resp import UnsupportedRedisConnection

    sentinel = Sentinel([("127.0.0.1", 26379)])  # type: ignore[no-untyped-call,unused-ignore]
    with pytest.raises(UnsupportedRedisConnection):
        Cache(sentinel.master_for("cache"))
    with pytest.raises(ValueError, match="Sentinel and Cluster are not supported"):
        Settings(redis_url="redis+sentinel://127.0.0.1:26379/cache")


# ---------------------------------------------------------------- PostgreSQL


async def _session_ssl(url: str) -> tuple[bool, str]:
    engine = create_engine(test_settings(), url)
    try:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    text("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                )
            ).one()
            return bool(row.ssl), str(row.version)
    finally:
        await engine.dispose()


def test_postgres_refuses_plain_tcp_so_these_tests_can_fail(tls_postgres: TlsPostgres) -> None:
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(tls_postgres.url(sslmode="disable"), connect_timeout=5)
    with pytest.raises(Exception, match="no encryption"):
        asyncio.run(_session_ssl(tls_postgres.url(sslmode="disable")))


@pytest.mark.parametrize("sslmode", ["require", "verify-ca", "verify-full"])
def test_the_engine_connects_with_libpq_sslmodes(
    tls_postgres: TlsPostgres, ca: TestCA, sslmode: str
) -> None:
    url = tls_postgres.url(sslmode=sslmode, sslrootcert=str(ca.ca_file))
    assert asyncio.run(_session_ssl(url)) == (True, "TLSv1.3")


def test_sslrootcert_and_the_host_name_are_checked(
    tls_postgres: TlsPostgres, ca: TestCA, other_ca: TestCA
) -> None:
    """Were sslmode and sslrootcert dropped on the way to asyncpg, these would connect."""
    untrusted = tls_postgres.url(sslmode="verify-full", sslrootcert=str(other_ca.ca_file))
    with pytest.raises(Exception, match="certificate verify failed"):
        asyncio.run(_session_ssl(untrusted))
    # 127.0.0.2 is not on the certificate: verify-ca accepts it, verify-full does not.
    other_host = {"host": "127.0.0.2", "sslrootcert": str(ca.ca_file)}
    assert asyncio.run(_session_ssl(tls_postgres.url(sslmode="verify-ca", **other_host)))[0]
    with pytest.raises(Exception, match="mismatch"):
        asyncio.run(_session_ssl(tls_postgres.url(sslmode="verify-full", **other_host)))


def test_migrations_run_over_tls(tls_postgres: TlsPostgres, verified_url: str) -> None:
    migrate.upgrade(verified_url)
    with psycopg.connect(verified_url) as conn:
        (version,) = conn.execute("SELECT version_num FROM alembic_version").fetchone() or ("",)
        (ssl_sessions,) = conn.execute("SELECT count(*) FROM pg_stat_ssl WHERE ssl").fetchone() or (
            0,
        )
    assert version
    assert ssl_sessions >= 1


# ---------------------------------------------------------------- a whole server


def test_a_server_on_tls_postgres_and_rediss_serves_get_profile_from_cache(
    tls_redis: TlsRedis, verified_url: str
) -> None:
    migrate.upgrade(verified_url)
    key = apikeys.issue(verified_url, name="tls test", scopes=[apikeys.ADMIN_SCOPE]).key
    # A generous Redis timeout: a TLS handshake on a loaded 2-core machine can take longer than
    # the default 0.25 s, and this test is about the path, not about timeouts.
    settings = test_settings(redis_timeout_s=3.0)
    server = ServerThread(settings, verified_url, cache_url(tls_redis)).start()
    try:
        assert server.app is not None
        assert server.app.cache is not None
        cache = server.app.cache
        assert cache._fast.uses_tls
        with credentials.channel(server.address, key) as channel:
            stub = profile_pb2_grpc.ProfileServiceStub(channel)
            created = stub.CreateProfile(
                profile_pb2.CreateProfileRequest(
                    profile=profile_pb2.Profile(
                        display_name="Ada Lovelace",
                        x=profile_pb2.PlatformPresence(handle="ada", followers=7),
                    )
                )
            )
            request = profile_pb2.GetProfileRequest(name=created.name)
            hits = cache.stats.hits
            before = evalsha_calls(tls_redis)
            first, second = stub.GetProfile(request), stub.GetProfile(request)
        assert first == second
        assert first.display_name == "Ada Lovelace"
        assert cache.stats.hits - hits >= 1  # the second call was served from Redis
        assert cache.stats.errors == 0
        assert evalsha_calls(tls_redis) - before >= 2
    finally:
        server.stop()
