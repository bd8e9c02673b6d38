"""AnalyticsService: posts' latest metrics, their snapshots (RANGE-partitioned by month of
observe_time, partitions in the `analytics_partitions` schema), daily rollups per profile and
platform, follower counts per day, audience demographics, and per profile and platform what
creator search filters and orders by (server/analytics/tables.py).

The partitions of the month before this one to three months ahead are made here; from then on
the partition job (server/analytics/partitions.py) keeps them ahead and drops expired ones.

Revision ID: 0010_analytics
Revises: 0009_publishing_x_app_cap
Create Date: 2026-12-06 10:00:00
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010_analytics"
down_revision = "0009_publishing_x_app_cap"
branch_labels = None
depends_on = None

SCHEMA = "analytics_partitions"
METRICS = ("likes", "comments", "shares", "saves", "views", "reach")


def _metrics() -> list[sa.Column[object]]:
    return [sa.Column(metric, sa.BigInteger, nullable=False) for metric in METRICS]


def _non_negative(names: tuple[str, ...]) -> list[sa.CheckConstraint]:
    # The metadata's naming convention makes these ck_<table>_<name>_non_negative.
    return [sa.CheckConstraint(f"{name} >= 0", name=f"{name}_non_negative") for name in names]


def _profile_id(table: str) -> sa.Column[object]:
    return sa.Column(
        "profile_id",
        sa.BigInteger,
        sa.ForeignKey("profiles.id", ondelete="CASCADE", name=f"fk_{table}_profile_id_profiles"),
        nullable=False,
    )


def _month(year: int, month: int) -> date:
    return date(year + (month - 1) // 12, (month - 1) % 12 + 1, 1)


def upgrade() -> None:
    op.create_table(
        "analytics_posts",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        _profile_id("analytics_posts"),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("external_id", sa.String(200), nullable=False),
        sa.Column("publish_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("observe_time", sa.DateTime(timezone=True), nullable=False),
        *_metrics(),
        sa.Column(
            "engagement",
            sa.BigInteger,
            sa.Computed("likes + comments + shares", persisted=True),
            nullable=False,
        ),
        sa.UniqueConstraint(
            "profile_id",
            "platform",
            "external_id",
            name="uq_analytics_posts_profile_id_platform_external_id",
        ),
        *_non_negative(METRICS),
    )
    op.create_index(
        "ix_analytics_posts_profile_id_publish_time",
        "analytics_posts",
        ["profile_id", "publish_time"],
    )
    op.create_table(
        "analytics_metric_snapshots",
        sa.Column("post_id", sa.BigInteger, nullable=False),
        sa.Column("observe_time", sa.DateTime(timezone=True), nullable=False),
        *_metrics(),
        sa.PrimaryKeyConstraint("post_id", "observe_time", name="pk_analytics_metric_snapshots"),
        sa.ForeignKeyConstraint(
            ["post_id"],
            ["analytics_posts.id"],
            ondelete="CASCADE",
            name="fk_analytics_metric_snapshots_post_id_analytics_posts",
        ),
        postgresql_partition_by="RANGE (observe_time)",
    )
    op.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    today = datetime.now(UTC).date()
    for offset in range(-1, 4):
        start = _month(today.year, today.month + offset)
        end = _month(start.year, start.month + 1)
        op.execute(
            f"CREATE TABLE IF NOT EXISTS {SCHEMA}.metric_snapshots_y{start:%Y}m{start:%m} "
            f"PARTITION OF analytics_metric_snapshots "
            f"FOR VALUES FROM ('{start.isoformat()}+00') TO ('{end.isoformat()}+00')"
        )
    op.create_table(
        "analytics_daily",
        _profile_id("analytics_daily"),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("posts", sa.BigInteger, nullable=False),
        *_metrics(),
        sa.PrimaryKeyConstraint("profile_id", "day", "platform", name="pk_analytics_daily"),
        *_non_negative(("posts", *METRICS)),
    )
    op.create_table(
        "analytics_follower_counts",
        _profile_id("analytics_follower_counts"),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("followers", sa.BigInteger, nullable=False),
        sa.Column("observe_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "profile_id", "platform", "day", name="pk_analytics_follower_counts"
        ),
        *_non_negative(("followers",)),
    )
    op.create_table(
        "analytics_audiences",
        _profile_id("analytics_audiences"),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("observe_time", sa.DateTime(timezone=True), nullable=False),
        *(
            sa.Column(column, postgresql.JSONB, nullable=False)
            for column in ("ages", "genders", "countries", "cities")
        ),
        sa.PrimaryKeyConstraint("profile_id", "platform", "day", name="pk_analytics_audiences"),
    )

    op.create_table(
        "analytics_creators",
        _profile_id("analytics_creators"),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("followers", sa.BigInteger, nullable=False),
        sa.Column("posts", sa.BigInteger, nullable=False),
        sa.Column("engagement", sa.BigInteger, nullable=False),
        sa.Column(
            "engagement_rate",
            sa.Float(precision=53),
            sa.Computed(
                "CASE WHEN followers > 0 AND posts > 0"
                " THEN engagement::double precision / posts / followers ELSE 0 END",
                persisted=True,
            ),
            nullable=False,
        ),
        sa.Column("countries", postgresql.JSONB, nullable=False),
        sa.PrimaryKeyConstraint("profile_id", "platform", name="pk_analytics_creators"),
        *_non_negative(("followers", "posts", "engagement")),
    )
    op.create_index(
        "ix_analytics_creators_platform_engagement_rate",
        "analytics_creators",
        ["platform", "engagement_rate", "profile_id"],
    )
    op.create_index(
        "ix_analytics_creators_platform_followers",
        "analytics_creators",
        ["platform", "followers", "profile_id"],
    )


def downgrade() -> None:
    op.drop_table("analytics_creators")
    op.drop_table("analytics_audiences")
    op.drop_table("analytics_follower_counts")
    op.drop_table("analytics_daily")
    op.drop_table("analytics_metric_snapshots")  # and every partition of it
    op.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    op.drop_table("analytics_posts")
