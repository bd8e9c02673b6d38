"""Connecting accounts (OAuth 2.0 with PKCE, or tokens from elsewhere) and keeping their
tokens working: refreshed before expiry and after a 401, once across replicas, and an account
that can no longer be refreshed marked NEEDS_RECONNECT."""

from __future__ import annotations

import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from socialhub.v1 import profile_pb2, publishing_pb2
from socialhub.v1.publishing_pb2_grpc import PublishingServiceStub

from server.publishing.settings import PublishingSettings
from tests.fakes import Fakes
from tests.harness import Backing, ServerThread, publishing_test_settings, test_settings
from tests.helpers import error_info, field_violations
from tests.publishing.support import (
    PLATFORMS,
    connect,
    consent,
    new_business,
    post_request,
    states,
    watch_until_final,
)

Account = publishing_pb2.Account
TOKEN_ENDPOINTS = {"x": "POST /2/oauth2/token", "linkedin": "POST /oauth/v2/accessToken"}


def start(stub: PublishingServiceStub, business: str, platform: str) -> dict[str, str]:
    started = stub.StartAccountConnection(
        publishing_pb2.StartAccountConnectionRequest(parent=business, platform=PLATFORMS[platform])
    )
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(started.authorize_uri).query))
    assert query["state"] == started.state
    assert query["code_challenge_method"] == "S256"
    assert started.expire_time.ToDatetime(tzinfo=UTC) > datetime.now(UTC)
    return consent(started.authorize_uri)


@pytest.mark.parametrize("platform", ["x", "linkedin", "facebook", "instagram"])
def test_oauth_with_pkce_connects_the_account_that_consented(
    publishing: PublishingServiceStub, fakes: Fakes, platform: str
) -> None:
    business = new_business(publishing)
    if platform in ("facebook", "instagram"):
        page = fakes.meta.add_account("Cafe Page")
        expected = page.instagram_id if platform == "instagram" else page.account_id
    else:
        expected = getattr(fakes, platform).add_account("Ada").account_id
    returned = start(publishing, business, platform)

    account = publishing.CompleteAccountConnection(
        publishing_pb2.CompleteAccountConnectionRequest(
            parent=business, state=returned["state"], code=returned["code"]
        )
    ).account

    assert account.platform == PLATFORMS[platform]
    assert account.platform_account_id == expected
    assert account.state == Account.STATE_CONNECTED
    assert account.name.startswith(f"{business}/accounts/")
    sent = publishing.CreateBusinessPost(
        post_request(
            business,
            [account.name],
            media_uris=["https://cdn.example.org/a.jpg"] if platform == "instagram" else [],
        )
    )
    assert states(watch_until_final(publishing, sent.name)[-1]) == ["STATE_PUBLISHED"]


def test_a_state_works_once_and_for_its_own_business_only(
    publishing: PublishingServiceStub, fakes: Fakes
) -> None:
    business = new_business(publishing)
    other = new_business(publishing, "Other")
    fakes.x.add_account("Ada")
    returned = start(publishing, business, "x")

    def complete(parent: str) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as caught:
            publishing.CompleteAccountConnection(
                publishing_pb2.CompleteAccountConnectionRequest(
                    parent=parent, state=returned["state"], code=returned["code"]
                )
            )
        return caught.value

    wrong_business = complete(other)
    assert wrong_business.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(wrong_business).reason == "CONNECTION_STATE_INVALID"
    # Another business's attempt left the state alone; its own business uses it, once.
    publishing.CompleteAccountConnection(
        publishing_pb2.CompleteAccountConnectionRequest(
            parent=business, state=returned["state"], code=returned["code"]
        )
    )
    replay = complete(business)
    assert error_info(replay).reason == "CONNECTION_STATE_INVALID"
    assert "state" in field_violations(replay)


def test_a_code_the_platform_refuses_is_a_failed_precondition(
    publishing: PublishingServiceStub, fakes: Fakes
) -> None:
    business = new_business(publishing)
    fakes.linkedin.add_account("Ada")
    returned = start(publishing, business, "linkedin")

    with pytest.raises(grpc.RpcError) as caught:
        publishing.CompleteAccountConnection(
            publishing_pb2.CompleteAccountConnectionRequest(
                parent=business, state=returned["state"], code=returned["code"] + "x"
            )
        )

    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(caught.value).reason == "PLATFORM_AUTHORIZATION_FAILED"


