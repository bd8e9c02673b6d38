"""What analytics ingests and reports, apart from the wire format."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime


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
