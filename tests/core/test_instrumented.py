"""InstrumentedServer: wraps registered services, and serves plain generic handlers as given."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from server.core.interceptors import InFlightLimit, InstrumentedServer


async def _echo(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    return request


async def _fail(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    raise RuntimeError("boom: must not reach the client")


def _method(channel: grpc.aio.Channel, path: str) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
    return channel.unary_unary(path)


async def _serve_and_call() -> tuple[bytes, bytes, grpc.StatusCode, str]:
    server = InstrumentedServer(grpc.aio.server(), InFlightLimit(10))
    # A library that registers only a generic handler (no registered methods) must still work.
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "plain.Echo", {"Call": grpc.unary_unary_rpc_method_handler(_echo)}
            )
        ]
    )
    # What generated code does: a generic handler, then the same methods as registered ones.
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "Call": grpc.unary_unary_rpc_method_handler(_echo),
        "Fail": grpc.unary_unary_rpc_method_handler(_fail),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("socialhub.T", handlers)])
    server.add_registered_method_handlers("socialhub.T", handlers)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            plain = await _method(channel, "/plain.Echo/Call")(b"plain")
            wrapped = await _method(channel, "/socialhub.T/Call")(b"wrapped")
            try:
                await _method(channel, "/socialhub.T/Fail")(b"")
            except grpc.aio.AioRpcError as error:
                return plain, wrapped, error.code(), error.details() or ""
            raise AssertionError("Fail succeeded")
    finally:
        await server.stop(None)


def test_generic_handlers_are_served_and_registered_methods_are_wrapped() -> None:
    plain, wrapped, code, details = asyncio.run(_serve_and_call())
    assert plain == b"plain"
    assert wrapped == b"wrapped"
    # The wrapper mapped the exception: INTERNAL with a request id, no exception text.
    assert code == grpc.StatusCode.INTERNAL
    assert "request_id=" in details
    assert "boom" not in details
