"""The interceptors of the client's channels: the key, default deadlines, the RetryInfo
retries and decoded errors, once for synchronous channels and once for asyncio ones."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from socialhub.client.errors import SocialhubError
from socialhub.client.retry import RetryPolicy

Metadata = tuple[tuple[str, str | bytes], ...]


@dataclass(frozen=True)
class CallDefaults:
    # Sent as metadata only on plaintext channels; TLS channels carry the key as call
    # credentials, which gRPC refuses to send without transport security.
    key_metadata: Metadata
    timeout_s: float | None
    stream_timeout_s: float | None
    retry: RetryPolicy | None

    def metadata(self, given: Any) -> Metadata:
        pairs: Metadata = tuple((str(key), value) for key, value in given or ())
        if not self.key_metadata or any(key == "authorization" for key, _ in pairs):
            return pairs  # a call's own authorization wins over the channel's key
        return (*pairs, *self.key_metadata)

    def wait(
        self, method: str, request: object, error: SocialhubError, attempt: int, deadline: float
    ) -> float | None:
        if self.retry is None:
            return None
        wait = self.retry.wait_before_retry(method, request, error, attempt)
        if wait is None or time.monotonic() + wait >= deadline:
            return None  # the next attempt could not finish before the deadline anyway
        return wait


def _method(name: str | bytes) -> str:
    return name.decode() if isinstance(name, bytes) else name


def _deadline(timeout: float | None) -> float:
    return float("inf") if timeout is None else time.monotonic() + timeout


def _remaining(deadline: float) -> float | None:
    return None if deadline == float("inf") else max(deadline - time.monotonic(), 0.0)


class _SyncDetails(grpc.ClientCallDetails):
    def __init__(
        self, base: grpc.ClientCallDetails, timeout: float | None, metadata: Metadata
    ) -> None:
        self.method = base.method
        self.timeout = timeout
        self.metadata = metadata
        self.credentials = base.credentials
        self.wait_for_ready = base.wait_for_ready
        self.compression = base.compression


class SyncCalls(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
):
    def __init__(self, defaults: CallDefaults) -> None:
        self.defaults = defaults

    def intercept_unary_unary(
        self, continuation: Any, client_call_details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        method = _method(client_call_details.method)
        timeout = client_call_details.timeout
        deadline = _deadline(self.defaults.timeout_s if timeout is None else timeout)
        metadata = self.defaults.metadata(client_call_details.metadata)
        attempt = 1
        while True:
            details = _SyncDetails(client_call_details, _remaining(deadline), metadata)
            outcome = continuation(details, request)
            failure = outcome.exception()
            if failure is None:
                return outcome
            if not isinstance(failure, grpc.RpcError):
                raise failure  # raised by an interceptor or serializer, not by the call
            error = SocialhubError.from_rpc_error(failure)
            wait = self.defaults.wait(method, request, error, attempt, deadline)
            if wait is None:
                raise error from failure
            time.sleep(wait)
            attempt += 1

    def intercept_unary_stream(
        self, continuation: Any, client_call_details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        timeout = client_call_details.timeout
        details = _SyncDetails(
            client_call_details,
            self.defaults.stream_timeout_s if timeout is None else timeout,
            self.defaults.metadata(client_call_details.metadata),
        )
        return _DecodedStream(continuation(details, request))

    def intercept_stream_unary(
        self, continuation: Any, client_call_details: grpc.ClientCallDetails, request_iterator: Any
    ) -> Any:
        # A client stream (ImportMetricSnapshots) is sent once: its messages cannot be replayed.
        timeout = client_call_details.timeout
        details = _SyncDetails(
            client_call_details,
            self.defaults.stream_timeout_s if timeout is None else timeout,
            self.defaults.metadata(client_call_details.metadata),
        )
        outcome = continuation(details, request_iterator)
        failure = outcome.exception()
        if isinstance(failure, grpc.RpcError):
            raise SocialhubError.from_rpc_error(failure) from failure
        return outcome


class _DecodedStream:
    """A server stream of a synchronous channel whose failure raises SocialhubError; every
    other attribute is the gRPC call's."""

    def __init__(self, call: Any) -> None:
        self._call = call

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._call)
        except grpc.RpcError as failure:
            raise SocialhubError.from_rpc_error(failure) from failure

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)


def aio_interceptors(defaults: CallDefaults) -> list[grpc.aio.ClientInterceptor]:
    # One object per kind: grpc.aio files each interceptor under the first kind it is.
    return [_AioUnary(defaults), _AioStream(defaults), _AioClientStream(defaults)]


class _AioCalls:
    def __init__(self, defaults: CallDefaults) -> None:
        self.defaults = defaults

    def _details(
        self, base: grpc.aio.ClientCallDetails, timeout: float | None
    ) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*self.defaults.metadata(base.metadata))
        return grpc.aio.ClientCallDetails(
            base.method, timeout, metadata, base.credentials, base.wait_for_ready
        )


class _AioUnary(_AioCalls, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        method = _method(client_call_details.method)
        timeout = client_call_details.timeout
        deadline = _deadline(self.defaults.timeout_s if timeout is None else timeout)
        attempt = 1
        while True:
            call = await continuation(
                self._details(client_call_details, _remaining(deadline)), request
            )
            try:
                await call
            except grpc.RpcError as failure:
                error = SocialhubError.from_rpc_error(failure)
                wait = self.defaults.wait(method, request, error, attempt, deadline)
                if wait is None:
                    raise error from failure
            else:
                return call  # finished: awaiting it again gives the response
            await asyncio.sleep(wait)
            attempt += 1


class _AioStream(_AioCalls, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self, continuation: Any, client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        timeout = client_call_details.timeout
        details = self._details(
            client_call_details, self.defaults.stream_timeout_s if timeout is None else timeout
        )
        return _decoded(await continuation(details, request))


class _AioClientStream(_AioCalls, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(
        self,
        continuation: Any,
        client_call_details: grpc.aio.ClientCallDetails,
        request_iterator: Any,
    ) -> Any:
        # Sent once, never retried: the client's messages cannot be replayed.
        timeout = client_call_details.timeout
        details = self._details(
            client_call_details, self.defaults.stream_timeout_s if timeout is None else timeout
        )
        call = await continuation(details, request_iterator)
        try:
            await call
        except grpc.RpcError as failure:
            raise SocialhubError.from_rpc_error(failure) from failure
        return call


async def _decoded(call: Any) -> AsyncIterator[Any]:
    try:
        async for message in call:
            yield message
    except grpc.RpcError as failure:
        raise SocialhubError.from_rpc_error(failure) from failure
