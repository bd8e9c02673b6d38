"""Content insights of FeedService posts: the queue feed's hook fills in its writing
transactions, each post's insights, and their aggregates per profile, which creator search's
category and language filters read (server/analytics/insight_tables.py).

Revision ID: 0011_analytics_insights
Revises: 0010_analytics
Create Date: 2026-12-07 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011_analytics_insights"
down_revision = "0010_analytics"
branch_labels = None
depends_on = None


def _score(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.Float(precision=53), nullable=False)


def _profile_id(table: str) -> sa.Column[object]:
    return sa.Column(
        "profile_id",
        sa.BigInteger,
        sa.ForeignKey("profiles.id", ondelete="CASCADE", name=f"fk_{table}_profile_id_profiles"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "analytics_feed_queue",
        sa.Column("post_id", sa.BigInteger, nullable=False),
        sa.Column("needs_insight", sa.Boolean, nullable=False),
        sa.Column("needs_metrics", sa.Boolean, nullable=False),
        sa.Column(
            "enqueued_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.PrimaryKeyConstraint("post_id", name="pk_analytics_feed_queue"),
    )
    op.create_index("ix_analytics_feed_queue_enqueued_at", "analytics_feed_queue", ["enqueued_at"])
    op.create_table(
        "analytics_post_insights",
        sa.Column("post_id", sa.BigInteger, nullable=False),
        _profile_id("analytics_post_insights"),
        sa.Column("sentiment", sa.String(8), nullable=False),
        _score("sentiment_score"),
        _score("sentiment_confidence"),
        sa.Column("category", sa.String(40), nullable=False),
        _score("category_confidence"),
        sa.Column("language", sa.String(8), nullable=False),
        _score("language_confidence"),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("text_hash", sa.String(64), nullable=False),
        sa.Column("post_create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("post_update_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "analyze_time",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.PrimaryKeyConstraint("post_id", name="pk_analytics_post_insights"),
        sa.CheckConstraint(
            "sentiment_score BETWEEN -1 AND 1",
            name="sentiment_score_range",
        ),
    )
    op.create_index(
        "ix_analytics_post_insights_profile_id_post_create_time",
        "analytics_post_insights",
        ["profile_id", "post_create_time"],
    )
    op.create_table(
        "analytics_profile_insights",
        _profile_id("analytics_profile_insights"),
        sa.Column("posts", sa.BigInteger, nullable=False),
        _score("sentiment_sum"),
        sa.Column("positive", sa.BigInteger, nullable=False),
        sa.Column("neutral", sa.BigInteger, nullable=False),
        sa.Column("negative", sa.BigInteger, nullable=False),
        sa.Column("confident", sa.BigInteger, nullable=False),
        sa.Column(
            "categories",
            postgresql.JSONB,
            nullable=False,
            server_default=sa.text("'{}'::jsonb"),
        ),
        sa.Column(
            "languages",
            postgresql.JSONB,
            nullable=False,
            server_default=sa.text("'{}'::jsonb"),
        ),
        sa.Column("primary_category", sa.String(40), nullable=False),
        sa.Column("primary_language", sa.String(8), nullable=False),
        sa.PrimaryKeyConstraint("profile_id", name="pk_analytics_profile_insights"),
        sa.CheckConstraint("posts > 0", name="posts_positive"),
    )
    op.create_index(
        "ix_analytics_profile_insights_primary_category",
        "analytics_profile_insights",
        ["primary_category", "profile_id"],
    )
    op.create_index(
        "ix_analytics_profile_insights_primary_language",
        "analytics_profile_insights",
        ["primary_language", "profile_id"],
    )


def downgrade() -> None:
    op.drop_table("analytics_profile_insights")
    op.drop_table("analytics_post_insights")
    op.drop_table("analytics_feed_queue")
