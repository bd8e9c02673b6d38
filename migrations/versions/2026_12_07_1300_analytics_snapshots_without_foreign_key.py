"""AnalyticsService ingestion: metric snapshots no longer reference analytics_posts by a
foreign key; a trigger deletes a post's snapshots when the post goes (a profile's deletion
cascades to its posts, so to its snapshots still).

The key was checked once per inserted snapshot (a lookup of the post, through a trigger of
its own), on the hottest path, and protected nothing ingestion does not: a batch inserts or
finds a post's row before its snapshots, in one transaction, with the profile locked against
deletion (server/analytics/repository.py, ingestion). The row-level trigger does what the key's
ON DELETE CASCADE did: delete by the snapshots' primary key (post_id, observe_time) in each
partition.

Revision ID: 0014_analytics_snapshots_no_fk
Revises: 0013_analytics_posting_slots
Create Date: 2026-12-07 13:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0014_analytics_snapshots_no_fk"
down_revision = "0013_analytics_posting_slots"
branch_labels = None
depends_on = None

FOREIGN_KEY = "fk_analytics_metric_snapshots_post_id_analytics_posts"


def upgrade() -> None:
    op.drop_constraint(FOREIGN_KEY, "analytics_metric_snapshots", type_="foreignkey")
    op.execute(
        """
        CREATE FUNCTION analytics_delete_post_snapshots() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            DELETE FROM analytics_metric_snapshots WHERE post_id = OLD.id;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER analytics_posts_delete_snapshots AFTER DELETE ON analytics_posts"
        " FOR EACH ROW EXECUTE FUNCTION analytics_delete_post_snapshots()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER analytics_posts_delete_snapshots ON analytics_posts")
    op.execute("DROP FUNCTION analytics_delete_post_snapshots()")
    # Snapshots whose post is gone would fail the key: none can exist (the trigger deleted
    # them with their post), but a downgrade should not depend on it.
    op.execute(
        "DELETE FROM analytics_metric_snapshots s"
        " WHERE NOT EXISTS (SELECT FROM analytics_posts p WHERE p.id = s.post_id)"
    )
    op.create_foreign_key(
        FOREIGN_KEY,
        "analytics_metric_snapshots",
        "analytics_posts",
        ["post_id"],
        ["id"],
        ondelete="CASCADE",
    )
