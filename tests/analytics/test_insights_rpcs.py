"""GetPostInsights and GetProfileInsights: their errors, the quality score, and a read after
the worker wrote is fresh (the entries are cached for days)."""

from __future__ import annotations

import grpc
import pytest
from socialhub.v1 import analytics_pb2, profile_pb2
from socialhub.v1.analytics_pb2_grpc import AnalyticsServiceStub
from socialhub.v1.feed_pb2_grpc import FeedServiceStub
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from server.analytics.insight_repository import CONFIDENT_CATEGORY, CONSISTENCY_WEEKS
from tests.analytics.insights_support import (
    edit,
    insights_of,
    post,
    post_insights,
    profile_insights,
    wait_until,
)
from tests.analytics.support import at, batch, followers, profile, snapshot
from tests.harness import Backing
from tests.helpers import error_info, field_violations


@pytest.mark.parametrize(
    "name",
    ["", "posts/1", "posts/x/insights", "profiles/1/insights", "posts/1/insights/extra"],
)
def test_a_malformed_post_insights_name_is_invalid(
    analytics: AnalyticsServiceStub, name: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        analytics.GetPostInsights(analytics_pb2.GetPostInsightsRequest(name=name))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == "REQUEST_FIELD_INVALID"
    assert set(field_violations(caught.value)) == {"name"}


def test_a_malformed_profile_insights_name_is_invalid(analytics: AnalyticsServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        analytics.GetProfileInsights(analytics_pb2.GetProfileInsightsRequest(name="profiles/1"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(caught.value)) == {"name"}


def test_a_missing_post_is_post_not_found(analytics: AnalyticsServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        post_insights(analytics, "posts/987654")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(caught.value).reason == "POST_NOT_FOUND"


def test_a_post_not_analysed_yet_is_insights_not_ready(
    analytics: AnalyticsServiceStub, profiles: ProfileServiceStub, backing: Backing
) -> None:
    author = profile(profiles)
    # Written beside FeedService (as a bulk load would): no hook queued it, so no worker will
    # analyse it until a backfill does.
    with backing.sql() as conn:
        row = conn.execute(
            "INSERT INTO posts (author_id, body) VALUES (%s, 'quiet') RETURNING id",
            (int(author.rsplit("/", 1)[1]),),
        ).fetchone()
    assert row is not None
    with pytest.raises(grpc.RpcError) as caught:
        post_insights(analytics, f"posts/{row[0]}")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(caught.value).reason == "INSIGHTS_NOT_READY"


def test_a_missing_profile_is_profile_not_found(analytics: AnalyticsServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        profile_insights(analytics, "profiles/987654")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(caught.value).reason == "PROFILE_NOT_FOUND"


def test_a_profile_without_posts_has_empty_insights(
    analytics: AnalyticsServiceStub, profiles: ProfileServiceStub
) -> None:
    author = profile(profiles)
    found = profile_insights(analytics, author)
    assert found == analytics_pb2.ProfileInsights(name=f"{author}/insights")


def test_a_read_after_the_worker_wrote_is_fresh(
    analytics: AnalyticsServiceStub, profiles: ProfileServiceStub, feed: FeedServiceStub
) -> None:
    author = profile(profiles)
    first = post(feed, author, "Loving the new album from my favourite band, great songs!")
    insights_of(analytics, first.name)
    # Two reads alike: the worker has also recorded the post's engagement (an ingestion
    # after the insights' commit, which retires the entry and changes the quality score), so
    # the entry is cached now, for days.
    wait_until(
        lambda: (profile_insights(analytics, author), profile_insights(analytics, author)),
        lambda reads: reads[0] == reads[1] and reads[0].primary_language_code == "en",
        "the first post counted",
    )
    # An edit records no engagement (so ingestion retires nothing): only the worker's own
    # invalidation can make a read see the new language before the entry expires.
    edit(feed, first.name, "Das Konzert gestern war wirklich großartig, tolle Musik!")
    fresh = wait_until(
        lambda: profile_insights(analytics, author),
        lambda found: found.primary_language_code == "de",
        "the cached insights to be retired by the worker",
    )
    assert fresh.post_count == 1
    assert post_insights(analytics, first.name).language_code == "de"


def test_the_quality_score_follows_its_formula(
    analytics: AnalyticsServiceStub, profiles: ProfileServiceStub, feed: FeedServiceStub
) -> None:
    author = profile(profiles)
    bodies = [
        "Great win for our team in the football match tonight, what a goal!",
        "Terrible service at this restaurant, the food was cold and awful.",
        "New phone review: the camera and battery are excellent.",
    ]
    written = [post(feed, author, body) for body in bodies]
    per_post = [insights_of(analytics, item.name) for item in written]
    found = wait_until(
        lambda: profile_insights(analytics, author),
        lambda summary: summary.post_count == len(bodies),
        "every post counted",
    )
    quality = found.quality
    average = sum(p.sentiment_score for p in per_post) / len(per_post)
    assert found.average_sentiment_score == pytest.approx(average)
    assert quality.sentiment == pytest.approx((average + 1) / 2)
    # All posted now: one active week of the last twelve.
    assert quality.consistency == pytest.approx(1 / CONSISTENCY_WEEKS)
    confident = sum(p.category_confidence >= CONFIDENT_CATEGORY for p in per_post)
    assert quality.clarity == pytest.approx(confident / len(per_post))
    # Posts on Socialhub alone, and no other creator there yet: the neutral standing.
    creator = wait_until(
        lambda: profile_insights(analytics, author).quality,
        lambda q: q.engagement > 0,
        "the posts' engagement recorded",
    )
    assert creator.engagement == pytest.approx(0.5)
    expected = round(
        100
        * (
            0.35 * 0.5
            + 0.25 * quality.sentiment
            + 0.2 * quality.consistency
            + 0.2 * quality.clarity
        )
    )
    assert creator.score == expected
    assert 0 <= creator.score <= 100
    shares = found.positive_share + found.neutral_share + found.negative_share
    assert shares == pytest.approx(1.0)
    assert sum(c.post_count for c in found.categories) == len(bodies)
    assert found.primary_category == found.categories[0].category


def test_clients_cannot_ingest_the_platform_the_service_records_itself(
    analytics: AnalyticsServiceStub, profiles: ProfileServiceStub
) -> None:
    author = profile(profiles)
    with pytest.raises(grpc.RpcError) as caught:
        analytics.BatchCreateMetricSnapshots(
            batch(snapshot(author, "p1", at(10), platform=profile_pb2.PLATFORM_SOCIALHUB, likes=1))
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(caught.value)) == {"metric_snapshots[0].platform"}
    with pytest.raises(grpc.RpcError) as counts:
        analytics.BatchCreateFollowerCounts(
            analytics_pb2.BatchCreateFollowerCountsRequest(
                follower_counts=[followers(author, at(8), 5, profile_pb2.PLATFORM_SOCIALHUB)]
            )
        )
    assert set(field_violations(counts.value)) == {"follower_counts[0].platform"}


def test_deleting_the_author_retires_its_posts_cached_insights(
    analytics: AnalyticsServiceStub, profiles: ProfileServiceStub, feed: FeedServiceStub
) -> None:
    author = profile(profiles)
    written = post(feed, author, "A quiet walk in the park this morning")
    insights_of(analytics, written.name)
    post_insights(analytics, written.name)  # cached now
    profiles.DeleteProfile(profile_pb2.DeleteProfileRequest(name=author))
    with pytest.raises(grpc.RpcError) as caught:
        post_insights(analytics, written.name)
    assert error_info(caught.value).reason == "POST_NOT_FOUND"
    with pytest.raises(grpc.RpcError) as gone:
        profile_insights(analytics, author)
    assert error_info(gone.value).reason == "PROFILE_NOT_FOUND"
