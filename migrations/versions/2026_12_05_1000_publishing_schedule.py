"""Publishing schedules: local wall-clock times with a time zone on posts, weekly posting
slots on accounts, the slot a target holds (one post per slot of an account), and the
`cancelled` target state.

Revision ID: 0007_publishing_schedule
Revises: 0006_publishing
Create Date: 2026-12-05 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007_publishing_schedule"
down_revision = "0006_publishing"
branch_labels = None
depends_on = None

STATES = (
    "'scheduled', 'pending', 'claimed', 'sending', 'deferred', 'published', 'failed', "
    "'needs_review'"
)
CHECK = "ck_publishing_targets_state_known"
SLOT_INDEX = "uq_publishing_targets_account_id_slot_time"


def upgrade() -> None:
    op.add_column(
        "publishing_accounts",
        sa.Column(
            "posting_schedule",
            postgresql.JSONB,
            nullable=False,
            server_default=sa.text("'[]'::jsonb"),
        ),
    )
    op.add_column("publishing_posts", sa.Column("schedule_local_time", sa.String(19)))
    op.add_column("publishing_posts", sa.Column("schedule_time_zone", sa.String(64)))
    op.add_column("publishing_targets", sa.Column("slot_time", sa.DateTime(timezone=True)))
    op.drop_constraint(CHECK, "publishing_targets", type_="check")
    op.create_check_constraint(CHECK, "publishing_targets", f"state IN ({STATES}, 'cancelled')")
    op.create_index(
        SLOT_INDEX,
        "publishing_targets",
        ["account_id", "slot_time"],
        unique=True,
        postgresql_where=sa.text("slot_time IS NOT NULL AND state NOT IN ('failed', 'cancelled')"),
    )


def downgrade() -> None:
    op.drop_index(SLOT_INDEX, table_name="publishing_targets")
    # Cancelled targets were never sent: before this revision they could only be deleted.
    op.execute("DELETE FROM publishing_targets WHERE state = 'cancelled'")
    op.drop_constraint(CHECK, "publishing_targets", type_="check")
    op.create_check_constraint(CHECK, "publishing_targets", f"state IN ({STATES})")
    op.drop_column("publishing_targets", "slot_time")
    op.drop_column("publishing_posts", "schedule_time_zone")
    op.drop_column("publishing_posts", "schedule_local_time")
    op.drop_column("publishing_accounts", "posting_schedule")
