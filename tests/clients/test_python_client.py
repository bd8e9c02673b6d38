"""The hand-written Python client (clients/python/socialhub/client) against the real server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
import trustme
from cryptography import x509
from socialhub.client import (
    RetryPolicy,
    SocialhubError,
    Tls,
    aio_connect,
    connect,
    items,
    pages,
    resume_stream,
    service_config,
)
from socialhub.v1 import feed_pb2, profile_pb2
from socialhub.v1.feed_pb2_grpc import FeedServiceStub
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from tests.clients.proxy import CuttingProxy
from tests.core.test_auth import own_server
from tests.harness import Backing, ServerThread, test_settings
from tests.helpers import new_profile

T = TypeVar("T")
MISSING = "profiles/999999999"
README = Path(__file__).resolve().parents[2] / "README.md"


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """The client's event loop: the test's own, beside the server's in its thread."""
    return asyncio.run(coroutine)


async def _create_profiles(profiles: Any, count: int) -> list[str]:
    created = await asyncio.gather(
        *(
            profiles.CreateProfile(
                profile_pb2.CreateProfileRequest(profile=new_profile(f"Person {index:03}"))
            )
            for index in range(count)
        )
    )
    return [profile.name for profile in created]


def _shed_total(server: ServerThread) -> float:
    assert server.app is not None
    assert server.app.metrics is not None
    value = server.app.metrics.registry.get_sample_value("socialhub_rpc_shed_total")
    return value or 0.0


# ---------------------------------------------------------------- pagination


def test_items_and_pages_walk_every_page(backing: Backing, server: ServerThread) -> None:
    request = profile_pb2.ListProfilesRequest(page_size=2)

    async def main() -> dict[str, list[Any]]:
        async with aio_connect(server.address, api_key=backing.admin_key, tls=None) as channel:
            profiles = ProfileServiceStub(channel)
            search = profile_pb2.SearchProfilesRequest(query="Person", page_size=3)
            return {
                "created": await _create_profiles(profiles, 7),
                # Typed by the function that picks the results...
                "listed": [
                    (p.display_name, p.name)
                    async for p in items(profiles.ListProfiles, request, lambda r: r.profiles)
                ],
                # ...or found as the response's one repeated message field, or named.
                "found": [p.name async for p in items(profiles.ListProfiles, request)],
                "searched": [
                    p.name async for p in items(profiles.SearchProfiles, search, "profiles")
                ],
                "sizes": [
                    len(page.profiles) async for page in pages(profiles.ListProfiles, request)
                ],
            }

    walked = run(main())
    created = sorted(walked["created"])
    names = [name for _, name in walked["listed"]]
    # Every profile once, in ListProfiles' order (display name), across the four pages.
    assert [shown for shown, _ in walked["listed"]] == [f"Person {i:03}" for i in range(7)]
    assert sorted(names) == created
    assert walked["found"] == names
    assert sorted(walked["searched"]) == created
    assert walked["sizes"] == [2, 2, 2, 1]
    assert request.page_token == "", "the caller's request is never changed"


# ---------------------------------------------------------------- streams


async def _author_with_posts(backing: Backing, server: ServerThread, count: int) -> str:
    """An author with `count` posts, made through the API."""
    async with aio_connect(server.address, api_key=backing.admin_key, tls=None) as channel:
        (author,) = await _create_profiles(ProfileServiceStub(channel), 1)
        feed = FeedServiceStub(channel)
        for start in range(0, count, 20):
            await asyncio.gather(
                *(
                    feed.CreatePost(
                        feed_pb2.CreatePostRequest(
                            post=feed_pb2.Post(author=author, body=f"post {i} " + "x" * 80)
                        )
                    )
                    for i in range(start, min(start + 20, count))
                )
            )
    return author


