"""What a domain declares to plug into the service, and what it gets to build itself.

The composition root (server/app.py) lists the domains; everything that must know them all
(the gRPC services, health, reflection, authorization scopes, migrations' metadata, periodic
jobs, settings, demo data, the tests' cleanup) loops over that list. Core knows no domain.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import grpc
from pydantic_settings import BaseSettings
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from server.core.cache import Cache
from server.core.config import Settings
from server.core.pagination import PageTokens

if TYPE_CHECKING:
    from server.core.metrics import Metrics

T = TypeVar("T")
S = TypeVar("S", bound=BaseSettings)

# Demo volumes by name ("profiles", "posts", ...): each domain reads the ones it knows.
Volumes = Mapping[str, int]


@dataclass(frozen=True)
class Job:
    """A periodic job: `run_once` returns how many rows it handled (logged when not 0)."""

    name: str
    interval_s: float
    run_once: Callable[[], Awaitable[int]]


@dataclass(frozen=True)
class Service:
    """One gRPC service of a domain: `scope` prefixes its scopes (`<scope>.read`, `.write`)."""

    name: str
    scope: str
    register: Callable[[grpc.aio.Server], None]


class Worker(Protocol):
    """Background work every replica runs while it serves (unlike a Job, which runs on the
    one replica holding the jobs' lock): started after the server, stopped before it."""

    def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True)
class Plugin:
    """What a built domain contributes to one server process."""

    services: Sequence[Service]
    jobs: Sequence[Job] = ()
    workers: Sequence[Worker] = ()


class DemoData(Protocol):
    async def is_empty(self, engine: AsyncEngine) -> bool: ...

    async def load(self, engine: AsyncEngine, volumes: Volumes, *, progress: bool) -> None: ...


@dataclass
class DomainContext:
    """Shared machinery for building domains, and the public APIs domains offer each other.

    A domain `provide`s an object of its public module (hooks, say) while it builds; a domain
    listed after it `require`s it by type. Nothing else passes between domains.
    """

    engine: AsyncEngine
    cache: Cache
    tokens: PageTokens
    settings: Settings
    domain_settings: Mapping[type[BaseSettings], BaseSettings] = field(default_factory=dict)
    # For a domain's own connections outside the pool (a LISTEN connection, say).
    database_url: str = ""
    # The process's Prometheus metrics (None with METRICS_ENABLED=false), for a domain that
    # reports them (server.core.metrics_sample reads them back).
    metrics: Metrics | None = None
    _apis: dict[type[Any], Any] = field(default_factory=dict)

    def settings_for(self, kind: type[S]) -> S:
        given = self.domain_settings.get(kind)
        return given if isinstance(given, kind) else kind()

    def provide(self, api: object) -> None:
        self._apis[type(api)] = api

    def require(self, kind: type[T]) -> T:
        api = self._apis.get(kind)
        if not isinstance(api, kind):
            raise LookupError(f"no domain provides {kind.__name__}; check the order of DOMAINS")
        return api


@dataclass(frozen=True)
class Domain:
    name: str
    # The tables this domain owns (and alone writes), as its migrations create them.
    tables: Sequence[Table]
    build: Callable[[DomainContext], Plugin]
    settings: type[BaseSettings] | None = None
    demo: DemoData | None = None
