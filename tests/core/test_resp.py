"""The pipelined RESP client against the real embedded Redis, on both event loops, and
against a real Redis serving TLS (tests/tls_servers.py)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import subprocess
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
import uvloop
from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.sentinel import Sentinel
from redis.credentials import CredentialProvider

from server.core.embedded import EmbeddedRedis, redis_server_binary
from server.core.resp import (
    DEFAULT_TIMEOUT_S,
    LOOKUP_PROBE_TIMEOUT_S,
    RespClient,
    UnsupportedRedisConnection,
)
from tests.harness import Backing
from tests.tls_servers import TestCA, TlsRedis, test_ca

T = TypeVar("T")
Runner = Callable[[Coroutine[Any, Any, T]], T]

SCRIPT = "return {KEYS[1], ARGV[1]}"
SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Runner[Any]:
    """Production serves on uvloop, the test server on asyncio: the client must work on both."""
    if request.param == "uvloop":
        return uvloop.run
    return asyncio.run


def client_for(url: str, **overrides: Any) -> RespClient:
    settings = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0, **overrides}
    return RespClient.for_redis(Redis.from_url(url, **settings))


@pytest.fixture
def sync_redis(backing: Backing) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(backing.redis_url) as client:
        yield client


def test_concurrent_requests_each_get_their_own_reply(
    backing: Backing, sync_redis: redis.Redis, run: Runner[Any]
) -> None:
    sync_redis.mset({f"resp:{i}": f"value-{i}" for i in range(500)})

    async def main() -> list[Any]:
        client = client_for(backing.redis_url)
        try:
            return await asyncio.gather(*(client._execute("GET", f"resp:{i}") for i in range(500)))
        finally:
            await client.aclose()

    assert run(main()) == [f"value-{i}".encode() for i in range(500)]


def test_error_replies_raise_and_leave_the_connection_usable(
    backing: Backing, sync_redis: redis.Redis, run: Runner[Any]
) -> None:
    sync_redis.set("resp:text", "not a number")

    async def main() -> tuple[Any, ...]:
        client = client_for(backing.redis_url, socket_timeout=5.0)
        try:
            with pytest.raises(redis_errors.ResponseError, match="not an integer"):
                await client._execute("INCR", "resp:text")
            with pytest.raises(redis_errors.NoScriptError):
                await client._execute("EVALSHA", "0" * 40, 0)
            # Errors between pipelined replies do not shift the others.
            return await asyncio.gather(
                client._execute("NOSUCHCOMMAND"),
                client._execute("GET", "resp:text"),
                client._execute("INCR", "resp:text"),
                client._execute("PING"),
                return_exceptions=True,
            )
        finally:
            await client.aclose()

    unknown, text, incr, pong = run(main())
    assert type(unknown) is redis_errors.ResponseError
    assert text == b"not a number"
    assert isinstance(incr, redis_errors.ResponseError)
    assert pong == b"PONG"


def test_evalsha_reloads_a_flushed_script(
    backing: Backing, sync_redis: redis.Redis, run: Runner[Any]
) -> None:
    async def main() -> tuple[Any, Any]:
        client = client_for(backing.redis_url)
        try:
            first = await client.evalsha(SHA, SCRIPT, ["k"], ["a"])
            sync_redis.script_flush()
            return first, await client.evalsha(SHA, SCRIPT, ["k"], [2])
        finally:
            await client.aclose()

    assert run(main()) == ([b"k", b"a"], [b"k", b"2"])
    assert sync_redis.script_exists(SHA) == [True]  # EVAL cached it again


def test_a_killed_connection_fails_pending_calls_and_the_next_call_reconnects(
    backing: Backing, sync_redis: redis.Redis, run: Runner[Any]
) -> None:
    async def main() -> Any:
        client = client_for(backing.redis_url, socket_timeout=5.0)
        try:
            await client._execute("PING")  # connected
            blocked = asyncio.gather(
                *(client._execute("BLPOP", f"resp:never:{i}", 3) for i in range(4)),
                return_exceptions=True,
            )
            await asyncio.sleep(0.1)
            await asyncio.to_thread(sync_redis.client_kill_filter, _type="normal")
            errors = await asyncio.wait_for(blocked, 2)
            assert all(isinstance(error, redis_errors.ConnectionError) for error in errors)
            return await client._execute("PING")
        finally:
            await client.aclose()

    assert run(main()) == b"PONG"


def test_redis_restart_fails_calls_while_down_and_recovers_with_scripts(
    own_redis: EmbeddedRedis, run: Runner[Any]
) -> None:
    async def main() -> Any:
        client = client_for(f"redis://127.0.0.1:{own_redis.port}/0")
        try:
            await client.evalsha(SHA, SCRIPT, ["k"], ["before"])
            await asyncio.to_thread(own_redis.stop)
            try:
                with pytest.raises(redis_errors.ConnectionError):
                    await client._execute("PING")
                with pytest.raises(redis_errors.ConnectionError):
                    await client._execute("PING")  # still down: a new attempt, not a hang
            finally:
                await asyncio.to_thread(own_redis.start)
            # The restarted Redis has no scripts.
            return await client.evalsha(SHA, SCRIPT, ["k"], ["after"])
        finally:
            await client.aclose()

    assert run(main()) == [b"k", b"after"]


def test_a_paused_redis_times_out_and_the_client_recovers(
    backing: Backing, sync_redis: redis.Redis, run: Runner[Any]
) -> None:
    sync_redis.mset({"resp:a": "a", "resp:b": "b"})

    async def main() -> Any:
        client = client_for(backing.redis_url, socket_timeout=0.2, socket_connect_timeout=0.2)
        try:
            await asyncio.gather(client._execute("PING"), client._execute("PING"))
            await asyncio.to_thread(sync_redis.client_pause, 700, all=True)
            started = time.monotonic()
            stuck = await asyncio.gather(
                *(client._execute("GET", "resp:a") for _ in range(6)), return_exceptions=True
            )
            assert time.monotonic() - started < 0.5
            assert all(isinstance(error, redis_errors.TimeoutError) for error in stuck)
            await asyncio.sleep(0.8)  # unpaused: the replies to the timed-out GETs must not
            # reach the new calls, so the old connections were dropped.
            return await asyncio.gather(
                *(client._execute("GET", key) for key in ["resp:b", "resp:a"] * 3)
            )
        finally:
            await client.aclose()

    assert run(main()) == [b"b", b"a"] * 3


def test_a_cancelled_call_does_not_shift_later_replies(
    backing: Backing, sync_redis: redis.Redis, run: Runner[Any]
) -> None:
    sync_redis.mset({"resp:a": "a", "resp:b": "b"})

    async def main() -> Any:
        client = client_for(backing.redis_url)
        try:
            await client._execute("PING")
            cancelled = asyncio.ensure_future(client._execute("GET", "resp:a"))
            await asyncio.sleep(0)  # written
            cancelled.cancel()
            return [await client._execute("GET", "resp:b") for _ in range(4)]
        finally:
            await client.aclose()

    assert run(main()) == [b"b"] * 4


class Credentials(CredentialProvider):
    """A provider (rotating passwords, cloud IAM tokens) instead of a password in the URL."""

    def get_credentials(self) -> tuple[str, str]:
        return ("resp-test", "secret")

    async def get_credentials_async(self) -> tuple[str, str]:
        return self.get_credentials()


def test_database_and_acl_user_come_from_the_redis_py_settings(
    backing: Backing, sync_redis: redis.Redis, run: Runner[Any]
) -> None:
    sync_redis.acl_setuser(
        "resp-test", enabled=True, passwords=["+secret"], keys=["*"], categories=["+@all"]
    )
    base = backing.redis_url.rsplit("/", 1)[0].replace("redis://", "")
    try:

        async def main() -> None:
            client = client_for(f"redis://resp-test:secret@{base}/3")
            wrong = client_for(f"redis://resp-test:wrong@{base}/3")
            provided = client_for(f"redis://{base}/0", credential_provider=Credentials())
            try:
                assert await client._execute("ACL", "WHOAMI") == b"resp-test"
                await client._execute("SET", "resp:in-db-3", "yes")
                with pytest.raises(redis_errors.AuthenticationError):
                    await wrong._execute("PING")
                assert await provided._execute("ACL", "WHOAMI") == b"resp-test"
            finally:
                await client.aclose()
                await wrong.aclose()
                await provided.aclose()

        run(main())
        with redis.Redis.from_url(f"redis://{base}/3") as db3:
            assert db3.get("resp:in-db-3") == b"yes"
            db3.flushdb()
        assert sync_redis.get("resp:in-db-3") is None
    finally:
        sync_redis.acl_deluser("resp-test")


def _accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            return False
    return True


def test_unix_socket(tmp_path: Path, run: Runner[Any]) -> None:
    path = tmp_path / "redis.sock"
    server = subprocess.Popen(
        [redis_server_binary(), "--port", "0", "--unixsocket", str(path), "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    try:
        # The socket's file appears when redis binds it, a moment before it listens (a
        # connection in between is refused): wait for a connection to be accepted.
        deadline = time.monotonic() + 10
        while not _accepts(path):
            assert time.monotonic() < deadline, "redis did not listen on its socket"
            time.sleep(0.02)

        async def main() -> Any:
            client = client_for(f"unix://{path}?db=1")
            try:
                await client._execute("SET", "k", "over a unix socket")
                return await client._execute("GET", "k")
            finally:
                await client.aclose()

        assert run(main()) == b"over a unix socket"
    finally:
        server.terminate()
        server.wait(10)


def test_what_it_cannot_connect_to_is_refused_not_left_to_a_slower_client() -> None:
    """Sentinel-managed pools find their server through the sentinels: refused at startup."""
    sentinel = Sentinel([("127.0.0.1", 26379)])  # type: ignore[no-untyped-call,unused-ignore]
    with pytest.raises(UnsupportedRedisConnection, match="Sentinel"):
        RespClient.for_redis(sentinel.master_for("cache"))
    tls = RespClient.for_redis(Redis.from_url("rediss://cache.internal:6380/0"))
    assert tls.uses_tls


def test_a_client_without_timeouts_still_waits_a_bounded_time() -> None:
    untimed = RespClient.for_redis(
        Redis.from_url("redis://127.0.0.1:6379/0", socket_timeout=None, socket_connect_timeout=None)
    )
    assert untimed._timeout_s == untimed._connect_timeout_s == DEFAULT_TIMEOUT_S
    with pytest.raises(ValueError, match="positive"):
        RespClient(timeout_s=0)


def test_with_no_configured_timeout_a_paused_redis_fails_after_the_default_bound(
    backing: Backing, sync_redis: redis.Redis, run: Runner[Any]
) -> None:
    async def main() -> float:
        client = client_for(backing.redis_url, socket_timeout=None, socket_connect_timeout=None)
        try:
            await client._execute("PING")
            await asyncio.to_thread(sync_redis.client_pause, 2500, all=True)
            started = time.monotonic()
            with pytest.raises(redis_errors.TimeoutError):
                await client._execute("PING")
            return time.monotonic() - started
        finally:
            await client.aclose()
            await asyncio.to_thread(sync_redis.client_unpause)

    waited = run(main())
    assert DEFAULT_TIMEOUT_S * 0.9 < waited < DEFAULT_TIMEOUT_S + 0.5


def test_a_closed_client_refuses_calls(backing: Backing, run: Runner[Any]) -> None:
    async def main() -> None:
        client = client_for(backing.redis_url)
        await client._execute("PING")
        await client.aclose()
        with pytest.raises(redis_errors.ConnectionError, match="closed"):
            await client._execute("PING")

    run(main())


def test_answered_requests_never_time_out_however_long_the_traffic_lasts(
    backing: Backing, run: Runner[Any]
) -> None:
    """The one timer per connection follows the oldest pending request, not the first one."""

    async def main() -> int:
        client = client_for(backing.redis_url, socket_timeout=0.1)
        calls = 0
        try:
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                await asyncio.gather(*(client._execute("PING") for _ in range(4)))
                calls += 4
            return calls
        finally:
            await client.aclose()

    assert run(main()) > 100


# ---------------------------------------------------------------- over TLS


@pytest.fixture(scope="module")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return test_ca(tmp_path_factory.mktemp("resp-ca"))


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory, tls_ca: TestCA) -> Iterator[TlsRedis]:
    server = TlsRedis(
        tmp_path_factory.mktemp("resp-tls-redis"), tls_ca, bind=("127.0.0.1", "127.0.0.2")
    )
    server.start()
    yield server
    server.stop()


def test_over_tls_pipelined_replies_each_reach_their_caller(
    tls_redis: TlsRedis, run: Runner[Any]
) -> None:
    with redis.Redis.from_url(tls_redis.url) as setup:
        setup.mset({f"tls:{i}": f"value-{i}" for i in range(300)})

    async def main() -> list[Any]:
        client = client_for(tls_redis.url)
        assert client.uses_tls
        try:
            first = await asyncio.gather(*(client._execute("GET", f"tls:{i}") for i in range(300)))
            # Scripts too, as the cache reads: the same EVALSHA, and EVAL after a flush.
            await client.evalsha(SHA, SCRIPT, ["k"], ["a"])
            await client._execute("SCRIPT", "FLUSH")
            return [*first, await client.evalsha(SHA, SCRIPT, ["k"], ["tls"])]
        finally:
            await client.aclose()

    assert run(main()) == [*(f"value-{i}".encode() for i in range(300)), [b"k", b"tls"]]


def test_over_tls_the_server_certificate_is_checked(
    tls_redis: TlsRedis, tmp_path: Path, run: Runner[Any]
) -> None:
    other_ca = test_ca(tmp_path / "other")

    # The certificate names 127.0.0.1 and localhost, not 127.0.0.2, where Redis listens too.
    other_name = tls_redis.url.replace("127.0.0.1", "127.0.0.2")

    async def main() -> Any:
        untrusted = client_for(
            tls_redis.url.replace(str(tls_redis.ca.ca_file), str(other_ca.ca_file))
        )
        wrong_name = client_for(other_name)
        unchecked_name = client_for(other_name + "&ssl_check_hostname=false")
        plain = client_for(f"redis://127.0.0.1:{tls_redis.port}/0", socket_timeout=0.3)
        try:
            with pytest.raises(redis_errors.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
                await untrusted._execute("PING")
            with pytest.raises(redis_errors.ConnectionError, match="IP address mismatch"):
                await wrong_name._execute("PING")
            # A plain client gets no RESP reply from a TLS port: it fails, it does not hang.
            with pytest.raises((redis_errors.ConnectionError, redis_errors.TimeoutError)):
                await plain._execute("PING")
            # As with redis-py, ssl_check_hostname=false still checks the CA, not the name.
            return await unchecked_name._execute("PING")
        finally:
            for client in (untrusted, wrong_name, unchecked_name, plain):
                await client.aclose()

    assert run(main()) == b"PONG"


def test_over_tls_acl_users_authenticate_and_wrong_passwords_are_auth_errors(
    tls_redis: TlsRedis, run: Runner[Any]
) -> None:
    with redis.Redis.from_url(tls_redis.url) as setup:
        setup.acl_setuser(
            "tls-user", enabled=True, passwords=["+s3cret"], keys=["*"], categories=["+@all"]
        )

    async def main() -> None:
        client = client_for(tls_redis.url_for("tls-user:s3cret", database=2))
        wrong = client_for(tls_redis.url_for("tls-user:nope"))
        try:
            assert await client._execute("ACL", "WHOAMI") == b"tls-user"
            info = (await client._execute("CLIENT", "INFO")).decode()
            assert " db=2 " in f" {info} "
            with pytest.raises(redis_errors.AuthenticationError):
                await wrong._execute("PING")
        finally:
            await client.aclose()
            await wrong.aclose()

    run(main())


def test_a_failed_connection_is_logged_with_how_long_a_name_lookup_takes(
    run: Runner[Any], caplog: pytest.LogCaptureFixture
) -> None:
    """The compose drill's stale reads came with reconnects that failed for seconds while
    Redis answered the other replicas: the log must tell a slow resolver from the rest."""
    caplog.set_level(logging.WARNING, logger="socialhub.cache")
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, never listening: connections are refused

    async def main() -> None:
        client = client_for(f"redis://localhost:{port}/0")
        with pytest.raises(redis_errors.ConnectionError, match="cannot connect"):
            await client._execute("PING")
        for _ in range(100):  # the lookup runs in the background
            if len(caplog.records) == 2:
                break
            await asyncio.sleep(0.02)
        await client.aclose()

    run(main())
    failed, lookup = caplog.records
    assert failed.getMessage() == "redis connection failed"
    assert failed.stage == "connect"  # type: ignore[attr-defined]
    assert "refused" in failed.error.lower()  # type: ignore[attr-defined]
    assert lookup.getMessage() == "redis host name lookup after a failed connection"
    assert (lookup.host, lookup.outcome) == ("localhost", "resolved")  # type: ignore[attr-defined]
    assert 0 <= lookup.lookup_s < LOOKUP_PROBE_TIMEOUT_S  # type: ignore[attr-defined]
