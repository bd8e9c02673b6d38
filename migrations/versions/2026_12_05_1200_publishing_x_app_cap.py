"""PublishingService: an index for X's per-app daily post cap (the app's published X posts
by publish time, counted before each X send), and a target's transient failures counted
apart from its sends (a send cut off by a crash is no failure of the platform's).

Revision ID: 0009_publishing_x_app_cap
Revises: 0008_publishing_rate_limits
Create Date: 2026-12-05 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_publishing_x_app_cap"
down_revision = "0008_publishing_rate_limits"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "publishing_targets",
        sa.Column("failure_count", sa.Integer, nullable=False, server_default=sa.text("0")),
    )
    op.create_index(
        "ix_publishing_targets_platform_state_publish_time",
        "publishing_targets",
        ["platform", "state", "publish_time"],
    )


def downgrade() -> None:
    op.drop_index(
        "ix_publishing_targets_platform_state_publish_time", table_name="publishing_targets"
    )
    op.drop_column("publishing_targets", "failure_count")
