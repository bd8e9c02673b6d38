"""Optional OpenTelemetry tracing: one server span per RPC, exported over OTLP/gRPC.

Off unless OTEL_EXPORTER_OTLP_ENDPOINT is set (or a tracer provider is given, as the tests
do); off, nothing of OpenTelemetry is imported and calls run no tracing code at all.

The span is opened by a layer around the per-method wrapper of interceptors.py, not by
opentelemetry-instrumentation-grpc's aio interceptor: that interceptor learns a call's
status only from `context.abort()`, and our wrapper ends failed calls with
`abort_with_status()` (for the google.rpc details), so it would report every failure as a
success; it would also bring back the per-call interceptor chain the wrapper exists to
avoid. The layer reads the status the wrapper set, and the span is current while the
wrapper logs, which puts its trace id in the RPC's log line.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

from server.core.config import Settings
from server.core.logs import TraceIds

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

# The wrapper's per-RPC log lines get the trace id.
RPC_LOGGER = "socialhub.rpc"
# Codes that mean the server failed (OpenTelemetry's gRPC conventions, server side); the
# others are the caller's problem and leave the span's status unset.
_SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


@dataclass
class Tracing:
    provider: TracerProvider
    # Built here from the settings (so shut down here), or given by the caller.
    owned: bool
    _tracer: Tracer
    _trace_ids: TraceIds

    @classmethod
    def start(cls, settings: Settings, provider: TracerProvider | None = None) -> Tracing | None:
        """Tracing with `provider`, or with an OTLP exporter if an endpoint is configured;
        None when neither (then nothing of OpenTelemetry is imported)."""
        owned = provider is None
        if provider is None:
            if not settings.otel_exporter_otlp_endpoint:
                return None
            provider = _otlp_provider(settings)
        from opentelemetry import trace

        def current_trace_id() -> str | None:
            context = trace.get_current_span().get_span_context()
            return trace.format_trace_id(context.trace_id) if context.is_valid else None

        trace_ids = TraceIds(current_trace_id)
        logging.getLogger(RPC_LOGGER).addFilter(trace_ids)
        return cls(provider, owned, provider.get_tracer("socialhub"), trace_ids)

    async def stop(self) -> None:
        logging.getLogger(RPC_LOGGER).removeFilter(self._trace_ids)
        if self.owned:
            shutdown = getattr(self.provider, "shutdown", None)
            if shutdown is not None:
                # Exports what is still queued: blocking, up to the exporter's timeout.
                await asyncio.to_thread(shutdown)

    def wrap(self, behavior: Any, method: str) -> Any:
        """`behavior` (a wrapped method of interceptors.py) inside a span of its own."""
        from opentelemetry import context as contexts
        from opentelemetry import propagate, trace

        tracer = self._tracer
        name = method.lstrip("/")
        service, _, rpc_method = name.partition("/")
        attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": rpc_method}

        def begin(context: grpc.aio.ServicerContext[Any, Any]) -> tuple[Span, object]:
            # A caller's W3C traceparent (or whatever OTEL_PROPAGATORS names) is the parent.
            parent = propagate.extract(dict(context.invocation_metadata() or ()))
            span = tracer.start_span(
                name, parent, kind=trace.SpanKind.SERVER, attributes=attributes
            )
            return span, contexts.attach(trace.set_span_in_context(span))

        def end(span: Span, token: object, code: grpc.StatusCode) -> None:
            span.set_attribute("rpc.grpc.status_code", code.value[0])
            if code in _SERVER_ERRORS:
                span.set_status(trace.StatusCode.ERROR, code.name)
            span.end()
            contexts.detach(token)  # type: ignore[arg-type]

        if inspect.isasyncgenfunction(behavior):

            async def stream(
                request: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                span, token = begin(context)
                code = grpc.StatusCode.UNKNOWN
                try:
                    async for response in behavior(request, context):
                        yield response
                    code = grpc.StatusCode.OK
                except grpc.aio.AbortError:
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    raise
                except (asyncio.CancelledError, GeneratorExit):
                    code = grpc.StatusCode.CANCELLED  # the context must not be touched
                    raise
                finally:
                    end(span, token, code)

            return stream

        async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            span, token = begin(context)
            code = grpc.StatusCode.UNKNOWN
            try:
                response = await behavior(request, context)
                code = grpc.StatusCode.OK
                return response
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED  # the context must not be touched
                raise
            finally:
                end(span, token, code)

        return unary


def _otlp_provider(settings: Settings) -> TracerProvider:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # Created in the serving process (after `serve --workers` forks): the batch processor
    # runs a thread. The sampler follows OTEL_TRACES_SAMPLER (default: always, or as the
    # caller's trace decided).
    provider = SdkTracerProvider(
        resource=Resource.create({SERVICE_NAME: settings.otel_service_name})
    )
    exporter = OTLPSpanExporter(endpoint=settings.otel_exporter_otlp_endpoint)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider
