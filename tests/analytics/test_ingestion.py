"""Ingestion: idempotent, order-independent, all or none per batch, and the rollups stay exact."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from socialhub.v1 import analytics_pb2, profile_pb2
from socialhub.v1.analytics_pb2_grpc import AnalyticsServiceStub
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from server.analytics import validation
from server.analytics.live import Event, _decode, events_of
from server.analytics.mapping import ENUM_BY_PLATFORM
from server.analytics.model import SnapshotBatch, epoch_us
from server.analytics.repository import Applied
from server.core.errors import InvalidArgument
from tests.analytics.support import DAY, NOW, at, batch, followers, profile, snapshot
from tests.analytics.support import ts as ts_of
from tests.harness import Backing, ServerThread
from tests.helpers import error_reason, field_violations

METRICS = ("likes", "comments", "shares", "saves", "views", "reach")


def post(
    analytics: AnalyticsServiceStub, owner: str, post_id: str
) -> analytics_pb2.GetPostAnalyticsResponse:
    return analytics.GetPostAnalytics(
        analytics_pb2.GetPostAnalyticsRequest(
            profile=owner, platform=profile_pb2.PLATFORM_INSTAGRAM, post_id=post_id
        )
    )


def daily_rows(backing: Backing) -> dict[tuple[int, str, str], tuple[int, ...]]:
    with backing.sql() as conn:
        rows = conn.execute(
            "SELECT profile_id, day::text, platform, posts, likes, comments, shares, saves,"
            " views, reach FROM analytics_daily"
        ).fetchall()
    return {(r[0], r[1], r[2]): tuple(r[3:]) for r in rows if any(r[3:])}


def creator_rows(backing: Backing) -> dict[tuple[int, str], tuple[int, int]]:
    with backing.sql() as conn:
        rows = conn.execute(
            "SELECT profile_id, platform, posts, engagement FROM analytics_creators"
        ).fetchall()
    return {(r[0], r[1]): (r[2], r[3]) for r in rows if r[2] or r[3]}


def slot_rows(backing: Backing) -> dict[tuple[int, str, int, int], tuple[int, int]]:
    with backing.sql() as conn:
        rows = conn.execute(
            "SELECT profile_id, platform, weekday, hour, posts, engagement"
            " FROM analytics_posting_slots"
        ).fetchall()
    return {(r[0], r[1], r[2], r[3]): (r[4], r[5]) for r in rows if r[4] or r[5]}


def latest_rows(backing: Backing) -> dict[tuple[int, str], tuple[int, ...]]:
    """Each post's latest metrics as stored: (profile id, post id) -> observe time, METRICS."""
    with backing.sql() as conn:
        rows = conn.execute(
            "SELECT profile_id, external_id, extract(epoch FROM observe_time)::bigint, likes,"
            " comments, shares, saves, views, reach FROM analytics_posts"
        ).fetchall()
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}


def test_a_snapshot_sent_again_changes_nothing(
    analytics: AnalyticsServiceStub, profiles: ProfileServiceStub, backing: Backing
) -> None:
    owner = profile(profiles)
    request = batch(
        snapshot(owner, "p1", at(10), likes=10, comments=2, views=100),
        snapshot(owner, "p1", at(12), likes=15, comments=3, views=150),
    )
    first = analytics.BatchCreateMetricSnapshots(request)
    assert (first.created_count, first.unchanged_count) == (2, 0)
    rollups = daily_rows(backing)
    profile_id = int(owner.split("/")[1])
    assert rollups == {(profile_id, DAY.date().isoformat(), "instagram"): (1, 15, 3, 0, 0, 150, 0)}
    again = analytics.BatchCreateMetricSnapshots(request)
    assert (again.created_count, again.unchanged_count) == (0, 2)
    assert daily_rows(backing) == rollups
    assert len(post(analytics, owner, "p1").series) == 2


