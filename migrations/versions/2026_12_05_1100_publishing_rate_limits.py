"""PublishingService: the platforms' rate limits shared by every replica
(`publishing_rate_limits`), and an index for X's daily post cap (an account's targets by
publish time), which also serves what the account_id index did.

Revision ID: 0008_publishing_rate_limits
Revises: 0007_publishing_schedule
Create Date: 2026-12-05 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_publishing_rate_limits"
down_revision = "0007_publishing_schedule"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "publishing_rate_limits",
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column(
            "update_time", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("platform", "scope", "key", name="pk_publishing_rate_limits"),
    )
    op.create_index(
        "ix_publishing_targets_account_id_publish_time",
        "publishing_targets",
        ["account_id", "publish_time"],
    )
    op.drop_index("ix_publishing_targets_account_id", table_name="publishing_targets")


def downgrade() -> None:
    op.create_index("ix_publishing_targets_account_id", "publishing_targets", ["account_id"])
    op.drop_index("ix_publishing_targets_account_id_publish_time", table_name="publishing_targets")
    op.drop_table("publishing_rate_limits")
