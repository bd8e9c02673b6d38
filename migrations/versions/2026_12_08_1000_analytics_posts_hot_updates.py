"""AnalyticsService ingestion: a post's new latest metrics become a HOT update.

Every ingested snapshot that moves a post's latest metrics updated its `analytics_posts` row,
and since `engagement` was in an index (`ix_analytics_posts_profile_id_publish_time`, which
carried it for the reports since 0012), each such update wrote a new entry in all three of
the table's indexes: four WAL records instead of one (bench/analytics_ingest.py: 748 bytes of
WAL a snapshot against 486 without). Now:

- the index is `(profile_id, publish_time)` again, with nothing that changes;
- the table keeps 30% of each page free (fillfactor 70), so the new version of a row fits
  on its page, which a HOT update needs;
- `analytics_daily.max_engagement` bounds from above the engagement of the day's posts (it is
  raised at ingestion, never lowered), so the top posts of an interval read only the posts
  of the days whose bound can still beat the ones found (server/analytics/repository.py,
  `top_posts`), not every post of the interval.

Filled from analytics_posts in the migration's transaction, which blocks ingestion while it
runs (a few seconds for 300,000 posts). The fillfactor applies to pages written from now on.

Revision ID: 0016_analytics_posts_hot_updates
Revises: 0015_feed_queue_dead_letters
Create Date: 2026-12-08 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_analytics_posts_hot_updates"
down_revision = "0015_feed_queue_dead_letters"
branch_labels = None
depends_on = None

INDEX = "ix_analytics_posts_profile_id_publish_time"
CHECK = "ck_analytics_daily_max_engagement_non_negative"


def upgrade() -> None:
    op.add_column(
        "analytics_daily",
        sa.Column("max_engagement", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.create_check_constraint(CHECK, "analytics_daily", "max_engagement >= 0")
    op.execute(
        """
        UPDATE analytics_daily d SET max_engagement = m.max_engagement
        FROM (
            SELECT profile_id, (publish_time AT TIME ZONE 'UTC')::date AS day, platform,
                   max(engagement) AS max_engagement
            FROM analytics_posts GROUP BY 1, 2, 3
        ) m
        WHERE (d.profile_id, d.day, d.platform) = (m.profile_id, m.day, m.platform)
        """
    )
    op.drop_index(INDEX, table_name="analytics_posts")
    op.create_index(INDEX, "analytics_posts", ["profile_id", "publish_time"])
    op.execute("ALTER TABLE analytics_posts SET (fillfactor = 70)")


def downgrade() -> None:
    op.execute("ALTER TABLE analytics_posts RESET (fillfactor)")
    op.drop_index(INDEX, table_name="analytics_posts")
    op.create_index(
        INDEX,
        "analytics_posts",
        ["profile_id", "publish_time"],
        postgresql_include=["engagement", "id"],
    )
    op.drop_constraint(CHECK, "analytics_daily", type_="check")
    op.drop_column("analytics_daily", "max_engagement")
