"""The Facebook and Instagram adapters against the fake Graph API, over HTTP."""

from __future__ import annotations

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
from tests.fakes import Fakes, MetaPage, running_fakes
from tests.fakes.testing import Adapters, Checkpoints, assert_no_token, pkce, with_adapters

IMAGE = "https://cdn.example.com/a.jpg"


@pytest.fixture(scope="module")
def all_fakes() -> Iterator[Fakes]:
    with running_fakes() as fakes:
        yield fakes


@pytest.fixture
def fakes(all_fakes: Fakes) -> Fakes:
    all_fakes.reset()
    return all_fakes


def page_creds(page: MetaPage) -> Credentials:
    return Credentials(page.account_id, page.access_token)


def ig_creds(page: MetaPage) -> Credentials:
    return Credentials(page.instagram_id or "", page.access_token)


def publish(
    fakes: Fakes,
    platform: Platform,
    content: Content,
    credentials: Credentials,
    checkpoints: Checkpoints | None = None,
    **settings: object,
) -> PublishOutcome:
    recorded = Checkpoints() if checkpoints is None else checkpoints

    async def go(adapters: Adapters) -> PublishOutcome:
        return await adapters[platform].publish(
            credentials, content, resume=recorded, checkpoint=recorded
        )

    outcome = with_adapters(fakes, go, **settings)
    assert_no_token(fakes, outcome)
    return outcome


def test_facebook_publishes_text_and_a_first_comment_with_usage(fakes: Fakes) -> None:
    page = fakes.meta.add_page("Cafe")
    outcome = publish(
        fakes, Platform.FACEBOOK, Content("Open today", first_comment="9-5"), page_creds(page)
    )
    [post] = fakes.meta.posts(page.account_id)
    assert isinstance(outcome, Published)
    assert (outcome.post_id, outcome.url) == (post.id, f"https://www.facebook.com/{post.id}")
    assert outcome.quota is not None
    assert outcome.quota.usage_percent is not None
    [comment] = fakes.meta.posts(kind="comment")
    assert (comment.reply_to, comment.text) == (post.id, "9-5")


def test_facebook_publishes_one_image_as_a_photo_post(fakes: Fakes) -> None:
    page = fakes.meta.add_page()
    outcome = publish(
        fakes, Platform.FACEBOOK, Content("pic", media_urls=(IMAGE,)), page_creds(page)
    )
    [post] = fakes.meta.posts(page.account_id)
    assert isinstance(outcome, Published)
    assert outcome.post_id == post.id
    assert post.media_url == IMAGE


def test_facebook_duplicate_is_rejected_with_metas_message(fakes: Fakes) -> None:
    page = fakes.meta.add_page()
    publish(fakes, Platform.FACEBOOK, Content("same"), page_creds(page))
    outcome = publish(fakes, Platform.FACEBOOK, Content("same"), page_creds(page))
    assert isinstance(outcome, Rejected)
    assert outcome.code == "506/1455006"
    assert "identical to the last one" in outcome.message


def test_code_190_is_unauthorized(fakes: Fakes) -> None:
    page = fakes.meta.add_page()
    revoked = Credentials(page.account_id, "not-a-token")
    assert isinstance(publish(fakes, Platform.FACEBOOK, Content("a"), revoked), Unauthorized)


def test_throttling_codes_wait_metas_estimate(fakes: Fakes) -> None:
    page = fakes.meta.add_page()
    fakes.meta.throttle_after(0)
    before = datetime.now(UTC)
    outcome = publish(fakes, Platform.FACEBOOK, Content("a"), page_creds(page))
    assert isinstance(outcome, Throttled)
    assert (
        before + timedelta(minutes=7)
        <= outcome.retry_at
        <= datetime.now(UTC) + timedelta(minutes=7)
    )
    # Without an estimate (code 4, application limit): Meta's one-hour window.
    fakes.meta.throttle_code, fakes.meta.regain_minutes = 4, 0
    try:
        outcome = publish(
            fakes, Platform.INSTAGRAM, Content("a", media_urls=(IMAGE,)), ig_creds(page)
        )
    finally:
        fakes.meta.throttle_code, fakes.meta.regain_minutes = 80001, 7
    assert isinstance(outcome, Throttled)
    assert outcome.retry_at >= before + timedelta(minutes=59)