def test_a_late_older_snapshot_joins_the_series_only(
    analytics: AnalyticsServiceStub, profiles: ProfileServiceStub, backing: Backing
) -> None:
    owner = profile(profiles)
    analytics.BatchCreateMetricSnapshots(batch(snapshot(owner, "p1", at(12), likes=15)))
    analytics.BatchCreateMetricSnapshots(batch(snapshot(owner, "p1", at(10), likes=10)))
    report = post(analytics, owner, "p1")
    assert report.latest.likes == 15
    assert report.latest.observe_time == at(12)
    assert [(p.observe_time.seconds, p.likes) for p in report.series] == [
        (at(10).seconds, 10),
        (at(12).seconds, 15),
    ]
    assert [v[1] for v in daily_rows(backing).values()] == [15]


def test_a_later_snapshot_with_fewer_likes_lowers_the_rollup(
    analytics: AnalyticsServiceStub, profiles: ProfileServiceStub, backing: Backing
) -> None:
    owner = profile(profiles)
    analytics.BatchCreateMetricSnapshots(batch(snapshot(owner, "p1", at(10), likes=10, shares=4)))
    analytics.BatchCreateMetricSnapshots(batch(snapshot(owner, "p1", at(11), likes=7, shares=4)))
    assert list(daily_rows(backing).values()) == [(1, 7, 0, 4, 0, 0, 0)]


def _latest(
    snapshots: list[analytics_pb2.MetricSnapshot],
) -> dict[tuple[str, str], analytics_pb2.MetricSnapshot]:
    """Per post (profile, post id) its latest snapshot (first sent wins a tie)."""
    latest: dict[tuple[str, str], analytics_pb2.MetricSnapshot] = {}
    for s in snapshots:
        key = (s.profile, s.post_id)
        if key not in latest or s.observe_time.seconds > latest[key].observe_time.seconds:
            latest[key] = s
    return latest


def _expected(
    snapshots: list[analytics_pb2.MetricSnapshot], ids: dict[str, int]
) -> dict[tuple[int, str, str], tuple[int, ...]]:
    """The rollups recomputed from scratch: per post the latest snapshot (first sent wins a
    tie on observe_time), summed per profile, publication day and platform."""
    published: dict[tuple[str, str], analytics_pb2.MetricSnapshot] = {}
    for s in snapshots:
        published.setdefault((s.profile, s.post_id), s)
    sums: dict[tuple[int, str, str], list[int]] = {}
    for key, s in _latest(snapshots).items():
        day = published[key].publish_time.ToDatetime().date().isoformat()
        row = sums.setdefault((ids[s.profile], day, "instagram"), [0] * 7)
        row[0] += 1
        for index, metric in enumerate(METRICS, start=1):
            row[index] += getattr(s, metric)
    return {key: tuple(values) for key, values in sums.items()}


def _expected_creators(
    snapshots: list[analytics_pb2.MetricSnapshot], ids: dict[str, int]
) -> dict[tuple[int, str], tuple[int, int]]:
    """Creator search's rollup recomputed: per profile and platform, posts and the sum of
    their latest engagement (likes + comments + shares)."""
    sums: dict[tuple[int, str], tuple[int, int]] = {}
    for s in _latest(snapshots).values():
        key = (ids[s.profile], "instagram")
        posts, engagement = sums.get(key, (0, 0))
        sums[key] = (posts + 1, engagement + s.likes + s.comments + s.shares)
    return sums


def _expected_slots(
    snapshots: list[analytics_pb2.MetricSnapshot], ids: dict[str, int]
) -> dict[tuple[int, str, int, int], tuple[int, int]]:
    """Best hours' rollup recomputed: per profile, platform, ISO weekday and hour of
    publication (UTC), posts and the sum of their latest engagement."""
    published: dict[tuple[str, str], analytics_pb2.MetricSnapshot] = {}
    for s in snapshots:
        published.setdefault((s.profile, s.post_id), s)
    sums: dict[tuple[int, str, int, int], tuple[int, int]] = {}
    for key, s in _latest(snapshots).items():
        when = published[key].publish_time.ToDatetime()
        slot = (ids[s.profile], "instagram", when.isoweekday(), when.hour)
        posts, engagement = sums.get(slot, (0, 0))
        sums[slot] = (posts + 1, engagement + s.likes + s.comments + s.shares)
    return sums