def test_youtube_cannot_be_connected(publishing: PublishingServiceStub) -> None:
    business = new_business(publishing)
    with pytest.raises(grpc.RpcError) as caught:
        publishing.StartAccountConnection(
            publishing_pb2.StartAccountConnectionRequest(
                parent=business, platform=profile_pb2.PLATFORM_YOUTUBE
            )
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "platform" in field_violations(caught.value)


def test_connecting_again_reconnects_the_same_account(
    publishing: PublishingServiceStub, fakes: Fakes
) -> None:
    business = new_business(publishing)
    first = connect(publishing, fakes, business, "x")
    fresh_access, _ = fakes.x.mint(first.fake.account_id)
    again = publishing.ConnectAccount(
        publishing_pb2.ConnectAccountRequest(
            parent=business, platform=profile_pb2.PLATFORM_X, access_token=fresh_access
        )
    ).account

    assert again.name == first.name
    listed = publishing.ListAccounts(publishing_pb2.ListAccountsRequest(parent=business))
    assert [account.name for account in listed.accounts] == [first.name]


def test_a_token_the_platform_refuses_connects_nothing(
    publishing: PublishingServiceStub,
) -> None:
    business = new_business(publishing)
    with pytest.raises(grpc.RpcError) as caught:
        publishing.ConnectAccount(
            publishing_pb2.ConnectAccountRequest(
                parent=business, platform=profile_pb2.PLATFORM_X, access_token="not-a-token"
            )
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(caught.value).reason == "PLATFORM_AUTHORIZATION_FAILED"
    listed = publishing.ListAccounts(publishing_pb2.ListAccountsRequest(parent=business))
    assert not listed.accounts


def _expiring(publishing: PublishingServiceStub, business: str, fakes: Fakes, platform: str) -> str:
    """An account whose stored expiry is within the refresh margin (5 minutes)."""
    fake = getattr(fakes, platform).add_account("Soon")
    request = publishing_pb2.ConnectAccountRequest(
        parent=business,
        platform=PLATFORMS[platform],
        access_token=fake.access_token,
        refresh_token=fake.refresh_token or "",
    )
    request.token_expire_time.FromDatetime(datetime.now(UTC) + timedelta(seconds=60))
    return str(publishing.ConnectAccount(request).account.name)


@pytest.mark.parametrize("platform", ["x", "linkedin"])
def test_a_token_near_expiry_is_refreshed_before_it_is_used(
    publishing: PublishingServiceStub, fakes: Fakes, platform: str
) -> None:
    business = new_business(publishing)
    account = _expiring(publishing, business, fakes, platform)
    before = publishing.GetAccount(publishing_pb2.GetAccountRequest(name=account))

    sent = publishing.CreateBusinessPost(post_request(business, [account]))

    assert states(watch_until_final(publishing, sent.name)[-1]) == ["STATE_PUBLISHED"]
    assert getattr(fakes, platform).calls(TOKEN_ENDPOINTS[platform]) == 1
    after = publishing.GetAccount(publishing_pb2.GetAccountRequest(name=account))
    assert after.state == Account.STATE_CONNECTED
    assert after.token_expire_time.ToDatetime() > before.token_expire_time.ToDatetime()


def test_a_refused_token_is_refreshed_and_the_post_sent_again(
    publishing: PublishingServiceStub, fakes: Fakes
) -> None:
    business = new_business(publishing)
    account = connect(publishing, fakes, business, "x")
    fakes.x.expire_access_tokens(account.fake.account_id)

    sent = publishing.CreateBusinessPost(post_request(business, [account.name]))

    final = watch_until_final(publishing, sent.name)[-1]
    assert states(final) == ["STATE_PUBLISHED"]
    assert fakes.x.calls("POST /2/oauth2/token") == 1
    assert len(fakes.x.posts(account.platform_account_id)) == 1


def test_a_revoked_account_needs_reconnecting_and_its_post_says_so(
    publishing: PublishingServiceStub, fakes: Fakes
) -> None:
    business = new_business(publishing)
    account = connect(publishing, fakes, business, "x")
    fakes.x.revoke_account(account.fake.account_id)

    sent = publishing.CreateBusinessPost(post_request(business, [account.name]))

    final = watch_until_final(publishing, sent.name)[-1]
    assert states(final) == ["STATE_FAILED"]
    assert "reconnect the account" in final.targets[0].error
    stored = publishing.GetAccount(publishing_pb2.GetAccountRequest(name=account.name))
    assert stored.state == Account.STATE_NEEDS_RECONNECT
    assert stored.state_reason
    with pytest.raises(grpc.RpcError) as caught:
        publishing.CreateBusinessPost(post_request(business, [account.name], "Again"))
    assert error_info(caught.value).reason == "ACCOUNT_NOT_CONNECTED"


def test_a_token_endpoint_outage_is_retried_and_never_disconnects(
    publishing: PublishingServiceStub, fakes: Fakes
) -> None:
    business = new_business(publishing)
    account = _expiring(publishing, business, fakes, "x")
    fakes.x.fail("POST /2/oauth2/token", 503, times=2)

    sent = publishing.CreateBusinessPost(post_request(business, [account]))

    assert states(watch_until_final(publishing, sent.name)[-1]) == ["STATE_PUBLISHED"]
    stored = publishing.GetAccount(publishing_pb2.GetAccountRequest(name=account))
    assert stored.state == Account.STATE_CONNECTED


@pytest.mark.slow
def test_replicas_refresh_a_single_use_refresh_token_once(
    publishing: PublishingServiceStub, backing: Backing, fakes: Fakes
) -> None:
    """X's refresh tokens work once: two replicas publishing for one expiring account at
    the same moment must refresh it once, and both then use the new token."""
    business = new_business(publishing)
    account = _expiring(publishing, business, fakes, "x")
    # A slow token endpoint keeps the first refresh in flight while the others arrive.
    fakes.x.stall("POST /2/oauth2/token", 0.5)
    other = ServerThread(
        test_settings(),
        backing.database_url,
        backing.redis_url,
        {"domain_settings": {PublishingSettings: publishing_test_settings(fakes)}},
    ).start()
    try:
        with backing.channel(other.address) as channel:
            stubs = [publishing, PublishingServiceStub(channel)]
            with ThreadPoolExecutor(8) as pool:
                created = list(
                    pool.map(
                        lambda i: stubs[i % 2].CreateBusinessPost(
                            post_request(business, [account], f"Post {i}")
                        ),
                        range(8),
                    )
                )
            finals = [watch_until_final(publishing, post.name)[-1] for post in created]
    finally:
        other.stop()

    assert [states(final) for final in finals] == [["STATE_PUBLISHED"]] * 8
    assert fakes.x.calls("POST /2/oauth2/token") == 1
    stored = publishing.GetAccount(publishing_pb2.GetAccountRequest(name=account))
    assert stored.state == Account.STATE_CONNECTED
