"""The X adapter against the fake X, over HTTP."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from server.publishing.adapters.base import (
    Content,
    Credentials,
    Platform,
    Published,
    PublishOutcome,
    Rejected,
    Throttled,
    TokenRefused,
    Transient,
    Unauthorized,
)
from server.publishing.adapters.x_text import weighted_length
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
    account = fakes.x.add_account("Ada", "ada")
    return Credentials(account.account_id, account.access_token)


def publish(
    fakes: Fakes, content: Content, credentials: Credentials, **settings: float
) -> PublishOutcome:
    checkpoints = Checkpoints()

    async def go(adapters: Adapters) -> PublishOutcome:
        return await adapters[Platform.X].publish(
            credentials, content, resume=checkpoints, checkpoint=checkpoints
        )

    outcome = with_adapters(fakes, go, **settings)
    assert_no_token(fakes, outcome)
    return outcome


def test_publishes_a_post_with_its_url_and_quota(fakes: Fakes) -> None:
    c = creds(fakes)
    outcome = publish(fakes, Content("hello from socialhub"), c)
    assert isinstance(outcome, Published)
    [post] = fakes.x.posts(c.account_id)
    assert outcome.post_id == post.id
    assert outcome.url == f"https://x.com/i/web/status/{post.id}"
    assert outcome.quota is not None
    assert outcome.quota.remaining == 99
    assert outcome.quota.reset_at is not None


def test_a_thread_is_a_reply_chain_checkpointed_tweet_by_tweet(fakes: Fakes) -> None:
    c = creds(fakes)
    content = Content("1/3 start", thread=("2/3 middle", "3/3 end"), first_comment="links below")
    checkpoints = Checkpoints()

    async def go(adapters: Adapters) -> object:
        return await adapters[Platform.X].publish(
            c, content, resume=checkpoints, checkpoint=checkpoints
        )

    outcome = with_adapters(fakes, go)
    assert isinstance(outcome, Published)
    tweets = fakes.x.posts(c.account_id, kind=None)
    assert [t.text for t in tweets] == ["1/3 start", "2/3 middle", "3/3 end", "links below"]
    assert [t.reply_to for t in tweets] == [None, tweets[0].id, tweets[1].id, tweets[0].id]
    assert checkpoints == {
        "tweet:0": tweets[0].id,
        "tweet:1": tweets[1].id,
        "tweet:2": tweets[2].id,
        "comment": tweets[3].id,
    }


def test_a_resumed_thread_continues_instead_of_reposting(fakes: Fakes) -> None:
    c = creds(fakes)
    content = Content("first", thread=("second", "third"))
    checkpoints = Checkpoints()

    async def go(adapters: Adapters) -> object:
        return await adapters[Platform.X].publish(
            c, content, resume=checkpoints, checkpoint=checkpoints
        )

    fakes.x.throttle_after(2, "POST /2/tweets")
    first = with_adapters(fakes, go)
    assert isinstance(first, Throttled)
    assert set(checkpoints) == {"tweet:0", "tweet:1"}
    fakes.x.throttle_after(100)
    second = with_adapters(fakes, go)
    assert isinstance(second, Published)
    texts = [t.text for t in fakes.x.posts(c.account_id, kind=None)]
    assert texts == ["first", "second", "third"]
    assert second.post_id == checkpoints["tweet:0"]


def test_duplicate_content_is_rejected_with_xs_message(fakes: Fakes) -> None:
    c = creds(fakes)
    assert isinstance(publish(fakes, Content("same words"), c), Published)
    outcome = publish(fakes, Content("same words"), c)
    assert outcome == Rejected(
        "X: You are not allowed to create a Tweet with duplicate content.",
        "403 duplicate content",
        outcome.quota,
    )


def test_an_expired_token_is_unauthorized(fakes: Fakes) -> None:
    c = creds(fakes)
    fakes.x.expire_access_tokens(c.account_id)
    outcome = publish(fakes, Content("hello"), c)
    assert isinstance(outcome, Unauthorized)


def test_throttling_retries_at_the_window_reset(fakes: Fakes) -> None:
    c = creds(fakes)
    fakes.x.throttle_after(0, "POST /2/tweets")
    outcome = publish(fakes, Content("hello"), c)
    assert isinstance(outcome, Throttled)
    window_end = (int(datetime.now(UTC).timestamp()) // 900 + 1) * 900
    assert outcome.retry_at == datetime.fromtimestamp(window_end, UTC)
    assert outcome.quota is not None
    assert outcome.quota.remaining == 0
    assert fakes.x.posts() == []


def test_a_5xx_may_have_been_sent(fakes: Fakes) -> None:
    c = creds(fakes)
    fakes.x.fail("POST /2/tweets", 503)
    assert publish(fakes, Content("hello"), c) == Transient("X: HTTP 503 from the platform", True)


def test_a_refused_connection_was_not_sent(fakes: Fakes) -> None:
    c = creds(fakes)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    outcome = publish(fakes, Content("hello"), c, x_api_base_url=f"http://127.0.0.1:{port}")  # type: ignore[arg-type]
    assert isinstance(outcome, Transient)
    assert outcome.maybe_sent is False


def test_a_stall_beyond_the_timeout_may_have_been_sent(fakes: Fakes) -> None:
    c = creds(fakes)
    fakes.x.stall("POST /2/tweets", 1.0)
    outcome = publish(fakes, Content("hello"), c, platform_timeout_s=0.2)
    assert isinstance(outcome, Transient)
    assert outcome.maybe_sent is True


def test_a_lost_answer_may_have_been_sent_and_find_finds_the_post(fakes: Fakes) -> None:
    c = creds(fakes)
    content = Content("look at https://example.com/a/very/long/path?with=query & more")
    since = datetime.now(UTC)
    fakes.x.drop("POST /2/tweets")
    outcome = publish(fakes, content, c)
    assert isinstance(outcome, Transient)
    assert outcome.maybe_sent is True
    [post] = fakes.x.posts(c.account_id)

    async def find(adapters: Adapters) -> object:
        return await adapters[Platform.X].find(c, content, since=since, resume={})

    # The fake returns the text as X does: the link as t.co, & as &amp;.
    assert with_adapters(fakes, find) == Published(post.id, f"https://x.com/i/web/status/{post.id}")


def test_find_says_none_when_nothing_was_published(fakes: Fakes) -> None:
    c = creds(fakes)

    async def find(adapters: Adapters) -> object:
        since = datetime.now(UTC) - timedelta(minutes=5)
        return await adapters[Platform.X].find(c, Content("never sent"), since=since, resume={})

    assert with_adapters(fakes, find) is None


def test_find_records_a_partial_thread_so_publish_continues_it(fakes: Fakes) -> None:
    c = creds(fakes)
    content = Content("head", thread=("tail",))
    since = datetime.now(UTC)
    checkpoints = Checkpoints()

    async def go(adapters: Adapters) -> object:
        x = adapters[Platform.X]
        # The head is published but its answer is lost; the tail is never sent.
        fakes.x.drop("POST /2/tweets")
        lost = await x.publish(c, content, resume=checkpoints, checkpoint=checkpoints)
        assert isinstance(lost, Transient)
        assert checkpoints == {}
        found = await x.find(  # type: ignore[call-arg]
            c, content, since=since, resume=checkpoints, checkpoint=checkpoints
        )
        assert found is None
        assert list(checkpoints) == ["tweet:0"]
        return await x.publish(c, content, resume=checkpoints, checkpoint=checkpoints)

    outcome = with_adapters(fakes, go)
    assert isinstance(outcome, Published)
    assert [t.text for t in fakes.x.posts(kind=None)] == ["head", "tail"]


def test_connect_with_pkce_then_refresh_once(fakes: Fakes) -> None:
    account = fakes.x.add_account("Ada", "ada")
    verifier, challenge = pkce()
    redirect = "http://127.0.0.1:8080/oauth/callback"

    async def go(adapters: Adapters) -> None:
        x = adapters[Platform.X]
        url = x.authorize_url(state="st-1", code_challenge=challenge, redirect_uri=redirect)
        async with httpx.AsyncClient() as browser:
            consent = await browser.get(url)
        assert consent.status_code == 302
        back = parse_qs(urlsplit(consent.headers["location"]).query)
        assert back["state"] == ["st-1"]
        grant = await x.exchange_code(
            code=back["code"][0], code_verifier=verifier, redirect_uri=redirect
        )
        assert grant.refresh_token
        assert grant.expires_at
        assert grant.expires_at > datetime.now(UTC)
        assert "tweet.write" in grant.scopes
        who = await x.identity(grant.access_token)
        assert (who.account_id, who.display_name, who.handle) == (account.account_id, "Ada", "ada")
        # Single-use refresh tokens: the first refresh works, reusing the token is refused.
        fresh = await x.refresh(grant.refresh_token)
        assert fresh.refresh_token
        assert fresh.refresh_token != grant.refresh_token
        with pytest.raises(TokenRefused, match="invalid_grant") as refused:
            await x.refresh(grant.refresh_token)
        assert_no_token(fakes, refused.value)
        # A code works once, and only with its verifier.
        with pytest.raises(TokenRefused):
            await x.exchange_code(
                code=back["code"][0], code_verifier=verifier, redirect_uri=redirect
            )

    with_adapters(fakes, go)


def test_a_wrong_pkce_verifier_is_refused(fakes: Fakes) -> None:
    fakes.x.add_account()
    _, challenge = pkce()
    redirect = "http://127.0.0.1:8080/oauth/callback"

    async def go(adapters: Adapters) -> None:
        x = adapters[Platform.X]
        url = x.authorize_url(state="s", code_challenge=challenge, redirect_uri=redirect)
        async with httpx.AsyncClient() as browser:
            code = parse_qs(urlsplit((await browser.get(url)).headers["location"]).query)["code"][0]
        with pytest.raises(TokenRefused):
            await x.exchange_code(
                code=code, code_verifier="not-the-verifier", redirect_uri=redirect
            )

    with_adapters(fakes, go)


def test_a_revoked_refresh_token_is_refused_and_a_5xx_is_unavailable(fakes: Fakes) -> None:
    from server.publishing.adapters.base import TokenUnavailable

    account = fakes.x.add_account()
    assert account.refresh_token

    async def go(adapters: Adapters) -> None:
        x = adapters[Platform.X]
        fakes.x.fail("POST /2/oauth2/token", 503)
        with pytest.raises(TokenUnavailable):
            await x.refresh(account.refresh_token or "")
        fakes.x.stall("POST /2/oauth2/token", 1.0)
        with pytest.raises(TokenUnavailable):
            await x.refresh(account.refresh_token or "")
        fakes.x.revoke_account(account.account_id)
        with pytest.raises(TokenRefused):
            await x.refresh(account.refresh_token or "")

    with_adapters(fakes, go, platform_timeout_s=0.2)


@pytest.mark.parametrize(
    ("text", "length"),
    [
        ("hello", 5),
        ("https://example.com/" + "a" * 100, 23),
        ("see www.example.org and example.com/path", 4 + 23 + 5 + 23),
        ("日本語", 6),
        ("😀", 2),
        ("👨‍👩‍👧‍👦", 2),  # a ZWJ family is one emoji
        ("🇫🇷", 2),  # a flag
        ("👍🏽", 2),  # a skin tone
        ("café — “quoted”", 15),  # Latin, dashes and quotes weigh 1
        ("한국어", 6),
    ],
)
def test_weighted_length_follows_twitter_text(text: str, length: int) -> None:
    assert weighted_length(text) == length


def test_check_limits(fakes: Fakes) -> None:
    async def go(adapters: Adapters) -> None:
        x = adapters[Platform.X]
        assert x.check(Content("a" * 280)) == []
        assert x.check(Content("字" * 140)) == []
        assert [f for f, _ in x.check(Content("字" * 141))] == ["text"]
        assert x.check(Content("a" * 256 + " https://example.com/" + "x" * 300)) == []
        problems = x.check(Content("ok", thread=("b" * 281,), first_comment="😀" * 141))
        assert [f for f, _ in problems] == ["thread[0]", "first_comment"]
        assert "280 weighted characters" in problems[0][1]
        assert [f for f, _ in x.check(Content("ok", media_urls=("https://e.com/a.png",)))] == [
            "media_urls"
        ]

    with_adapters(fakes, go)