def _expected_latest(
    snapshots: list[analytics_pb2.MetricSnapshot], ids: dict[str, int]
) -> dict[tuple[int, str], tuple[int, ...]]:
    return {
        (ids[s.profile], s.post_id): (
            s.observe_time.seconds,
            *(getattr(s, metric) for metric in METRICS),
        )
        for s in _latest(snapshots).values()
    }


def _day_bounds(
    backing: Backing,
) -> dict[tuple[int, str, str], tuple[int, int, int]]:
    """Per daily row: its max_engagement, the greatest engagement its posts have now, and the
    greatest any of their recorded snapshots had."""
    with backing.sql() as conn:
        rows = conn.execute(
            "SELECT d.profile_id, d.day::text, d.platform, d.max_engagement,"
            " max(p.engagement), max(s.likes + s.comments + s.shares)"
            " FROM analytics_daily d"
            " JOIN analytics_posts p ON p.profile_id = d.profile_id AND p.platform = d.platform"
            " AND (p.publish_time AT TIME ZONE 'UTC')::date = d.day"
            " JOIN analytics_metric_snapshots s ON s.post_id = p.id"
            " GROUP BY 1, 2, 3, 4"
        ).fetchall()
    return {(r[0], r[1], r[2]): (r[3], r[4], r[5]) for r in rows}


def assert_rollups_exact(
    backing: Backing, snapshots: list[analytics_pb2.MetricSnapshot], ids: dict[str, int]
) -> None:
    assert latest_rows(backing) == _expected_latest(snapshots, ids)
    assert daily_rows(backing) == _expected(snapshots, ids)
    assert creator_rows(backing) == _expected_creators(snapshots, ids)
    assert slot_rows(backing) == _expected_slots(snapshots, ids)
    # A day's bound of its posts' engagement (the top posts rely on it): at least what each
    # has now, and never more than one of them ever had.
    bounds = _day_bounds(backing)
    assert bounds.keys() == daily_rows(backing).keys()
    for key, (bound, now, ever) in bounds.items():
        assert now <= bound <= ever, key


def test_rollups_equal_a_recomputation_whatever_the_order_and_batching(
    analytics: AnalyticsServiceStub, profiles: ProfileServiceStub, backing: Backing
) -> None:
    rng = random.Random(7)
    owners = [profile(profiles, f"Creator {n}") for n in range(3)]
    ids = {owner: int(owner.split("/")[1]) for owner in owners}
    snapshots = []
    for n in range(12):
        owner = owners[n % 3]
        published = at(rng.randrange(0, 24), DAY - timedelta(days=3 + rng.randrange(0, 3)))
        for hour in rng.sample(range(40, 60), 4):
            snapshots.append(
                snapshot(
                    owner,
                    f"post-{n}",
                    at(hour, DAY - timedelta(days=3)),
                    published=published,
                    **{metric: rng.randrange(0, 1000) for metric in METRICS},
                )
            )
    # Publication time is taken from a post's first snapshot sent: keep it the same for all.
    sent = snapshots + rng.sample(snapshots, 15)  # some twice
    rng.shuffle(sent)
    # The first snapshot sent for each (post, observe_time) is the one that counts.
    firsts: dict[tuple[str, str, int], analytics_pb2.MetricSnapshot] = {}
    for s in sent:
        firsts.setdefault((s.profile, s.post_id, s.observe_time.seconds), s)
    position = 0
    while position < len(sent):
        size = rng.randrange(1, 9)
        analytics.BatchCreateMetricSnapshots(batch(*sent[position : position + size]))
        position += size
    assert_rollups_exact(backing, list(firsts.values()), ids)


def test_a_bad_item_is_named_by_its_index_and_nothing_is_recorded(
    analytics: AnalyticsServiceStub, profiles: ProfileServiceStub, backing: Backing
) -> None:
    owner = profile(profiles)
    items = [snapshot(owner, f"p{n}", at(10), likes=1) for n in range(5)]
    items[3].likes = -1
    items[1].ClearField("observe_time")
    items[4].platform = 0  # type: ignore[assignment]
    with pytest.raises(grpc.RpcError) as caught:
        analytics.BatchCreateMetricSnapshots(batch(*items))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(caught.value)) == {
        "metric_snapshots[3].likes",
        "metric_snapshots[1].observe_time",
        "metric_snapshots[4].platform",
    }
    assert daily_rows(backing) == {}
    with pytest.raises(grpc.RpcError) as missing:
        post(analytics, owner, "p0")
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_reason(missing.value) == "ANALYTICS_POST_NOT_FOUND"


