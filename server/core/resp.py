"""A small pipelined RESP2 client for the cache's hot read.

redis-py's asyncio client spends ~50 µs of CPU per command (pool checkout, a parser per
connection, retry and notification machinery). This client keeps a few connections and
pipelines on each: a request appends a future to its connection's FIFO queue and writes
the packed command, and Redis answers in order, so every parsed reply goes to the oldest
future. That costs ~10 µs per command. It only does what the hot path needs (plain
commands and EVALSHA); everything else stays on redis-py, whose settings it copies.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

import hiredis
from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.connection import Connection, UnixDomainSocketConnection

Arg = str | bytes | int | float

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

    def __init__(self, timeout_s: float | None) -> None:
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
        deadline = 0.0
        if self._timeout_s is not None:
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
        timeout_s: float | None = None,
        connect_timeout_s: float | None = None,
        connections: int = 2,
    ) -> None:
        self._address = (host, port)
        self._path = path
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s if connect_timeout_s is not None else timeout_s
        self._handshake: list[tuple[Arg, ...]] = []
        if password is not None:
            self._handshake.append(("AUTH", username, password) if username else ("AUTH", password))
        if db:
            self._handshake.append(("SELECT", db))
        self._slots: list[_Connection | None] = [None] * connections
        self._opening: list[asyncio.Task[_Connection] | None] = [None] * connections
        self._next = 0
        self._closed = False

    @classmethod
    def for_redis(cls, redis: Redis, connections: int = 2) -> RespClient | None:
        """The same server and settings as `redis`; None if it needs what this client lacks
        (TLS, sentinel, credential providers), and the caller should use redis-py instead."""
        pool = redis.connection_pool
        kwargs = pool.connection_kwargs
        if pool.connection_class not in (Connection, UnixDomainSocketConnection) or kwargs.get(
            "credential_provider"
        ):
            return None
        return cls(
            host=kwargs.get("host", "localhost"),
            port=int(kwargs.get("port", 6379)),
            path=kwargs.get("path"),
            db=int(kwargs.get("db", 0)),
            username=kwargs.get("username"),
            password=kwargs.get("password"),
            timeout_s=kwargs.get("socket_timeout"),
            connect_timeout_s=kwargs.get("socket_connect_timeout"),
            connections=connections,
        )

    async def execute(self, *args: Arg) -> Any:
        slot = self._next
        self._next = (slot + 1) % len(self._slots)
        connection = self._slots[slot]
        if connection is None or connection.closed:
            connection = await self._connection(slot)
        return await connection.request(args)

    async def evalsha(self, sha: str, script: str, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        try:
            return await self.execute("EVALSHA", sha, len(keys), *keys, *args)
        except redis_errors.NoScriptError:
            # A restart or SCRIPT FLUSH emptied the script cache; EVAL runs and caches it again.
            return await self.execute("EVAL", script, len(keys), *keys, *args)

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
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                if self._path is not None:
                    _, connection = await loop.create_unix_connection(
                        lambda: _Connection(self._timeout_s), self._path
                    )
                else:
                    _, connection = await loop.create_connection(
                        lambda: _Connection(self._timeout_s), *self._address
                    )
                for command in self._handshake:
                    await connection.request(command)
        except BaseException as error:
            if connection is not None:
                connection.fail(redis_errors.ConnectionError, "redis handshake failed")
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
