from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.bench.peers import Peer, serve
from tests.harness import Backing


@pytest.fixture(scope="session")
def baseline(backing: Backing) -> Iterator[Peer]:
    """The seed-000 peer (FastAPI, SQLAlchemy ORM, Pydantic)."""
    pytest.importorskip("fastapi", reason="the peers need the bench extra")
    with serve("seed000", backing.database_url, backing.redis_url) as peer:
        yield peer


@pytest.fixture(scope="session")
def lean(backing: Backing) -> Iterator[Peer]:
    """The lean peer (Starlette, asyncpg, orjson, Socialhub's caching)."""
    pytest.importorskip("starlette", reason="the peers need the bench extra")
    with serve("lean", backing.database_url, backing.redis_url) as peer:
        yield peer


@pytest.fixture(params=["baseline", "lean"])
def peer(request: pytest.FixtureRequest, backing: Backing) -> Peer:
    """Each peer in turn, for the checks that hold for both. Naming `backing` here puts it
    in the test's fixture closure, so the per-test cleanup runs."""
    found: Peer = request.getfixturevalue(request.param)
    return found
