"""Helpers for tests that drive the real adapters against the fakes."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from server.publishing.adapters import build_adapters
from server.publishing.adapters.base import Adapter, Platform
from tests.fakes import Fakes

T = TypeVar("T")
Adapters = dict[Platform, Adapter]


def with_adapters(fakes: Fakes, test: Callable[[Adapters], Awaitable[T]], **settings: Any) -> T:
    """Runs `test` on a fresh event loop with adapters built from the fakes' settings (plus
    `settings`), closing them afterwards."""

    async def run() -> T:
        adapters = build_adapters(fakes.settings(**settings))
        try:
            return await test(adapters)
        finally:
            for adapter in adapters.values():
                await adapter.aclose()

    return asyncio.run(run())


class Checkpoints(dict[str, str]):
    """Records what an adapter checkpoints; pass it as both `resume` and `checkpoint`."""

    async def __call__(self, key: str, value: str) -> None:
        self[key] = value


def pkce() -> tuple[str, str]:
    """A code verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def assert_no_token(fakes: Fakes, *outcomes: object) -> None:
    """No outcome's text holds any token a fake ever issued."""
    tokens = [t for fake in (fakes.x, fakes.linkedin, fakes.meta) for t in fake.issued_tokens()]
    for outcome in outcomes:
        text = (
            str(outcome) + str(getattr(outcome, "message", "")) + str(getattr(outcome, "args", ""))
        )
        leaked = [t for t in tokens if t in text]
        assert not leaked, f"a token leaked into {type(outcome).__name__}"
