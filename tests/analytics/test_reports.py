"""GetProfileAnalytics, GetPostAnalytics and GetAudienceDemographics: computed from the
rollups, cached per profile and fresh after every ingestion for that profile."""

from __future__ import annotations

import itertools
import random
from datetime import datetime, timedelta

import grpc
import pytest
from socialhub.v1 import analytics_pb2, profile_pb2
from socialhub.v1.analytics_pb2_grpc import AnalyticsServiceStub
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from tests.analytics.support import DAY, NOW, at, batch, followers, profile, snapshot, ts
from tests.harness import Backing
from tests.helpers import error_reason, field_violations

IG, X = profile_pb2.PLATFORM_INSTAGRAM, profile_pb2.PLATFORM_X


def load_history(analytics: AnalyticsServiceStub, owner: str) -> None:
    analytics.BatchCreateFollowerCounts(
        analytics_pb2.BatchCreateFollowerCountsRequest(
            follower_counts=[
                followers(owner, at(12, DAY - timedelta(days=10)), 1000),
                followers(owner, at(12, DAY - timedelta(days=3)), 1100),
                followers(owner, at(12, DAY), 1200),
                followers(owner, at(12, DAY - timedelta(days=1)), 50, platform=X),
            ]
        )
    )
    three_days_ago = DAY - timedelta(days=3)
    analytics.BatchCreateMetricSnapshots(
        batch(
            # post A, observed twice: the later snapshot is what counts
            snapshot(owner, "A", at(10), published=at(9, three_days_ago), likes=50),
            snapshot(
                owner,
                "A",
                at(20),
                published=at(9, three_days_ago),
                likes=100,
                comments=10,
                shares=5,
                views=1000,
            ),
            snapshot(owner, "B", at(20), published=at(18, three_days_ago), likes=20),
            snapshot(owner, "C", at(20), published=at(9), likes=50, comments=5, shares=5),
            snapshot(
                owner,
                "D",
                at(20),
                published=at(12, DAY - timedelta(days=1)),
                platform=X,
                likes=4,
                comments=1,
            ),
        )
    )


def report(
    analytics: AnalyticsServiceStub,
    owner: str,
    granularity: int = analytics_pb2.GRANULARITY_DAY,
    platform: int = 0,
) -> analytics_pb2.GetProfileAnalyticsResponse:
    return analytics.GetProfileAnalytics(
        analytics_pb2.GetProfileAnalyticsRequest(
            profile=owner,
            start_time=ts(DAY - timedelta(days=5)),
            end_time=ts(NOW),
            granularity=granularity,  # type: ignore[arg-type]
            platform=platform,  # type: ignore[arg-type]
        )
    )


def test_profile_analytics_by_day(
    analytics: AnalyticsServiceStub, profiles: ProfileServiceStub
) -> None:
    owner = profile(profiles)
    load_history(analytics, owner)
    result = report(analytics, owner)
    growth = {(g.platform, g.start_followers, g.end_followers, g.growth) for g in result.followers}
    assert growth == {(IG, 1000, 1200, 200), (X, 50, 50, 0)}
    assert [g.growth_rate for g in result.followers] == [0.0, pytest.approx(0.2)]  # X, IG order
    periods = {p.start_time.seconds: p for p in result.periods}
    assert len(result.periods) == 7  # DAY-5 .. DAY+1, empty days included
    busiest = periods[at(0, DAY - timedelta(days=3)).seconds]
    assert (busiest.post_count, busiest.likes, busiest.comments, busiest.shares) == (2, 120, 10, 5)
    assert (busiest.views, busiest.engagement) == (1000, 135)
    assert busiest.engagement_rate == pytest.approx(135 / 1200 / 2)
    assert periods[at(0, DAY - timedelta(days=1)).seconds].engagement_rate == pytest.approx(0.1)
    assert periods[at(0).seconds].engagement_rate == pytest.approx(60 / 1200)
    assert (result.post_count, result.engagement, result.average_engagement) == (4, 200, 50.0)
    assert result.engagement_rate == pytest.approx((135 / 1200 + 0.1 + 0.05) / 4)
    assert [(h.slot, h.post_count, h.average_engagement) for h in result.best_hours] == [
        (9, 2, 87.5),
        (18, 1, 20.0),
        (12, 1, 5.0),
    ]
    weekday = (DAY - timedelta(days=3)).isoweekday()
    assert result.best_weekdays[0].slot in {weekday, DAY.isoweekday()}
    assert sum(w.post_count for w in result.best_weekdays) == 4
    assert [(p.post_id, p.engagement) for p in result.top_posts] == [
        ("A", 115),
        ("C", 60),
        ("B", 20),
        ("D", 5),
    ]