async def _stream(address: str, key: str, author: str) -> tuple[list[str], list[int]]:
    """The names of the posts `author`'s stream sends, and the size of each batch."""
    # A deadline, so that a stream the test fails to break fails the test instead of hanging.
    async with aio_connect(address, api_key=key, tls=None, stream_timeout=60) as channel:
        feed = FeedServiceStub(channel)
        request = feed_pb2.StreamProfilePostsRequest(author=author, batch_size=2)
        names: list[str] = []
        batches: list[int] = []
        async for message in resume_stream(feed.StreamProfilePosts, request):
            names.extend(post.name for post in message.posts)
            batches.append(len(message.posts))
        return names, batches


def test_a_stream_resumes_from_its_last_cursor_after_the_connection_drops(
    backing: Backing, server: ServerThread
) -> None:
    author = run(_author_with_posts(backing, server, 120))
    expected, _ = run(_stream(server.address, backing.admin_key, author))
    assert len(set(expected)) == 120
    proxy = CuttingProxy.to(server.address).start()
    # 60 messages of 2 posts, a few hundred bytes each: the cut lands about a quarter in.
    proxy.cut_after(downstream_bytes=8_000)
    try:
        names, batches = run(_stream(proxy.address, backing.admin_key, author))
    finally:
        proxy.stop()
    assert proxy.cuts == 1, "the connection was never cut: the test proves nothing"
    assert proxy.connections == 2, "the stream did not reconnect exactly once"
    # Resumed from the cursor: nothing twice, nothing missing, in the stream's order.
    assert names == expected
    assert set(batches) == {2}


def test_a_stream_failure_that_cannot_be_resumed_raises_at_once(
    backing: Backing, server: ServerThread
) -> None:
    async def main() -> SocialhubError:
        async with aio_connect(server.address, api_key=backing.admin_key, tls=None) as channel:
            feed = FeedServiceStub(channel)
            request = feed_pb2.StreamProfilePostsRequest(author="users/1")
            with pytest.raises(SocialhubError) as caught:
                async for _ in resume_stream(feed.StreamProfilePosts, request):
                    pass
            return caught.value

    error = run(main())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error.field_violations] == ["author"]


# ---------------------------------------------------------------- retries


@pytest.fixture
def shedding(backing: Backing) -> Iterator[ServerThread]:
    """A server that refuses every call with RESOURCE_EXHAUSTED and a RetryInfo of 0.1 s."""
    thread = ServerThread(
        test_settings(max_concurrent_rpcs=0), backing.database_url, backing.redis_url
    ).start()
    yield thread
    thread.stop()


def test_retries_wait_the_servers_retry_delay_and_stop_after_max_attempts(
    backing: Backing, shedding: ServerThread
) -> None:
    policy = RetryPolicy(max_attempts=3)

    async def main() -> list[tuple[str, float, float, SocialhubError]]:
        outcomes = []
        async with aio_connect(
            shedding.address, api_key=backing.admin_key, tls=None, retry=policy
        ) as channel:
            profiles = ProfileServiceStub(channel)
            # Made one after the other: an asyncio call starts as soon as it is made.
            calls: list[tuple[str, Callable[[], Any]]] = [
                ("read", lambda: profiles.GetProfile(profile_pb2.GetProfileRequest(name=MISSING))),
                (
                    "create without request_id",
                    lambda: profiles.CreateProfile(
                        profile_pb2.CreateProfileRequest(profile=new_profile())
                    ),
                ),
                (
                    "create with request_id",
                    lambda: profiles.CreateProfile(
                        profile_pb2.CreateProfileRequest(
                            profile=new_profile(), request_id=str(uuid.uuid4())
                        )
                    ),
                ),
            ]
            for label, call in calls:
                before, started = _shed_total(shedding), time.monotonic()
                with pytest.raises(SocialhubError) as caught:
                    await call()
                attempts = _shed_total(shedding) - before
                outcomes.append((label, attempts, time.monotonic() - started, caught.value))
        return outcomes

    outcomes = run(main())
    for label, _, _, error in outcomes:
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, label
        assert error.retry_delay is not None
        assert error.retry_delay.total_seconds() == 0.1
    attempts = {label: count for label, count, _, _ in outcomes}
    assert attempts == {"read": 3, "create without request_id": 1, "create with request_id": 3}
    elapsed = {label: seconds for label, _, seconds, _ in outcomes}
    # Two waits of at least the server's 0.1 s between three attempts.
    assert elapsed["read"] >= 0.2
    assert elapsed["create with request_id"] >= 0.2

    # The synchronous channel has the same layer.
    with connect(shedding.address, api_key=backing.admin_key, tls=None, retry=policy) as channel:
        before, started = _shed_total(shedding), time.monotonic()
        with pytest.raises(SocialhubError) as caught:
            ProfileServiceStub(channel).GetProfile(profile_pb2.GetProfileRequest(name=MISSING))
        assert _shed_total(shedding) - before == 3
        assert time.monotonic() - started >= 0.2
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


