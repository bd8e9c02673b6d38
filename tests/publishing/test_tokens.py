"""Tokens at rest: TokenCipher's keys (the first encrypts, all decrypt), and `socialhub tokens
rotate`, which re-encrypts every stored token and pending PKCE verifier with the first key,
after which a server that holds only the new key still publishes."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Callable

import psycopg
import pytest
from cryptography.exceptions import InvalidTag
from socialhub.v1 import publishing_pb2
from socialhub.v1.publishing_pb2_grpc import PublishingServiceStub
from typer.testing import CliRunner, Result

from bench import credentials
from server.cli import cli
from server.core import apikeys, migrate
from server.core.config import DEV_PAGE_TOKEN_SECRET
from server.publishing.mapping import account_name
from server.publishing.settings import PublishingSettings
from server.publishing.tokens import TokenCipher, TokenKeyError, development_key, new_key
from tests.fakes import Fakes
from tests.harness import Backing, ServerThread, publishing_test_settings, test_settings
from tests.publishing.support import (
    PLATFORMS,
    connect,
    consent,
    new_business,
    post_request,
    states,
    watch_until_final,
)

ACCOUNT = "businesses/1/accounts/2"


# --- TokenCipher ---


def test_a_token_decrypts_to_itself_and_is_not_in_its_ciphertext() -> None:
    cipher = TokenCipher([new_key()])
    sealed = cipher.encrypt("x-at-secret", ACCOUNT)

    assert cipher.decrypt(sealed, ACCOUNT) == "x-at-secret"
    assert b"x-at-secret" not in sealed
    assert cipher.encrypt("x-at-secret", ACCOUNT) != sealed, "a fresh nonce each time"
    assert cipher.is_current(sealed)


def test_a_token_copied_onto_another_row_does_not_decrypt() -> None:
    cipher = TokenCipher([new_key()])
    sealed = cipher.encrypt("x-at-secret", ACCOUNT)

    with pytest.raises(InvalidTag):
        cipher.decrypt(sealed, "businesses/1/accounts/3")
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(InvalidTag):
        cipher.decrypt(tampered, ACCOUNT)


def test_every_key_decrypts_and_rotation_moves_a_token_to_the_first() -> None:
    old, new = new_key(), new_key()
    sealed_by_old = TokenCipher([old]).encrypt("li-rt-secret", ACCOUNT)
    both = TokenCipher([new, old])

    assert both.decrypt(sealed_by_old, ACCOUNT) == "li-rt-secret"
    assert not both.is_current(sealed_by_old)
    assert both.is_current(both.encrypt("other", ACCOUNT))

    rotated = both.rotate(sealed_by_old, ACCOUNT)

    assert both.is_current(rotated)
    assert TokenCipher([new]).decrypt(rotated, ACCOUNT) == "li-rt-secret"
    with pytest.raises(TokenKeyError):
        TokenCipher([old]).decrypt(rotated, ACCOUNT)


def test_a_token_of_a_key_not_in_the_list_is_refused() -> None:
    sealed = TokenCipher([new_key()]).encrypt("x-at-secret", ACCOUNT)

    with pytest.raises(TokenKeyError, match="not in TOKEN_ENCRYPTION_KEYS"):
        TokenCipher([new_key(), new_key()]).decrypt(sealed, ACCOUNT)
    with pytest.raises(TokenKeyError, match="format"):
        TokenCipher([new_key()]).decrypt(b"\x02" + sealed[1:], ACCOUNT)


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        ([], "empty"),
        (["not base64!"], r"\[0\] is not base64"),
        ([new_key(), base64.b64encode(b"short key").decode()], r"\[1\] is not 32 bytes"),
        ([base64.b64encode(bytes(64)).decode()], "not 32 bytes"),
    ],
)
def test_malformed_keys_are_refused_without_echoing_them(keys: list[str], problem: str) -> None:
    with pytest.raises(TokenKeyError, match=problem) as caught:
        TokenCipher(keys)
    assert not any(key and key in str(caught.value) for key in keys)


def test_new_key_prints_a_usable_key() -> None:
    printed = CliRunner().invoke(cli, ["tokens", "new-key"])

    assert printed.exit_code == 0, printed.output
    key = printed.output.strip()
    assert len(base64.b64decode(key, validate=True)) == 32
    assert TokenCipher([key]).decrypt(TokenCipher([key]).encrypt("t", "a"), "a") == "t"


# --- socialhub tokens rotate ---


@pytest.fixture
def own_database(fresh_database: str) -> str:
    """A database of this test's own: the session server's workers, which hold only the old
    key, must not take the posts published after the rotation."""
    migrate.upgrade(fresh_database)
    return fresh_database


def _server(backing: Backing, database_url: str, publishing: PublishingSettings) -> ServerThread:
    return ServerThread(
        test_settings(),
        database_url,
        # A Redis database of its own: cache entries of another database's businesses/1
        # must not be served for this one's.
        backing.redis_url.rsplit("/", 1)[0] + "/6",
        {"domain_settings": {PublishingSettings: publishing}},
    ).start()


def _rotate(database_url: str, keys: list[str]) -> subprocess.CompletedProcess[str]:
    """`socialhub tokens rotate`, as an operator runs it."""
    env = os.environ | {"DATABASE_URL": database_url, "TOKEN_ENCRYPTION_KEYS": json.dumps(keys)}
    return subprocess.run(
        [sys.executable, "-m", "server", "tokens", "rotate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def rotate_here(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """`socialhub tokens rotate` in this process (a subprocess costs seconds to start), with
    this process's logging left alone."""
    monkeypatch.setattr("server.cli.configure_logging", lambda *args, **kwargs: None)

    def rotate(keys: list[str] | str, **env: str) -> Result:
        value = keys if isinstance(keys, str) else json.dumps(keys)
        return CliRunner().invoke(
            cli, ["tokens", "rotate"], env={"TOKEN_ENCRYPTION_KEYS": value, **env}
        )

    return rotate


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        ('["not-a-key"]', "TOKEN_ENCRYPTION_KEYS[0] is not base64"),
        ("not json", "TOKEN_ENCRYPTION_KEYS must be a JSON list of keys"),
        ("[1]", "TOKEN_ENCRYPTION_KEYS must be a JSON list of keys"),
        ("[]", "TOKEN_ENCRYPTION_KEYS is not set"),
    ],
)
def test_rotate_refuses_bad_keys_before_touching_the_database(
    rotate_here: Callable[..., Result], keys: str, problem: str
) -> None:
    nowhere = "postgresql://socialhub@127.0.0.1:1/nowhere"
    refused = rotate_here(keys, DATABASE_URL=nowhere, PAGE_TOKEN_SECRET="not the dev one")

    assert refused.exit_code == 2, refused.output
    assert problem in refused.stderr
    assert "not-a-key" not in refused.stderr