def test_profile_analytics_by_week_and_month_and_platform(
    analytics: AnalyticsServiceStub, profiles: ProfileServiceStub
) -> None:
    owner = profile(profiles)
    load_history(analytics, owner)
    weekly = report(analytics, owner, analytics_pb2.GRANULARITY_WEEK)
    assert all(p.start_time.ToDatetime().isoweekday() == 1 for p in weekly.periods)
    assert sum(p.post_count for p in weekly.periods) == 4
    monthly = report(analytics, owner, analytics_pb2.GRANULARITY_MONTH)
    assert all(p.start_time.ToDatetime().day == 1 for p in monthly.periods)
    assert sum(p.engagement for p in monthly.periods) == 200
    only_x = report(analytics, owner, platform=X)
    assert (only_x.post_count, only_x.engagement) == (1, 5)
    assert [g.platform for g in only_x.followers] == [X]
    assert [p.post_id for p in only_x.top_posts] == ["D"]


def test_best_hours_and_weekdays_count_only_the_interval_s_posts(
    analytics: AnalyticsServiceStub, profiles: ProfileServiceStub
) -> None:
    """Best hours and weekdays are read from the slot rollup less the posts outside the
    interval when most posts are inside it, else from the posts inside: both give exactly
    the interval's posts."""
    owner = profile(profiles)
    load_history(analytics, owner)
    long_ago = DAY - timedelta(days=20)
    analytics.BatchCreateMetricSnapshots(
        batch(
            # Outside the report's interval: one in a slot the interval's posts have (9 h), one
            # in a slot of its own (23 h).
            snapshot(owner, "E", at(20), published=at(9, long_ago), likes=1000),
            snapshot(owner, "F", at(20), published=at(23, long_ago), likes=7),
        )
    )
    mostly_inside = report(analytics, owner)  # 4 posts inside, 2 outside
    assert [(h.slot, h.post_count, h.average_engagement) for h in mostly_inside.best_hours] == [
        (9, 2, 87.5),
        (18, 1, 20.0),
        (12, 1, 5.0),
    ]
    assert [(w.slot, w.post_count, w.average_engagement) for w in mostly_inside.best_weekdays] == [
        ((DAY - timedelta(days=3)).isoweekday(), 2, 67.5),
        (DAY.isoweekday(), 1, 60.0),
        ((DAY - timedelta(days=1)).isoweekday(), 1, 5.0),
    ]
    one_day = analytics.GetProfileAnalytics(  # 2 posts inside, 4 outside
        analytics_pb2.GetProfileAnalyticsRequest(
            profile=owner,
            start_time=ts(DAY - timedelta(days=3)),
            end_time=ts(DAY - timedelta(days=2)),
            granularity=analytics_pb2.GRANULARITY_DAY,
        )
    )
    assert [(h.slot, h.post_count, h.average_engagement) for h in one_day.best_hours] == [
        (9, 1, 115.0),
        (18, 1, 20.0),
    ]
    assert [(w.post_count, w.average_engagement) for w in one_day.best_weekdays] == [(2, 67.5)]
    everything = analytics.GetProfileAnalytics(  # all 6 inside
        analytics_pb2.GetProfileAnalyticsRequest(
            profile=owner,
            start_time=ts(long_ago),
            end_time=ts(NOW),
            granularity=analytics_pb2.GRANULARITY_WEEK,
            platform=IG,
        )
    )
    assert [(h.slot, h.post_count, h.average_engagement) for h in everything.best_hours] == [
        (9, 3, (115 + 60 + 1000) / 3),
        (18, 1, 20.0),
        (23, 1, 7.0),
    ]


def test_report_requests_are_checked(
    analytics: AnalyticsServiceStub, profiles: ProfileServiceStub
) -> None:
    owner = profile(profiles)
    request = analytics_pb2.GetProfileAnalyticsRequest(
        profile=owner, start_time=ts(NOW), end_time=ts(DAY)
    )
    with pytest.raises(grpc.RpcError) as caught:
        analytics.GetProfileAnalytics(request)
    assert set(field_violations(caught.value)) == {"end_time", "granularity"}
    request = analytics_pb2.GetProfileAnalyticsRequest(
        profile="profiles/999999",
        start_time=ts(DAY),
        end_time=ts(NOW),
        granularity=analytics_pb2.GRANULARITY_DAY,
    )
    with pytest.raises(grpc.RpcError) as missing:
        analytics.GetProfileAnalytics(request)
    assert error_reason(missing.value) == "PROFILE_NOT_FOUND"