@pytest.mark.parametrize(
    ("change", "field", "expected"),
    [
        ({"observe_time": at(0, DAY + timedelta(days=4))}, "observe_time", "a day ahead"),
        ({"observe_time": at(0, DAY - timedelta(days=3 * 365))}, "observe_time", "before"),
        ({"publish_time": at(11)}, "publish_time", "after observe_time"),
        ({"post_id": "x" * 201}, "post_id", "at most 200"),
        ({"profile": "posts/1"}, "profile", "profiles/"),
    ],
)
def test_snapshot_fields_are_checked(
    analytics: AnalyticsServiceStub,
    profiles: ProfileServiceStub,
    change: dict[str, object],
    field: str,
    expected: str,
) -> None:
    item = snapshot(profile(profiles), "p1", at(10))
    for name, value in change.items():
        if hasattr(value, "seconds"):
            getattr(item, name).CopyFrom(value)
        else:
            setattr(item, name, value)
    with pytest.raises(grpc.RpcError) as caught:
        analytics.BatchCreateMetricSnapshots(batch(item))
    violations = field_violations(caught.value)
    assert expected in violations[f"metric_snapshots[0].{field}"]


def test_an_unknown_profile_fails_the_whole_batch(
    analytics: AnalyticsServiceStub, profiles: ProfileServiceStub, backing: Backing
) -> None:
    owner = profile(profiles)
    with pytest.raises(grpc.RpcError) as caught:
        analytics.BatchCreateMetricSnapshots(
            batch(snapshot(owner, "p1", at(10)), snapshot("profiles/999999", "p2", at(10)))
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_reason(caught.value) == "PROFILE_NOT_FOUND"
    assert "profiles/999999" in (caught.value.details() or "")
    assert daily_rows(backing) == {}


def test_deleting_a_profile_deletes_its_snapshots_and_rollups_only(
    analytics: AnalyticsServiceStub, profiles: ProfileServiceStub, backing: Backing
) -> None:
    """Snapshots have no foreign key to their post (migration 0014): a trigger on
    analytics_posts deletes them with it, as the profile's deletion cascades to its posts."""
    gone, kept = profile(profiles, "Gone"), profile(profiles, "Kept")
    analytics.BatchCreateMetricSnapshots(
        batch(
            *(
                snapshot(owner, f"p{n}", at(10 + hour), likes=n + hour)
                for owner in (gone, kept)
                for n in range(3)
                for hour in range(2)
            )
        )
    )
    kept_id = int(kept.split("/")[1])
    profiles.DeleteProfile(profile_pb2.DeleteProfileRequest(name=gone))
    with backing.sql() as conn:
        owners = conn.execute(
            "SELECT DISTINCT p.profile_id, count(*) OVER ()"
            " FROM analytics_metric_snapshots s LEFT JOIN analytics_posts p ON p.id = s.post_id"
        ).fetchall()
        assert owners == [(kept_id, 6)]
        for table in ("analytics_posts", "analytics_daily", "analytics_posting_slots"):
            rows = conn.execute(f"SELECT DISTINCT profile_id FROM {table}").fetchall()
            assert rows == [(kept_id,)], table
    assert len(post(analytics, kept, "p1").series) == 2


def _messages(
    *batches: list[analytics_pb2.MetricSnapshot],
) -> Iterator[analytics_pb2.ImportMetricSnapshotsRequest]:
    for items in batches:
        yield analytics_pb2.ImportMetricSnapshotsRequest(metric_snapshots=items)


def test_import_commits_each_message_and_names_the_bad_one(
    analytics: AnalyticsServiceStub, profiles: ProfileServiceStub, backing: Backing
) -> None:
    owner = profile(profiles)
    good = [[snapshot(owner, f"p{n}", at(10 + h), likes=h) for h in range(3)] for n in range(3)]
    done = analytics.ImportMetricSnapshots(_messages(*good, good[0]))
    assert (done.message_count, done.created_count, done.unchanged_count) == (4, 9, 3)
    bad = [snapshot(owner, "q", at(10), likes=-5)]
    with pytest.raises(grpc.RpcError) as caught:
        analytics.ImportMetricSnapshots(
            _messages(
                [snapshot(owner, "before", at(10), likes=1)],
                bad,
                [snapshot(owner, "after", at(10))],
            )
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = field_violations(caught.value)
    assert list(violations) == ["metric_snapshots[0].likes"]
    assert "message 1" in violations["metric_snapshots[0].likes"]
    assert post(analytics, owner, "before").latest.likes == 1  # committed before the bad one
    with pytest.raises(grpc.RpcError):
        post(analytics, owner, "after")


def test_import_stops_at_a_message_that_fails_in_the_database(
    analytics: AnalyticsServiceStub, profiles: ProfileServiceStub, backing: Backing
) -> None:
    """The stream is pipelined (the next messages are received and checked while one is
    applied), but the messages after one that fails in its transaction are not applied."""
    owner = profile(profiles)
    with pytest.raises(grpc.RpcError) as caught:
        analytics.ImportMetricSnapshots(
            _messages(
                [snapshot(owner, "first", at(10), likes=1)],
                [snapshot(owner, "second", at(10), likes=2)],
                [snapshot("profiles/999999", "missing", at(10))],
                [snapshot(owner, "after", at(10), likes=3)],
                [snapshot(owner, "after", at(11), likes=4)],
            )
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_reason(caught.value) == "PROFILE_NOT_FOUND"
    assert post(analytics, owner, "first").latest.likes == 1
    assert post(analytics, owner, "second").latest.likes == 2
    with pytest.raises(grpc.RpcError) as missing:
        post(analytics, owner, "after")
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    profile_id = int(owner.split("/")[1])
    assert daily_rows(backing) == {
        (profile_id, DAY.date().isoformat(), "instagram"): (2, 3, 0, 0, 0, 0, 0)
    }


def test_import_needs_the_write_scope(
    server: ServerThread, backing: Backing, profiles: ProfileServiceStub
) -> None:
    owner = profile(profiles)
    key = backing.issue_key("analytics reader", ["analytics.read"])
    with backing.channel(server.address, key) as reader:
        stub = AnalyticsServiceStub(reader)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ImportMetricSnapshots(_messages([snapshot(owner, "p", at(10))]))
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_reason(caught.value) == "SCOPE_MISSING"
        stub.GetDirectoryStats(analytics_pb2.GetDirectoryStatsRequest())


def test_follower_counts_keep_the_latest_observation_of_a_day(
    analytics: AnalyticsServiceStub, profiles: ProfileServiceStub, backing: Backing
) -> None:
    owner = profile(profiles)
    later, earlier = followers(owner, at(20), 120), followers(owner, at(8), 100)
    request = analytics_pb2.BatchCreateFollowerCountsRequest(follower_counts=[later])
    assert analytics.BatchCreateFollowerCounts(request).recorded_count == 1
    assert analytics.BatchCreateFollowerCounts(request).recorded_count == 0  # the same again
    request = analytics_pb2.BatchCreateFollowerCountsRequest(follower_counts=[earlier])
    assert analytics.BatchCreateFollowerCounts(request).recorded_count == 0  # older: ignored
    with backing.sql() as conn:
        assert conn.execute("SELECT followers FROM analytics_follower_counts").fetchall() == [
            (120,)
        ]
    bad = followers(owner, at(9), -1)
    with pytest.raises(grpc.RpcError) as caught:
        analytics.BatchCreateFollowerCounts(
            analytics_pb2.BatchCreateFollowerCountsRequest(follower_counts=[earlier, bad])
        )
    assert list(field_violations(caught.value)) == ["follower_counts[1].followers"]


def test_audience_shares_are_checked(
    analytics: AnalyticsServiceStub, profiles: ProfileServiceStub
) -> None:
    owner = profile(profiles)
    audience = analytics_pb2.AudienceSnapshot(
        profile=owner,
        platform=profile_pb2.PLATFORM_INSTAGRAM,
        observe_time=at(10),
        age_shares=[
            analytics_pb2.AgeShare(age_range=analytics_pb2.AGE_RANGE_18_24, share=0.7),
            analytics_pb2.AgeShare(age_range=analytics_pb2.AGE_RANGE_18_24, share=0.1),
        ],
        gender_shares=[
            analytics_pb2.GenderShare(gender=analytics_pb2.AUDIENCE_GENDER_MALE, share=0.8),
            analytics_pb2.GenderShare(gender=analytics_pb2.AUDIENCE_GENDER_FEMALE, share=0.8),
        ],
        top_countries=[analytics_pb2.PlaceShare(place="DE", share=1.5)],
    )
    with pytest.raises(grpc.RpcError) as caught:
        analytics.BatchCreateAudienceSnapshots(
            analytics_pb2.BatchCreateAudienceSnapshotsRequest(audience_snapshots=[audience])
        )
    assert set(field_violations(caught.value)) == {
        "audience_snapshots[0].age_shares[1].age_range",
        "audience_snapshots[0].gender_shares",
        "audience_snapshots[0].top_countries[0].share",
        "audience_snapshots[0].top_countries",
    }


def test_a_backfill_gets_its_month_partition_and_each_snapshot_lands_in_its_month(
    analytics: AnalyticsServiceStub, profiles: ProfileServiceStub, backing: Backing
) -> None:
    owner = profile(profiles)
    long_ago = DAY - timedelta(days=200)  # months before any partition the migration made
    with backing.sql() as conn:
        month = f"y{long_ago:%Y}m{long_ago:%m}"
        conn.execute(f"DROP TABLE IF EXISTS analytics_partitions.metric_snapshots_{month}")
    analytics.BatchCreateMetricSnapshots(
        batch(
            snapshot(owner, "old", at(10, long_ago), published=at(9, long_ago), likes=1),
            snapshot(owner, "old", at(10), published=at(9, long_ago), likes=2),
        )
    )
    with backing.sql() as conn:
        placed = conn.execute(
            "SELECT tableoid::regclass::text, observe_time FROM analytics_metric_snapshots"
            " ORDER BY observe_time"
        ).fetchall()
    assert [name for name, _ in placed] == [
        f"analytics_partitions.metric_snapshots_y{observed:%Y}m{observed:%m}"
        for _, observed in placed
    ]
    assert placed[0][0].endswith(long_ago.strftime("y%Ym%m"))
    assert [p.likes for p in post(analytics, owner, "old").series] == [1, 2]


def test_concurrent_overlapping_batches_keep_the_rollups_exact(
    analytics: AnalyticsServiceStub, profiles: ProfileServiceStub, backing: Backing
) -> None:
    rng = random.Random(11)
    owners = [profile(profiles, f"Creator {n}") for n in range(2)]
    ids = {owner: int(owner.split("/")[1]) for owner in owners}
    snapshots = [
        snapshot(
            owners[n % 2],
            f"post-{n}",
            at(hour, DAY - timedelta(days=1)),
            published=at(n, DAY - timedelta(days=2)),
            likes=rng.randrange(0, 100),
            shares=rng.randrange(0, 100),
        )
        for n in range(8)
        for hour in range(4)
    ]
    # Four feeds send every snapshot, each in its own order and batching, all at once.
    feeds = []
    for _ in range(4):
        order = rng.sample(snapshots, len(snapshots))
        feeds.append([order[i : i + 5] for i in range(0, len(order), 5)])
    errors: list[BaseException] = []

    def send(feed: list[list[analytics_pb2.MetricSnapshot]]) -> None:
        try:
            for items in feed:
                analytics.BatchCreateMetricSnapshots(batch(*items))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=send, args=(feed,)) for feed in feeds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert_rollups_exact(backing, snapshots, ids)
    with backing.sql() as conn:
        assert conn.execute("SELECT count(*) FROM analytics_metric_snapshots").fetchone() == (32,)


def test_concurrent_import_streams_keep_the_rollups_exact(
    analytics: AnalyticsServiceStub, profiles: ProfileServiceStub, backing: Backing
) -> None:
    """Feeds through the streaming method, overlapping, each in its own order and message
    sizes, some snapshots repeated inside a message, likes going down as well as up."""
    rng = random.Random(13)
    owners = [profile(profiles, f"Creator {n}") for n in range(3)]
    ids = {owner: int(owner.split("/")[1]) for owner in owners}
    snapshots = [
        snapshot(
            owners[n % 3],
            f"post-{n}",
            at(hour, DAY - timedelta(days=1)),
            published=at(n % 24, DAY - timedelta(days=2 + n % 2)),
            **{metric: rng.randrange(0, 500) for metric in METRICS},
        )
        for n in range(30)
        for hour in rng.sample(range(24), 5)
    ]
    feeds = []
    for _ in range(3):
        order = rng.sample(snapshots, len(snapshots)) + rng.sample(snapshots, 20)
        messages, position = [], 0
        while position < len(order):
            size = rng.randrange(1, 40)
            messages.append(order[position : position + size])
            position += size
        feeds.append(messages)
    errors: list[BaseException] = []
    done: list[analytics_pb2.ImportMetricSnapshotsResponse] = []

    def send(feed: list[list[analytics_pb2.MetricSnapshot]]) -> None:
        try:
            done.append(analytics.ImportMetricSnapshots(_messages(*feed)))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=send, args=(feed,)) for feed in feeds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sum(r.created_count for r in done) == len(snapshots)
    assert sum(r.message_count for r in done) == sum(len(feed) for feed in feeds)
    assert_rollups_exact(backing, snapshots, ids)


def test_concurrent_backfills_of_one_month_make_its_partition_once(
    analytics: AnalyticsServiceStub, profiles: ProfileServiceStub, backing: Backing
) -> None:
    owners = [profile(profiles, f"Creator {n}") for n in range(4)]
    long_ago = DAY - timedelta(days=300)
    with backing.sql() as conn:
        month = f"y{long_ago:%Y}m{long_ago:%m}"
        conn.execute(f"DROP TABLE IF EXISTS analytics_partitions.metric_snapshots_{month}")
    errors: list[BaseException] = []

    def send(owner: str) -> None:
        try:
            analytics.BatchCreateMetricSnapshots(
                batch(snapshot(owner, "old", at(10, long_ago), published=at(9, long_ago)))
            )
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=send, args=(owner,)) for owner in owners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    with backing.sql() as conn:
        assert conn.execute("SELECT count(*) FROM analytics_metric_snapshots").fetchone() == (4,)