def _sealed(database_url: str) -> dict[str, bytes]:
    """Every ciphertext in the database, by what it seals and its associated data."""
    found: dict[str, bytes] = {}
    with psycopg.connect(database_url, autocommit=True) as conn:
        for account, business, access, refresh in conn.execute(
            "SELECT id, business_id, access_token, refresh_token FROM publishing_accounts"
        ):
            found[f"access {account_name(business, account)}"] = bytes(access)
            found[f"refresh {account_name(business, account)}"] = bytes(refresh)
        for state, verifier in conn.execute(
            "SELECT state, code_verifier FROM publishing_connections"
        ):
            found[f"verifier {state}"] = bytes(verifier)
    return found


def _open(cipher: TokenCipher, sealed: dict[str, bytes]) -> dict[str, str]:
    return {
        label: cipher.decrypt(ciphertext, label.split(" ", 1)[1])
        for label, ciphertext in sealed.items()
    }


@pytest.mark.slow
def test_rotate_reencrypts_everything_and_a_server_with_only_the_new_key_publishes(
    backing: Backing, fakes: Fakes, own_database: str, rotate_here: Callable[..., Result]
) -> None:
    # The session server's settings: no keys, the development page-token secret -> its key.
    assert test_settings().page_token_secret == DEV_PAGE_TOKEN_SECRET
    old, new = development_key(DEV_PAGE_TOKEN_SECRET), new_key()
    admin = apikeys.issue(own_database, name="rotation test", scopes=["admin"]).key

    before_server = _server(backing, own_database, publishing_test_settings(fakes))
    try:
        with credentials.channel(before_server.address, admin) as channel:
            stub = PublishingServiceStub(channel)
            business = new_business(stub)
            x = connect(stub, fakes, business, "x")
            linkedin = connect(stub, fakes, business, "linkedin")
            fakes.x.add_account("Pending")
            pending = stub.StartAccountConnection(
                publishing_pb2.StartAccountConnectionRequest(
                    parent=business, platform=PLATFORMS["x"]
                )
            )
    finally:
        before_server.stop()
    code = consent(pending.authorize_uri)["code"]
    before = _sealed(own_database)
    assert len(before) == 5, before.keys()
    plaintexts = _open(TokenCipher([old]), before)

    # Without the old key nothing opens: refused, and nothing changes.
    missing = rotate_here([new], DATABASE_URL=own_database)
    assert missing.exit_code == 1, missing.output
    assert "nothing was changed" in missing.stderr
    assert _sealed(own_database) == before

    rotated = _rotate(own_database, [new, old])

    assert rotated.returncode == 0, rotated.stderr
    assert "re-encrypted 4 tokens and 1 connection verifiers" in rotated.stdout
    after = _sealed(own_database)
    assert after.keys() == before.keys()
    assert all(after[label] != before[label] for label in before)
    only_new = TokenCipher([new])
    assert all(only_new.is_current(ciphertext) for ciphertext in after.values())
    assert _open(only_new, after) == plaintexts
    again = rotate_here([new, old], DATABASE_URL=own_database)
    assert again.exit_code == 0, again.output
    assert "re-encrypted 0 tokens and 0 connection verifiers" in again.stdout
    assert "5 were already under it" in again.stdout
    assert _sealed(own_database) == after

    after_server = _server(
        backing, own_database, publishing_test_settings(fakes, token_encryption_keys=[new])
    )
    try:
        with credentials.channel(after_server.address, admin) as channel:
            stub = PublishingServiceStub(channel)
            # The X token is refused as expired: the (rotated) refresh token gets a new one.
            fakes.x.expire_access_tokens()
            created = stub.CreateBusinessPost(post_request(business, [x.name, linkedin.name]))
            assert states(watch_until_final(stub, created.name)[-1]) == ["STATE_PUBLISHED"] * 2
            # The pending connection's (rotated) verifier completes it.
            completed = stub.CompleteAccountConnection(
                publishing_pb2.CompleteAccountConnectionRequest(
                    parent=business, state=pending.state, code=code
                )
            )
            assert completed.account.display_name == "Pending"
    finally:
        after_server.stop()