class _HeldTable:
    """Holds an ACCESS EXCLUSIVE lock on the profiles table, so a call that reads it waits
    inside the server (and holds one of its concurrent-call slots) until released."""

    def __init__(self, backing: Backing) -> None:
        self.backing = backing
        self.conn = backing.sql()

    def __enter__(self) -> _HeldTable:
        self.conn.execute("BEGIN")
        self.conn.execute("LOCK TABLE profiles IN ACCESS EXCLUSIVE MODE")
        return self

    def release(self) -> None:
        if not self.conn.closed:
            self.conn.execute("ROLLBACK")
            self.conn.close()

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def wait_for_waiter(self) -> None:
        with self.backing.sql() as probe:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                row = probe.execute(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = "
                    "'profiles'::regclass"
                ).fetchone()
                if row is not None and row[0] > 0:
                    return
                time.sleep(0.02)
        raise AssertionError("no call ever waited for the profiles table")


def test_a_retry_succeeds_once_the_server_has_room(backing: Backing) -> None:
    server = ServerThread(
        test_settings(max_concurrent_rpcs=1), backing.database_url, backing.redis_url
    ).start()
    try:
        # A plain channel: on the client's synchronous channel, future() waits for the call.
        with _HeldTable(backing) as held, backing.channel(server.address) as plain:
            # The one slot: a read stuck behind the lock.
            blocker = ProfileServiceStub(plain).GetProfile.future(
                profile_pb2.GetProfileRequest(name=MISSING)
            )
            held.wait_for_waiter()

            def release_after_a_shed() -> None:
                deadline = time.monotonic() + 20
                while _shed_total(server) < 1 and time.monotonic() < deadline:
                    time.sleep(0.01)
                held.release()

            releaser = threading.Thread(target=release_after_a_shed)
            releaser.start()

            async def main() -> tuple[profile_pb2.ListProfilesResponse, float]:
                policy = RetryPolicy(max_attempts=50)
                async with aio_connect(
                    server.address, api_key=backing.admin_key, tls=None, retry=policy
                ) as channel:
                    started = time.monotonic()
                    listed = await ProfileServiceStub(channel).ListProfiles(
                        profile_pb2.ListProfilesRequest()
                    )
                    return listed, time.monotonic() - started

            listed, elapsed = run(main())
            releaser.join()
            with pytest.raises(grpc.RpcError):
                blocker.result(timeout=20)  # NOT_FOUND, once the lock was gone
        assert isinstance(listed, profile_pb2.ListProfilesResponse)
        assert _shed_total(server) >= 1, "the call was never refused: nothing was retried"
        assert elapsed >= 0.1, "the retry did not wait the server's RetryInfo delay"
    finally:
        server.stop()


