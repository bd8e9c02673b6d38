"""What analytics ingests and reports, apart from the wire format."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime


@dataclass(frozen=True)
class Snapshot:
    profile_id: int
    platform: str
    post_id: str
    publish_time: datetime
    observe_time: datetime
    # In tables.METRICS order: likes, comments, shares, saves, views, reach.
    metrics: tuple[int, ...]

    @property
    def post_key(self) -> tuple[int, str, str]:
        return (self.profile_id, self.platform, self.post_id)


def midnight(day: date) -> datetime:
    """The start of a UTC day, as reports count days."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def epoch_us(value: datetime) -> int:
    """Microseconds since the Unix epoch (PostgreSQL keeps microseconds)."""
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class SnapshotBatch:
    """A batch of snapshots as columns (row i across the lists), the first of a repeated
    (post, observe_time) only; times in microseconds since the epoch. What ingestion sends
    to PostgreSQL as arrays, without a Python object per snapshot."""

    received: int = 0  # snapshots in the request, repeats included
    profile_ids: list[int] = field(default_factory=list)
    platforms: list[str] = field(default_factory=list)
    post_ids: list[str] = field(default_factory=list)
    publish_us: list[int] = field(default_factory=list)
    observe_us: list[int] = field(default_factory=list)
    # One list per metric, in tables.METRICS order.
    metrics: tuple[list[int], ...] = ()

    @classmethod
    def of(cls, items: Sequence[Snapshot]) -> SnapshotBatch:
        batch = cls(received=len(items), metrics=tuple([] for _ in range(6)))
        seen: set[tuple[int, str, str, int]] = set()
        for s in items:
            observed = epoch_us(s.observe_time)
            key = (s.profile_id, s.platform, s.post_id, observed)
            if key in seen:
                continue
            seen.add(key)
            batch.profile_ids.append(s.profile_id)
            batch.platforms.append(s.platform)
            batch.post_ids.append(s.post_id)
            batch.publish_us.append(epoch_us(s.publish_time))
            batch.observe_us.append(observed)
            for column, value in zip(batch.metrics, s.metrics, strict=True):
                column.append(value)
        return batch

    def __len__(self) -> int:
        return len(self.observe_us)


@dataclass(frozen=True)
class FollowerCountValues:
    profile_id: int
    platform: str
    day: date
    observe_time: datetime
    followers: int


@dataclass(frozen=True)
class AudienceValues:
    profile_id: int
    platform: str
    day: date
    observe_time: datetime
    ages: dict[str, float]
    genders: dict[str, float]
    countries: dict[str, float]
    cities: dict[str, float]


@dataclass(frozen=True)
class IngestResult:
    created: int
    unchanged: int


@dataclass(frozen=True)
class ReportQuery:
    profile_id: int
    first_day: date
    last_day: date
    start_time: datetime
    end_time: datetime
    granularity: str  # "day", "week" or "month": date_trunc's field
    platform: str | None


@dataclass(frozen=True)
class CreatorSearch:
    platform: str
    order_column: str  # "engagement_rate" or "followers"
    min_followers: int = 0
    max_followers: int = 0  # 0: no upper bound
    min_engagement_rate: float = 0.0
    audience_country: str = ""
    # A primary category / language of the profile's FeedService posts ("": any).
    category: str = ""
    language: str = ""
