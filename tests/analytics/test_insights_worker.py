"""Content insights end to end: FeedService writes, the insights worker, AnalyticsService reads.

Every wait polls with a deadline: the worker runs in the session server, off the request path.
"""

from __future__ import annotations

from socialhub.v1 import analytics_pb2, feed_pb2, profile_pb2
from socialhub.v1.analytics_pb2_grpc import AnalyticsServiceStub
from socialhub.v1.feed_pb2_grpc import FeedServiceStub
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from server.analytics.insight_models import model_version
from server.analytics.insights import CATEGORIES
from tests.analytics.insights_support import (
    edit,
    insights_of,
    post,
    post_insights,
    profile_insights,
    queue_length,
    seconds,
    wait_until,
)
from tests.analytics.support import profile
from tests.harness import Backing

HAPPY = "I absolutely love this wonderful pasta recipe, best dinner ever! So delicious."
ANGRY = "Das ist ein furchtbares und schreckliches Spiel. Ich hasse diese Mannschaft wirklich."


def test_a_post_gets_insights_and_an_edit_changes_them(
    feed: FeedServiceStub, profiles: ProfileServiceStub, analytics: AnalyticsServiceStub
) -> None:
    author = profile(profiles)
    created = post(feed, author, HAPPY)

    first = insights_of(analytics, created.name)
    assert first.name == f"{created.name}/insights"
    assert first.profile == author
    assert first.sentiment == analytics_pb2.SENTIMENT_POSITIVE
    assert 0.3 < first.sentiment_score <= 1
    assert first.language_code == "en"
    assert first.category in CATEGORIES
    assert 0 < first.sentiment_confidence <= 1
    assert 0 < first.language_confidence <= 1
    assert first.model_version == model_version()

    edited = edit(feed, created.name, ANGRY)
    second = insights_of(analytics, created.name, after=seconds(edited.update_time))
    assert second.language_code == "de"
    assert second.sentiment == analytics_pb2.SENTIMENT_NEGATIVE
    assert second.sentiment_score < 0

    summary = wait_until(
        lambda: profile_insights(analytics, author),
        lambda found: found.primary_language_code == "de",
        "the profile's insights to follow the edit",
    )
    assert summary.post_count == 1
    assert [(s.language_code, s.post_count, s.share) for s in summary.languages] == [("de", 1, 1.0)]
    assert summary.negative_share == 1.0


def test_an_edit_that_keeps_the_text_is_not_analysed_again(
    feed: FeedServiceStub,
    profiles: ProfileServiceStub,
    analytics: AnalyticsServiceStub,
    backing: Backing,
) -> None:
    author = profile(profiles)
    created = post(feed, author, HAPPY)
    first = insights_of(analytics, created.name)
    edited = edit(feed, created.name, HAPPY)
    # The edit is queued and handled (the queue empties), but the text hash is the same.
    with backing.sql() as conn:
        wait_until(lambda: queue_length(conn), lambda n: n == 0, "the queue to empty")
    again = post_insights(analytics, created.name)
    assert seconds(edited.update_time) > seconds(first.post_update_time)
    assert again.analyze_time == first.analyze_time
    assert again.post_update_time == first.post_update_time


def test_a_deleted_post_leaves_the_profile_insights(
    feed: FeedServiceStub, profiles: ProfileServiceStub, analytics: AnalyticsServiceStub
) -> None:
    author = profile(profiles)
    kept = post(feed, author, HAPPY)
    dropped = post(feed, author, ANGRY)
    wait_until(
        lambda: profile_insights(analytics, author),
        lambda found: found.post_count == 2,
        "both posts counted",
    )
    feed.DeletePost(feed_pb2.DeletePostRequest(name=dropped.name))
    summary = wait_until(
        lambda: profile_insights(analytics, author),
        lambda found: found.post_count == 1,
        "the deleted post to leave the aggregates",
    )
    assert summary.primary_language_code == "en"
    assert [s.language_code for s in summary.languages] == ["en"]
    assert post_insights(analytics, kept.name).language_code == "en"


def test_likes_and_comments_of_feed_posts_count_in_analytics(
    feed: FeedServiceStub, profiles: ProfileServiceStub, analytics: AnalyticsServiceStub
) -> None:
    author = profile(profiles)
    fans = [profile(profiles, f"Fan {i}") for i in range(2)]
    created = post(feed, author, HAPPY)
    for fan in fans:
        feed.CreateLike(
            feed_pb2.CreateLikeRequest(parent=created.name, like=feed_pb2.Like(profile=fan))
        )
    feed.CreateComment(
        feed_pb2.CreateCommentRequest(
            parent=created.name, comment=feed_pb2.Comment(author=fans[0], body="yum")
        )
    )
    post_id = created.name.rsplit("/", 1)[1]
    request = analytics_pb2.GetPostAnalyticsRequest(
        profile=author, platform=profile_pb2.PLATFORM_SOCIALHUB, post_id=post_id
    )
    latest = wait_until(
        lambda: analytics.GetPostAnalytics(request).latest,
        lambda found: (found.likes, found.comments) == (2, 1),
        "the likes and the comment in the post's analytics",
    )
    assert latest.engagement == 3
    assert latest.platform == profile_pb2.PLATFORM_SOCIALHUB

    unliked = f"{created.name}/likes/{fans[1].rsplit('/', 1)[1]}"
    feed.DeleteLike(feed_pb2.DeleteLikeRequest(name=unliked))
    wait_until(
        lambda: analytics.GetPostAnalytics(request).latest,
        lambda found: found.likes == 1,
        "the unlike counted",
    )