def test_a_call_without_its_own_deadline_gets_the_channels(
    backing: Backing, server: ServerThread
) -> None:
    with (
        _HeldTable(backing),
        connect(server.address, api_key=backing.admin_key, tls=None, timeout=0.3) as channel,
    ):
        started = time.monotonic()
        with pytest.raises(SocialhubError) as caught:
            ProfileServiceStub(channel).GetProfile(profile_pb2.GetProfileRequest(name=MISSING))
        elapsed = time.monotonic() - started
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.3 <= elapsed < 5


def test_the_service_config_retries_idempotent_methods_only() -> None:
    config = service_config(RetryPolicy(), load_balancing="round_robin", health_check=True)
    (entry,) = config["methodConfig"]
    retried = {(name["service"], name["method"]) for name in entry["name"]}
    assert ("socialhub.v1.ProfileService", "GetProfile") in retried
    assert ("socialhub.v1.ProfileService", "ListProfiles") in retried
    assert ("socialhub.v1.ProfileService", "CreateProfile") not in retried
    assert ("socialhub.v1.ProfileService", "DeleteProfile") not in retried
    assert entry["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE", "ABORTED"]
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    assert config["healthCheckConfig"] == {"serviceName": ""}
    assert "methodConfig" not in service_config(None)


# ---------------------------------------------------------------- errors


def test_error_details_are_decoded_into_one_exception(
    backing: Backing, server: ServerThread
) -> None:
    async def main() -> tuple[SocialhubError, SocialhubError, SocialhubError]:
        async with aio_connect(server.address, api_key=backing.admin_key, tls=None) as channel:
            profiles, feed = ProfileServiceStub(channel), FeedServiceStub(channel)
            with pytest.raises(SocialhubError) as invalid:
                await profiles.GetProfile(profile_pb2.GetProfileRequest(name="users/1"))
            with pytest.raises(SocialhubError) as missing:
                await profiles.GetProfile(
                    profile_pb2.GetProfileRequest(name=MISSING),
                    metadata=(("x-request-id", "client-test-42"),),
                )
            with pytest.raises(SocialhubError) as streamed:
                async for _ in feed.StreamProfilePosts(
                    feed_pb2.StreamProfilePostsRequest(author="users/1")
                ):
                    pass
            return invalid.value, missing.value, streamed.value

    invalid, missing, streamed = run(main())
    assert invalid.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert invalid.domain == "socialhub.dev"
    assert invalid.reason == "REQUEST_FIELD_INVALID"
    assert [v.field for v in invalid.field_violations] == ["name"]
    assert invalid.request_id, "every error names its request"
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    assert missing.reason == "PROFILE_NOT_FOUND"
    assert missing.request_id == "client-test-42"
    assert str(missing).startswith("NOT_FOUND PROFILE_NOT_FOUND: ")
    assert str(missing).endswith("(request_id=client-test-42)")
    assert streamed.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in streamed.field_violations] == ["author"]
    # Still a grpc.RpcError, for code written against plain gRPC.
    assert isinstance(missing, grpc.RpcError)
    assert missing.details() == missing.message

    with connect(server.address, api_key=backing.admin_key, tls=None) as channel:
        with pytest.raises(SocialhubError) as sync_missing:
            ProfileServiceStub(channel).GetProfile(profile_pb2.GetProfileRequest(name=MISSING))
        with pytest.raises(SocialhubError) as sync_streamed:
            for _ in FeedServiceStub(channel).StreamProfilePosts(
                feed_pb2.StreamProfilePostsRequest(author="users/1")
            ):
                pass
    assert sync_missing.value.reason == "PROFILE_NOT_FOUND"
    assert sync_streamed.value.field_violations == streamed.field_violations


# ---------------------------------------------------------------- the key and TLS


def _code(call: Any) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        return code
    return grpc.StatusCode.OK


