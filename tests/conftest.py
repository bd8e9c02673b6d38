from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2_grpc
from socialhub.v1 import feed_pb2_grpc, profile_pb2_grpc

from server.app import data_tables
from server.core import migrate
from server.core.embedded import EmbeddedRedis
from server.publishing.settings import PublishingSettings
from tests.fakes import Fakes, running_fakes
from tests.harness import (
    Backing,
    Isolated,
    ServerThread,
    publishing_test_settings,
    test_settings,
)


@pytest.fixture(scope="session", autouse=True)
def free_metrics_ports() -> Iterator[None]:
    """Servers the tests start as processes answer /metrics on a free port, not on 9464:
    several run at once, and a `make run` may hold 9464."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("METRICS_PORT", "0")
        yield


@pytest.fixture(scope="session")
def backing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backing]:
    servers = Backing.start(Path(tmp_path_factory.mktemp("state")))
    try:
        migrate.upgrade(servers.database_url)
        # Not test data: api_keys is left out of the per-test cleanup, so this key lasts.
        servers.admin_key = servers.issue_key("tests (admin)", ["admin"])
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def fresh_database(backing: Backing) -> Iterator[str]:
    """An empty database of the test's own on the session's PostgreSQL, not migrated: for
    replicas started on a fresh database, and for servers whose publishing workers must not
    share rows with the session server's."""
    name = f"fresh_{uuid.uuid4().hex[:8]}"
    with backing.sql() as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield backing.database_url.replace("/postgres?", f"/{name}?")
    finally:
        with backing.sql() as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis of the test's own, for tests that stop it: a failed restart breaks only them."""
    redis = EmbeddedRedis(tmp_path / "own-redis")
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


@pytest.fixture
def isolated(tmp_path: Path) -> Iterator[Isolated]:
    """PostgreSQL, Redis and a server of the test's own, for tests that stop PostgreSQL or
    Redis: if a restart fails, the session's servers, and every other test, are unharmed."""
    servers = Backing.start(tmp_path / "own-state")
    try:
        migrate.upgrade(servers.database_url)
        servers.admin_key = servers.issue_key("isolated (admin)", ["admin"])
        thread = ServerThread(test_settings(), servers.database_url, servers.redis_url).start()
        try:
            with servers.channel(thread.address) as chan:
                yield Isolated(servers, thread, chan)
        finally:
            thread.stop()
    finally:
        servers.stop()


@pytest.fixture(scope="session")
def fakes() -> Iterator[Fakes]:
    """Local HTTP fakes of X, LinkedIn and Meta (tests/fakes), which the session server's
    PublishingService talks to."""
    with running_fakes() as running:
        yield running


@pytest.fixture(scope="session")
def server(backing: Backing, fakes: Fakes) -> Iterator[ServerThread]:
    thread = ServerThread(
        test_settings(),
        backing.database_url,
        backing.redis_url,
        {"domain_settings": {PublishingSettings: publishing_test_settings(fakes)}},
    ).start()
    yield thread
    thread.stop()


@pytest.fixture(scope="session")
def channel(backing: Backing, server: ServerThread) -> Iterator[grpc.Channel]:
    """To the session server, which authenticates calls: with the admin key."""
    with backing.channel(server.address) as chan:
        yield chan


@pytest.fixture
def profiles(channel: grpc.Channel) -> profile_pb2_grpc.ProfileServiceStub:
    return profile_pb2_grpc.ProfileServiceStub(channel)


@pytest.fixture
def feed(channel: grpc.Channel) -> feed_pb2_grpc.FeedServiceStub:
    return feed_pb2_grpc.FeedServiceStub(channel)


@pytest.fixture
def health(channel: grpc.Channel) -> health_pb2_grpc.HealthStub:
    return health_pb2_grpc.HealthStub(channel)


@pytest.fixture(autouse=True)
def clean_data(request: pytest.FixtureRequest) -> None:
    """Each test starts with empty tables and an empty cache."""
    if "backing" not in request.fixturenames:
        return
    servers: Backing = request.getfixturevalue("backing")
    with servers.sql() as conn:
        # The session server's publishing worker may hold row locks on the tables TRUNCATE
        # locks in its own order: PostgreSQL breaks such a deadlock by failing one side.
        for attempt in range(5):
            try:
                conn.execute(f"TRUNCATE {', '.join(data_tables())} RESTART IDENTITY CASCADE")
                break
            except psycopg.errors.DeadlockDetected:
                if attempt == 4:
                    raise
    import redis

    with redis.Redis.from_url(servers.redis_url) as client:
        client.flushdb()
