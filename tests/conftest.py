from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2_grpc
from socialhub.v1 import feed_pb2_grpc, profile_pb2_grpc

from server.core import migrate
from tests.harness import Backing, ServerThread, test_settings

# Every table the tests may fill; emptied before each test.
TABLES = ("profiles", "request_ids", "posts", "follows", "comments", "likes", "activity")


@pytest.fixture(scope="session")
def backing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backing]:
    servers = Backing.start(Path(tmp_path_factory.mktemp("state")))
    try:
        migrate.upgrade(servers.database_url)
        yield servers
    finally:
        servers.stop()


@pytest.fixture(scope="session")
def server(backing: Backing) -> Iterator[ServerThread]:
    thread = ServerThread(test_settings(), backing.database_url, backing.redis_url).start()
    yield thread
    thread.stop()


@pytest.fixture(scope="session")
def channel(server: ServerThread) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.address) as chan:
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
        conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    import redis

    with redis.Redis.from_url(servers.redis_url) as client:
        client.flushdb()