def test_the_key_travels_as_metadata_on_plaintext(backing: Backing, server: ServerThread) -> None:
    reader = backing.issue_key("client reader", ["profiles.read"])
    get = profile_pb2.GetProfileRequest(name=MISSING)
    create = profile_pb2.CreateProfileRequest(profile=new_profile())
    with connect(server.address, api_key=reader, tls=None) as channel:
        stub = ProfileServiceStub(channel)
        assert _code(lambda: stub.GetProfile(get)) == grpc.StatusCode.NOT_FOUND  # authenticated
        with pytest.raises(SocialhubError) as caught:
            stub.CreateProfile(create)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED  # as the reader
        assert caught.value.metadata.get("scope") == "profiles.write"
    with connect(server.address, tls=None) as channel:
        assert _code(lambda: ProfileServiceStub(channel).GetProfile(get)) == (
            grpc.StatusCode.UNAUTHENTICATED
        )

    async def aio_codes() -> tuple[grpc.StatusCode, grpc.StatusCode]:
        async with aio_connect(server.address, api_key=reader, tls=None) as channel:
            stub = ProfileServiceStub(channel)
            with pytest.raises(SocialhubError) as missing:
                await stub.GetProfile(get)
            with pytest.raises(SocialhubError) as denied:
                await stub.CreateProfile(create)
            return missing.value.code(), denied.value.code()

    assert run(aio_codes()) == (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED)


class _Pki:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ca = trustme.CA()
        self.ca_file = folder / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        issued = self.ca.issue_cert("localhost", "127.0.0.1")
        self.cert_file, self.key_file = folder / "server.pem", folder / "server.key"
        self.cert_file.write_bytes(b"".join(pem.bytes() for pem in issued.cert_chain_pems))
        issued.private_key_pem.write_to_path(str(self.key_file))

    def client(self, name: str) -> tuple[Path, Path, str]:
        issued = self.ca.issue_cert(f"{name}@example.org", common_name=name)
        cert, key = self.folder / f"{name}.pem", self.folder / f"{name}.key"
        issued.cert_chain_pems[0].write_to_path(str(cert))
        issued.private_key_pem.write_to_path(str(key))
        subject = x509.load_pem_x509_certificate(cert.read_bytes()).subject.rfc4514_string()
        return cert, key, subject


def test_tls_verifies_the_server_and_sends_the_key_as_call_credentials(
    backing: Backing, tmp_path: Path
) -> None:
    pki = _Pki(tmp_path)
    get = profile_pb2.GetProfileRequest(name=MISSING)
    with own_server(backing, tls_cert_file=pki.cert_file, tls_key_file=pki.key_file) as tls:
        with connect(tls.address, api_key=backing.admin_key, tls=Tls(ca_file=pki.ca_file)) as ok:
            assert _code(lambda: ProfileServiceStub(ok).GetProfile(get)) == (
                grpc.StatusCode.NOT_FOUND
            )
        with connect(tls.address, tls=Tls(ca_file=pki.ca_file)) as keyless:
            assert _code(lambda: ProfileServiceStub(keyless).GetProfile(get)) == (
                grpc.StatusCode.UNAUTHENTICATED
            )
        # The system's roots do not know the test CA: the handshake fails.
        with connect(tls.address, api_key=backing.admin_key, timeout=5) as untrusted:
            assert _code(lambda: ProfileServiceStub(untrusted).GetProfile(get)) == (
                grpc.StatusCode.UNAVAILABLE
            )

        async def aio_code() -> grpc.StatusCode:
            async with aio_connect(
                tls.address, api_key=backing.admin_key, tls=Tls(ca_file=pki.ca_file)
            ) as channel:
                with pytest.raises(SocialhubError) as caught:
                    await ProfileServiceStub(channel).GetProfile(get)
                return caught.value.code()

        assert run(aio_code()) == grpc.StatusCode.NOT_FOUND