def test_reports_are_cached_and_fresh_after_an_ingestion(
    analytics: AnalyticsServiceStub, profiles: ProfileServiceStub, backing: Backing
) -> None:
    owner = profile(profiles)
    load_history(analytics, owner)
    before = report(analytics, owner)
    # Behind the service's back: a cached report does not see it...
    with backing.sql() as conn:
        conn.execute("UPDATE analytics_daily SET likes = likes + 1000")
    assert report(analytics, owner) == before
    # ...and the next ingestion for the profile retires the cached report.
    analytics.BatchCreateMetricSnapshots(batch(snapshot(owner, "E", at(21), likes=1)))
    after = report(analytics, owner)
    assert after.post_count == before.post_count + 1
    assert sum(p.likes for p in after.periods) > sum(p.likes for p in before.periods) + 1000


def test_a_deleted_profile_has_no_reports(
    analytics: AnalyticsServiceStub, profiles: ProfileServiceStub, backing: Backing
) -> None:
    owner = profile(profiles)
    load_history(analytics, owner)
    report(analytics, owner)
    audience_request = analytics_pb2.GetAudienceDemographicsRequest(profile=owner)
    analytics.GetAudienceDemographics(audience_request)
    profiles.DeleteProfile(profile_pb2.DeleteProfileRequest(name=owner))
    for call in (
        lambda: report(analytics, owner),
        lambda: analytics.GetAudienceDemographics(audience_request),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert error_reason(caught.value) == "PROFILE_NOT_FOUND"
    with backing.sql() as conn:
        assert conn.execute("SELECT count(*) FROM analytics_metric_snapshots").fetchone() == (0,)


def test_post_analytics_latest_and_series(
    analytics: AnalyticsServiceStub, profiles: ProfileServiceStub
) -> None:
    owner = profile(profiles)
    load_history(analytics, owner)
    result = analytics.GetPostAnalytics(
        analytics_pb2.GetPostAnalyticsRequest(profile=owner, platform=IG, post_id="A")
    )
    assert (result.latest.likes, result.latest.engagement, result.latest.views) == (100, 115, 1000)
    assert [p.likes for p in result.series] == [50, 100]
    with pytest.raises(grpc.RpcError) as caught:
        analytics.GetPostAnalytics(
            analytics_pb2.GetPostAnalyticsRequest(profile=owner, platform=X, post_id="A")
        )
    assert error_reason(caught.value) == "ANALYTICS_POST_NOT_FOUND"


def audience(
    owner: str, observed: object, platform: int, countries: dict[str, float]
) -> analytics_pb2.AudienceSnapshot:
    return analytics_pb2.AudienceSnapshot(
        profile=owner,
        platform=platform,  # type: ignore[arg-type]
        observe_time=observed,  # type: ignore[arg-type]
        age_shares=[
            analytics_pb2.AgeShare(age_range=analytics_pb2.AGE_RANGE_65_PLUS, share=0.1),
            analytics_pb2.AgeShare(age_range=analytics_pb2.AGE_RANGE_13_17, share=0.2),
        ],
        gender_shares=[
            analytics_pb2.GenderShare(gender=analytics_pb2.AUDIENCE_GENDER_FEMALE, share=0.55)
        ],
        top_countries=[analytics_pb2.PlaceShare(place=k, share=v) for k, v in countries.items()],
        top_cities=[analytics_pb2.PlaceShare(place="Lagos", share=0.05)],
    )


def test_audience_demographics_are_the_latest_per_platform(
    analytics: AnalyticsServiceStub, profiles: ProfileServiceStub
) -> None:
    owner = profile(profiles)
    request = analytics_pb2.GetAudienceDemographicsRequest(profile=owner)
    assert not analytics.GetAudienceDemographics(request).audiences
    analytics.BatchCreateAudienceSnapshots(
        analytics_pb2.BatchCreateAudienceSnapshotsRequest(
            audience_snapshots=[
                audience(owner, at(10, DAY - timedelta(days=1)), IG, {"DE": 0.5}),
                audience(owner, at(10), IG, {"FR": 0.1, "NG": 0.4}),
                audience(owner, at(10), X, {"US": 0.9}),
            ]
        )
    )
    result = analytics.GetAudienceDemographics(request).audiences
    assert [a.platform for a in result] == [X, IG]
    instagram = result[1]
    assert [(c.place, c.share) for c in instagram.top_countries] == [("NG", 0.4), ("FR", 0.1)]
    assert [a.age_range for a in instagram.age_shares] == [
        analytics_pb2.AGE_RANGE_13_17,
        analytics_pb2.AGE_RANGE_65_PLUS,
    ]
    assert instagram.gender_shares[0].share == pytest.approx(0.55)
    only_x = analytics.GetAudienceDemographics(
        analytics_pb2.GetAudienceDemographicsRequest(profile=owner, platform=X)
    )
    assert [c.place for c in only_x.audiences[0].top_countries] == ["US"]


def _top_by_every_post(
    backing: Backing, owner: str, start: datetime, end: datetime, platform: str | None
) -> list[tuple[str, int]]:
    """The interval's ten posts with the most engagement, ranked over all of them."""
    with backing.sql() as conn:
        rows = conn.execute(
            "SELECT external_id, engagement FROM analytics_posts"
            " WHERE profile_id = %s AND publish_time >= %s AND publish_time < %s"
            " AND (%s::text IS NULL OR platform = %s)"
            " ORDER BY engagement DESC, id LIMIT 10",
            (int(owner.split("/")[1]), start, end, platform, platform),
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


def test_top_posts_equal_a_ranking_of_every_post_of_the_interval(
    analytics: AnalyticsServiceStub, profiles: ProfileServiceStub, backing: Backing
) -> None:
    """The top posts are ranked from the days whose bound (analytics_daily.max_engagement,
    raised at ingestion and never lowered) can still hold one (migration 0016): the same
    posts in the same order as ranking every post, with ties, with posts whose engagement
    fell after it raised their day's bound, and on intervals and platforms of few posts."""
    rng = random.Random(17)
    owner = profile(profiles)
    first, second = [], []
    for n in range(150):
        published = at(rng.randrange(0, 24), DAY - timedelta(days=rng.randrange(0, 30)))
        platform = rng.choice([IG, IG, X])
        likes = rng.choice([0, 5, 5, 40, rng.randrange(0, 300)])
        first.append(
            snapshot(owner, f"p{n}", at(30), published=published, platform=platform, likes=likes)
        )
        if rng.random() < 0.4:  # observed again, often with less engagement than before
            again = rng.choice([0, 5, likes // 3, likes + rng.randrange(0, 50)])
            second.append(
                snapshot(
                    owner, f"p{n}", at(31), published=published, platform=platform, likes=again
                )
            )
    # A day whose bound is far above what its posts have now: it is read first, and its posts
    # set a low bar, so the other days must be read too.
    fallen = at(12, DAY - timedelta(days=29))
    first.append(snapshot(owner, "fallen", at(30), published=fallen, likes=10_000))
    second.append(snapshot(owner, "fallen", at(31), published=fallen, likes=1))
    analytics.BatchCreateMetricSnapshots(batch(*first))
    analytics.BatchCreateMetricSnapshots(batch(*second))
    intervals = [
        (DAY - timedelta(days=30), NOW),
        (DAY - timedelta(days=29), DAY - timedelta(days=28)),
        (DAY - timedelta(days=10), DAY - timedelta(days=3)),
        (DAY, NOW),
        (NOW, NOW + timedelta(days=1)),  # no posts
    ]
    checked = 0
    granularities = [analytics_pb2.GRANULARITY_DAY, analytics_pb2.GRANULARITY_MONTH]
    # By day the report takes the days' bounds from its periods' rows; otherwise it reads them.
    for (start, end), granularity in itertools.product(intervals, granularities):
        platforms: list[tuple[profile_pb2.Platform.ValueType, str | None]] = [
            (profile_pb2.PLATFORM_UNSPECIFIED, None),
            (IG, "instagram"),
            (X, "x"),
        ]
        for platform, name in platforms:
            result = analytics.GetProfileAnalytics(
                analytics_pb2.GetProfileAnalyticsRequest(
                    profile=owner,
                    start_time=ts(start),
                    end_time=ts(end),
                    granularity=granularity,
                    platform=platform,
                )
            )
            expected = _top_by_every_post(backing, owner, start, end, name)
            assert [(p.post_id, p.engagement) for p in result.top_posts] == expected
            checked += len(expected)
    assert checked > 120
