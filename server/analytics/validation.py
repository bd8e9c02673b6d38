"""Request checks of AnalyticsService: every bad field of a batch, named by the item's index."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar

from google.protobuf.timestamp_pb2 import Timestamp
from socialhub.v1 import analytics_pb2

from server.analytics.live import parse_event_id
from server.analytics.mapping import (
    AGE_BY_ENUM,
    GENDER_BY_ENUM,
    GRANULARITY_BY_ENUM,
    INGESTED_PLATFORMS,
    PLATFORM_BY_ENUM,
    PROFILE_COLLECTION,
)
from server.analytics.model import (
    AudienceValues,
    CreatorSearch,
    FollowerCountValues,
    ReportQuery,
    Snapshot,
    SnapshotBatch,
    epoch_us,
    midnight,
)
from server.analytics.tables import METRICS, PLACE_MAX, POST_ID_MAX
from server.core.errors import InvalidArgument, Violations
from server.core.names import parse_name
from server.core.validation import check_text

T = TypeVar("T")

MAX_SNAPSHOTS = 1000
MAX_FOLLOWER_COUNTS = 1000
MAX_AUDIENCES = 100
MAX_PLACES = 50
# A platform's clock may run a little ahead of ours; further ahead is a bad timestamp.
MAX_CLOCK_SKEW = timedelta(days=1)
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
MAX_REPORT_SPAN = timedelta(days=3 * 366)
ORDER_COLUMNS = {
    analytics_pb2.CREATOR_SORT_FIELD_UNSPECIFIED: "engagement_rate",
    analytics_pb2.CREATOR_SORT_FIELD_ENGAGEMENT_RATE: "engagement_rate",
    analytics_pb2.CREATOR_SORT_FIELD_FOLLOWERS: "followers",
}
# Shares of one dimension may add up to a little over 1 from the platforms' rounding.
SHARE_SUM_TOLERANCE = 1e-6


def _profile(violations: Violations, name: str, field: str) -> int:
    try:
        return parse_name(name, PROFILE_COLLECTION, field)
    except InvalidArgument as error:
        violations.items.extend(error.violations)
        return 0


def profile_id(name: str, field: str = "profile") -> int:
    return parse_name(name, PROFILE_COLLECTION, field)


def _platform(
    violations: Violations,
    value: int,
    field: str,
    *,
    optional: bool = False,
    ingested: bool = False,
) -> str:
    if value == 0 and optional:
        return ""
    platform = PLATFORM_BY_ENUM.get(value)
    if platform is None:
        violations.add(field, "is required" if value == 0 else "is not a known platform")
        return ""
    if ingested and platform not in INGESTED_PLATFORMS:
        violations.add(field, "is recorded by the service itself (FeedService posts)")
        return ""
    return platform


def _time(
    violations: Violations,
    message: object,
    name: str,
    field: str,
    *,
    latest: datetime | None = None,
    earliest: datetime = EARLIEST,
) -> datetime:
    if not message.HasField(name):  # type: ignore[attr-defined]
        violations.add(field, "is required")
        return EARLIEST
    stamp: Timestamp = getattr(message, name)
    try:
        value = stamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        violations.add(field, "is not a valid timestamp")
        return EARLIEST
    if value < earliest:
        violations.add(field, f"must not be before {earliest.isoformat()}")
    elif latest is not None and value > latest:
        violations.add(field, "must not be more than a day ahead of the server's clock")
    return value


def _count(violations: Violations, value: int, field: str) -> None:
    if value < 0:
        violations.add(field, "must not be negative")


def _items(
    violations: Violations,
    items: Sequence[T],
    field: str,
    maximum: int,
    check: Callable[[T, str], object],
) -> None:
    if not items:
        violations.add(field, "is required: give at least one item")
        return
    if len(items) > maximum:
        violations.add(field, f"must hold at most {maximum} items")
        return
    for index, item in enumerate(items):
        check(item, f"{field}[{index}]")


def snapshots(
    items: Sequence[analytics_pb2.MetricSnapshot],
    now: datetime,
    retained_from: datetime,
    field: str = "metric_snapshots",
) -> list[Snapshot]:
    violations = Violations()
    result: list[Snapshot] = []
    latest = now + MAX_CLOCK_SKEW

    def check(item: analytics_pb2.MetricSnapshot, at: str) -> None:
        before = len(violations.items)
        profile = _profile(violations, item.profile, f"{at}.profile")
        platform = _platform(violations, item.platform, f"{at}.platform", ingested=True)
        if not item.post_id:
            violations.add(f"{at}.post_id", "is required")
        check_text(violations, f"{at}.post_id", item.post_id, POST_ID_MAX)
        published = _time(violations, item, "publish_time", f"{at}.publish_time", latest=latest)
        observed = _time(
            violations,
            item,
            "observe_time",
            f"{at}.observe_time",
            latest=latest,
            earliest=max(EARLIEST, retained_from),
        )
        if published > observed and item.HasField("observe_time"):
            violations.add(f"{at}.publish_time", "must not be after observe_time")
        metrics = tuple(getattr(item, metric) for metric in METRICS)
        for metric, value in zip(METRICS, metrics, strict=True):
            _count(violations, value, f"{at}.{metric}")
        if len(violations.items) == before:
            result.append(Snapshot(profile, platform, item.post_id, published, observed, metrics))

    _items(violations, items, field, MAX_SNAPSHOTS, check)
    violations.raise_if_any()
    return result


def snapshot_batch(
    items: Sequence[analytics_pb2.MetricSnapshot],
    now: datetime,
    retained_from: datetime,
    field: str = "metric_snapshots",
) -> SnapshotBatch:
    """The checks of `snapshots`, straight to columns: ingestion's hot path. Valid items cost
    a few attribute reads each; at the first doubt the batch goes through `snapshots`, which
    names every bad field (the same messages whichever path)."""
    if not 0 < len(items) <= MAX_SNAPSHOTS:
        return SnapshotBatch.of(snapshots(items, now, retained_from, field))  # raises
    latest = epoch_us(now + MAX_CLOCK_SKEW)
    earliest_observed = epoch_us(max(EARLIEST, retained_from))
    earliest = epoch_us(EARLIEST)
    batch = SnapshotBatch(received=len(items), metrics=tuple([] for _ in METRICS))
    likes, comments, shares, saves, views, reach = batch.metrics
    profiles: dict[str, int] = {}
    seen: set[tuple[int, str, str, int]] = set()
    for item in items:
        name = item.profile
        profile = profiles.get(name)
        if profile is None:
            try:
                profile = profiles[name] = profile_id(name)
            except InvalidArgument:
                break
        platform = PLATFORM_BY_ENUM.get(item.platform)
        post_id = item.post_id
        if (
            platform not in INGESTED_PLATFORMS
            or not 0 < len(post_id) <= POST_ID_MAX
            or "\x00" in post_id
        ):
            break
        published, observed = item.publish_time, item.observe_time
        if not (0 <= published.nanos < 1_000_000_000 and 0 <= observed.nanos < 1_000_000_000):
            break
        # As Timestamp.ToDatetime: nanoseconds truncated to microseconds. An unset time
        # reads as the epoch, before EARLIEST: the range check below sends it to the full checks.
        published_us = published.seconds * 1_000_000 + published.nanos // 1000
        observed_us = observed.seconds * 1_000_000 + observed.nanos // 1000
        if not (earliest <= published_us <= observed_us and earliest_observed <= observed_us):
            break
        if observed_us > latest:  # publish_time is not after it, so not either
            break
        values = (item.likes, item.comments, item.shares, item.saves, item.views, item.reach)
        if min(values) < 0:
            break
        key = (profile, platform, post_id, observed_us)
        if key in seen:
            continue  # the first of a repeated (post, observe_time) is the one recorded
        seen.add(key)
        batch.profile_ids.append(profile)
        batch.platforms.append(platform)
        batch.post_ids.append(post_id)
        batch.publish_us.append(published_us)
        batch.observe_us.append(observed_us)
        likes.append(values[0])
        comments.append(values[1])
        shares.append(values[2])
        saves.append(values[3])
        views.append(values[4])
        reach.append(values[5])
    else:
        return batch
    # A doubt: the full checks raise, naming every bad field (or, should they find nothing
    # wrong, their result stands).
    return SnapshotBatch.of(snapshots(items, now, retained_from, field))


def follower_counts(
    items: Sequence[analytics_pb2.FollowerCount], now: datetime
) -> list[FollowerCountValues]:
    violations = Violations()
    result: list[FollowerCountValues] = []

    def check(item: analytics_pb2.FollowerCount, at: str) -> None:
        before = len(violations.items)
        profile = _profile(violations, item.profile, f"{at}.profile")
        platform = _platform(violations, item.platform, f"{at}.platform", ingested=True)
        observed = _time(
            violations, item, "observe_time", f"{at}.observe_time", latest=now + MAX_CLOCK_SKEW
        )
        _count(violations, item.followers, f"{at}.followers")
        if len(violations.items) == before:
            result.append(
                FollowerCountValues(profile, platform, observed.date(), observed, item.followers)
            )

    _items(violations, items, "follower_counts", MAX_FOLLOWER_COUNTS, check)
    violations.raise_if_any()
    return result


def _shares(
    violations: Violations,
    entries: Sequence[tuple[str | None, float]],
    field: str,
    key_field: str,
) -> dict[str, float]:
    shares: dict[str, float] = {}
    for index, (key, share) in enumerate(entries):
        at = f"{field}[{index}]"
        if key is None:
            violations.add(f"{at}.{key_field}", "is required")
        elif key in shares:
            violations.add(f"{at}.{key_field}", "is listed twice")
        if not 0.0 <= share <= 1.0:  # NaN fails this too
            violations.add(f"{at}.share", "must be from 0 to 1")
        if key is not None:
            shares[key] = share
    if sum(shares.values()) > 1.0 + SHARE_SUM_TOLERANCE:
        violations.add(field, "shares must add up to at most 1")
    return shares


def _places(
    violations: Violations, entries: Sequence[analytics_pb2.PlaceShare], field: str
) -> dict[str, float]:
    if len(entries) > MAX_PLACES:
        violations.add(field, f"must hold at most {MAX_PLACES} places")
        return {}
    for index, entry in enumerate(entries):
        check_text(violations, f"{field}[{index}].place", entry.place, PLACE_MAX)
    return _shares(
        violations, [(entry.place or None, entry.share) for entry in entries], field, "place"
    )


def audiences(
    items: Sequence[analytics_pb2.AudienceSnapshot], now: datetime
) -> list[AudienceValues]:
    violations = Violations()
    result: list[AudienceValues] = []

    def check(item: analytics_pb2.AudienceSnapshot, at: str) -> None:
        before = len(violations.items)
        profile = _profile(violations, item.profile, f"{at}.profile")
        platform = _platform(violations, item.platform, f"{at}.platform", ingested=True)
        observed = _time(
            violations, item, "observe_time", f"{at}.observe_time", latest=now + MAX_CLOCK_SKEW
        )
        ages = _shares(
            violations,
            [(AGE_BY_ENUM.get(e.age_range), e.share) for e in item.age_shares],
            f"{at}.age_shares",
            "age_range",
        )
        genders = _shares(
            violations,
            [(GENDER_BY_ENUM.get(e.gender), e.share) for e in item.gender_shares],
            f"{at}.gender_shares",
            "gender",
        )
        countries = _places(violations, item.top_countries, f"{at}.top_countries")
        cities = _places(violations, item.top_cities, f"{at}.top_cities")
        if len(violations.items) == before:
            result.append(
                AudienceValues(
                    profile, platform, observed.date(), observed, ages, genders, countries, cities
                )
            )

    _items(violations, items, "audience_snapshots", MAX_AUDIENCES, check)
    violations.raise_if_any()
    return result


def report_query(request: analytics_pb2.GetProfileAnalyticsRequest) -> ReportQuery:
    violations = Violations()
    profile = _profile(violations, request.profile, "profile")
    start = _time(violations, request, "start_time", "start_time")
    end = _time(violations, request, "end_time", "end_time")
    if request.HasField("start_time") and request.HasField("end_time"):
        if end <= start:
            violations.add("end_time", "must be after start_time")
        elif end - start > MAX_REPORT_SPAN:
            violations.add("end_time", "must be at most 3 years after start_time")
    granularity = GRANULARITY_BY_ENUM.get(request.granularity, "")
    if not granularity:
        violations.add("granularity", "is required" if request.granularity == 0 else "is not known")
    platform = _platform(violations, request.platform, "platform", optional=True)
    violations.raise_if_any()
    first_day, last_day = start.date(), _last_day(end)
    return ReportQuery(
        profile_id=profile,
        first_day=first_day,
        last_day=last_day,
        # Whole UTC days, as the daily rollups count them.
        start_time=midnight(first_day),
        end_time=midnight(last_day + timedelta(days=1)),
        granularity=granularity,
        platform=platform or None,
    )


def _last_day(end: datetime) -> date:
    """The interval is [start, end): an end at midnight does not take in that day."""
    at_midnight = end == datetime(end.year, end.month, end.day, tzinfo=UTC)
    return end.date() - timedelta(days=1) if at_midnight else end.date()


def post_key(request: analytics_pb2.GetPostAnalyticsRequest) -> tuple[int, str, str]:
    violations = Violations()
    profile = _profile(violations, request.profile, "profile")
    platform = _platform(violations, request.platform, "platform")
    if not request.post_id:
        violations.add("post_id", "is required")
    check_text(violations, "post_id", request.post_id, POST_ID_MAX)
    violations.raise_if_any()
    return profile, platform, request.post_id


def audience_query(request: analytics_pb2.GetAudienceDemographicsRequest) -> tuple[int, str | None]:
    violations = Violations()
    profile = _profile(violations, request.profile, "profile")
    platform = _platform(violations, request.platform, "platform", optional=True)
    violations.raise_if_any()
    return profile, platform or None


def creator_search(request: analytics_pb2.SearchCreatorsRequest) -> CreatorSearch:
    violations = Violations()
    platform = _platform(violations, request.platform, "platform")
    _count(violations, request.min_followers, "min_followers")
    _count(violations, request.max_followers, "max_followers")
    if 0 < request.max_followers < request.min_followers:
        violations.add("max_followers", "must not be less than min_followers")
    if not 0.0 <= request.min_engagement_rate < math.inf:  # NaN fails this too
        violations.add("min_engagement_rate", "must be a number, not negative")
    check_text(violations, "audience_country", request.audience_country, PLACE_MAX)
    # Here, not at import: the package loads numpy (see insight_models.py).
    from server.analytics.insights import CATEGORIES, LANGUAGES, UNDETERMINED

    if request.category and request.category not in CATEGORIES:
        violations.add("category", "is not a category of the taxonomy (docs/ANALYTICS_MODELS.md)")
    if request.language_code and request.language_code not in (*LANGUAGES, UNDETERMINED):
        violations.add("language_code", "is not an ISO 639-1 code the language model knows")
    order_column = ORDER_COLUMNS.get(request.order_by, "")
    if not order_column:
        violations.add("order_by", "is not a known order")
    violations.raise_if_any()
    return CreatorSearch(
        platform=platform,
        order_column=order_column,
        min_followers=request.min_followers,
        max_followers=request.max_followers,
        min_engagement_rate=request.min_engagement_rate,
        audience_country=request.audience_country,
        category=request.category,
        language=request.language_code,
    )


def watch_profile(
    request: analytics_pb2.WatchProfileMetricsRequest,
) -> tuple[int, tuple[int, int] | None]:
    profile = profile_id(request.profile)
    if not request.resume_event_id:
        return profile, None
    resume = parse_event_id(request.resume_event_id)
    if resume is None:
        raise InvalidArgument.single(
            "resume_event_id", "must be an event_id this stream sent (`<ms>-<seq>`)"
        )
    return profile, resume


def interval_seconds(request: analytics_pb2.WatchServiceMetricsRequest) -> float:
    seconds = request.interval.seconds + request.interval.nanos / 1e9
    if seconds < 0:
        raise InvalidArgument.single("interval", "must not be negative")
    return seconds


INSIGHTS_SUFFIX = "/insights"


def insights_name(name: str, collection: str) -> int:
    """The id in `<collection>/<id>/insights` (GetPostInsights, GetProfileInsights)."""
    if not name:
        raise InvalidArgument.single("name", "is required")
    if not name.endswith(INSIGHTS_SUFFIX):
        raise InvalidArgument.single(
            "name", f"must look like '{collection}/<positive integer>{INSIGHTS_SUFFIX}'"
        )
    try:
        return parse_name(name[: -len(INSIGHTS_SUFFIX)], collection, "name")
    except InvalidArgument:
        raise InvalidArgument.single(
            "name", f"must look like '{collection}/<positive integer>{INSIGHTS_SUFFIX}'"
        ) from None
