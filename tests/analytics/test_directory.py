"""GetDirectoryStats: one statement over the profiles, cached, fresh after every profile write."""

from __future__ import annotations

from google.protobuf import field_mask_pb2
from socialhub.v1 import analytics_pb2, profile_pb2
from socialhub.v1.analytics_pb2_grpc import AnalyticsServiceStub
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from tests.analytics.support import profile
from tests.harness import Backing

Presence = profile_pb2.PlatformPresence


def stats(analytics: AnalyticsServiceStub) -> analytics_pb2.GetDirectoryStatsResponse:
    return analytics.GetDirectoryStats(analytics_pb2.GetDirectoryStatsRequest())


def test_directory_stats_count_profiles_platforms_zones_and_designations(
    analytics: AnalyticsServiceStub, profiles: ProfileServiceStub
) -> None:
    empty = stats(analytics)
    assert empty.profile_count == 0
    assert [p.handle_count for p in empty.platforms] == [0] * 5
    profile(
        profiles,
        "A",
        zone="North",
        designation="Mayor",
        x=Presence(handle="a", followers=10, active=True, verified=True),
        instagram=Presence(handle="a", followers=5, active=True),
    )
    profile(profiles, "B", zone="North", x=Presence(handle="b", followers=7))
    profile(
        profiles,
        "C",
        zone="South",
        designation="Mayor",
        youtube=Presence(handle="c", followers=100, verified=True),
    )
    result = stats(analytics)
    assert (result.profile_count, result.total_followers) == (3, 122)
    platforms = {
        p.platform: (p.handle_count, p.active_count, p.verified_count, p.followers)
        for p in result.platforms
    }
    assert platforms == {
        profile_pb2.PLATFORM_FACEBOOK: (0, 0, 0, 0),
        profile_pb2.PLATFORM_X: (2, 1, 1, 17),
        profile_pb2.PLATFORM_INSTAGRAM: (1, 1, 0, 5),
        profile_pb2.PLATFORM_YOUTUBE: (1, 0, 1, 100),
        profile_pb2.PLATFORM_LINKEDIN: (0, 0, 0, 0),
    }
    assert [p.platform for p in result.platforms] == sorted(platforms)
    assert [(z.value, z.profile_count, z.total_followers) for z in result.zones] == [
        ("North", 2, 22),
        ("South", 1, 100),
    ]
    assert [(d.value, d.profile_count) for d in result.designations] == [("Mayor", 2), ("", 1)]


def test_directory_stats_are_cached_until_a_profile_write(
    analytics: AnalyticsServiceStub, profiles: ProfileServiceStub, backing: Backing
) -> None:
    name = profile(profiles, "A", zone="North")
    assert [z.value for z in stats(analytics).zones] == ["North"]
    with backing.sql() as conn:  # behind the service's back: the cached answer stands
        conn.execute("UPDATE profiles SET zone = 'East'")
    assert [z.value for z in stats(analytics).zones] == ["North"]
    profiles.UpdateProfile(
        profile_pb2.UpdateProfileRequest(
            profile=profile_pb2.Profile(name=name, bio="new"),
            update_mask=field_mask_pb2.FieldMask(paths=["bio"]),
        )
    )
    assert [z.value for z in stats(analytics).zones] == ["East"]
    profile(profiles, "B", zone="West")
    assert stats(analytics).profile_count == 2
    profiles.DeleteProfile(profile_pb2.DeleteProfileRequest(name=name))
    assert [z.value for z in stats(analytics).zones] == ["West"]
