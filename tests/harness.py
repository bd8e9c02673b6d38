"""Real backing servers and a real gRPC server for the tests.

PostgreSQL and Redis are the embedded ones `make run` uses, in a throwaway
state folder. The server runs in its own thread and event loop, so tests call
it through a real channel with the generated synchronous stubs, as clients do.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import psycopg

from bench import credentials
from server.app import application
from server.core import apikeys
from server.core.app import Application
from server.core.config import Settings
from server.core.embedded import EmbeddedPostgres, EmbeddedRedis
from server.publishing.settings import PublishingSettings
from tests.fakes import Fakes

T = TypeVar("T")


@dataclass
class Backing:
    postgres: EmbeddedPostgres
    redis: EmbeddedRedis
    database_url: str
    redis_url: str
    # An admin API key of this database (tests/conftest.py issues it once per session).
    admin_key: str = ""

    @classmethod
    def start(cls, state_dir: Path) -> Backing:
        postgres = EmbeddedPostgres(state_dir / "postgres", durable=False)
        redis = EmbeddedRedis(state_dir / "redis")
        return cls(postgres, redis, postgres.start(), redis.start())

    def stop(self) -> None:
        self.redis.stop()
        self.postgres.stop()

    def restart_postgres(self) -> None:
        """Start PostgreSQL again from a child interpreter.

        The wheel starts the server by forking pg_ctl, and forking this process, which
        runs gRPC threads, is not safe; the child has no gRPC and exits once it is up.
        """
        script = (
            "import sys; from pathlib import Path; "
            "from server.core.embedded import EmbeddedPostgres; "
            "EmbeddedPostgres(Path(sys.argv[1]), durable=False).start()"
        )
        subprocess.run([sys.executable, "-c", script, str(self.postgres.data_dir)], check=True)

    def sql(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.database_url, autocommit=True)

    def issue_key(self, name: str, scopes: list[str], **options: Any) -> str:
        return apikeys.issue(self.database_url, name=name, scopes=scopes, **options).key

    def channel(self, address: str, key: str | None = None) -> grpc.Channel:
        """A plaintext channel to a server of this database, sending `key` (default: admin)."""
        return credentials.channel(address, key or self.admin_key)

    def serve_env(self) -> dict[str, str]:
        """The environment of a `serve` subprocess on these servers: the URLs, and a page-token
        secret of its own (outside the embedded default, `serve` refuses the development one)."""
        return {
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "PAGE_TOKEN_SECRET": credentials.PAGE_TOKEN_SECRET,
        }


def test_settings(**overrides: Any) -> Settings:
    defaults: dict[str, Any] = {
        "port": 0,
        "metrics_port": 0,
        "health_check_interval_s": 0.2,
        "redis_retry_after_s": 0.2,
        "shutdown_grace_s": 2.0,
        "log_level": "WARNING",
    }
    return Settings(**{**defaults, **overrides})


def publishing_test_settings(fakes: Fakes, **overrides: Any) -> PublishingSettings:
    """PublishingService at the fakes, with the short waits the tests can afford."""
    defaults: dict[str, Any] = {
        "platform_timeout_s": 2.0,
        "platform_connect_timeout_s": 1.0,
        "publish_poll_s": 0.2,
        "publish_retry_base_s": 0.05,
        "publish_retry_max_s": 0.2,
        "publish_lease_s": 10.0,
    }
    return fakes.settings(**(defaults | overrides))


@dataclass
class ServerThread:
    """An Application serving from a background thread with its own event loop."""

    settings: Settings
    database_url: str
    redis_url: str
    # More Application fields (domain_settings, run_jobs, ...).
    options: dict[str, Any] = field(default_factory=dict)
    app: Application | None = None
    loop: asyncio.AbstractEventLoop | None = None
    # The tasks the app's stop left running, by name (cancelled before the loop closed).
    leftover_tasks: list[str] = field(default_factory=list)
    _thread: threading.Thread | None = None
    _ready: threading.Event = field(default_factory=threading.Event)
    _stop: asyncio.Event | None = None
    _error: BaseException | None = None

    @property
    def error(self) -> BaseException | None:
        """What the app's start or stop raised, if anything."""
        return self._error

    @property
    def address(self) -> str:
        assert self.app is not None
        return f"127.0.0.1:{self.app.port}"

    def start(self) -> ServerThread:
        self._thread = threading.Thread(target=self._serve, name="grpc-server", daemon=True)
        self._thread.start()
        self._ready.wait(60)
        if self._error is not None:
            raise RuntimeError("server failed to start") from self._error
        return self

    def _serve(self) -> None:
        self.loop = asyncio.new_event_loop()
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as error:
            self._error = error
            self._ready.set()
        finally:
            self.leftover_tasks = _cancel_leftovers(self.loop)
            self.loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        self.app = application(self.settings, self.database_url, self.redis_url, **self.options)
        await self.app.start()
        self._ready.set()
        await self._stop.wait()
        await self.app.stop()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's loop (to reach its engine or cache) and wait."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(60)

    def stop(self) -> None:
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(30)


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> list[str]:
    """Cancel the tasks still pending and let them finish, as asyncio.run does before it
    closes its loop (a task left to the garbage collector runs its cleanup without a loop);
    return their names."""
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()

    async def finished() -> None:
        await asyncio.gather(*tasks, return_exceptions=True)

    loop.run_until_complete(finished())
    return sorted(task.get_name() for task in tasks)


test_settings.__test__ = False  # type: ignore[attr-defined]  # a factory, not a test


@dataclass
class Isolated:
    """PostgreSQL, Redis and a server of one test's own (the `isolated` fixture)."""

    backing: Backing
    server: ServerThread
    channel: grpc.Channel
