"""A small pipelined RESP2 client for the cache's hot read.

redis-py's asyncio client spends ~50 µs of CPU per command (pool checkout, a parser per
connection, retry and notification machinery). This client keeps a few connections and
pipelines on each: a request appends a future to its connection's FIFO queue and writes
the packed command, and Redis answers in order, so every parsed reply goes to the oldest
future. That costs ~10 µs per command (docs/BENCHMARKS.md, "Redis clients for the cache
read", also has redis-py's and coredis's figures). It only does what the hot path needs,
EVALSHA, and everything else stays on redis-py, whose settings it copies: host or Unix
socket, database, AUTH (password, ACL user or credential provider) and TLS, with the same
SSL context redis-py's rediss:// connections use. Every wait is bounded: with no timeout
configured it uses DEFAULT_TIMEOUT_S.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

import hiredis
from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.credentials import CredentialProvider, UsernamePasswordCredentialProvider

log = logging.getLogger("socialhub.cache")

Arg = str | bytes | int | float

# For a redis-py client configured without socket timeouts (its default): the cache would
# rather serve from the database than wait longer than this for a read.
DEFAULT_TIMEOUT_S = 1.0
# How long the diagnostic lookup after a failed connection may take before it is reported.
LOOKUP_PROBE_TIMEOUT_S = 15.0


class UnsupportedRedisConnection(ValueError):
    """The redis-py client finds its server in a way this client cannot (Sentinel, Cluster,
    a custom connection class). Raised at startup, not left as a silently slower path."""


# The classes redis-py raises for these error replies, so callers catch the same errors.
_ERRORS: dict[str, type[redis_errors.RedisError]] = {
    "ERR": redis_errors.ResponseError,
    "NOSCRIPT": redis_errors.NoScriptError,
    "NOAUTH": redis_errors.AuthenticationError,
    "WRONGPASS": redis_errors.AuthenticationError,
    "LOADING": redis_errors.BusyLoadingError,
    "OOM": redis_errors.OutOfMemoryError,
    "READONLY": redis_errors.ReadOnlyError,
    "NOPERM": redis_errors.NoPermissionError,
}


def _reply_error(message: str) -> redis_errors.RedisError:
    """hiredis returns what this builds as the reply, so an error needs no second parse."""
    code, _, rest = message.partition(" ")
    error_class = _ERRORS.get(code)
    return redis_errors.ResponseError(message) if error_class is None else error_class(rest)


class _Connection(asyncio.Protocol):
    """One socket; requests are answered in the order they were written."""

    def __init__(self, timeout_s: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._timeout_s = timeout_s
        self._reader = hiredis.Reader(
            protocolError=redis_errors.InvalidResponse, replyError=_reply_error
        )
        # (future, deadline), oldest first: the same timeout for all keeps deadlines sorted.
        self._pending: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._transport: asyncio.Transport | None = None
        # Commands written in one loop iteration go out in one write: a syscall per command
        # would cost about half of this client's CPU time under concurrency.
        self._outgoing: list[bytes] = []
        # One timer per connection, for the oldest request only: cheaper than one per request.
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for = 0.0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self._transport = cast(asyncio.Transport, transport)

    def request(self, args: tuple[Arg, ...]) -> asyncio.Future[Any]:
        future = self._loop.create_future()
        deadline = self._loop.time() + self._timeout_s
        if self._timer is None:
            self._arm(deadline)
        self._pending.append((future, deadline))
        if not self._outgoing:
            self._loop.call_soon(self._flush)
        # hiredis's stub types the argument as a 1-tuple; it takes any number of arguments.
        self._outgoing.append(hiredis.pack_command(args))  # type: ignore[arg-type]
        return future

    def _flush(self) -> None:
        data = b"".join(self._outgoing)
        self._outgoing.clear()
        if not self.closed and self._transport is not None:
            self._transport.write(data)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        try:
            while (reply := self._reader.gets()) is not False:
                future = self._pending.popleft()[0]
                if future.done():
                    continue  # its caller was cancelled; the reply still had to be consumed
                if isinstance(reply, redis_errors.RedisError):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        except (redis_errors.InvalidResponse, IndexError) as error:
            self.fail(redis_errors.ConnectionError, f"unparseable reply: {error!r}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(redis_errors.ConnectionError, f"connection to redis lost: {exc!r}")

    def fail(self, error: type[redis_errors.RedisError], message: str) -> None:
        """Drop the connection and fail every pending request: a late reply would reach the
        wrong caller."""
        self.closed = True
        self._outgoing.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending:
            future = self._pending.popleft()[0]
            if not future.done():
                future.set_exception(error(message))  # one instance each: tracebacks differ
        if self._transport is not None:
            self._transport.abort()

    def _arm(self, deadline: float) -> None:
        self._armed_for = deadline
        self._timer = self._loop.call_at(deadline, self._check_deadline)

    def _check_deadline(self) -> None:
        self._timer = None
        if not self._pending:
            return  # the next request arms it again
        deadline = self._pending[0][1]
        # Comparing deadlines, not the clock: timers may fire a little early.
        if deadline <= self._armed_for:  # the request it was armed for is still waiting
            self.fail(redis_errors.TimeoutError, f"no reply from redis in {self._timeout_s}s")
        else:  # that one was answered: wait for the oldest still waiting
            self._arm(deadline)


class RespClient:
    """A few pipelined connections, opened on first use and again after a failure."""

    def __init__(
        self,
        *,
        host: str = "localhost",
        port: int = 6379,
        path: str | None = None,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        credential_provider: CredentialProvider | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        connect_timeout_s: float | None = None,
        connections: int = 2,
    ) -> None:
        connect_timeout_s = timeout_s if connect_timeout_s is None else connect_timeout_s
        if not (timeout_s > 0 and connect_timeout_s > 0):
            raise ValueError("redis timeouts must be positive: a read must never wait forever")
        self._address = (host, port)
        self._path = path
        self._ssl = ssl_context
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        # redis-py's rule: a provider, or else the username and password it would wrap in one.
        if credential_provider is None and (username or password):
            credential_provider = UsernamePasswordCredentialProvider(username, password)
        self._credentials = credential_provider
        self._db = db
        self._slots: list[_Connection | None] = [None] * connections
        self._opening: list[asyncio.Task[_Connection] | None] = [None] * connections
        self._next = 0
        self._closed = False
        # The diagnostic lookups in flight (the loop keeps only weak references to tasks).
        self._lookups: set[asyncio.Task[None]] = set()

    @classmethod
    def for_redis(cls, redis: Redis, connections: int = 2) -> RespClient:
        """The same server, database, credentials, TLS and timeouts as `redis`, a client made
        by `Redis.from_url` (redis://, rediss:// or unix://) or `Redis(...)`.

        Raises UnsupportedRedisConnection for any other kind of pool (Sentinel-managed
        connections, custom connection classes): those are refused at startup instead of
        getting a slower path that the benchmarks never measured.
        """
        pool = redis.connection_pool
        kind = pool.connection_class
        # Exact classes: Sentinel's managed connections subclass these and find their server
        # by asking the sentinels, which this client does not do.
        if kind not in (Connection, SSLConnection, UnixDomainSocketConnection):
            raise UnsupportedRedisConnection(
                f"the cache's read client cannot connect like {kind.__name__} "
                "(Sentinel and Cluster are not supported): use a redis://, rediss:// or "
                "unix:// URL"
            )
        # A connection object resolves the pool's settings with redis-py's own defaults (and
        # builds the SSL context its rediss:// connections use); making one opens nothing.
        template = kind(**pool.connection_kwargs)
        ssl_context = template.ssl_context.get() if isinstance(template, SSLConnection) else None
        timeout_s = template.socket_timeout or DEFAULT_TIMEOUT_S
        return cls(
            host=getattr(template, "host", "localhost"),
            port=int(getattr(template, "port", 6379)),
            path=getattr(template, "path", None),
            db=int(template.db),
            username=template.username,
            password=template.password,
            credential_provider=template.credential_provider,
            ssl_context=ssl_context,
            timeout_s=timeout_s,
            connect_timeout_s=template.socket_connect_timeout or timeout_s,
            connections=connections,
        )

    @property
    def uses_tls(self) -> bool:
        return self._ssl is not None

    async def _execute(self, *args: Arg) -> Any:
        """One command. Private: callers get evalsha only, so nothing else comes to depend on
        a client that implements just the cache's read (redis-py does the rest)."""
        slot = self._next
        self._next = (slot + 1) % len(self._slots)
        connection = self._slots[slot]
        if connection is None or connection.closed:
            connection = await self._connection(slot)
        return await connection.request(args)

    async def evalsha(self, sha: str, script: str, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        try:
            return await self._execute("EVALSHA", sha, len(keys), *keys, *args)
        except redis_errors.NoScriptError:
            # A restart or SCRIPT FLUSH emptied the script cache; EVAL runs and caches it again.
            return await self._execute("EVAL", script, len(keys), *keys, *args)

    async def connect(self) -> None:
        """Open every connection now instead of on first use; raises REDIS_FAILURES-like
        errors (redis-py's ConnectionError or TimeoutError) for the first that fails."""
        await asyncio.gather(*(self._connection(slot) for slot in range(len(self._slots))))

    async def aclose(self) -> None:
        """Fail pending requests and close every connection; later calls raise ConnectionError.

        For shutdown, when no caller should be waiting: a connect in progress is cancelled."""
        self._closed = True
        for task in self._opening:
            if task is not None:
                task.cancel()
        for connection in self._slots:
            if connection is not None:
                connection.fail(redis_errors.ConnectionError, "redis client closed")
        self._slots = [None] * len(self._slots)
        await asyncio.sleep(0)  # lets the transports report their close before the loop ends

    async def _connection(self, slot: int) -> _Connection:
        if self._closed:
            raise redis_errors.ConnectionError("redis client closed")
        # Callers arriving while a slot connects share that attempt instead of each dialing.
        task = self._opening[slot]
        if task is None:
            task = self._opening[slot] = asyncio.create_task(self._open(slot))
        return await asyncio.shield(task)  # one caller's cancellation must not abort the others

    async def _open(self, slot: int) -> _Connection:
        loop = asyncio.get_running_loop()
        connection: _Connection | None = None
        started = time.monotonic()
        try:
            # One bound for the whole of it: TCP, TLS handshake, credentials, AUTH and SELECT.
            async with asyncio.timeout(self._connect_timeout_s):
                if self._path is not None:
                    _, connection = await loop.create_unix_connection(
                        lambda: _Connection(self._timeout_s), self._path
                    )
                else:
                    # With a context, the server's certificate is checked against the host
                    # name as redis-py does (unless its ssl_check_hostname is off).
                    _, connection = await loop.create_connection(
                        lambda: _Connection(self._timeout_s), *self._address, ssl=self._ssl
                    )
                for command in await self._handshake():
                    await connection.request(command)
        except BaseException as error:
            if connection is not None:
                connection.fail(redis_errors.ConnectionError, "redis handshake failed")
            if isinstance(error, Exception):
                self._report_failed_connect(error, time.monotonic() - started, connection)
            # The builtin TimeoutError is an OSError, so it goes first.
            if isinstance(error, TimeoutError):
                raise redis_errors.TimeoutError("timed out connecting to redis") from error
            if isinstance(error, OSError):
                raise redis_errors.ConnectionError(f"cannot connect to redis: {error}") from error
            raise
        finally:
            self._opening[slot] = None
        if self._closed:  # aclose() ran while connecting
            connection.fail(redis_errors.ConnectionError, "redis client closed")
            raise redis_errors.ConnectionError("redis client closed")
        self._slots[slot] = connection
        return connection

    def _report_failed_connect(
        self, error: Exception, after_s: float, connection: _Connection | None
    ) -> None:
        """A reconnect that fails is where a short Redis hiccup becomes seconds without the
        cache: say how far it got and, for a host name, how long a name lookup takes now (a
        container's resolver can stall for seconds while Redis itself answers others)."""
        log.warning(
            "redis connection failed",
            extra={
                "after_s": round(after_s, 3),
                "stage": "connect" if connection is None else "handshake",
                "error": f"{type(error).__name__}: {error}",
            },
        )
        if self._path is None and not self._closed:
            lookup = asyncio.create_task(self._time_lookup(), name="redis-lookup")
            self._lookups.add(lookup)
            lookup.add_done_callback(self._lookups.discard)

    async def _time_lookup(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = self._address
        started = time.monotonic()
        try:
            async with asyncio.timeout(LOOKUP_PROBE_TIMEOUT_S):
                await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            outcome = "resolved"
        except (OSError, TimeoutError) as error:
            outcome = f"{type(error).__name__}: {error}"
        log.warning(
            "redis host name lookup after a failed connection",
            extra={
                "host": host,
                "lookup_s": round(time.monotonic() - started, 3),
                "outcome": outcome,
            },
        )

    async def _handshake(self) -> list[tuple[Arg, ...]]:
        """AUTH and SELECT for a new connection. Credentials are asked for on every connect,
        so a provider's rotated password or token is used from the next reconnect on."""
        commands: list[tuple[Arg, ...]] = []
        if self._credentials is not None:
            commands.append(("AUTH", *await self._credentials.get_credentials_async()))
        if self._db:
            commands.append(("SELECT", self._db))
        return commands
