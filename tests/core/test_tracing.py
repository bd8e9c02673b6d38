"""OpenTelemetry tracing: a server span per RPC, and its trace id in the RPC's log line."""

from __future__ import annotations

import ast
import asyncio
import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode, format_span_id, format_trace_id
from socialhub.v1 import feed_pb2, profile_pb2
from socialhub.v1.feed_pb2_grpc import FeedServiceStub
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from server.core.embedded import free_port
from server.core.logs import JsonFormatter
from server.core.tracing import Tracing
from tests.harness import Backing, ServerThread, test_settings
from tests.helpers import new_profile

REPO = Path(__file__).resolve().parents[2]
GET_PROFILE = "socialhub.v1.ProfileService/GetProfile"
CREATE_PROFILE = "socialhub.v1.ProfileService/CreateProfile"
STREAM_POSTS = "socialhub.v1.FeedService/StreamProfilePosts"
# A caller's trace context (W3C traceparent): the server's span joins that trace.
CALLER_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN_ID = "00f067aa0ba902b7"


class Lines(logging.Handler):
    """The JSON lines the RPC logger writes, as the process's log handler would print them."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture(scope="module")
def traced(backing: Backing, exporter: InMemorySpanExporter) -> Iterator[ServerThread]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    thread = ServerThread(
        test_settings(auth_enabled=False),
        backing.database_url,
        backing.redis_url,
        options={"tracer_provider": provider},
    ).start()
    yield thread
    thread.stop()
    provider.shutdown()


@pytest.fixture
def lines(exporter: InMemorySpanExporter) -> Iterator[Lines]:
    exporter.clear()
    logger = logging.getLogger("socialhub.rpc")
    handler = Lines()
    level = logger.level
    logger.setLevel(logging.INFO)  # the line of a successful call is written at INFO
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def spans_named(exporter: InMemorySpanExporter, name: str, count: int = 1) -> list[ReadableSpan]:
    """The `count` finished spans called `name`, waiting a little for them: an aborted call's
    status reaches the client before the server's wrapper ends its span."""
    deadline = time.monotonic() + 5
    while True:
        spans = [span for span in exporter.get_finished_spans() if span.name == name]
        if len(spans) >= count or time.monotonic() > deadline:
            return spans
        time.sleep(0.01)


def trace_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return format_trace_id(span.context.trace_id)


