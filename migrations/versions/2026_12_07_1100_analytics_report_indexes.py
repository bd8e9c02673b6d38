"""AnalyticsService reports: a profile's posts by publication time carry their engagement and
id, so best hours, best weekdays and the top posts of a profile with thousands of posts are read
from the index alone (bench/analytics_reports.py: a year of a profile with 5,000 posts read
about 3,200 heap pages three times, and took 4.5 times as long as a fresh profile's report).

Same key as before, so every use of the old index is served by this one. Built in the
migration's transaction, which blocks writes to analytics_posts while it runs (a few seconds
for 300,000 posts).

Revision ID: 0012_analytics_report_indexes
Revises: 0011_analytics_insights
Create Date: 2026-12-07 11:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0012_analytics_report_indexes"
down_revision = "0011_analytics_insights"
branch_labels = None
depends_on = None

INDEX = "ix_analytics_posts_profile_id_publish_time"


def upgrade() -> None:
    op.drop_index(INDEX, table_name="analytics_posts")
    op.create_index(
        INDEX,
        "analytics_posts",
        ["profile_id", "publish_time"],
        postgresql_include=["engagement", "id"],
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="analytics_posts")
    op.create_index(INDEX, "analytics_posts", ["profile_id", "publish_time"])
