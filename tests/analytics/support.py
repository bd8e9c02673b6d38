"""Helpers shared by the AnalyticsService tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from socialhub.v1 import analytics_pb2, profile_pb2
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

# Every test's clock: a fixed recent day, so dates are predictable and inside the retention
# period and the partitions the migration made (this month and the one before).
NOW = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
DAY = NOW - timedelta(days=2)  # midnight, two days ago


def ts(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def at(hours: float, day: datetime = DAY) -> Timestamp:
    return ts(day + timedelta(hours=hours))


def profile(profiles: ProfileServiceStub, name: str = "Creator", **fields: Any) -> str:
    if not any(p in fields for p in ("facebook", "x", "instagram", "youtube", "linkedin")):
        fields["instagram"] = profile_pb2.PlatformPresence(handle="creator", followers=100)
    created = profiles.CreateProfile(
        profile_pb2.CreateProfileRequest(profile=profile_pb2.Profile(display_name=name, **fields))
    )
    return created.name


def snapshot(
    owner: str,
    post_id: str,
    observed: Timestamp,
    *,
    published: Timestamp | None = None,
    platform: int = profile_pb2.PLATFORM_INSTAGRAM,
    **metrics: int,
) -> analytics_pb2.MetricSnapshot:
    return analytics_pb2.MetricSnapshot(
        profile=owner,
        platform=platform,  # type: ignore[arg-type]
        post_id=post_id,
        publish_time=published or at(9),
        observe_time=observed,
        **metrics,
    )


def followers(
    owner: str, observed: Timestamp, count: int, platform: int = profile_pb2.PLATFORM_INSTAGRAM
) -> analytics_pb2.FollowerCount:
    return analytics_pb2.FollowerCount(
        profile=owner,
        platform=platform,  # type: ignore[arg-type]
        observe_time=observed,
        followers=count,
    )


def batch(*items: analytics_pb2.MetricSnapshot) -> analytics_pb2.BatchCreateMetricSnapshotsRequest:
    return analytics_pb2.BatchCreateMetricSnapshotsRequest(metric_snapshots=list(items))
