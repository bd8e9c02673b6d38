"""SearchCreators: filters (content ones included), both orders, keyset pages, page_size rules,
freshness."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from socialhub.v1 import analytics_pb2, feed_pb2, profile_pb2
from socialhub.v1.analytics_pb2_grpc import AnalyticsServiceStub
from socialhub.v1.feed_pb2_grpc import FeedServiceStub
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from tests.analytics.insights_support import wait_until
from tests.analytics.support import at, batch, followers, profile, snapshot
from tests.helpers import error_reason, field_violations

IG = profile_pb2.PLATFORM_INSTAGRAM
BY_FOLLOWERS = analytics_pb2.CREATOR_SORT_FIELD_FOLLOWERS

# name: (followers, [likes per post], audience countries)
CREATORS = {
    "a": (1000, [100, 50], {"DE": 0.5}),  # rate 75/1000 = 0.075
    "b": (200, [30], {"DE": 0.1, "FR": 0.2}),  # 0.15
    "c": (5000, [10, 10, 10], {"US": 0.9}),  # 0.002
    "d": (50, [], {}),  # no posts: 0
    "e": (300, [3], {"FR": 0.4}),  # 0.01
}


def load(analytics: AnalyticsServiceStub, profiles: ProfileServiceStub) -> dict[str, str]:
    names = {key: profile(profiles, f"Creator {key}") for key in CREATORS}
    counts, posts, audiences = [], [], []
    for key, (count, likes, countries) in CREATORS.items():
        counts.append(followers(names[key], at(8), count))
        posts += [snapshot(names[key], f"{key}{n}", at(10), likes=v) for n, v in enumerate(likes)]
        audiences.append(
            analytics_pb2.AudienceSnapshot(
                profile=names[key],
                platform=IG,
                observe_time=at(9),
                top_countries=[
                    analytics_pb2.PlaceShare(place=c, share=v) for c, v in countries.items()
                ],
            )
        )
    analytics.BatchCreateFollowerCounts(
        analytics_pb2.BatchCreateFollowerCountsRequest(follower_counts=counts)
    )
    analytics.BatchCreateMetricSnapshots(batch(*posts))
    analytics.BatchCreateAudienceSnapshots(
        analytics_pb2.BatchCreateAudienceSnapshotsRequest(audience_snapshots=audiences)
    )
    return names


def pages(
    analytics: AnalyticsServiceStub, request: analytics_pb2.SearchCreatorsRequest
) -> Iterator[analytics_pb2.SearchCreatorsResponse]:
    page = analytics_pb2.SearchCreatorsRequest()
    page.CopyFrom(request)
    while True:
        response = analytics.SearchCreators(page)
        yield response
        if not response.next_page_token:
            return
        page.page_token = response.next_page_token


def found(analytics: AnalyticsServiceStub, names: dict[str, str], **fields: object) -> list[str]:
    by_name = {name: key for key, name in names.items()}
    request = analytics_pb2.SearchCreatorsRequest(platform=IG, page_size=2, **fields)  # type: ignore[arg-type]
    return [by_name[c.profile] for page in pages(analytics, request) for c in page.creators]


def test_orders_and_filters(analytics: AnalyticsServiceStub, profiles: ProfileServiceStub) -> None:
    names = load(analytics, profiles)
    assert found(analytics, names) == ["b", "a", "e", "c", "d"]
    assert found(analytics, names, order_by=BY_FOLLOWERS) == ["c", "a", "e", "b", "d"]
    assert found(analytics, names, min_followers=250) == ["a", "e", "c"]
    assert found(analytics, names, min_followers=250, max_followers=1000) == ["a", "e"]
    assert found(analytics, names, min_engagement_rate=0.01) == ["b", "a", "e"]
    assert found(analytics, names, audience_country="FR", order_by=BY_FOLLOWERS) == ["e", "b"]
    response = analytics.SearchCreators(
        analytics_pb2.SearchCreatorsRequest(platform=IG, audience_country="DE")
    )
    top = response.creators[0]
    assert (top.profile, top.followers, top.post_count, top.engagement) == (names["b"], 200, 1, 30)
    assert top.engagement_rate == pytest.approx(0.15)
    assert top.audience_country_share == pytest.approx(0.1)
    assert not analytics.SearchCreators(
        analytics_pb2.SearchCreatorsRequest(platform=profile_pb2.PLATFORM_X)
    ).creators


def test_search_is_fresh_after_ingestion(
    analytics: AnalyticsServiceStub, profiles: ProfileServiceStub
) -> None:
    names = load(analytics, profiles)
    analytics.BatchCreateFollowerCounts(
        analytics_pb2.BatchCreateFollowerCountsRequest(
            follower_counts=[followers(names["d"], at(20), 9000)]
        )
    )
    assert found(analytics, names, order_by=BY_FOLLOWERS)[0] == "d"
    analytics.BatchCreateMetricSnapshots(batch(snapshot(names["c"], "c0", at(11), likes=10_000)))
    assert found(analytics, names)[0] == "c"


def test_page_sizes_and_tokens(
    analytics: AnalyticsServiceStub, profiles: ProfileServiceStub
) -> None:
    load(analytics, profiles)
    default = analytics.SearchCreators(analytics_pb2.SearchCreatorsRequest(platform=IG))
    assert len(default.creators) == 5
    assert not default.next_page_token
    huge = analytics.SearchCreators(
        analytics_pb2.SearchCreatorsRequest(platform=IG, page_size=1_000_000)
    )
    assert len(huge.creators) == 5
    with pytest.raises(grpc.RpcError) as negative:
        analytics.SearchCreators(analytics_pb2.SearchCreatorsRequest(platform=IG, page_size=-1))
    assert list(field_violations(negative.value)) == ["page_size"]
    first = analytics.SearchCreators(analytics_pb2.SearchCreatorsRequest(platform=IG, page_size=2))
    assert first.next_page_token
    # A different page size keeps the token; different filters do not.
    analytics.SearchCreators(
        analytics_pb2.SearchCreatorsRequest(
            platform=IG, page_size=3, page_token=first.next_page_token
        )
    )
    with pytest.raises(grpc.RpcError) as foreign:
        analytics.SearchCreators(
            analytics_pb2.SearchCreatorsRequest(
                platform=IG, min_followers=1, page_token=first.next_page_token
            )
        )
    assert error_reason(foreign.value) == "PAGE_TOKEN_INVALID"


def test_search_filters_are_checked(analytics: AnalyticsServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        analytics.SearchCreators(
            analytics_pb2.SearchCreatorsRequest(
                min_followers=10,
                max_followers=5,
                min_engagement_rate=float("nan"),
                order_by=99,  # type: ignore[arg-type]
            )
        )
    assert set(field_violations(caught.value)) == {
        "platform",
        "max_followers",
        "min_engagement_rate",
        "order_by",
    }


def _write(feed: FeedServiceStub, author: str, body: str) -> None:
    feed.CreatePost(feed_pb2.CreatePostRequest(post=feed_pb2.Post(author=author, body=body)))


def test_content_filters_use_the_primary_category_and_language(
    analytics: AnalyticsServiceStub, profiles: ProfileServiceStub, feed: FeedServiceStub
) -> None:
    names = load(analytics, profiles)
    german = "Das Spiel gestern Abend war fantastisch, unsere Mannschaft hat gewonnen!"
    english = "The new phone has an excellent camera and the battery lasts for days."
    french = "Nous avons visité un magnifique village au bord de la mer cet été."
    for key, body in (("a", german), ("c", german), ("b", english), ("e", french)):
        _write(feed, names[key], body)
    topics = {
        key: wait_until(
            lambda key=key: analytics.GetProfileInsights(  # type: ignore[misc]
                analytics_pb2.GetProfileInsightsRequest(name=f"{names[key]}/insights")
            ),
            lambda found: found.post_count == 1,
            f"creator {key}'s post analysed",
        )
        for key in ("a", "b", "c", "e")
    }
    assert found(analytics, names, language_code="de") == ["a", "c"]
    assert found(analytics, names, language_code="fr", order_by=BY_FOLLOWERS) == ["e"]
    assert found(analytics, names, language_code="ja") == []
    # Whatever category the model files a's post under, the filter finds exactly the creators
    # with that primary category, in the order asked.
    category = topics["a"].primary_category
    expected = [key for key in ("b", "a", "e", "c") if topics[key].primary_category == category]
    assert found(analytics, names, category=category) == expected
    assert found(analytics, names, category=category, language_code="fr") == [
        key for key in expected if key == "e"
    ]
    top = analytics.SearchCreators(
        analytics_pb2.SearchCreatorsRequest(platform=IG, language_code="de")
    ).creators[0]
    assert (top.primary_language_code, top.primary_category) == ("de", topics["a"].primary_category)
    # A creator without analysed posts has neither, and no content filter finds it.
    (plain,) = [
        c
        for c in analytics.SearchCreators(analytics_pb2.SearchCreatorsRequest(platform=IG)).creators
        if c.profile == names["d"]
    ]
    assert (plain.primary_category, plain.primary_language_code) == ("", "")

    # The token is bound to the content filters too.
    first = analytics.SearchCreators(
        analytics_pb2.SearchCreatorsRequest(platform=IG, language_code="de", page_size=1)
    )
    assert first.next_page_token
    second = analytics.SearchCreators(
        analytics_pb2.SearchCreatorsRequest(
            platform=IG, language_code="de", page_size=1, page_token=first.next_page_token
        )
    )
    assert [c.profile for c in second.creators] == [names["c"]]
    with pytest.raises(grpc.RpcError) as foreign:
        analytics.SearchCreators(
            analytics_pb2.SearchCreatorsRequest(
                platform=IG, language_code="en", page_size=1, page_token=first.next_page_token
            )
        )
    assert error_reason(foreign.value) == "PAGE_TOKEN_INVALID"


def test_content_filters_are_checked(analytics: AnalyticsServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        analytics.SearchCreators(
            analytics_pb2.SearchCreatorsRequest(
                platform=IG, category="Cooking", language_code="english"
            )
        )
    assert set(field_violations(caught.value)) == {"category", "language_code"}
