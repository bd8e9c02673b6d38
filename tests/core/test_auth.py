"""Authentication and authorization: API keys, scopes per method, caching and its bound."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shlex
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from socialhub.v1 import feed_pb2, profile_pb2
from socialhub.v1.feed_pb2_grpc import FeedServiceStub
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub
from sqlalchemy import event

from server.core import apikeys, auth
from server.core.db import create_engine
from server.core.embedded import free_port
from server.core.errors import Unauthenticated
from server.core.interceptors import InstrumentedServer
from tests.harness import Backing, ServerThread, test_settings
from tests.helpers import error_reason, new_profile, rich_status, stopped_in_time
from tests.readme import GRPCURL

WHOAMI = "socialhub.test.Whoami"

# Every method of every service, as read or write: a new method fails this test until its
# access is decided here, so nothing becomes writable with a read scope by accident.
ACCESS = {
    "socialhub.v1.ProfileService": {
        "CreateProfile": "write",
        "GetProfile": "read",
        "BatchGetProfiles": "read",
        "UpdateProfile": "write",
        "DeleteProfile": "write",
        "BatchDeleteProfiles": "write",
        "ListProfiles": "read",
        "SearchProfiles": "read",
        "SummarizeProfiles": "read",
    },
    "socialhub.v1.FeedService": {
        "CreatePost": "write",
        "GetPost": "read",
        "BatchGetPosts": "read",
        "UpdatePost": "write",
        "DeletePost": "write",
        "ListPosts": "read",
        "StreamProfilePosts": "read",
        "StreamTimeline": "read",
        "CreateFollow": "write",
        "GetFollow": "read",
        "DeleteFollow": "write",
        "ListFollows": "read",
        "GetRelationship": "read",
        "CreateComment": "write",
        "ListComments": "read",
        "DeleteComment": "write",
        "CreateLike": "write",
        "GetLike": "read",
        "DeleteLike": "write",
        "SearchPostsByTag": "read",
        "ListActivityEvents": "read",
    },
    "socialhub.v1.PublishingService": {
        "CreateBusiness": "write",
        "GetBusiness": "read",
        "ListBusinesses": "read",
        "UpdateBusiness": "write",
        "StartAccountConnection": "write",
        "CompleteAccountConnection": "write",
        "ConnectAccount": "write",
        "GetAccount": "read",
        "ListAccounts": "read",
        "UpdateAccount": "write",
        "DisconnectAccount": "write",
        "CreateBusinessPost": "write",
        "GetBusinessPost": "read",
        "ListBusinessPosts": "read",
        "UpdateBusinessPost": "write",
        "CancelBusinessPost": "write",
        "DeleteBusinessPost": "write",
        "ListPublishAttempts": "read",
        "WatchBusinessPost": "read",
    },
    "socialhub.v1.AnalyticsService": {
        "BatchCreateMetricSnapshots": "write",
        "ImportMetricSnapshots": "write",  # client-streaming, so not "Stream..." (a read verb)
        "BatchCreateFollowerCounts": "write",
        "BatchCreateAudienceSnapshots": "write",
        "GetDirectoryStats": "read",
        "GetProfileAnalytics": "read",
        "GetPostAnalytics": "read",
        "GetAudienceDemographics": "read",
        "SearchCreators": "read",
        "GetPostInsights": "read",
        "GetProfileInsights": "read",
        "WatchProfileMetrics": "read",
        "WatchServiceMetrics": "read",
    },
}


def _error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    for detail in rich_status(error).details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    raise AssertionError("no ErrorInfo")


def _failure(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def _get_profile(channel: grpc.Channel) -> object:
    return ProfileServiceStub(channel).GetProfile(
        profile_pb2.GetProfileRequest(name="profiles/1"), timeout=10
    )


def _passes_auth(call: Callable[[], object]) -> bool:
    """True if the call got past authentication and authorization (NOT_FOUND counts)."""
    try:
        call()
    except grpc.RpcError as error:
        code = error.code()
    else:
        return True
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return False
    assert code == grpc.StatusCode.NOT_FOUND, code
    return True


# ---------------------------------------------------------------- the rule, over the protos


def test_every_method_of_every_service_is_read_or_write_by_its_verb(
    server: ServerThread,
) -> None:
    assert server.app is not None
    pool = descriptor_pool.Default()
    found = {
        service: {
            method.name: auth.access_of(method.name)
            for method in pool.FindServiceByName(service).methods
        }
        for service in server.app.scopes_by_service
    }
    assert found == ACCESS
    assert server.app.scopes_by_service == {
        "socialhub.v1.ProfileService": "profiles",
        "socialhub.v1.FeedService": "feed",
        "socialhub.v1.PublishingService": "publishing",
        "socialhub.v1.AnalyticsService": "analytics",
    }


def test_verbs_are_whole_words() -> None:
    assert auth.access_of("Get") == "read"
    assert auth.access_of("Getaway") == "write"
    assert auth.access_of("Listen") == "write"
    assert auth.access_of("BatchGetThings") == "read"
    assert auth.access_of("BatchUpdateThings") == "write"
    assert auth.access_of("WatchThings") == "read"
    assert auth.required_scope("profiles", "ListProfiles") == "profiles.read"


# ---------------------------------------------------------------- credentials


def test_a_call_without_a_key_is_unauthenticated(server: ServerThread) -> None:
    with grpc.insecure_channel(server.address) as channel:
        error = _failure(lambda: _get_profile(channel))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_reason(error) == "API_KEY_MISSING"
    assert "authorization: Bearer" in (error.details() or "")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer sh_0123abcd_" + "A" * 43,  # well formed, never issued
        "Bearer not-a-key",
        "Basic dXNlcjpwYXNz",
        "Bearer",
    ],
)
def test_unknown_or_malformed_keys_are_unauthenticated(server: ServerThread, header: str) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = ProfileServiceStub(channel)
        error = _failure(
            lambda: stub.GetProfile(
                profile_pb2.GetProfileRequest(name="profiles/1"),
                metadata=(("authorization", header),),
            )
        )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_reason(error) == "API_KEY_INVALID"


def test_a_key_past_its_expiry_is_refused_even_while_cached(
    backing: Backing, server: ServerThread
) -> None:
    key = backing.issue_key("expiring", ["admin"], expires_in=timedelta(seconds=2))
    with backing.channel(server.address, key) as channel:
        assert _passes_auth(lambda: _get_profile(channel))
        time.sleep(2.2)
        error = _failure(lambda: _get_profile(channel))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_reason(error) == "API_KEY_EXPIRED"


def test_expired_and_revoked_keys_are_unauthenticated(
    backing: Backing, server: ServerThread
) -> None:
    expired = backing.issue_key("expired", ["admin"])
    revoked = backing.issue_key("revoked", ["admin"])
    with backing.sql() as conn:
        conn.execute(
            "UPDATE api_keys SET expire_time = now() - interval '1 minute' WHERE key_hash = %s",
            (apikeys.digest(expired),),
        )
        conn.execute(
            "UPDATE api_keys SET revoke_time = now() WHERE key_hash = %s",
            (apikeys.digest(revoked),),
        )
    for key, reason in ((expired, "API_KEY_EXPIRED"), (revoked, "API_KEY_REVOKED")):
        with backing.channel(server.address, key) as channel:
            error = _failure(lambda: _get_profile(channel))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error_reason(error) == reason


# ---------------------------------------------------------------- scopes


def test_each_scope_allows_its_service_and_access_only(
    backing: Backing, server: ServerThread
) -> None:
    calls: dict[str, Callable[[grpc.Channel], object]] = {
        "profiles.read": _get_profile,
        "profiles.write": lambda channel: ProfileServiceStub(channel).CreateProfile(
            profile_pb2.CreateProfileRequest(profile=new_profile())
        ),
        "feed.read": lambda channel: FeedServiceStub(channel).GetPost(
            feed_pb2.GetPostRequest(name="posts/1")
        ),
        "feed.write": lambda channel: FeedServiceStub(channel).DeletePost(
            feed_pb2.DeletePostRequest(name="posts/1")
        ),
        # A stream: authorized before its first message.
        "feed.read (stream)": lambda channel: list(
            FeedServiceStub(channel).StreamProfilePosts(
                feed_pb2.StreamProfilePostsRequest(author="profiles/1")
            )
        ),
    }
    for granted in ("profiles.read", "profiles.write", "feed.read", "feed.write"):
        key = backing.issue_key(f"only {granted}", [granted])
        with backing.channel(server.address, key) as channel:
            for needed, call in calls.items():
                allowed = needed.split()[0] == granted
                if allowed:
                    assert _passes_auth(lambda: call(channel)), (granted, needed)  # noqa: B023
                    continue
                error = _failure(lambda: call(channel))  # noqa: B023
                assert error.code() == grpc.StatusCode.PERMISSION_DENIED, (granted, needed)
                info = _error_info(error)
                assert info.reason == "SCOPE_MISSING"
                assert info.metadata["scope"] == needed.split()[0]
                assert needed.split()[0] in (error.details() or "")


def test_admin_allows_everything_and_a_key_may_hold_several_scopes(
    backing: Backing, server: ServerThread
) -> None:
    both = backing.issue_key("reader", ["profiles.read", "feed.read"])
    with backing.channel(server.address, both) as channel:
        assert _passes_auth(lambda: _get_profile(channel))
        assert (
            FeedServiceStub(channel).SearchPostsByTag(feed_pb2.SearchPostsByTagRequest(tags=["x"]))
            == feed_pb2.SearchPostsByTagResponse()
        )
    with backing.channel(server.address) as channel:
        created = ProfileServiceStub(channel).CreateProfile(
            profile_pb2.CreateProfileRequest(profile=new_profile())
        )
        assert (
            FeedServiceStub(channel)
            .CreatePost(
                feed_pb2.CreatePostRequest(post=feed_pb2.Post(author=created.name, body="hi"))
            )
            .author
            == created.name
        )


def test_the_rpc_log_line_names_the_caller(
    backing: Backing, server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    key = backing.issue_key("audited", ["profiles.read"])
    with caplog.at_level(logging.INFO, logger="socialhub.rpc"):
        with backing.channel(server.address, key) as channel:
            ProfileServiceStub(channel).ListProfiles(profile_pb2.ListProfilesRequest())
        with grpc.insecure_channel(server.address) as channel:
            _failure(lambda: _get_profile(channel))
    lines = {r.__dict__["method"]: r.__dict__ for r in caplog.records if hasattr(r, "method")}
    listed = lines["/socialhub.v1.ProfileService/ListProfiles"]
    assert listed["principal"] == f"audited ({key.split('_')[1]})"
    refused = lines["/socialhub.v1.ProfileService/GetProfile"]
    assert refused["code"] == "UNAUTHENTICATED"
    assert "principal" not in refused


def test_health_is_open_and_reflection_is_open_by_default(server: ServerThread) -> None:
    with grpc.insecure_channel(server.address) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        assert "socialhub.v1.ProfileService" in _reflected_services(channel)


def _reflected_services(channel: grpc.Channel) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    [response] = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
    return [service.name for service in response.list_services_response.service]


# ---------------------------------------------------------------- servers of their own


async def _whoami(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    principal = auth.current_principal()
    return json.dumps(
        {
            "name": principal.name,
            "scopes": sorted(principal.scopes),
            "tenants": list(principal.tenants),
            "may_access_business_1": principal.may_access("businesses/1"),
            "may_access_business_2": principal.may_access("businesses/2"),
        }
    ).encode()


def _register_whoami(server: InstrumentedServer) -> None:
    # No scope prefix for this service: only admin may call it.
    server.add_registered_method_handlers(
        WHOAMI, {"Get": grpc.unary_unary_rpc_method_handler(_whoami)}
    )


@contextmanager
def own_server(backing: Backing, **settings: Any) -> Iterator[ServerThread]:
    thread = ServerThread(
        test_settings(**settings),
        backing.database_url,
        backing.redis_url,
        options={"extra_services": [_register_whoami]},
    ).start()
    try:
        yield thread
    finally:
        thread.stop()


def whoami_of(channel: grpc.Channel) -> dict[str, Any]:
    method: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(f"/{WHOAMI}/Get")
    answer: dict[str, Any] = json.loads(method(b"", timeout=10))
    return answer


def test_the_principal_carries_its_tenants_to_the_servicer(backing: Backing) -> None:
    bound = backing.issue_key("tenant bound", ["admin"], tenants=["businesses/1"])
    reader = backing.issue_key("reader", ["profiles.read"], tenants=["businesses/1"])
    with own_server(backing) as server:
        with backing.channel(server.address, bound) as channel:
            assert whoami_of(channel) == {
                "name": f"tenant bound ({bound.split('_')[1]})",
                "scopes": ["admin"],
                "tenants": ["businesses/1"],
                "may_access_business_1": True,
                "may_access_business_2": False,
            }
        with backing.channel(server.address) as channel:
            unbound = whoami_of(channel)
            assert unbound["tenants"] == []
            assert unbound["may_access_business_2"] is True
        with backing.channel(server.address, reader) as channel:
            error = _failure(lambda: whoami_of(channel))
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED
            assert _error_info(error).metadata["scope"] == "admin"


def test_outside_a_call_there_is_no_principal() -> None:
    with pytest.raises(Unauthenticated):
        auth.current_principal()


def test_with_authentication_off_calls_run_as_anonymous_admin(backing: Backing) -> None:
    with (
        own_server(backing, auth_enabled=False) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        assert whoami_of(channel)["name"] == auth.ANONYMOUS.name
        assert _passes_auth(lambda: _get_profile(channel))


def test_reflection_can_be_turned_off(backing: Backing) -> None:
    with (
        own_server(backing, reflection_enabled=False) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        error = _failure(lambda: _reflected_services(channel))
        assert error.code() == grpc.StatusCode.UNIMPLEMENTED
        assert health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())


def test_a_revoked_key_works_on_every_replica_until_the_cache_ttl_then_stops(
    backing: Backing,
) -> None:
    ttl_s = 1.0
    key = backing.issue_key("to revoke", ["profiles.read"])
    with (
        own_server(backing, api_key_cache_ttl_s=ttl_s) as first,
        own_server(backing, api_key_cache_ttl_s=ttl_s) as second,
        backing.channel(first.address, key) as one,
        backing.channel(second.address, key) as two,
        backing.sql() as conn,
    ):
        assert _passes_auth(lambda: _get_profile(one))
        assert _passes_auth(lambda: _get_profile(two))
        conn.execute(
            "UPDATE api_keys SET revoke_time = now() WHERE key_hash = %s", (apikeys.digest(key),)
        )
        revoked_at = time.monotonic()
        # Cached: no database round trip per call, so the revocation is not seen yet.
        assert _passes_auth(lambda: _get_profile(two))
        stopped: dict[str, float] = {}
        while len(stopped) < 2 and time.monotonic() - revoked_at < 5 * ttl_s:
            for name, channel in (("first", one), ("second", two)):
                if name not in stopped and not _passes_auth(lambda: _get_profile(channel)):  # noqa: B023
                    stopped[name] = time.monotonic() - revoked_at
            time.sleep(0.02)
        error = _failure(lambda: _get_profile(two))
    assert error_reason(error) == "API_KEY_REVOKED"
    assert set(stopped) == {"first", "second"}
    # The bound, plus the time a loaded entry's lookup took and the polling step.
    assert max(stopped.values()) <= ttl_s + 0.3, stopped


def test_last_used_time_is_written_off_the_call_path_at_most_once_a_minute(
    backing: Backing, server: ServerThread
) -> None:
    key = backing.issue_key("used", ["profiles.read"])

    def last_used() -> object:
        with backing.sql() as conn:
            row = conn.execute(
                "SELECT last_used_time FROM api_keys WHERE key_hash = %s",
                (apikeys.digest(key),),
            ).fetchone()
        assert row is not None
        return row[0]

    assert last_used() is None
    with backing.channel(server.address, key) as channel:
        _passes_auth(lambda: _get_profile(channel))
        deadline = time.monotonic() + 10
        while (first := last_used()) is None:
            assert time.monotonic() < deadline, "last_used_time was never written"
            time.sleep(0.1)
        for _ in range(5):
            _passes_auth(lambda: _get_profile(channel))
        time.sleep(auth.TOUCH_BATCH_S + 0.5)
    assert last_used() == first


# ---------------------------------------------------------------- the cache, by statements


def test_lookups_are_cached_coalesced_and_unknown_keys_remembered(backing: Backing) -> None:
    known = backing.issue_key("known", ["profiles.read"])
    unknown = "sh_0123abcd_" + "B" * 43

    async def run() -> tuple[int, int, list[str]]:
        engine = create_engine(test_settings(), backing.database_url)
        statements: list[str] = []

        def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if "api_keys" in statement:
                statements.append(statement)

        event.listen(engine.sync_engine, "before_cursor_execute", count)
        authenticator = auth.Authenticator(engine, cache_ttl_s=30)
        try:
            # Twenty calls arriving together with a key not yet cached: one lookup.
            principals = await asyncio.gather(
                *(authenticator.verify(f"Bearer {known}") for _ in range(20))
            )
            assert {p.name for p in principals} == {f"known ({known.split('_')[1]})"}
            for _ in range(20):
                await authenticator.verify(f"Bearer {known}")
            known_lookups = len(statements)
            reasons = []
            for _ in range(50):
                try:
                    await authenticator.verify(f"Bearer {unknown}")
                except Unauthenticated as error:
                    reasons.append(error.reason)
            return known_lookups, len(statements) - known_lookups, sorted(set(reasons))
        finally:
            await engine.dispose()

    known_lookups, unknown_lookups, reasons = asyncio.run(run())
    assert known_lookups == 1
    assert unknown_lookups == 1
    assert reasons == ["API_KEY_INVALID"]


def test_a_cached_key_is_found_by_its_header_and_every_spelling_still_works(
    backing: Backing,
) -> None:
    key = backing.issue_key("spelled", ["profiles.read"])
    spellings = [f"Bearer {key}", f"bearer {key}", f"Bearer {key}  "]

    async def run() -> tuple[int, set[str], list[str]]:
        engine = create_engine(test_settings(), backing.database_url)
        statements: list[str] = []

        def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if "api_keys" in statement:
                statements.append(statement)

        event.listen(engine.sync_engine, "before_cursor_execute", count)
        authenticator = auth.Authenticator(engine, cache_ttl_s=30)
        try:
            names = {
                (await authenticator.verify(header)).name for _ in range(3) for header in spellings
            }
            return len(statements), names, list(authenticator._by_header)
        finally:
            await engine.dispose()

    lookups, names, by_header = asyncio.run(run())
    assert lookups == 1
    assert names == {f"spelled ({key.split('_')[1]})"}
    # Only the canonical header is kept by its text: one entry per key, however it is sent.
    assert by_header == [f"Bearer {key}"]


# ---------------------------------------------------------------- the command line


def _socialhub(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_keys_create_list_and_revoke_from_the_command_line(
    backing: Backing, server: ServerThread
) -> None:
    env = os.environ | {"DATABASE_URL": backing.database_url, "LOG_LEVEL": "WARNING"}
    created = _socialhub(
        "keys",
        "create",
        "--name",
        "billing",
        "--scope",
        "profiles.read",
        "--tenant",
        "businesses/7",
        "--expires-in",
        "30d",
        env=env,
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert apikeys.is_well_formed(key), created.stdout
    assert "shown once" in created.stderr
    with backing.channel(server.address, key) as channel:
        assert _passes_auth(lambda: _get_profile(channel))

    listed = _socialhub("keys", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    # sh_<prefix>_<secret>; the secret's own alphabet has "_" too.
    assert key.split("_", 2)[2] not in listed.stdout, "a secret must never be listed"
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    [row] = [r for r in rows if r["prefix"] == key.split("_")[1]]
    assert row["name"] == "billing"
    assert row["state"] == "active"
    assert row["scopes"] == ["profiles.read"]
    assert row["tenants"] == ["businesses/7"]
    assert row["expire_time"] != "-"
    table = _socialhub("keys", "list", env=env).stdout
    assert table.splitlines()[0].split()[:4] == ["ID", "NAME", "PREFIX", "STATE"]

    revoked = _socialhub("keys", "revoke", str(row["id"]), env=env)
    assert revoked.returncode == 0, revoked.stderr
    assert "API_KEY_CACHE_TTL_S" in revoked.stdout
    again = _socialhub("keys", "revoke", str(row["id"]), env=env)
    assert again.returncode == 1
    assert "no active API key" in again.stderr
    rows = [
        json.loads(line)
        for line in _socialhub("keys", "list", "--json", env=env).stdout.splitlines()
    ]
    assert next(r for r in rows if r["id"] == row["id"])["state"] == "revoked"

    bad = _socialhub("keys", "create", "--name", "x", "--scope", "profiles.delete", env=env)
    assert bad.returncode == 2
    assert "profiles.delete" in bad.stderr


def test_serve_refuses_the_development_page_secret_outside_the_embedded_default(
    backing: Backing,
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PAGE_TOKEN_SECRET"} | {
        "DATABASE_URL": backing.database_url,
        "REDIS_URL": backing.redis_url,
        "PORT": "0",
    }
    refused = _socialhub("serve", env=env)
    assert refused.returncode == 2
    assert "PAGE_TOKEN_SECRET" in refused.stderr
    assert refused.stdout == ""


def test_authentication_off_must_be_asked_for_and_is_logged(
    backing: Backing, tmp_path: Path
) -> None:
    port = free_port()
    env = os.environ | backing.serve_env() | {"PORT": str(port), "AUTH_ENABLED": "false"}
    stderr = tmp_path / "stderr.log"
    with stderr.open("w") as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", "server", "serve"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
    try:
        assert process.stdout is not None
        ready = process.stdout.readline()
        assert "ready" in ready, stderr.read_text()
        assert "authorization" not in ready
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert _passes_auth(lambda: _get_profile(channel))
    finally:
        stopped = stopped_in_time(process, 30)
    # 1 would be a stop that overran its deadline: the log then holds what it waited for.
    assert stopped == 0, stderr.read_text()[-8000:]
    assert "authentication is off" in stderr.read_text()


def test_make_run_creates_a_development_key_once_and_prints_a_working_command(
    tmp_path: Path,
) -> None:
    state_dir = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")} | {
        "STATE_DIR": str(state_dir),
        "SEED_DEMO": "never",
        "LOG_LEVEL": "WARNING",
    }

    def run_the_ready_line(ready: str) -> None:
        command = shlex.split(ready.split("try: ", 1)[1])
        assert command[0] == "grpcurl"
        done = subprocess.run(
            [GRPCURL, *command[1:]], capture_output=True, text=True, timeout=30, check=False
        )
        assert done.returncode == 0, done.stderr
        json.loads(done.stdout)

    def serve_once(while_serving: Callable[[str], None] = run_the_ready_line) -> str:
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "server", "serve"],
            env=env | {"PORT": str(port)},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert process.stdout is not None
            ready = process.stdout.readline()
            key = re.search(r"authorization: Bearer (sh_\S+)'", ready)
            assert key, ready
            while_serving(ready)
            return key[1]
        finally:
            stopped_in_time(process, 60)

    def keys_beside_the_server(ready: str) -> None:
        # On the server's own embedded database, which must still be up afterwards.
        created = _socialhub("keys", "create", "--name", "beside", "--scope", "admin", env=env)
        assert created.returncode == 0, created.stderr
        run_the_ready_line(ready)

    key = serve_once()
    key_file = state_dir / "dev-api-key"
    assert key_file.read_text().strip() == key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert serve_once(keys_beside_the_server) == key, "later starts reuse the development key"