def test_mtls_presents_the_client_certificate(backing: Backing, tmp_path: Path) -> None:
    pki = _Pki(tmp_path)
    cert, key, subject = pki.client("operator")
    get = profile_pb2.GetProfileRequest(name=MISSING)
    with own_server(
        backing,
        tls_cert_file=pki.cert_file,
        tls_key_file=pki.key_file,
        tls_client_ca_file=pki.ca_file,
        tls_require_client_cert=True,
        tls_client_principals={subject: {"scopes": ["profiles.read"]}},
    ) as mtls:
        client_tls = Tls(ca_file=pki.ca_file, cert_file=cert, key_file=key)
        with connect(mtls.address, tls=client_tls) as channel:  # no key: the certificate
            assert _code(lambda: ProfileServiceStub(channel).GetProfile(get)) == (
                grpc.StatusCode.NOT_FOUND
            )
        with connect(mtls.address, tls=Tls(ca_file=pki.ca_file), timeout=5) as anonymous:
            assert _code(lambda: ProfileServiceStub(anonymous).GetProfile(get)) == (
                grpc.StatusCode.UNAVAILABLE  # the server requires a certificate
            )
    with pytest.raises(ValueError, match="cert_file and key_file"):
        Tls(cert_file=cert)


# ---------------------------------------------------------------- several addresses


def _ok_calls(server: ServerThread) -> float:
    assert server.app is not None
    assert server.app.metrics is not None
    return sum(
        sample.value
        for metric in server.app.metrics.registry.collect()
        if metric.name == "socialhub_rpc_calls"
        for sample in metric.samples
        if sample.name == "socialhub_rpc_calls_total" and sample.labels.get("code") == "OK"
    )


def test_several_addresses_are_balanced_and_one_stopping_fails_no_read(
    backing: Backing, server: ServerThread
) -> None:
    other = ServerThread(test_settings(), backing.database_url, backing.redis_url).start()
    running = True
    try:
        addresses = [server.address, other.address]
        with connect(addresses, api_key=backing.admin_key, tls=None) as channel:
            stub = ProfileServiceStub(channel)
            request = profile_pb2.ListProfilesRequest(page_size=1)
            start, deadline = (_ok_calls(server), _ok_calls(other)), time.monotonic() + 20
            # Until both are connected: round_robin only picks replicas that are ready.
            while _ok_calls(server) == start[0] or _ok_calls(other) == start[1]:
                assert time.monotonic() < deadline, "a replica never got a call"
                stub.ListProfiles(request)
            before = _ok_calls(server), _ok_calls(other)
            for _ in range(10):
                stub.ListProfiles(request)
            served = _ok_calls(server) - before[0], _ok_calls(other) - before[1]
            assert served == (5, 5), f"round_robin should alternate: {served}"
            other.stop()
            running = False
            for _ in range(10):  # every read still succeeds, on the replica left
                stub.ListProfiles(request)
    finally:
        if running:
            other.stop()


# ---------------------------------------------------------------- the README


def test_the_readme_example_runs(backing: Backing, server: ServerThread) -> None:
    section = README.read_text().split("\n## Python client\n", 1)[1].split("\n## ", 1)[0]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    with connect(server.address, api_key=backing.admin_key, tls=None) as channel:
        author = ProfileServiceStub(channel).CreateProfile(
            profile_pb2.CreateProfileRequest(profile=new_profile("Ada Lovelace"))
        )
        assert author.name == "profiles/1", "the example streams the posts of profiles/1"
        for index in range(3):
            post = feed_pb2.Post(author=author.name, body=f"note {index}")
            FeedServiceStub(channel).CreatePost(feed_pb2.CreatePostRequest(post=post))
    env = {**os.environ, "SOCIALHUB_ADDRESS": server.address, "SOCIALHUB_KEY": backing.admin_key}
    done = subprocess.run(
        [sys.executable, "-c", example],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "profiles/1 Ada Lovelace"
    assert "3 posts" in lines
    assert lines[-1].startswith("NOT_FOUND PROFILE_NOT_FOUND ")
