"""Platform tokens never appear in a response, a log line or an error message, and are stored
only encrypted.

A real `socialhub serve` process, logging at DEBUG into a file, is driven through a full run
on the fakes: accounts connected directly and over OAuth on every platform, a post published
to each, tokens refreshed, a refresh refused, and requests carrying tokens the server refuses.
Then every token the fakes ever issued, and every secret this test sent, is looked for in the
log, in every response and error, and in the database.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
import psycopg
import pytest
from google.protobuf.message import Message
from socialhub.v1 import profile_pb2, publishing_pb2
from socialhub.v1.publishing_pb2_grpc import PublishingServiceStub

from bench import credentials
from server.core import apikeys
from server.core.embedded import free_port
from server.publishing.accounts import pkce_challenge
from server.publishing.mapping import account_name
from server.publishing.tokens import TokenCipher, new_key
from tests.fakes import Fakes
from tests.harness import Backing
from tests.publishing.support import FINAL, IMAGE, PLATFORMS, Target, consent, post_request

pytestmark = pytest.mark.slow

READY_WITHIN_S = 60.0
Account = publishing_pb2.Account


@dataclass
class Served:
    address: str
    log: Path
    database_url: str
    key: str  # its TOKEN_ENCRYPTION_KEYS' only key
    stop: Callable[[], None]


@pytest.fixture
def served(backing: Backing, fakes: Fakes, fresh_database: str, tmp_path: Path) -> Iterator[Served]:
    """`socialhub serve` at the fakes, stdout and stderr (DEBUG) in one file."""
    key = new_key()
    port = free_port()
    log = tmp_path / "serve.log"
    env = (
        os.environ
        | backing.serve_env()
        | fakes.env()
        | {
            "DATABASE_URL": fresh_database,
            # A Redis database of its own: the per-test cleanup flushes database 0.
            "REDIS_URL": backing.redis_url.rsplit("/", 1)[0] + "/5",
            "TOKEN_ENCRYPTION_KEYS": json.dumps([key]),
            "LOG_LEVEL": "DEBUG",
            "SEED_DEMO": "never",
            "STATE_DIR": str(tmp_path / "state"),
            "PORT": str(port),
            "PLATFORM_TIMEOUT_S": "2",
            "PLATFORM_CONNECT_TIMEOUT_S": "1",
            "PUBLISH_POLL_S": "0.2",
            "PUBLISH_RETRY_BASE_S": "0.05",
            "PUBLISH_RETRY_MAX_S": "0.2",
            "INSTAGRAM_CONTAINER_POLL_S": "0.02",
        }
    )
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "server", "serve"],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop() -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0, log.read_text()[-4000:]

    try:
        deadline = time.monotonic() + READY_WITHIN_S
        while b"ready on" not in log.read_bytes():
            assert process.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, "serve did not get ready"
            time.sleep(0.05)
        yield Served(f"127.0.0.1:{port}", log, fresh_database, key, stop)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@dataclass
class Recording:
    """A stub that keeps the text and bytes of every response, streamed message and error."""

    stub: PublishingServiceStub
    seen: list[bytes] = field(default_factory=list)

    def __getattr__(self, method: str) -> Callable[..., Any]:
        call = getattr(self.stub, method)

        def recorded(request: Message, **options: Any) -> Any:
            try:
                answer = call(request, **options)
            except grpc.RpcError as error:
                self.error(error)
                raise
            if isinstance(answer, Message):
                self.message(answer)
                return answer
            return self.stream(answer)

        return recorded

    def stream(self, messages: Iterator[Message]) -> Iterator[Message]:
        try:
            for message in messages:
                self.message(message)
                yield message
        except grpc.RpcError as error:
            self.error(error)
            raise

    def message(self, message: Message) -> None:
        self.seen += [str(message).encode(), message.SerializeToString()]

    def error(self, error: grpc.RpcError) -> None:
        assert isinstance(error, grpc.Call)
        self.seen += [str(error).encode(), (error.details() or "").encode()]
        for metadata in (error.initial_metadata() or (), error.trailing_metadata() or ()):
            for key, value in metadata:
                self.seen.append(key.encode() + b"=")
                self.seen.append(value if isinstance(value, bytes) else value.encode())

    def refused(self, code: grpc.StatusCode, call: Callable[..., object], *args: Any) -> None:
        with pytest.raises(grpc.RpcError) as caught:
            call(*args)
        assert caught.value.code() == code, caught.value


@dataclass
class Run:
    """What the run connected, and the secrets it handed to the server."""

    stub: Recording
    fakes: Fakes
    business: str
    sent: set[str] = field(default_factory=set)
    accounts: dict[str, str] = field(default_factory=dict)  # label -> account name

    def connect(self, label: str, platform: str, access: str, refresh: str = "") -> str:
        request = publishing_pb2.ConnectAccountRequest(
            parent=self.business,
            platform=PLATFORMS[platform],
            access_token=access,
            refresh_token=refresh,
        )
        request.token_expire_time.FromDatetime(datetime.now(UTC) + timedelta(hours=2))
        self.sent |= {access, refresh} - {""}
        name: str = self.stub.ConnectAccount(request).account.name
        self.accounts[label] = name
        return name

    def start(self, platform: str) -> tuple[publishing_pb2.StartAccountConnectionResponse, str]:
        """A started connection and the code the (auto-approving) consent page returns."""
        started = self.stub.StartAccountConnection(
            publishing_pb2.StartAccountConnectionRequest(
                parent=self.business, platform=PLATFORMS[platform]
            )
        )
        query = consent(started.authorize_uri)
        assert query["state"] == started.state
        self.sent.add(query["code"])
        return started, query["code"]

    def complete(self, started: publishing_pb2.StartAccountConnectionResponse, code: str) -> Any:
        return self.stub.CompleteAccountConnection(
            publishing_pb2.CompleteAccountConnectionRequest(
                parent=self.business, state=started.state, code=code
            )
        )

    def publish(self, text: str, labels: list[str], **fields: Any) -> publishing_pb2.BusinessPost:
        """Creates a post to those accounts and follows it until every target is final."""
        targets = [self.accounts[label] for label in labels]
        created = self.stub.CreateBusinessPost(post_request(self.business, targets, text, **fields))
        last: publishing_pb2.BusinessPost | None = None
        for message in self.stub.WatchBusinessPost(
            publishing_pb2.WatchBusinessPostRequest(name=created.name), timeout=20
        ):
            last = message.business_post
        assert last is not None
        assert all(t.state in FINAL for t in last.targets), last
        self.stub.ListPublishAttempts(
            publishing_pb2.ListPublishAttemptsRequest(parent=created.name, page_size=500)
        )
        return last


def _states(post: publishing_pb2.BusinessPost) -> list[str]:
    return [Target.State.Name(target.state) for target in post.targets]


def _drive(run: Run) -> publishing_pb2.StartAccountConnectionResponse:
    """The full run; returns a connection left pending (its verifier stays in the database)."""
    fakes, stub = run.fakes, run.stub
    # Direct connections, every platform.
    x = fakes.x.add_account("Direct X")
    linkedin = fakes.linkedin.add_account("Direct LinkedIn")
    page = fakes.meta.add_account("Direct Page")
    run.connect("x", "x", x.access_token, x.refresh_token or "")
    run.connect("linkedin", "linkedin", linkedin.access_token, linkedin.refresh_token or "")
    run.connect("facebook", "facebook", page.user_access_token)
    run.connect("instagram", "instagram", page.user_access_token)
    # Connecting again updates the tokens.
    run.connect("x", "x", x.access_token, x.refresh_token or "")

    # OAuth on every platform; the consent picks the account added last.
    for platform, fake in (("x", fakes.x), ("linkedin", fakes.linkedin), ("facebook", fakes.meta)):
        fake.add_account(f"OAuth {platform}")
        started, code = run.start(platform)
        run.accounts[f"oauth-{platform}"] = run.complete(started, code).account.name
        # The state is used up; a code the platform refuses is refused.
        stub.refused(grpc.StatusCode.INVALID_ARGUMENT, run.complete, started, code)
        again, _ = run.start(platform)
        bogus = f"{platform}-code-{secrets.token_urlsafe(16)}"
        run.sent.add(bogus)
        stub.refused(grpc.StatusCode.FAILED_PRECONDITION, run.complete, again, bogus)

    # A post to every account, each published.
    text_only = ["x", "linkedin", "facebook", "oauth-x", "oauth-linkedin", "oauth-facebook"]
    assert _states(run.publish("Opening at 7", text_only)) == ["STATE_PUBLISHED"] * 6
    pictured = run.publish("Fresh loaves", ["instagram", "facebook"], media_uris=[IMAGE])
    assert _states(pictured) == ["STATE_PUBLISHED"] * 2

    # Expired access tokens: refreshed after the 401, then published.
    fakes.x.expire_access_tokens()
    fakes.linkedin.expire_access_tokens()
    refreshed = run.publish("Rye today", ["x", "linkedin", "oauth-x"])
    assert _states(refreshed) == ["STATE_PUBLISHED"] * 3

    # A refused refresh: the account needs reconnecting.
    fakes.x.revoke_account(x.account_id)
    assert _states(run.publish("Closed Monday", ["x"])) == ["STATE_FAILED"]
    revoked = stub.GetAccount(publishing_pb2.GetAccountRequest(name=run.accounts["x"]))
    assert revoked.state == Account.STATE_NEEDS_RECONNECT, revoked

    # Requests with tokens the server or the platform refuses.
    refused_token = f"x-at-{secrets.token_urlsafe(16)}"
    stub.refused(grpc.StatusCode.FAILED_PRECONDITION, run.connect, "_", "x", refused_token)
    refused_page = f"meta-at-{secrets.token_urlsafe(16)}"
    stub.refused(grpc.StatusCode.FAILED_PRECONDITION, run.connect, "_", "facebook", refused_page)
    too_long = "x-at-" + secrets.token_urlsafe(6200)
    stub.refused(grpc.StatusCode.INVALID_ARGUMENT, run.connect, "_", "x", too_long)
    spaced = f"x-at-{secrets.token_urlsafe(8)} {secrets.token_urlsafe(8)}"
    stub.refused(grpc.StatusCode.INVALID_ARGUMENT, run.connect, "_", "x", spaced, spaced)
    fresh = fakes.x.add_account("Unsupported")
    unsupported = publishing_pb2.ConnectAccountRequest(
        parent=run.business,
        platform=profile_pb2.PLATFORM_YOUTUBE,
        access_token=fresh.access_token,
        refresh_token=fresh.refresh_token or "",
    )
    stub.refused(grpc.StatusCode.INVALID_ARGUMENT, stub.ConnectAccount, unsupported)
    nowhere = publishing_pb2.ConnectAccountRequest(
        parent="businesses/999999", platform=PLATFORMS["x"], access_token=fresh.access_token
    )
    stub.refused(grpc.StatusCode.NOT_FOUND, stub.ConnectAccount, nowhere)

    # Every read, and a disconnection.
    stub.ListAccounts(publishing_pb2.ListAccountsRequest(parent=run.business, page_size=500))
    stub.ListBusinessPosts(
        publishing_pb2.ListBusinessPostsRequest(parent=run.business, page_size=500)
    )
    for name in run.accounts.values():
        stub.GetAccount(publishing_pb2.GetAccountRequest(name=name))
    stub.DisconnectAccount(publishing_pb2.DisconnectAccountRequest(name=run.accounts["linkedin"]))

    pending, _ = run.start("x")
    return pending


def _stored_secrets(
    served: Served, issued: set[str], pending: publishing_pb2.StartAccountConnectionResponse
) -> set[str]:
    """Checks the database holds tokens only encrypted; returns the pending PKCE verifier."""
    cipher = TokenCipher([served.key])
    with psycopg.connect(served.database_url, autocommit=True) as conn:
        accounts = conn.execute(
            "SELECT id, business_id, access_token, refresh_token FROM publishing_accounts"
        ).fetchall()
        connections = conn.execute(
            "SELECT state, code_verifier FROM publishing_connections"
        ).fetchall()
    stored = 0
    for account_id, business_id, *ciphertexts in accounts:
        for ciphertext in ciphertexts:
            if ciphertext is None:
                continue
            raw = bytes(ciphertext)
            assert not [t for t in issued if t.encode() in raw], "a plaintext token is stored"
            # Sealed under the server's key for this very account, and a token the fakes issued.
            assert cipher.decrypt(raw, account_name(business_id, account_id)) in issued
            stored += 1
    # X and LinkedIn keep two tokens each (the disconnected LinkedIn none), Meta one.
    assert stored >= 9, accounts
    assert [state for state, _ in connections] == [pending.state]
    raw_verifier = bytes(connections[0][1])
    verifier = cipher.decrypt(raw_verifier, pending.state)
    assert verifier.encode() not in raw_verifier
    challenge = parse_qs(urlsplit(pending.authorize_uri).query)["code_challenge"]
    assert challenge == [pkce_challenge(verifier)]
    return {verifier}


def _leaks(haystack: bytes, needles: set[str]) -> list[str]:
    # Named by their start only: the report must not print the secrets either.
    return sorted(needle[:12] + "..." for needle in needles if needle.encode() in haystack)


def test_tokens_never_leave_the_server_and_are_stored_encrypted(
    served: Served, fakes: Fakes
) -> None:
    key = apikeys.issue(served.database_url, name="secrecy test", scopes=["admin"]).key
    with credentials.channel(served.address, key) as channel:
        stub = Recording(PublishingServiceStub(channel))
        business = stub.CreateBusiness(
            publishing_pb2.CreateBusinessRequest(
                business=publishing_pb2.Business(display_name="Secret Bakery")
            )
        ).name
        run = Run(stub, fakes, business)
        pending = _drive(run)
    issued = {t for fake in (fakes.x, fakes.linkedin, fakes.meta) for t in fake.issued_tokens()}
    verifiers = _stored_secrets(served, issued, pending)
    served.stop()

    secrets_ = issued | run.sent | verifiers
    # X and LinkedIn minted new tokens when refreshing; Meta its long-lived and Page tokens.
    assert len(issued) > len(run.sent - issued), "the fakes issued the tokens the run used"
    assert len(secrets_) >= 25, len(secrets_)
    log = served.log.read_bytes()
    assert not _leaks(log, secrets_), f"tokens in the server's log: {_leaks(log, secrets_)}"
    responses = b"\n".join(stub.seen)
    assert not _leaks(responses, secrets_), f"tokens in responses: {_leaks(responses, secrets_)}"

    # The search can fail: what was recorded is what the run did.
    assert run.accounts["oauth-x"].encode() in responses
    assert b"PLATFORM_AUTHORIZATION_FAILED" in responses
    assert b"CONNECTION_STATE_INVALID" in responses
    lines = [json.loads(line) for line in log.splitlines() if line.startswith(b"{")]
    messages = [line["msg"] for line in lines]
    assert any(line["level"] == "DEBUG" for line in lines), "the server logged at DEBUG"
    assert any(message.startswith("refreshed the tokens of") for message in messages)
    assert any("needs reconnecting" in message for message in messages)