def test_the_fast_checks_give_what_the_full_checks_give() -> None:
    """validation.snapshot_batch (ingestion's path) against SnapshotBatch.of(snapshots(...)):
    the same columns for valid batches (nanoseconds, repeats, every platform, the retention
    and clock-skew edges), the same violations for bad ones."""
    rng = random.Random(5)
    retained_from = DAY - timedelta(days=20)
    platforms = [
        profile_pb2.PLATFORM_INSTAGRAM,
        profile_pb2.PLATFORM_X,
        profile_pb2.PLATFORM_YOUTUBE,
        profile_pb2.PLATFORM_FACEBOOK,
        profile_pb2.PLATFORM_LINKEDIN,
    ]
    items = []
    for _ in range(300):
        # From 400 hours before DAY to NOW + 1 day (DAY is NOW - 2 days).
        observed = at(rng.randrange(-400, 72) + rng.random(), DAY)
        observed.nanos = rng.randrange(0, 1_000_000_000)
        item = snapshot(
            f"profiles/{rng.randrange(1, 4)}",
            f"p{rng.randrange(0, 40)}",
            observed,
            published=at(-450, DAY),
            platform=rng.choice(platforms),
            **{metric: rng.randrange(0, 10**12) for metric in METRICS},
        )
        items.append(item)
    items += rng.sample(items, 30)  # repeats: the first one counts
    edges = [
        snapshot("profiles/9", "edge-old", ts_of(retained_from), published=ts_of(retained_from)),
        snapshot("profiles/9", "edge-new", ts_of(NOW + timedelta(days=1))),
    ]
    for group in (items, edges):
        fast = validation.snapshot_batch(group, NOW, retained_from)
        full = SnapshotBatch.of(validation.snapshots(group, NOW, retained_from))
        assert fast == full
    assert len(fast) == 2
    bad = [
        snapshot("profiles/1", "p", ts_of(retained_from - timedelta(microseconds=1))),
        snapshot("profiles/1", "p", ts_of(NOW + timedelta(days=1, microseconds=1))),
        snapshot("profiles/1", "p\x00", at(1)),
        snapshot("profiles/x", "p", at(1)),
        snapshot("profiles/1", "p", at(1), likes=-1),
    ]
    bad[0].publish_time.CopyFrom(bad[0].observe_time)
    for item in bad:
        with pytest.raises(InvalidArgument) as fast_error:
            validation.snapshot_batch([items[0], item], NOW, retained_from)
        with pytest.raises(InvalidArgument) as full_error:
            validation.snapshots([items[0], item], NOW, retained_from)
        assert fast_error.value.violations == full_error.value.violations
        assert {v.field.split(".")[0] for v in fast_error.value.violations} == {
            "metric_snapshots[1]"
        }


