"""Fakes of X, LinkedIn and Meta: real HTTP servers on 127.0.0.1 that speak each API closely
enough to catch an adapter's mistakes (paths, headers, status codes, error bodies, token
expiry, single-use refresh tokens, duplicates, usage headers, throttling).

    with running_fakes() as fakes:              # three servers on ephemeral ports
        settings = fakes.settings(platform_timeout_s=0.5)   # PublishingSettings at the fakes
        env = fakes.env()                       # the same as environment variables
        account = fakes.x.add_account("Ada")    # .account_id .access_token .refresh_token
        page = fakes.meta.add_page("Cafe")      # + .instagram_id, .user_access_token
        fakes.x.posts(account.account_id)       # what was published, oldest first
        fakes.reset()                           # between tests

Every fake (`fakes.x`, `fakes.linkedin`, `fakes.meta`, all `FakePlatform`) has the knobs:
    fail(endpoint, status=503, body=None, *, times=1, headers=None)
    stall(endpoint, seconds, *, times=1)         # sleeps, then handles the call
    drop(endpoint, *, times=1)                   # handles the call, then cuts the connection
    hold(endpoint, seconds, *, times=1)          # handles the call, then holds the answer
    latency(endpoint, low_s, high_s, *, seed=0)  # every call sleeps low..high first
    in_flight() -> {client port: (endpoint, "received" | "accepted" | "refused")}
    throttle_after(calls, endpoint=None)         # then the platform's own throttled answer
    expire_access_tokens(account_id=None), revoke_refresh_token(token), revoke_account(id)
    consent_as(account_id)                       # who the auto-approved consent picks
    calls(endpoint=None) -> int, posts(account_id=None, *, kind="post") -> list[FakePost]
and endpoint names are "METHOD /route/template", e.g. "POST /2/tweets", "POST /rest/posts",
"POST /{page_id}/feed", "POST /{ig_id}/media_publish" (see each fake's `app()`).
FakeMeta also has `container_delay_s`, `fail_next_container(status)`, `usage_limit`,
`throttle_code` and `regain_minutes`. FakeX has `rate_window(limit, seconds)` (POST /2/tweets:
`limit` calls per account per window, then 429 until the reset).

As a process (for `make run`'s demo): `python -m tests.fakes [--port-x N] [--port-linkedin N]
[--port-meta N]` prints the environment variables, one per line, and serves until killed.
In a process of their own, driven through a pipe (benchmarks): tests/fakes/remote.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from server.publishing.settings import PublishingSettings
from tests.fakes.linkedin import FakeLinkedIn
from tests.fakes.meta import VERSION, FakeMeta, MetaPage
from tests.fakes.platform import FakeAccount, FakePlatform, FakePost
from tests.fakes.server import ServerThread
from tests.fakes.x import FakeX

__all__ = [
    "FakeAccount",
    "FakeLinkedIn",
    "FakeMeta",
    "FakePlatform",
    "FakePost",
    "FakeX",
    "Fakes",
    "MetaPage",
    "running_fakes",
]


class Fakes:
    def __init__(self, x: FakeX, linkedin: FakeLinkedIn, meta: FakeMeta) -> None:
        self.x = x
        self.linkedin = linkedin
        self.meta = meta

    def env(self) -> dict[str, str]:
        """Environment variables that point PublishingSettings at the fakes."""
        return {
            "X_API_BASE_URL": self.x.url,
            "X_AUTHORIZE_URL": f"{self.x.url}/i/oauth2/authorize",
            "X_CLIENT_ID": self.x.client_id,
            "X_CLIENT_SECRET": self.x.client_secret,
            "LINKEDIN_API_BASE_URL": self.linkedin.url,
            "LINKEDIN_OAUTH_BASE_URL": f"{self.linkedin.url}/oauth/v2",
            "LINKEDIN_CLIENT_ID": self.linkedin.client_id,
            "LINKEDIN_CLIENT_SECRET": self.linkedin.client_secret,
            "META_GRAPH_BASE_URL": f"{self.meta.url}/{VERSION}",
            "META_AUTHORIZE_URL": f"{self.meta.url}/{VERSION}/dialog/oauth",
            "META_APP_ID": self.meta.client_id,
            "META_APP_SECRET": self.meta.client_secret,
        }

    def settings(self, **overrides: Any) -> PublishingSettings:
        """PublishingSettings at the fakes (polling Instagram every 20 ms), plus overrides."""
        values: dict[str, Any] = {k.lower(): v for k, v in self.env().items()}
        values |= {"instagram_container_poll_s": 0.02, "instagram_container_polls": 50}
        return PublishingSettings(**(values | overrides))

    def reset(self) -> None:
        for fake in (self.x, self.linkedin, self.meta):
            fake.reset()


def start_fakes(ports: tuple[int, int, int] = (0, 0, 0)) -> tuple[Fakes, list[ServerThread]]:
    fakes = Fakes(
        FakeX("x-client", "x-secret"),
        FakeLinkedIn("linkedin-client", "linkedin-secret"),
        FakeMeta("meta-app", "meta-secret"),
    )
    servers: list[ServerThread] = []
    try:
        for fake, port in zip((fakes.x, fakes.linkedin, fakes.meta), ports, strict=True):
            server = ServerThread(fake.app(), port).start()
            servers.append(server)
            fake.url = server.url
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return fakes, servers


@contextmanager
def running_fakes(ports: tuple[int, int, int] = (0, 0, 0)) -> Iterator[Fakes]:
    """The three fakes, each serving on 127.0.0.1 (ports: X, LinkedIn, Meta; 0: any)."""
    fakes, servers = start_fakes(ports)
    try:
        yield fakes
    finally:
        for server in servers:
            server.stop()
