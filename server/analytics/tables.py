"""The analytics tables, as the migrations create them.

Raw metric snapshots go to a table RANGE-partitioned by month of `observe_time`; its partitions
live in the `analytics_partitions` schema (created by the migration and the partition job,
server/analytics/partitions.py), outside the metadata. Everything a report reads is kept up to
date in the ingesting transaction: each post's latest metrics (`analytics_posts`) and their sums
per profile, UTC day of publication and platform (`analytics_daily`) and per profile, platform,
weekday and hour of publication (`analytics_posting_slots`).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Computed,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB

from server.core.db import metadata

PARTITION_SCHEMA = "analytics_partitions"
PLATFORM_MAX = 16
POST_ID_MAX = 200
PLACE_MAX = 100
METRICS = ("likes", "comments", "shares", "saves", "views", "reach")
# Engagement is what people did with a post: likes, comments and shares.
ENGAGEMENT = ("likes", "comments", "shares")


def _metric_columns() -> list[Column[int]]:
    return [Column(metric, BigInteger, nullable=False) for metric in METRICS]


def _non_negative(names: tuple[str, ...]) -> list[CheckConstraint]:
    return [CheckConstraint(f"{name} >= 0", name=f"{name}_non_negative") for name in names]


def _profile_id() -> Column[int]:
    return Column(
        "profile_id", BigInteger, ForeignKey("profiles.id", ondelete="CASCADE"), nullable=False
    )


# One row per post: its latest snapshot's metrics (observe_time is that snapshot's).
analytics_posts = Table(
    "analytics_posts",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    _profile_id(),
    Column("platform", String(PLATFORM_MAX), nullable=False),
    Column("external_id", String(POST_ID_MAX), nullable=False),
    Column("publish_time", DateTime(timezone=True), nullable=False),
    Column("observe_time", DateTime(timezone=True), nullable=False),
    *_metric_columns(),
    Column(
        "engagement",
        BigInteger,
        Computed("likes + comments + shares", persisted=True),
        nullable=False,
    ),
    UniqueConstraint("profile_id", "platform", "external_id"),
    *_non_negative(METRICS),
    # Reports over an interval: a profile's posts by publication time. Nothing an ingestion
    # changes is in any index of this table, so a post's new latest metrics are a HOT update
    # (one WAL record, no index entry; migration 0016 set fillfactor 70 to leave room on the
    # page); the top posts find their candidates through analytics_daily.max_engagement.
    Index("ix_analytics_posts_profile_id_publish_time", "profile_id", "publish_time"),
    postgresql_with={"fillfactor": 70},
)

# Every snapshot, partitioned by month; the primary key serves one post's series. No foreign
# key to analytics_posts (migration 0014): its check cost a lookup per ingested snapshot, and
# ingestion writes a post's row before its snapshots in one transaction. A row-level trigger
# on analytics_posts (outside the metadata, made by that migration) deletes a deleted post's
# snapshots, as the key's ON DELETE CASCADE did.
analytics_metric_snapshots = Table(
    "analytics_metric_snapshots",
    metadata,
    Column("post_id", BigInteger, nullable=False),
    Column("observe_time", DateTime(timezone=True), nullable=False),
    *_metric_columns(),
    PrimaryKeyConstraint("post_id", "observe_time"),
    postgresql_partition_by="RANGE (observe_time)",
)

# The sums of the latest metrics of a profile's posts published on one UTC day on one platform.
analytics_daily = Table(
    "analytics_daily",
    metadata,
    _profile_id(),
    Column("day", Date, nullable=False),
    Column("platform", String(PLATFORM_MAX), nullable=False),
    Column("posts", BigInteger, nullable=False),
    *_metric_columns(),
    # At least the engagement of each of those posts: raised at ingestion, never lowered (a
    # post's engagement can fall), so the top posts of an interval skip the days whose bound
    # is below the ones already found (repository.top_posts; migration 0016).
    Column("max_engagement", BigInteger, nullable=False, server_default="0"),
    PrimaryKeyConstraint("profile_id", "day", "platform"),
    *_non_negative(("posts", *METRICS, "max_engagement")),
)

# Per profile, platform, ISO weekday (1 = Monday) and hour of publication (UTC): the posts and
# the sum of their latest engagement, kept at ingestion like analytics_daily, so best hours and
# best weekdays read at most 168 rows per platform, not every post (migration 0013).
analytics_posting_slots = Table(
    "analytics_posting_slots",
    metadata,
    _profile_id(),
    Column("platform", String(PLATFORM_MAX), nullable=False),
    Column("weekday", SmallInteger, nullable=False),
    Column("hour", SmallInteger, nullable=False),
    Column("posts", BigInteger, nullable=False),
    Column("engagement", BigInteger, nullable=False),
    PrimaryKeyConstraint("profile_id", "platform", "weekday", "hour"),
    *_non_negative(("posts", "engagement")),
)

analytics_follower_counts = Table(
    "analytics_follower_counts",
    metadata,
    _profile_id(),
    Column("platform", String(PLATFORM_MAX), nullable=False),
    Column("day", Date, nullable=False),
    Column("followers", BigInteger, nullable=False),
    # The count's own time: of two counts for one day, the later observation is kept.
    Column("observe_time", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("profile_id", "platform", "day"),
    CheckConstraint("followers >= 0", name="followers_non_negative"),
)

# Shares per dimension as JSON objects: {"18-24": 0.4, ...}, {"DE": 0.2, ...}.
analytics_audiences = Table(
    "analytics_audiences",
    metadata,
    _profile_id(),
    Column("platform", String(PLATFORM_MAX), nullable=False),
    Column("day", Date, nullable=False),
    Column("observe_time", DateTime(timezone=True), nullable=False),
    Column("ages", JSONB, nullable=False),
    Column("genders", JSONB, nullable=False),
    Column("countries", JSONB, nullable=False),
    Column("cities", JSONB, nullable=False),
    PrimaryKeyConstraint("profile_id", "platform", "day"),
)

# Per profile and platform, what creator search filters and orders by, kept at ingestion: the
# latest follower count, the posts recorded and the sum of their latest engagement, the
# engagement rate (average engagement per post over followers) and the latest audience's
# top countries.
analytics_creators = Table(
    "analytics_creators",
    metadata,
    _profile_id(),
    Column("platform", String(PLATFORM_MAX), nullable=False),
    Column("followers", BigInteger, nullable=False),
    Column("posts", BigInteger, nullable=False),
    Column("engagement", BigInteger, nullable=False),
    Column(
        "engagement_rate",
        Float(precision=53),
        Computed(
            "CASE WHEN followers > 0 AND posts > 0"
            " THEN engagement::double precision / posts / followers ELSE 0 END",
            persisted=True,
        ),
        nullable=False,
    ),
    Column("countries", JSONB, nullable=False),
    PrimaryKeyConstraint("profile_id", "platform"),
    *_non_negative(("followers", "posts", "engagement")),
    # The search orders, most first, with the id as the keyset's tie-break.
    Index(
        "ix_analytics_creators_platform_engagement_rate",
        "platform",
        "engagement_rate",
        "profile_id",
    ),
    Index("ix_analytics_creators_platform_followers", "platform", "followers", "profile_id"),
)

TABLES = (
    analytics_posts,
    analytics_metric_snapshots,
    analytics_daily,
    analytics_posting_slots,
    analytics_follower_counts,
    analytics_audiences,
    analytics_creators,
)
