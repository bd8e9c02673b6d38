"""The platforms' rate limits: a limit reached defers targets (THROTTLED, DEFERRED until the
reset), never fails them; the gate is shared through Redis, with PostgreSQL as the truth.
And transient failures: retried a bounded number of times, then FAILED with the reason."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import redis
from redis.asyncio import Redis
from socialhub.v1 import publishing_pb2
from socialhub.v1.publishing_pb2_grpc import PublishingServiceStub
from sqlalchemy.ext.asyncio import create_async_engine

from server.core.db import async_url
from server.core.embedded import EmbeddedRedis
from server.publishing.adapters.base import Quota, Throttled
from server.publishing.adapters.http import next_utc_midnight
from server.publishing.ratelimits import Block, Limits, RateGate
from tests.fakes import Fakes
from tests.harness import Backing
from tests.publishing.support import (
    IMAGE,
    Target,
    attempts,
    connect,
    in_future,
    new_business,
    post_request,
    watch_until_final,
)

Attempt = publishing_pb2.PublishAttempt
TWEET = "POST /2/tweets"


def _account_id(name: str) -> int:
    return int(name.rsplit("/", 1)[1])


def _next_window(seconds: int) -> float:
    """Sleep until a fresh window of `seconds` begins (X's windows are epoch-aligned);
    returns when it ends."""
    now = time.time()
    start = (int(now) // seconds + 1) * seconds
    time.sleep(start - now + 0.05)
    return float(start + seconds)


def _until(
    stub: PublishingServiceStub,
    name: str,
    done: Callable[[publishing_pb2.BusinessPost], bool],
    timeout: float = 5.0,
) -> publishing_pb2.BusinessPost:
    deadline = time.monotonic() + timeout
    while True:
        post = stub.GetBusinessPost(publishing_pb2.GetBusinessPostRequest(name=name))
        if done(post):
            return post
        assert time.monotonic() < deadline, post
        time.sleep(0.05)


def _deferred(post: publishing_pb2.BusinessPost) -> bool:
    return post.targets[0].state == Target.STATE_DEFERRED


def _outcomes(stub: PublishingServiceStub, post: str) -> list[str]:
    return [Attempt.Outcome.Name(a.outcome) for a in attempts(stub, post)]


def test_a_burst_on_one_x_account_drains_at_the_platforms_pace(
    publishing: PublishingServiceStub, fakes: Fakes
) -> None:
    limit, window_s, count = 3, 3, 8
    fakes.x.rate_window(limit, window_s)
    business = new_business(publishing)
    account = connect(publishing, fakes, business, "x")
    _next_window(window_s)

    created = [
        publishing.CreateBusinessPost(post_request(business, [account.name], f"Loaf number {i}"))
        for i in range(count)
    ]
    finals = [watch_until_final(publishing, post.name, timeout=40)[-1] for post in created]

    assert [Target.State.Name(f.targets[0].state) for f in finals] == ["STATE_PUBLISHED"] * count
    published = fakes.x.posts(account.platform_account_id)
    assert sorted(p.text for p in published) == sorted(f"Loaf number {i}" for i in range(count))
    assert {p.id for p in published} == {f.targets[0].platform_post_id for f in finals}
    per_window: dict[int, int] = {}
    for post in published:
        per_window[int(post.created_at) // window_s] = (
            per_window.get(int(post.created_at) // window_s, 0) + 1
        )
    assert max(per_window.values()) <= limit, per_window
    tried = [a for post in created for a in attempts(publishing, post.name)]
    outcomes = [Attempt.Outcome.Name(a.outcome) for a in tried]
    seen = [(outcome, a.message) for outcome, a in zip(outcomes, tried, strict=True)]
    # Deferred, never failed: each post published once, most other attempts throttled (a slow
    # answer on a loaded machine may time out: then it is reconciled, never sent twice).
    done = outcomes.count("OUTCOME_PUBLISHED") + outcomes.count("OUTCOME_RECONCILED")
    assert done == count, seen
    assert set(outcomes) <= {
        "OUTCOME_PUBLISHED",
        "OUTCOME_THROTTLED",
        "OUTCOME_TRANSIENT_FAILURE",
        "OUTCOME_RECONCILED",
    }, seen
    assert outcomes.count("OUTCOME_THROTTLED") >= count - limit


def test_a_limit_reached_defers_the_next_post_without_calling_x(
    publishing: PublishingServiceStub, fakes: Fakes
) -> None:
    window_s = 6
    fakes.x.rate_window(2, window_s)
    business = new_business(publishing)
    account = connect(publishing, fakes, business, "x")
    reset = _next_window(window_s)
    for text in ("First batch", "Second batch"):
        first = publishing.CreateBusinessPost(post_request(business, [account.name], text))
        assert watch_until_final(publishing, first.name)[-1].targets[0].platform_post_id

    # The second answer said 0 left: the third waits for the reset, X is not called.
    third = publishing.CreateBusinessPost(post_request(business, [account.name], "Third batch"))
    waiting = _until(publishing, third.name, _deferred).targets[0]

    assert fakes.x.calls(TWEET) == 2
    assert waiting.next_attempt_time.ToDatetime(UTC) == datetime.fromtimestamp(reset, UTC)
    [throttled] = attempts(publishing, third.name)
    assert throttled.outcome == Attempt.OUTCOME_THROTTLED
    assert "X rate limit: no requests left" in throttled.message, throttled.message
    assert throttled.message.endswith("not sent"), throttled.message
    final = watch_until_final(publishing, third.name, timeout=window_s + 10)[-1].targets[0]
    assert final.state == Target.STATE_PUBLISHED
    assert final.publish_time.ToDatetime(UTC) >= datetime.fromtimestamp(reset, UTC)
    assert fakes.x.calls(TWEET) == 3
    assert _outcomes(publishing, third.name) == ["OUTCOME_THROTTLED", "OUTCOME_PUBLISHED"]


def test_x_app_limit_spent_defers_every_account_of_the_app_without_calling_x(
    publishing: PublishingServiceStub, fakes: Fakes
) -> None:
    fakes.x.app_daily_limit(1)
    business = new_business(publishing)
    first_account = connect(publishing, fakes, business, "x")
    second_account = connect(publishing, fakes, business, "x")
    first = publishing.CreateBusinessPost(post_request(business, [first_account.name], "Rye"))
    assert watch_until_final(publishing, first.name)[-1].targets[0].state == (
        Target.STATE_PUBLISHED
    )

    # That answer said the app has no post left for 24 hours: another account's post waits.
    second = publishing.CreateBusinessPost(post_request(business, [second_account.name], "Spelt"))
    waiting = _until(publishing, second.name, _deferred).targets[0]

    assert fakes.x.calls(TWEET) == 1
    reset = waiting.next_attempt_time.ToDatetime(UTC)
    assert timedelta(hours=23) < reset - datetime.now(UTC) <= timedelta(hours=24)
    [throttled] = attempts(publishing, second.name)
    assert throttled.outcome == Attempt.OUTCOME_THROTTLED
    assert "X app limit: no posts left" in throttled.message, throttled.message


def test_meta_app_usage_above_the_threshold_defers_every_page_of_the_app(
    publishing: PublishingServiceStub, fakes: Fakes, monkeypatch: pytest.MonkeyPatch
) -> None:
    business = new_business(publishing)
    facebook = connect(publishing, fakes, business, "facebook")
    instagram = connect(publishing, fakes, business, "instagram")
    # From now on every Meta answer reports the app's usage at 100%.
    monkeypatch.setattr(fakes.meta, "usage_limit", 1)
    first = publishing.CreateBusinessPost(post_request(business, [facebook.name], "Croissants"))
    assert watch_until_final(publishing, first.name)[-1].targets[0].state == (
        Target.STATE_PUBLISHED
    )
    calls = fakes.meta.calls()
    started = datetime.now(UTC)

    second = publishing.CreateBusinessPost(
        post_request(business, [instagram.name], "Baguettes", media_uris=[IMAGE])
    )
    waiting = _until(publishing, second.name, _deferred).targets[0]

    assert fakes.meta.calls() == calls, "Meta was called while the app was over its threshold"
    # META_USAGE_BACKOFF_S (300 s) from the first answer.
    due = waiting.next_attempt_time.ToDatetime(UTC)
    assert started + timedelta(seconds=290) < due < started + timedelta(seconds=305), due
    [throttled] = attempts(publishing, second.name)
    assert throttled.outcome == Attempt.OUTCOME_THROTTLED
    assert "Meta app usage at 100%" in throttled.message, throttled.message
    assert fakes.meta.posts(instagram.platform_account_id) == []


def test_a_linkedin_429_defers_to_the_next_utc_midnight_and_holds_the_account(
    publishing: PublishingServiceStub, fakes: Fakes
) -> None:
    business = new_business(publishing)
    account = connect(publishing, fakes, business, "linkedin")
    fakes.linkedin.throttle_after(0, "POST /rest/posts")
    midnight = next_utc_midnight()

    first = publishing.CreateBusinessPost(post_request(business, [account.name], "Rye today"))
    waiting = _until(publishing, first.name, _deferred).targets[0]

    assert waiting.next_attempt_time.ToDatetime(UTC) == midnight
    assert waiting.error == ""
    assert _outcomes(publishing, first.name) == ["OUTCOME_THROTTLED"]
    assert fakes.linkedin.calls("POST /rest/posts") == 1
    # The account stays closed for everyone until then: the next post is not sent.
    second = publishing.CreateBusinessPost(post_request(business, [account.name], "Spelt too"))
    assert _until(publishing, second.name, _deferred).targets[0].next_attempt_time.ToDatetime(
        UTC
    ) == (midnight)
    [held] = attempts(publishing, second.name)
    assert held.message.endswith("not sent"), held.message
    assert fakes.linkedin.calls("POST /rest/posts") == 1


def test_x_daily_post_caps_per_user_and_per_app_count_every_post_of_a_thread(
    publishing: PublishingServiceStub, fakes: Fakes, backing: Backing
) -> None:
    business = new_business(publishing)
    account = connect(publishing, fakes, business, "x")
    other = connect(publishing, fakes, business, "x")
    thread = publishing.CreateBusinessPost(
        post_request(business, [account.name], "One", thread=["Two"])
    )
    single = publishing.CreateBusinessPost(post_request(business, [account.name], "Three"))
    oldest = min(
        watch_until_final(publishing, name)[-1].targets[0].publish_time.ToDatetime(UTC)
        for name in (thread.name, single.name)
    )

    async def blocked(limits: Limits, account_name: str) -> Block | None:
        engine = create_async_engine(async_url(backing.database_url))
        try:
            gate = RateGate(engine, None, limits)
            return await gate.blocked("x", _account_id(account_name))
        finally:
            await engine.dispose()

    at_cap = asyncio.run(blocked(Limits(x_daily_post_cap=3), account.name))
    assert at_cap is not None
    assert at_cap.until == oldest + timedelta(hours=24)
    assert at_cap.reason.startswith("X daily post cap: 3 of 3 posts in 24 hours"), at_cap
    assert asyncio.run(blocked(Limits(x_daily_post_cap=4), account.name)) is None
    assert asyncio.run(blocked(Limits(x_daily_post_cap=3), other.name)) is None

    # The app's cap counts every account's posts: the other account is held by it too.
    app_cap = Limits(x_daily_post_cap=0, x_app_daily_post_cap=3)
    held = asyncio.run(blocked(app_cap, other.name))
    assert held is not None
    assert held.until == oldest + timedelta(hours=24)
    assert held.reason.startswith("X app daily post cap (every account): 3 of 3 posts"), held
    roomier = Limits(x_daily_post_cap=0, x_app_daily_post_cap=4)
    assert asyncio.run(blocked(roomier, other.name)) is None


def test_blocks_survive_redis_going_away_postgresql_is_the_truth(
    backing: Backing, own_redis: EmbeddedRedis
) -> None:
    url = f"redis://127.0.0.1:{own_redis.port}/0"
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=10)
    later = soon + timedelta(minutes=5)

    async def scenario() -> None:
        engine = create_async_engine(async_url(backing.database_url))
        client = Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        gate = RateGate(engine, client, Limits(), retry_after_s=0.1)
        try:
            assert await gate.blocked("linkedin", 41) is None
            await gate.record("linkedin", 41, Throttled("LinkedIn: daily limit", soon))
            assert (await gate.blocked("linkedin", 41)) == Block(
                soon, f"LinkedIn: daily limit (until {soon:%H:%M:%S} UTC)"
            )
            with redis.Redis.from_url(url) as direct:
                assert direct.get("sh:publishing:rate:linkedin:account:41") is not None

            own_redis.stop()
            # Redis is gone: the block is read from PostgreSQL, and new ones are written there.
            held = await gate.blocked("linkedin", 41)
            assert held is not None
            assert held.until == soon
            usage = Quota(usage_percent=95.0, app_usage_percent=95.0)
            await gate.record("facebook", 7, Throttled("Meta: app limit", later, usage))
            for platform, account in (("instagram", 8), ("facebook", 9)):
                app_wide = await gate.blocked(platform, account)
                assert app_wide is not None
                assert app_wide.until == later, app_wide
            assert await gate.blocked("linkedin", 42) is None

            # Redis comes back empty: it is refilled from PostgreSQL before it is trusted.
            own_redis.start()
            await asyncio.sleep(0.2)
            refilled = await gate.blocked("instagram", 8)
            assert refilled is not None
            assert refilled.until == later
            with redis.Redis.from_url(url) as direct:
                assert direct.get("sh:publishing:rate:meta:app:meta") is not None
                assert direct.get("sh:publishing:rate:linkedin:account:41") is not None
            # A shorter block never shortens a longer one (GREATEST, in both stores).
            await gate.record(
                "linkedin", 41, Throttled("LinkedIn: again", soon - timedelta(minutes=1))
            )
            kept = await gate.blocked("linkedin", 41)
            assert kept is not None
            assert kept.until == soon
        finally:
            await client.aclose()
            await engine.dispose()

    asyncio.run(scenario())
    with backing.sql() as conn:
        rows = conn.execute(
            "SELECT platform, scope, key, blocked_until FROM publishing_rate_limits ORDER BY 1, 3"
        ).fetchall()
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("linkedin", "account", "41", soon),
        ("meta", "app", "meta", later),
    ]


def test_server_errors_are_retried_a_bounded_number_of_times_then_fail_with_the_reason(
    publishing: PublishingServiceStub, fakes: Fakes
) -> None:
    business = new_business(publishing)
    account = connect(publishing, fakes, business, "x")
    fakes.x.fail(TWEET, 503, times=50)

    created = publishing.CreateBusinessPost(post_request(business, [account.name], "Never"))
    final = watch_until_final(publishing, created.name, timeout=30)[-1].targets[0]

    # PUBLISH_MAX_ATTEMPTS (5) sends, each after asking X whether the last one went through.
    assert final.state == Target.STATE_FAILED
    assert final.attempt_count == 5
    assert fakes.x.calls(TWEET) == 5
    assert fakes.x.posts(account.platform_account_id) == []
    assert final.error.startswith("gave up after 5 attempts: X: "), final.error
    assert final.error.endswith("HTTP 503 from the platform"), final.error
    assert _outcomes(publishing, created.name) == ["OUTCOME_TRANSIENT_FAILURE"] * 6


def test_sends_cut_off_by_crashes_are_not_failures_but_all_sends_are_bounded(
    publishing: PublishingServiceStub, fakes: Fakes, backing: Backing
) -> None:
    business = new_business(publishing)
    account = connect(publishing, fakes, business, "x")
    later = in_future(3600)
    survivor = publishing.CreateBusinessPost(
        post_request(business, [account.name], "Cut off seven times", schedule_time=later)
    )
    doomed = publishing.CreateBusinessPost(
        post_request(business, [account.name], "Cut off every time", schedule_time=later)
    )
    # As if workers had started that many sends and died in each (lease long run out), the
    # last one a minute ago: the next claim asks X first, then sends or gives up.
    with backing.sql() as conn:
        for post, sends in ((survivor, 7), (doomed, 25)):
            conn.execute(
                "UPDATE publishing_targets SET attempt_count = %s, send_time = now() - "
                "interval '1 minute', due_time = now() WHERE post_id = %s",
                (sends, int(post.name.rsplit("/", 1)[1])),
            )
            conn.execute("SELECT pg_notify('socialhub_publishing', 'due')")

    published = watch_until_final(publishing, survivor.name)[-1].targets[0]
    failed = watch_until_final(publishing, doomed.name)[-1].targets[0]

    # Seven cut-off sends are more than PUBLISH_MAX_ATTEMPTS (5), yet no failure: published.
    assert published.state == Target.STATE_PUBLISHED
    assert published.attempt_count == 8
    # PUBLISH_MAX_SENDS (25) reached: X was asked (nothing there), and nothing was sent.
    assert failed.state == Target.STATE_FAILED
    assert failed.error.startswith("gave up after 25 sends"), failed.error
    assert [post.text for post in fakes.x.posts(account.platform_account_id)] == [
        "Cut off seven times"
    ]
    assert fakes.x.calls(TWEET) == 1
    assert fakes.x.calls("GET /2/users/{id}/tweets") >= 2