def test_failures_in_flight(fakes: Fakes) -> None:
    page = fakes.meta.add_page()
    fakes.meta.fail("POST /{page_id}/feed", 500)
    failed = publish(fakes, Platform.FACEBOOK, Content("a"), page_creds(page))
    assert failed == Transient("Meta: HTTP 500 from the platform", True)
    fakes.meta.stall("POST /{page_id}/feed", 1.0)
    stalled = publish(
        fakes, Platform.FACEBOOK, Content("b"), page_creds(page), platform_timeout_s=0.2
    )
    assert isinstance(stalled, Transient)
    assert stalled.maybe_sent
    refused = publish(
        fakes,
        Platform.FACEBOOK,
        Content("c"),
        page_creds(page),
        meta_graph_base_url="http://127.0.0.1:9/v23.0",
    )
    assert isinstance(refused, Transient)
    assert not refused.maybe_sent


def test_facebook_lost_answer_is_found_in_the_feed(fakes: Fakes) -> None:
    page = fakes.meta.add_page()
    content = Content("Lost & found https://example.com")
    since = datetime.now(UTC)
    fakes.meta.drop("POST /{page_id}/feed")
    lost = publish(fakes, Platform.FACEBOOK, content, page_creds(page))
    assert isinstance(lost, Transient)
    assert lost.maybe_sent
    [post] = fakes.meta.posts(page.account_id)

    async def find(adapters: Adapters) -> object:
        return await adapters[Platform.FACEBOOK].find(
            page_creds(page), content, since=since, resume={}
        )

    assert with_adapters(fakes, find) == Published(post.id, f"https://www.facebook.com/{post.id}")


def test_instagram_publishes_through_a_polled_container(fakes: Fakes) -> None:
    page = fakes.meta.add_page("Cafe", "cafe")
    fakes.meta.container_delay_s = 0.1
    checkpoints = Checkpoints()
    try:
        outcome = publish(
            fakes,
            Platform.INSTAGRAM,
            Content("caption", media_urls=(IMAGE,), first_comment="#tags"),
            ig_creds(page),
            checkpoints,
        )
    finally:
        fakes.meta.container_delay_s = 0.0
    [media] = fakes.meta.posts(page.instagram_id)
    assert isinstance(outcome, Published)
    assert outcome.post_id == media.id
    assert outcome.url.startswith("https://www.instagram.com/p/")
    assert fakes.meta.containers() == [{"id": checkpoints["container"], "status": "PUBLISHED"}]
    assert checkpoints["media"] == media.id
    assert [c.reply_to for c in fakes.meta.posts(kind="comment")] == [media.id]


def test_instagram_video_is_a_reel(fakes: Fakes) -> None:
    page = fakes.meta.add_page()
    outcome = publish(
        fakes, Platform.INSTAGRAM, Content("v", media_urls=("https://e.com/v.mp4",)), ig_creds(page)
    )
    assert isinstance(outcome, Published)


def test_instagram_resumes_with_its_container_and_never_publishes_twice(fakes: Fakes) -> None:
    page = fakes.meta.add_page()
    content = Content("once", media_urls=(IMAGE,))
    checkpoints = Checkpoints()
    since = datetime.now(UTC)
    # media_publish goes through but its answer is lost: the container is now PUBLISHED.
    fakes.meta.drop("POST /{ig_id}/media_publish")
    lost = publish(fakes, Platform.INSTAGRAM, content, ig_creds(page), checkpoints)
    assert isinstance(lost, Transient)
    assert lost.maybe_sent
    assert list(checkpoints) == ["container"]

    async def find(adapters: Adapters) -> object:
        return await adapters[Platform.INSTAGRAM].find(
            ig_creds(page), content, since=since, resume=checkpoints
        )

    [media] = fakes.meta.posts(page.instagram_id)
    found = with_adapters(fakes, find)
    assert isinstance(found, Published)
    assert found.post_id == media.id
    # A resumed publish sees the PUBLISHED container and reports the media, not a second post.
    again = publish(fakes, Platform.INSTAGRAM, content, ig_creds(page), checkpoints)
    assert isinstance(again, Published)
    assert again.post_id == media.id
    assert len(fakes.meta.posts(page.instagram_id)) == 1
    assert fakes.meta.calls("POST /{ig_id}/media") == 1