def test_a_span_per_rpc_with_its_method_and_status(
    traced: ServerThread, exporter: InMemorySpanExporter, lines: Lines
) -> None:
    with grpc.insecure_channel(traced.address) as channel:
        stub = ProfileServiceStub(channel)
        created = stub.CreateProfile(profile_pb2.CreateProfileRequest(profile=new_profile()))
        for _ in range(3):
            stub.GetProfile(profile_pb2.GetProfileRequest(name=created.name))
        with pytest.raises(grpc.RpcError) as missing:
            stub.GetProfile(profile_pb2.GetProfileRequest(name="profiles/999999"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND

    (create,) = spans_named(exporter, CREATE_PROFILE)
    gets = spans_named(exporter, GET_PROFILE, 4)
    assert len(gets) == 4
    for span in [create, *gets]:
        assert span.kind == SpanKind.SERVER
        assert span.attributes is not None
        assert span.attributes["rpc.system"] == "grpc"
        assert span.attributes["rpc.service"] == "socialhub.v1.ProfileService"
        assert span.parent is None, "no caller trace: each call starts one"
    codes = [span.attributes["rpc.grpc.status_code"] for span in gets if span.attributes]
    assert codes == [0, 0, 0, grpc.StatusCode.NOT_FOUND.value[0]]
    assert create.attributes is not None
    assert create.attributes["rpc.method"] == "CreateProfile"
    # NOT_FOUND is the caller's problem: the span is not an error (OpenTelemetry's rule).
    assert all(span.status.status_code == StatusCode.UNSET for span in gets)
    assert len({trace_id(span) for span in [create, *gets]}) == 5

    # Each call's log line carries the trace id of its span, in the same order.
    logged = [line for line in lines.lines if line["method"] == f"/{GET_PROFILE}"]
    assert [line["code"] for line in logged] == ["OK", "OK", "OK", "NOT_FOUND"]
    assert [line["trace_id"] for line in logged] == [trace_id(span) for span in gets]


def test_a_callers_trace_is_continued(
    traced: ServerThread, exporter: InMemorySpanExporter, lines: Lines
) -> None:
    traceparent = f"00-{CALLER_TRACE_ID}-{CALLER_SPAN_ID}-01"
    with grpc.insecure_channel(traced.address) as channel, pytest.raises(grpc.RpcError):
        ProfileServiceStub(channel).GetProfile(
            profile_pb2.GetProfileRequest(name="profiles/999999"),
            metadata=(("traceparent", traceparent),),
        )
    (span,) = spans_named(exporter, GET_PROFILE)
    assert trace_id(span) == CALLER_TRACE_ID
    assert span.parent is not None
    assert format_span_id(span.parent.span_id) == CALLER_SPAN_ID
    assert [line["trace_id"] for line in lines.lines] == [CALLER_TRACE_ID]


def test_streams_are_traced(
    traced: ServerThread, exporter: InMemorySpanExporter, lines: Lines
) -> None:
    with grpc.insecure_channel(traced.address) as channel:
        author = ProfileServiceStub(channel).CreateProfile(
            profile_pb2.CreateProfileRequest(profile=new_profile())
        )
        feed = FeedServiceStub(channel)
        for body in ("one", "two"):
            feed.CreatePost(
                feed_pb2.CreatePostRequest(post=feed_pb2.Post(author=author.name, body=body))
            )
        batches = list(
            feed.StreamProfilePosts(
                feed_pb2.StreamProfilePostsRequest(author=author.name, batch_size=1)
            )
        )
        assert len(batches) == 2
    (stream,) = spans_named(exporter, STREAM_POSTS)
    assert stream.attributes is not None
    assert stream.attributes["rpc.grpc.status_code"] == 0
    (line,) = [line for line in lines.lines if line["method"] == f"/{STREAM_POSTS}"]
    assert line["trace_id"] == trace_id(stream)


def test_a_call_the_server_fails_is_an_error_span(backing: Backing) -> None:
    """UNAVAILABLE (no database) is the server's failure: the span's status is ERROR."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    nowhere = f"postgresql://socialhub:none@127.0.0.1:{free_port()}/socialhub"
    server = ServerThread(
        test_settings(auth_enabled=False, db_pool_timeout_s=1.0),
        nowhere,
        backing.redis_url,
        options={"tracer_provider": provider, "run_jobs": False},
    ).start()
    try:
        with grpc.insecure_channel(server.address) as channel:
            with pytest.raises(grpc.RpcError) as failed:
                ProfileServiceStub(channel).GetProfile(
                    profile_pb2.GetProfileRequest(name="profiles/1"), timeout=30
                )
            assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop()
        provider.shutdown()
    (span,) = spans_named(exporter, GET_PROFILE)
    assert span.attributes is not None
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.UNAVAILABLE.value[0]
    assert span.status.status_code == StatusCode.ERROR
    assert span.status.description == "UNAVAILABLE"


def _module_level_imports(path: Path) -> Iterator[str]:
    """Modules `path` imports when it is imported (not in functions, not for type checks)."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def test_off_without_an_endpoint_and_nothing_imported() -> None:
    assert Tracing.start(test_settings()) is None
    for path in (REPO / "server").rglob("*.py"):
        imported = list(_module_level_imports(path))
        assert not [name for name in imported if name.startswith("opentelemetry")], path
    # At run time: asking for tracing with no endpoint imports nothing more. (redis-py
    # imports parts of OpenTelemetry by itself when it is installed, hence the difference.)
    script = (
        "import sys\n"
        "from server.app import application\n"
        "from server.core.tracing import Tracing\n"
        "from tests.harness import test_settings\n"
        "before = {name for name in sys.modules if name.startswith('opentelemetry')}\n"
        "assert Tracing.start(test_settings()) is None\n"
        "after = {name for name in sys.modules if name.startswith('opentelemetry')}\n"
        "print(sorted(after - before))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.stdout.strip() == "[]", done.stdout


def test_an_endpoint_builds_an_otlp_exporter() -> None:
    settings = test_settings(
        otel_exporter_otlp_endpoint="http://127.0.0.1:4317", otel_service_name="socialhub-test"
    )
    tracing = Tracing.start(settings)
    assert tracing is not None
    try:
        assert tracing.owned
        assert isinstance(tracing.provider, TracerProvider)
        assert tracing.provider.resource.attributes["service.name"] == "socialhub-test"
    finally:
        asyncio.run(tracing.stop())  # nothing was traced: nothing to send
