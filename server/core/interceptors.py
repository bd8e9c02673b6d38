"""Per-RPC logging, load shedding, and the one place where errors become gRPC statuses."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from server.core import auth, errors
from server.core.db import is_database_unavailable, is_retryable_conflict

if TYPE_CHECKING:
    from prometheus_client import Counter

    from server.core.metrics import MethodMetrics, RpcMetrics
    from server.core.tracing import Tracing

log = logging.getLogger("socialhub.rpc")

# AIP-193: the service's globally unique name, the same for every version of the API.
ERROR_DOMAIN = "socialhub.dev"
DATABASE_RETRY_AFTER_S = 1.0
OVERLOAD_RETRY_AFTER_S = 0.1
CONFLICT_RETRY_AFTER_S = 0.05

_CODES: dict[type[errors.DomainError], int] = {
    errors.InvalidArgument: code_pb2.INVALID_ARGUMENT,
    errors.NotFound: code_pb2.NOT_FOUND,
    errors.AlreadyExists: code_pb2.ALREADY_EXISTS,
    errors.Aborted: code_pb2.ABORTED,
    errors.FailedPrecondition: code_pb2.FAILED_PRECONDITION,
    errors.Unavailable: code_pb2.UNAVAILABLE,
    errors.OutOfRange: code_pb2.OUT_OF_RANGE,
    errors.ResourceExhausted: code_pb2.RESOURCE_EXHAUSTED,
    errors.Unauthenticated: code_pb2.UNAUTHENTICATED,
    errors.PermissionDenied: code_pb2.PERMISSION_DENIED,
}


# Status and details travel in HTTP/2 trailers, which clients cap at 8 KiB; a message that
# echoes hostile input must not push them over (the client would see a broken stream).
MAX_MESSAGE_BYTES = 512
MAX_FIELD_BYTES = 100
MAX_DESCRIPTION_BYTES = 160
MAX_VIOLATIONS = 10


def _clip(text: str, limit: int) -> str:
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    return encoded[: limit - 3].decode(errors="ignore") + "..."


def _packed(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _retry_info(seconds: float) -> any_pb2.Any:
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(int(seconds * 1e9))
    return _packed(error_details_pb2.RetryInfo(retry_delay=delay))


def status_for(exc: BaseException, request_id: str) -> status_pb2.Status:
    """Translate any exception into a google.rpc.Status with typed details: an ErrorInfo
    (domain, reason, metadata), the call's RequestInfo, and BadRequest or RetryInfo where
    they apply."""
    info = error_details_pb2.ErrorInfo(domain=ERROR_DOMAIN)
    request_info = _packed(error_details_pb2.RequestInfo(request_id=request_id))
    if isinstance(exc, errors.DomainError):
        code = next(c for cls, c in _CODES.items() if isinstance(exc, cls))
        info.reason = exc.reason
        info.metadata.update(exc.metadata)
        details = [_packed(info), request_info]
        if isinstance(exc, errors.InvalidArgument):
            bad_request = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=_clip(v.field, MAX_FIELD_BYTES),
                        description=_clip(v.description, MAX_DESCRIPTION_BYTES),
                    )
                    for v in exc.violations[:MAX_VIOLATIONS]
                ]
            )
            details.append(_packed(bad_request))
        if isinstance(exc, errors.ResourceExhausted):
            details.append(_retry_info(exc.retry_after_s))
        return status_pb2.Status(
            code=code, message=_clip(exc.message, MAX_MESSAGE_BYTES), details=details
        )
    if is_retryable_conflict(exc):
        info.reason = "CONCURRENT_CONFLICT"
        return status_pb2.Status(
            code=code_pb2.ABORTED,
            message="the request conflicted with a concurrent one; retry it",
            details=[_packed(info), request_info, _retry_info(CONFLICT_RETRY_AFTER_S)],
        )
    if is_database_unavailable(exc):
        info.reason = "DATABASE_UNAVAILABLE"
        return status_pb2.Status(
            code=code_pb2.UNAVAILABLE,
            message="the database is unavailable; retry later",
            details=[_packed(info), request_info, _retry_info(DATABASE_RETRY_AFTER_S)],
        )
    # The request id stays in the text too: it is what a user pastes into a support ticket.
    info.reason = "INTERNAL_ERROR"
    return status_pb2.Status(
        code=code_pb2.INTERNAL,
        message=f"internal error (request_id={request_id})",
        details=[_packed(info), request_info],
    )


def _request_id(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "x-request-id" and isinstance(value, str) and 0 < len(value) <= 128:
            return value
    return uuid.uuid4().hex


class InFlightLimit:
    """Sheds load with RESOURCE_EXHAUSTED + RetryInfo instead of queueing without bound."""

    def __init__(self, maximum: int, shed: Counter | None = None) -> None:
        self.maximum = maximum
        self.current = 0  # sampled into the in-flight gauge (server/core/metrics.py)
        self._shed = shed

    def enter(self) -> None:
        if self.current >= self.maximum:
            if self._shed is not None:
                self._shed.inc()
            raise errors.ResourceExhausted(
                "the server is at its limit of concurrent calls; retry shortly",
                retry_after_s=OVERLOAD_RETRY_AFTER_S,
            )
        self.current += 1

    def exit(self) -> None:
        self.current -= 1


class _Unlimited(InFlightLimit):
    def enter(self) -> None:
        pass

    def exit(self) -> None:
        pass


class InstrumentedServer(grpc.aio.Server):
    """A grpc.aio server whose services get every method wrapped once, at registration.

    The wrapper logs the call, counts it against `limit` (socialhub services only, so an
    overloaded server still answers health probes) and maps exceptions to statuses. Doing it
    at registration instead of in a `ServerInterceptor` saves an interceptor-chain await and
    a handler object on every call, which measured as a large share of a cache-hit call
    (docs/BENCHMARKS.md). Generated `add_*Servicer_to_server` functions pass a generic
    handler and then the same methods as registered handlers: the wrapped registered ones
    replace the generic one. A generic handler nothing replaces is served as it is (and
    so without authentication). `guard_for` gives each method's authentication guard
    (server/core/auth.py); set it before services register.
    """

    def __init__(
        self,
        server: grpc.aio.Server,
        limit: InFlightLimit,
        guard_for: Callable[[str], auth.Guard | None] | None = None,
        *,
        metrics: RpcMetrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self._server = server
        self._limit = limit
        self.guard_for = guard_for
        self._metrics = metrics
        self._tracing = tracing
        self._unlimited = _Unlimited(0)
        self._unclaimed: list[tuple[str | None, grpc.GenericRpcHandler]] = []

    def add_insecure_port(self, address: str) -> int:
        return self._server.add_insecure_port(address)

    def add_secure_port(self, address: str, server_credentials: grpc.ServerCredentials) -> int:
        return self._server.add_secure_port(address, server_credentials)

    async def start(self) -> None:
        if self._unclaimed:
            self._server.add_generic_rpc_handlers([handler for _, handler in self._unclaimed])
            self._unclaimed.clear()
        await self._server.start()

    async def stop(self, grace: float | None) -> None:
        await self._server.stop(grace)

    async def wait_for_termination(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        return await self._server.wait_for_termination(timeout)

    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        for handler in handlers:
            name = handler.service_name() if isinstance(handler, grpc.ServiceRpcHandler) else None
            self._unclaimed.append((name, handler))

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        self._unclaimed = [(name, h) for name, h in self._unclaimed if name != service_name]
        wrapped = {
            name: self._wrapped(f"/{service_name}/{name}", handler)
            for name, handler in method_handlers.items()
        }
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service_name, wrapped),)
        )
        self._server.add_registered_method_handlers(service_name, wrapped)

    def _wrapped(self, method: str, handler: Any) -> Any:
        limit = self._limit if method.startswith("/socialhub.") else self._unlimited
        guard = None if self.guard_for is None else self.guard_for(method)
        meter = None if self._metrics is None else self._metrics.for_method(method)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._traced(_wrap_unary(handler.unary_unary, method, limit, guard, meter), method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._traced(
                    _wrap_stream(handler.unary_stream, method, limit, guard, meter), method
                ),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary is not None:
            # Client streaming (bulk imports): one response, so the unary wrapper serves it;
            # its "request" is the iterator of the client's messages.
            behavior = _wrap_unary(handler.stream_unary, method, limit, guard, meter)
            return grpc.stream_unary_rpc_method_handler(
                self._traced(behavior, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if guard is not None:
            # Fail closed: a method that is not wrapped could not be authenticated.
            raise TypeError(f"{method}: bidi-streaming methods are not supported")
        return handler  # bidi-streaming: none of ours; reflection registers directly

    def _traced(self, behavior: Any, method: str) -> Any:
        # Outside the wrapper: the span is current while it logs, and sees its final status.
        return behavior if self._tracing is None else self._tracing.wrap(behavior, method)


async def _fail(
    context: grpc.aio.ServicerContext[Any, Any],
    method: str,
    started: float,
    exc: BaseException,
    meter: MethodMetrics | None,
) -> None:
    request_id = _request_id(context)
    status = status_for(exc, request_id)
    code = code_pb2.Code.Name(status.code)
    if meter is not None:
        meter.observe(code, time.perf_counter() - started)
    level = logging.ERROR if status.code == code_pb2.INTERNAL else logging.INFO
    log.log(
        level,
        "rpc failed",
        exc_info=exc if status.code == code_pb2.INTERNAL else None,
        extra=_fields(context, method, started, code, request_id),
    )
    await context.abort_with_status(rpc_status.to_status(status))


def _fields(
    context: grpc.aio.ServicerContext[Any, Any] | None,
    method: str,
    started: float,
    code: str,
    request_id: str | None = None,
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "method": method,
        "code": code,
        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
    }
    if context is not None:
        fields["peer"] = context.peer()
    if request_id is not None:
        fields["request_id"] = request_id
    if (principal := auth.principal_name()) is not None:
        fields["principal"] = principal
    return fields


def _observe(meter: MethodMetrics | None, code: str, started: float) -> None:
    if meter is not None:
        meter.observe(code, time.perf_counter() - started)


def _aborted(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The code of a call its handler aborted itself."""
    code = context.code()
    return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"