def test_instagram_container_states(fakes: Fakes) -> None:
    page = fakes.meta.add_page()
    content = Content("x", media_urls=(IMAGE,))
    fakes.meta.fail_next_container("ERROR")
    failed = publish(fakes, Platform.INSTAGRAM, content, ig_creds(page))
    assert isinstance(failed, Rejected)
    assert failed.code == "container ERROR"
    # Still processing after every poll: nothing was published, resume later.
    fakes.meta.container_delay_s = 5
    checkpoints = Checkpoints()
    try:
        slow = publish(
            fakes,
            Platform.INSTAGRAM,
            content,
            ig_creds(page),
            checkpoints,
            instagram_container_polls=2,
        )
    finally:
        fakes.meta.container_delay_s = 0
    assert slow == Transient("Instagram: the media is still being processed", False)

    async def find(adapters: Adapters) -> object:
        return await adapters[Platform.INSTAGRAM].find(
            ig_creds(page), content, since=datetime.now(UTC), resume=checkpoints
        )

    assert with_adapters(fakes, find) is None
    # An expired container is replaced by a new one.
    fakes.meta.expire_container(checkpoints["container"])
    expired = checkpoints["container"]
    done = publish(fakes, Platform.INSTAGRAM, content, ig_creds(page), checkpoints)
    assert isinstance(done, Published)
    assert checkpoints["container"] != expired


@pytest.mark.parametrize("platform", [Platform.FACEBOOK, Platform.INSTAGRAM])
def test_connect_with_pkce_gives_the_pages_token(fakes: Fakes, platform: Platform) -> None:
    page = fakes.meta.add_page("Cafe", "cafe")
    verifier, challenge = pkce()
    redirect = "http://127.0.0.1:8080/oauth/callback"

    async def go(adapters: Adapters) -> None:
        meta = adapters[platform]
        url = meta.authorize_url(state="st", code_challenge=challenge, redirect_uri=redirect)
        assert "scope=pages_show_list%2Cpages_manage_posts" in url
        async with httpx.AsyncClient() as browser:
            consent = await browser.get(url)
        back = parse_qs(urlsplit(consent.headers["location"]).query)
        grant = await meta.exchange_code(
            code=back["code"][0], code_verifier=verifier, redirect_uri=redirect
        )
        assert grant.refresh_token is None
        assert grant.expires_at
        assert grant.expires_at > datetime.now(UTC) + timedelta(days=59)
        who = await meta.identity(grant.access_token)
        expected = page.account_id if platform == Platform.FACEBOOK else page.instagram_id
        assert who.account_id == expected
        assert who.access_token == page.access_token
        with pytest.raises(TokenRefused) as refused:
            await meta.refresh("anything")
        assert_no_token(fakes, refused.value)

    with_adapters(fakes, go)


def test_check_limits(fakes: Fakes) -> None:
    async def go(adapters: Adapters) -> None:
        fb, ig = adapters[Platform.FACEBOOK], adapters[Platform.INSTAGRAM]
        assert fb.check(Content("a" * 63206)) == []
        assert [f for f, _ in fb.check(Content("a" * 63207))] == ["text"]
        assert [f for f, _ in fb.check(Content("a", media_urls=(IMAGE, IMAGE)))] == ["media_urls"]
        assert ig.check(Content("a" * 2200, media_urls=(IMAGE,))) == []
        assert [f for f, _ in ig.check(Content("a" * 2201, media_urls=(IMAGE,)))] == ["text"]
        problems = ig.check(Content("caption only"))
        assert [f for f, _ in problems] == ["media_urls"]
        assert "image or a video" in problems[0][1]

    with_adapters(fakes, go)
