"""Closed-loop HTTP/1.1 load: a minimal keep-alive client on asyncio streams.

One TCP connection per concurrent caller, one request in flight on each. The client
does the least HTTP/1.1 needs (status line, headers in one read, Content-Length or
chunked body) so that on a small machine the load generator is not the bottleneck;
aiohttp or httpx would cost several times more client CPU per call.

    result = httpload.run_in_subprocess(
        "http://127.0.0.1:8000", "get profile", httpload.RequestCycle([HttpRequest("GET", "/x")]),
        concurrency=32, duration_s=10, warmup_s=2, server_pid=server.pid,
    )
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from bench import loadgen

# Header blocks larger than this are a broken server, not a benchmark.
HEADER_LIMIT = 1 << 20
# Requests are small: write without draining unless a body could fill the socket buffer.
DRAIN_ABOVE = 64 * 1024


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    body: bytes | None = None


# Takes the call number, returns the request to send. Must be picklable (a module-level
# class instance) to reach the spawned load-generator process.
RequestFactory = Callable[[int], HttpRequest]


@dataclass(frozen=True)
class RequestCycle:
    """Cycle through a fixed list of requests."""

    requests: Sequence[HttpRequest]

    def __call__(self, i: int) -> HttpRequest:
        return self.requests[i % len(self.requests)]


class HttpError(Exception):
    """The exchange failed at the HTTP level."""


class HttpStatusError(HttpError):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP status {status}")
        self.status = status


class HttpProtocolError(HttpError):
    """A response this client cannot parse."""


# What a failed call may raise; anything else is a bug and aborts the run.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    HttpError,
    OSError,  # refused, reset
    EOFError,  # asyncio.IncompleteReadError: the server closed mid-response
    asyncio.LimitOverrunError,
)


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    host_header: bytes
    path_prefix: str

    @classmethod
    def parse(cls, base_url: str) -> Target:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"expected an http://host[:port][/prefix] URL, got {base_url!r}")
        port = parts.port or 80
        return cls(parts.hostname, port, parts.netloc.encode(), parts.path.rstrip("/"))


def encode_request(target: Target, request: HttpRequest) -> bytes:
    path = (target.path_prefix + request.path).encode()
    head = b"%s %s HTTP/1.1\r\nHost: %s\r\n" % (request.method.encode(), path, target.host_header)
    if request.body is None:
        return head + b"\r\n"
    return (
        head
        + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(request.body)
        + request.body
    )


def _header_value(lowered_head: bytes, name: bytes) -> bytes | None:
    """The value of header `name` (lower case) in a lower-cased header block, if present."""
    start = lowered_head.find(b"\r\n" + name + b":")
    if start < 0:
        return None
    start += len(name) + 3
    return lowered_head[start : lowered_head.find(b"\r\n", start)].strip()


@dataclass(frozen=True)
class ResponseHead:
    status: int
    content_length: int | None
    chunked: bool
    close: bool

    @classmethod
    def parse(cls, head: bytes) -> ResponseHead:
        try:
            status = int(head[: head.find(b"\r\n")].split(b" ", 2)[1])
            lowered = head.lower()
            length = _header_value(lowered, b"content-length")
            encoding = _header_value(lowered, b"transfer-encoding")
            connection = _header_value(lowered, b"connection")
            return cls(
                status,
                None if length is None else int(length),
                encoding is not None and encoding.endswith(b"chunked"),
                connection == b"close" or head.startswith(b"HTTP/1.0"),
            )
        except (ValueError, IndexError):
            raise HttpProtocolError(f"malformed response head: {head[:200]!r}") from None


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        line = await reader.readuntil(b"\r\n")
        try:
            size = int(line.split(b";", 1)[0], 16)
        except ValueError:
            raise HttpProtocolError(f"malformed chunk size line: {line[:100]!r}") from None
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        parts.append((await reader.readexactly(size + 2))[:-2])


class Connection:
    """One keep-alive HTTP/1.1 connection, opened on first use and after any failure."""

    def __init__(self, target: Target) -> None:
        self._target = target
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self._streams = await asyncio.open_connection(
            self._target.host, self._target.port, limit=HEADER_LIMIT
        )
        return self._streams

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
        self._streams = None

    async def request(self, request: HttpRequest) -> tuple[int, bytes]:
        """Status and body; the connection is dropped (and reopened next time) on failure."""
        reader, writer = self._streams or await self.open()
        try:
            writer.write(encode_request(self._target, request))
            if request.body is not None and len(request.body) > DRAIN_ABOVE:
                await writer.drain()
            head = ResponseHead.parse(await reader.readuntil(b"\r\n\r\n"))
            body = await self._read_body(reader, request, head)
        except BaseException:
            self.close()
            raise
        if head.close:
            self.close()
        return head.status, body

    @staticmethod
    async def _read_body(
        reader: asyncio.StreamReader, request: HttpRequest, head: ResponseHead
    ) -> bytes:
        if request.method == "HEAD" or head.status in (204, 304) or head.status < 200:
            return b""
        if head.chunked:
            return await _read_chunked(reader)
        if head.content_length is not None:
            return await reader.readexactly(head.content_length)
        if head.close:  # HTTP/1.1 without a length: the body runs to the end of the connection
            return await reader.read()
        raise HttpProtocolError("a keep-alive response without Content-Length or chunking")


class _Caller:
    """One concurrent caller: its own connection, requests from the factory."""

    def __init__(self, connection: Connection, factory: RequestFactory) -> None:
        self._connection = connection
        self._factory = factory

    async def __call__(self, i: int) -> None:
        status, _body = await self._connection.request(self._factory(i))
        if not 200 <= status < 300:
            raise HttpStatusError(status)


async def drive(
    base_url: str,
    scenario: str,
    factory: RequestFactory,
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    server_pid: loadgen.Pids,
    backing_pids: loadgen.Pids = None,
) -> loadgen.Result:
    target = Target.parse(base_url)
    connections = [Connection(target) for _ in range(concurrency)]
    try:
        # Connect up front: a server that is not listening fails the run, not every call.
        await asyncio.gather(*(connection.open() for connection in connections))
        return await loadgen.closed_loop(
            scenario,
            [_Caller(connection, factory) for connection in connections],
            duration_s=duration_s,
            warmup_s=warmup_s,
            expected_errors=EXPECTED_ERRORS,
            server_pid=server_pid,
            backing_pids=backing_pids,
        )
    finally:
        for connection in connections:
            connection.close()


def run_in_subprocess(
    base_url: str,
    scenario: str,
    factory: RequestFactory,
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    server_pid: loadgen.Pids,
    backing_pids: loadgen.Pids = None,
) -> loadgen.Result:
    """Closed-loop HTTP load from a spawned process on uvloop; any non-2xx is an error."""
    return loadgen.run_driver_in_subprocess(
        drive,
        base_url,
        scenario,
        factory,
        concurrency=concurrency,
        duration_s=duration_s,
        warmup_s=warmup_s,
        server_pid=server_pid,
        backing_pids=backing_pids,
    )