def test_each_live_event_reads_back_as_the_message_built_for_it_alone() -> None:
    """The events of a batch are stored as records filled column by column: each reads back
    as the message built for it alone (nothing of an event leaks into the next: a zero,
    False or other value after a set one; negative changes and full microseconds kept)."""
    batch = SnapshotBatch(
        received=3,
        profile_ids=[7, 8, 7],
        platforms=["x", "instagram", "x"],
        post_ids=["first", "b", "c"],
        publish_us=[1_700_000_000_123_456, 1_700_000_000_000_000, 1_700_000_000_000_001],
        observe_us=[1_700_000_100_000_001, 1_700_000_200_000_000, 1_700_000_300_000_000],
        metrics=([5, 0, 1], [4, 0, 0], [3, 0, 0], [2, 0, 0], [1, 0, 0], [9, 0, 2]),
    )
    applied = Applied(
        indexes=[0, 1, 2],
        latest=[True, False, True],
        engagement_changes=[12, 0, -3],
        publish_us=batch.publish_us,
    )
    recorded = datetime(2026, 12, 5, 1, 2, 3, 456789, tzinfo=UTC)

    def stamp(us: int) -> Timestamp:
        return Timestamp(seconds=us // 1_000_000, nanos=us % 1_000_000 * 1000)

    def fresh(index: int, event_id: str) -> bytes:
        likes, comments, shares, saves, views, reach = (m[index] for m in batch.metrics)
        return Event(
            event_id=event_id,
            profile=f"profiles/{batch.profile_ids[index]}",
            latest=applied.latest[index],
            engagement_change=applied.engagement_changes[index],
            record_time=stamp(epoch_us(recorded)),
            metrics=analytics_pb2.PostMetrics(
                platform=ENUM_BY_PLATFORM[batch.platforms[index]],  # type: ignore[arg-type]
                post_id=batch.post_ids[index],
                publish_time=stamp(batch.publish_us[index]),
                observe_time=stamp(batch.observe_us[index]),
                likes=likes,
                comments=comments,
                shares=shares,
                saves=saves,
                views=views,
                reach=reach,
                engagement=likes + comments + shares,
            ),
        ).SerializeToString()

    events = events_of(batch, applied, recorded)
    assert events.profile_ids == [7, 8, 7]
    assert events.post_ids == ["first", "b", "c"]
    size = len(events.records) // 3
    entries = [
        (f"{n + 1}-0".encode(), {b"r": events.records[n * size : (n + 1) * size], b"p": post})
        for n, post in enumerate([b"first", b"b", b"c"])
    ]
    read = [
        _decode(entry, profile_id) for entry, profile_id in zip(entries, [7, 8, 7], strict=True)
    ]
    assert None not in read
    assert [(got[0], got[1].SerializeToString()) for got in read if got is not None] == [
        ((n + 1, 0), fresh(n, f"{n + 1}-0")) for n in range(3)
    ]
    # An entry written as a whole message (by a replica of an earlier version) still reads.
    earlier = _decode((b"9-0", {b"e": fresh(1, "")}), 8)
    assert earlier is not None
    assert (earlier[0], earlier[1].SerializeToString()) == ((9, 0), fresh(1, "9-0"))
