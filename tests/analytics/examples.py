"""Valid example requests of every AnalyticsService RPC, for tests/core/test_field_behavior.py."""

from __future__ import annotations

from google.protobuf.duration_pb2 import Duration
from socialhub.v1 import analytics_pb2, profile_pb2
from socialhub.v1.analytics_pb2_grpc import AnalyticsServiceStub
from socialhub.v1.feed_pb2_grpc import FeedServiceStub
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from tests.analytics.insights_support import insights_of, post
from tests.analytics.support import NOW, at, followers, profile, snapshot, ts
from tests.field_behavior_support import ExampleContext, Examples

SERVICE = "/socialhub.v1.AnalyticsService/"


def examples(context: ExampleContext) -> Examples:
    owner = profile(ProfileServiceStub(context.channel), "Analytics Example")
    first = snapshot(owner, "example-post", at(12), likes=3, comments=1)
    AnalyticsServiceStub(context.channel).BatchCreateMetricSnapshots(
        analytics_pb2.BatchCreateMetricSnapshotsRequest(metric_snapshots=[first])
    )
    audience = analytics_pb2.AudienceSnapshot(
        profile=owner,
        platform=profile_pb2.PLATFORM_INSTAGRAM,
        observe_time=at(10),
        age_shares=[analytics_pb2.AgeShare(age_range=analytics_pb2.AGE_RANGE_18_24, share=0.5)],
        gender_shares=[
            analytics_pb2.GenderShare(gender=analytics_pb2.AUDIENCE_GENDER_FEMALE, share=0.6)
        ],
        top_countries=[analytics_pb2.PlaceShare(place="DE", share=0.3)],
        top_cities=[analytics_pb2.PlaceShare(place="Berlin", share=0.1)],
    )
    # A FeedService post, once the insights worker has analysed it.
    written = post(FeedServiceStub(context.channel), owner, "What a lovely sunny day at the beach")
    insights_of(AnalyticsServiceStub(context.channel), written.name)
    return {
        SERVICE + "GetPostInsights": analytics_pb2.GetPostInsightsRequest(
            name=f"{written.name}/insights"
        ),
        SERVICE + "GetProfileInsights": analytics_pb2.GetProfileInsightsRequest(
            name=f"{owner}/insights"
        ),
        SERVICE + "BatchCreateMetricSnapshots": analytics_pb2.BatchCreateMetricSnapshotsRequest(
            metric_snapshots=[snapshot(owner, "example-post", at(13), likes=5)]
        ),
        SERVICE + "ImportMetricSnapshots": analytics_pb2.ImportMetricSnapshotsRequest(
            metric_snapshots=[snapshot(owner, "example-post", at(14), likes=6)]
        ),
        SERVICE + "BatchCreateFollowerCounts": analytics_pb2.BatchCreateFollowerCountsRequest(
            follower_counts=[followers(owner, at(8), 100)]
        ),
        SERVICE + "BatchCreateAudienceSnapshots": (
            analytics_pb2.BatchCreateAudienceSnapshotsRequest(audience_snapshots=[audience])
        ),
        SERVICE + "GetDirectoryStats": analytics_pb2.GetDirectoryStatsRequest(),
        SERVICE + "GetProfileAnalytics": analytics_pb2.GetProfileAnalyticsRequest(
            profile=owner,
            start_time=at(0),
            end_time=ts(NOW),
            granularity=analytics_pb2.GRANULARITY_DAY,
        ),
        SERVICE + "GetPostAnalytics": analytics_pb2.GetPostAnalyticsRequest(
            profile=owner, platform=profile_pb2.PLATFORM_INSTAGRAM, post_id="example-post"
        ),
        SERVICE + "GetAudienceDemographics": analytics_pb2.GetAudienceDemographicsRequest(
            profile=owner
        ),
        SERVICE + "SearchCreators": analytics_pb2.SearchCreatorsRequest(
            platform=profile_pb2.PLATFORM_INSTAGRAM, min_followers=1, page_size=5
        ),
        # Open-ended streams: the field-behaviour walker reads them for a short while.
        SERVICE + "WatchProfileMetrics": analytics_pb2.WatchProfileMetricsRequest(
            profile=owner, resume_event_id="0-0"
        ),
        SERVICE + "WatchServiceMetrics": analytics_pb2.WatchServiceMetricsRequest(
            interval=Duration(nanos=500_000_000)
        ),
    }
