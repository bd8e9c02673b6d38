"""Channels that send an API key, for the benchmarks' and the tests' clients.

Benchmarked servers run with authentication on, as production does, so every figure
includes its cost; their clients send `authorization: Bearer <key>` on every call.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, cast

import grpc

from server.core import apikeys

# Spawned load generators inherit the environment, so the key travels to them this way.
KEY_VARIABLE = "SOCIALHUB_BENCH_KEY"
# Servers outside the embedded default refuse the development page-token secret.
PAGE_TOKEN_SECRET = "bench-and-tests-page-token-secret"


def bench_key(database_url: str) -> str:
    """An admin key for this run's clients: issued once per run (the schema must exist)."""
    key = os.environ.get(KEY_VARIABLE)
    if not key:
        key = apikeys.issue(database_url, name="bench", scopes=[apikeys.ADMIN_SCOPE]).key
        os.environ[KEY_VARIABLE] = key
    return key


def _with_key(details: Any, key: str) -> Any:
    metadata = [*(details.metadata or ()), ("authorization", f"Bearer {key}")]
    return details._replace(metadata=metadata)


class BearerKey(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
):
    """Adds the key to every call of a synchronous channel."""

    def __init__(self, key: str) -> None:
        self.key = key

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return continuation(_with_key(details, self.key), request)

    def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return continuation(_with_key(details, self.key), request)

    def intercept_stream_unary(
        self, continuation: Callable[..., Any], details: Any, request_iterator: Any
    ) -> Any:
        return continuation(_with_key(details, self.key), request_iterator)


class _WithKey:
    """A grpc.aio multicallable that sends the key unless the call gives metadata itself."""

    def __init__(self, multicallable: Any, metadata: tuple[tuple[str, str], ...]) -> None:
        self._call = multicallable
        self._metadata = metadata

    def __call__(self, request: Any, *, metadata: Any = None, **options: Any) -> Any:
        return self._call(request, metadata=metadata or self._metadata, **options)


class AioKeyedChannel:
    """A grpc.aio channel whose stubs send the key on every call.

    Not a client interceptor: grpc.aio wraps every intercepted call in extra objects and
    awaits, which costs the load generator CPU it needs for the benchmark's callers.
    """

    def __init__(self, channel: grpc.aio.Channel, key: str) -> None:
        self._channel = channel
        self._metadata = (("authorization", f"Bearer {key}"),)

    def unary_unary(self, *args: Any, **kwargs: Any) -> Any:
        return _WithKey(self._channel.unary_unary(*args, **kwargs), self._metadata)

    def unary_stream(self, *args: Any, **kwargs: Any) -> Any:
        return _WithKey(self._channel.unary_stream(*args, **kwargs), self._metadata)

    def stream_unary(self, *args: Any, **kwargs: Any) -> Any:
        return _WithKey(self._channel.stream_unary(*args, **kwargs), self._metadata)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._channel, name)

    async def __aenter__(self) -> grpc.aio.Channel:
        await self._channel.__aenter__()
        return cast(grpc.aio.Channel, self)

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._channel.__aexit__(*exc_info)


def authorized(channel: grpc.Channel, key: str) -> grpc.Channel:
    return grpc.intercept_channel(channel, BearerKey(key))


def channel(address: str, key: str | None = None) -> grpc.Channel:
    """A plaintext channel sending `key` (default: this run's, if any, from the environment)."""
    key = key or os.environ.get(KEY_VARIABLE)
    plain = grpc.insecure_channel(address)
    return authorized(plain, key) if key else plain


def aio_channel(address: str, key: str | None = None) -> grpc.aio.Channel:
    key = key or os.environ.get(KEY_VARIABLE)
    plain = grpc.aio.insecure_channel(address)
    return cast(grpc.aio.Channel, AioKeyedChannel(plain, key)) if key else plain