def _wrap_unary(
    behavior: Any,
    method: str,
    limit: InFlightLimit,
    guard: auth.Guard | None = None,
    meter: MethodMetrics | None = None,
) -> Any:
    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        started = time.perf_counter()
        try:
            limit.enter()
            try:
                if guard is not None:
                    auth.bind(await guard(context))
                response = await behavior(request, context)
            finally:
                limit.exit()
        except grpc.aio.AbortError:
            _observe(meter, _aborted(context), started)
            raise
        except asyncio.CancelledError:
            # The call is torn down: its context must not be touched (peer() crashes grpc).
            _observe(meter, "CANCELLED", started)
            log.info("rpc", extra=_fields(None, method, started, "CANCELLED"))
            raise
        except Exception as exc:
            await _fail(context, method, started, exc, meter)
            raise  # unreachable: abort raises
        _observe(meter, "OK", started)
        if log.isEnabledFor(logging.INFO):
            log.info("rpc", extra=_fields(context, method, started, "OK"))
        return response

    return unary


def _wrap_stream(
    behavior: Any,
    method: str,
    limit: InFlightLimit,
    guard: auth.Guard | None = None,
    meter: MethodMetrics | None = None,
) -> Any:
    if not inspect.isasyncgenfunction(behavior):
        # Handlers that write with `await context.write()` (health Watch) return a coroutine.
        return _wrap_unary(behavior, method, limit, guard, meter)

    async def stream(
        request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        started = time.perf_counter()
        try:
            limit.enter()
            try:
                if guard is not None:
                    auth.bind(await guard(context))
                async for response in behavior(request, context):
                    yield response
            finally:
                limit.exit()
        except grpc.aio.AbortError:
            _observe(meter, _aborted(context), started)
            raise
        except (asyncio.CancelledError, GeneratorExit):
            # The client went away and the call is torn down: its context must not be
            # touched (peer() crashes grpc); the handler's query is already unwound.
            _observe(meter, "CANCELLED", started)
            log.info("rpc", extra=_fields(None, method, started, "CANCELLED"))
            raise
        except Exception as exc:
            await _fail(context, method, started, exc, meter)
            raise
        _observe(meter, "OK", started)
        log.info("rpc", extra=_fields(context, method, started, "OK"))

    return stream
