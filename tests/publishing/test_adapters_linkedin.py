"""The LinkedIn adapter against the fake LinkedIn, over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from server.publishing.adapters.base import (
    CannotTell,
    Content,
    Credentials,
    Platform,
    Published,
    PublishOutcome,
    Rejected,
    Throttled,
    TokenRefused,
    TokenUnavailable,
    Transient,
    Unauthorized,
)
from server.publishing.adapters.http import next_utc_midnight
from tests.fakes import Fakes, running_fakes
from tests.fakes.testing import Adapters, Checkpoints, assert_no_token, pkce, with_adapters


@pytest.fixture(scope="module")
def all_fakes() -> Iterator[Fakes]:
    with running_fakes() as fakes:
        yield fakes


@pytest.fixture
def fakes(all_fakes: Fakes) -> Fakes:
    all_fakes.reset()
    return all_fakes


def creds(fakes: Fakes) -> Credentials:
    account = fakes.linkedin.add_account("Grace")
    return Credentials(account.account_id, account.access_token)


def publish(
    fakes: Fakes, content: Content, credentials: Credentials, **settings: object
) -> PublishOutcome:
    checkpoints = Checkpoints()

    async def go(adapters: Adapters) -> PublishOutcome:
        return await adapters[Platform.LINKEDIN].publish(
            credentials, content, resume=checkpoints, checkpoint=checkpoints
        )

    outcome = with_adapters(fakes, go, **settings)
    assert_no_token(fakes, outcome)
    return outcome


def test_publishes_with_the_urn_from_x_restli_id(fakes: Fakes) -> None:
    c = creds(fakes)
    text = "Launch (beta) #news @team [link] *bold* _under_ ~tilde~ back\\slash"
    outcome = publish(fakes, Content(text, first_comment="More (soon)"), c)
    [post] = fakes.linkedin.posts(c.account_id)
    assert outcome == Published(post.id, f"https://www.linkedin.com/feed/update/{post.id}")
    assert post.id.startswith("urn:li:share:")
    # Little text: reserved characters are escaped, so LinkedIn keeps the whole post.
    assert post.text == (
        "Launch \\(beta\\) \\#news \\@team \\[link\\] \\*bold\\* \\_under\\_ \\~tilde\\~ "
        "back\\\\slash"
    )
    [comment] = fakes.linkedin.posts(kind="comment")
    assert (comment.reply_to, comment.text) == (post.id, "More \\(soon\\)")


def test_duplicate_post_is_rejected(fakes: Fakes) -> None:
    c = creds(fakes)
    assert isinstance(publish(fakes, Content("same"), c), Published)
    outcome = publish(fakes, Content("same"), c)
    assert isinstance(outcome, Rejected)
    assert outcome.code == "DUPLICATE_POST"
    assert "duplicate" in outcome.message


def test_an_expired_token_is_unauthorized(fakes: Fakes) -> None:
    c = creds(fakes)
    fakes.linkedin.expire_access_tokens()
    assert isinstance(publish(fakes, Content("hi"), c), Unauthorized)


def test_a_429_without_headers_waits_for_midnight_utc(fakes: Fakes) -> None:
    c = creds(fakes)
    fakes.linkedin.throttle_after(0)
    outcome = publish(fakes, Content("hi"), c)
    assert isinstance(outcome, Throttled)
    assert outcome.retry_at == next_utc_midnight()
    assert fakes.linkedin.posts() == []


def test_failures_in_flight(fakes: Fakes) -> None:
    c = creds(fakes)
    fakes.linkedin.fail("POST /rest/posts", 502)
    assert publish(fakes, Content("a"), c) == Transient(
        "LinkedIn: HTTP 502 from the platform", True
    )
    fakes.linkedin.stall("POST /rest/posts", 1.0)
    stalled = publish(fakes, Content("b"), c, platform_timeout_s=0.2)
    assert isinstance(stalled, Transient)
    assert stalled.maybe_sent
    refused = publish(fakes, Content("c"), c, linkedin_api_base_url="http://127.0.0.1:9")
    assert isinstance(refused, Transient)
    assert not refused.maybe_sent


def test_a_lost_answer_is_found_by_the_author_finder(fakes: Fakes) -> None:
    c = creds(fakes)
    content = Content("Hello (world)")
    since = datetime.now(UTC)
    fakes.linkedin.drop("POST /rest/posts")
    lost = publish(fakes, content, c)
    assert isinstance(lost, Transient)
    assert lost.maybe_sent
    [post] = fakes.linkedin.posts()

    async def find(adapters: Adapters) -> list[object]:
        li = adapters[Platform.LINKEDIN]
        found = await li.find(c, content, since=since, resume={})
        missing = await li.find(c, Content("other"), since=since, resume={})
        later = await li.find(c, content, since=since + timedelta(minutes=1), resume={})
        fakes.linkedin.fail("GET /rest/posts", 500)
        unknown = await li.find(c, content, since=since, resume={})
        return [found, missing, later, unknown]

    assert with_adapters(fakes, find) == [
        Published(post.id, f"https://www.linkedin.com/feed/update/{post.id}"),
        None,
        None,
        CannotTell.CANNOT_TELL,
    ]


def test_the_fake_requires_linkedins_headers() -> None:
    with running_fakes() as fakes:
        account = fakes.linkedin.add_account()
        response = httpx.post(
            f"{fakes.linkedin.url}/rest/posts",
            json={},
            headers={"Authorization": f"Bearer {account.access_token}"},
        )
        assert response.status_code == 400
        assert response.json()["code"] == "VERSION_MISSING"


def test_connect_with_pkce_and_reusable_refresh(fakes: Fakes) -> None:
    account = fakes.linkedin.add_account("Grace Hopper")
    verifier, challenge = pkce()
    redirect = "http://127.0.0.1:8080/oauth/callback"

    async def go(adapters: Adapters) -> None:
        li = adapters[Platform.LINKEDIN]
        url = li.authorize_url(state="st", code_challenge=challenge, redirect_uri=redirect)
        async with httpx.AsyncClient() as browser:
            consent = await browser.get(url)
        back = parse_qs(urlsplit(consent.headers["location"]).query)
        grant = await li.exchange_code(
            code=back["code"][0], code_verifier=verifier, redirect_uri=redirect
        )
        now = datetime.now(UTC)
        assert grant.expires_at
        assert grant.expires_at > now + timedelta(days=59)
        assert grant.refresh_expires_at
        assert grant.refresh_expires_at > now + timedelta(days=364)
        who = await li.identity(grant.access_token)
        assert (who.account_id, who.display_name) == (account.account_id, "Grace Hopper")
        assert grant.refresh_token
        # LinkedIn's refresh token is reusable until it expires.
        first = await li.refresh(grant.refresh_token)
        second = await li.refresh(grant.refresh_token)
        assert first.refresh_token == second.refresh_token == grant.refresh_token
        fakes.linkedin.fail("POST /oauth/v2/accessToken", 500)
        with pytest.raises(TokenUnavailable):
            await li.refresh(grant.refresh_token)
        fakes.linkedin.revoke_refresh_token(grant.refresh_token)
        with pytest.raises(TokenRefused, match="invalid_grant") as refused:
            await li.refresh(grant.refresh_token)
        assert_no_token(fakes, refused.value)

    with_adapters(fakes, go)


def test_check_limits(fakes: Fakes) -> None:
    async def go(adapters: Adapters) -> None:
        li = adapters[Platform.LINKEDIN]
        assert li.check(Content("a" * 3000)) == []
        assert [f for f, _ in li.check(Content("a" * 3001))] == ["text"]
        assert [f for f, _ in li.check(Content("", media_urls=("https://e.com/a.png",)))] == [
            "text",
            "media_urls",
        ]
        assert [f for f, _ in li.check(Content("a", thread=("b",)))] == ["thread[0]"]

    with_adapters(fakes, go)
