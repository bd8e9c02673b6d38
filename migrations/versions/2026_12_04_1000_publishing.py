"""PublishingService: businesses, connected accounts (tokens encrypted), posts, targets and
their publish attempts (server/publishing/tables.py says what each column is for).

Revision ID: 0006_publishing
Revises: 0005_post_fields
Create Date: 2026-12-04 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006_publishing"
down_revision = "0005_post_fields"
branch_labels = None
depends_on = None

ACCOUNT_STATES = "'connected', 'needs_reconnect', 'disconnected'"
PLATFORMS = "'x', 'linkedin', 'facebook', 'instagram'"
TARGET_STATES = (
    "'scheduled', 'pending', 'claimed', 'sending', 'deferred', 'published', 'failed', "
    "'needs_review'"
)


def _times() -> list[sa.Column[object]]:
    return [
        sa.Column(
            "create_time", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "update_time", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    ]


def _business_id(table: str) -> sa.Column[object]:
    return sa.Column(
        "business_id",
        sa.BigInteger,
        sa.ForeignKey(
            "businesses.id", ondelete="CASCADE", name=f"fk_{table}_business_id_businesses"
        ),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "businesses",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False, server_default="UTC"),
        *_times(),
        sa.PrimaryKeyConstraint("id", name="pk_businesses"),
    )
    op.create_table(
        "publishing_accounts",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        _business_id("publishing_accounts"),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("platform_account_id", sa.String(200), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False, server_default=""),
        sa.Column("handle", sa.String(200), nullable=False, server_default=""),
        sa.Column("avatar_uri", sa.String(2048), nullable=False, server_default=""),
        sa.Column("state", sa.String(16), nullable=False, server_default="connected"),
        sa.Column("state_reason", sa.Text, nullable=False, server_default=""),
        sa.Column("access_token", sa.LargeBinary),
        sa.Column("refresh_token", sa.LargeBinary),
        sa.Column("token_expire_time", sa.DateTime(timezone=True)),
        sa.Column("refresh_expire_time", sa.DateTime(timezone=True)),
        sa.Column("scopes", postgresql.ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("token_version", sa.Integer, nullable=False, server_default=sa.text("0")),
        *_times(),
        sa.PrimaryKeyConstraint("id", name="pk_publishing_accounts"),
        sa.UniqueConstraint(
            "business_id",
            "platform",
            "platform_account_id",
            name="uq_publishing_accounts_business_id_platform_platform_account_id",
        ),
        sa.CheckConstraint(
            f"state IN ({ACCOUNT_STATES})", name="ck_publishing_accounts_state_known"
        ),
        sa.CheckConstraint(
            f"platform IN ({PLATFORMS})", name="ck_publishing_accounts_platform_known"
        ),
    )
    op.create_table(
        "publishing_connections",
        sa.Column("state", sa.String(64), nullable=False),
        _business_id("publishing_connections"),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("code_verifier", sa.LargeBinary, nullable=False),
        sa.Column("redirect_uri", sa.String(2048), nullable=False),
        sa.Column("expire_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("state", name="pk_publishing_connections"),
    )
    op.create_index(
        "ix_publishing_connections_expire_time", "publishing_connections", ["expire_time"]
    )
    op.create_table(
        "publishing_posts",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        _business_id("publishing_posts"),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("media_uris", postgresql.ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("first_comment", sa.Text, nullable=False, server_default=""),
        sa.Column("thread", postgresql.ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("schedule_time", sa.DateTime(timezone=True)),
        *_times(),
        sa.PrimaryKeyConstraint("id", name="pk_publishing_posts"),
    )
    op.create_index(
        "ix_publishing_posts_business_id_create_time_id",
        "publishing_posts",
        ["business_id", "create_time", "id"],
    )
    op.create_table(
        "publishing_targets",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column(
            "post_id",
            sa.BigInteger,
            sa.ForeignKey(
                "publishing_posts.id",
                ondelete="CASCADE",
                name="fk_publishing_targets_post_id_publishing_posts",
            ),
            nullable=False,
        ),
        sa.Column(
            "account_id",
            sa.BigInteger,
            sa.ForeignKey(
                "publishing_accounts.id",
                ondelete="CASCADE",
                name="fk_publishing_targets_account_id_publishing_accounts",
            ),
            nullable=False,
        ),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column(
            "due_time", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("lease_owner", sa.String(100)),
        sa.Column("lease_expire_time", sa.DateTime(timezone=True)),
        sa.Column("attempt_count", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("send_time", sa.DateTime(timezone=True)),
        sa.Column(
            "checkpoints",
            postgresql.JSONB,
            nullable=False,
            server_default=sa.text("'{}'::jsonb"),
        ),
        sa.Column("platform_post_id", sa.String(200), nullable=False, server_default=""),
        sa.Column("uri", sa.String(2048), nullable=False, server_default=""),
        sa.Column("error", sa.Text, nullable=False, server_default=""),
        sa.Column("publish_time", sa.DateTime(timezone=True)),
        sa.Column(
            "update_time", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("id", name="pk_publishing_targets"),
        sa.UniqueConstraint(
            "post_id", "account_id", name="uq_publishing_targets_post_id_account_id"
        ),
        sa.CheckConstraint(f"state IN ({TARGET_STATES})", name="ck_publishing_targets_state_known"),
    )
    op.create_index(
        "ix_publishing_targets_due_time",
        "publishing_targets",
        ["due_time"],
        postgresql_where=sa.text("state IN ('pending', 'deferred', 'scheduled')"),
    )
    op.create_index(
        "ix_publishing_targets_lease_expire_time",
        "publishing_targets",
        ["lease_expire_time"],
        postgresql_where=sa.text("state IN ('claimed', 'sending')"),
    )
    op.create_index("ix_publishing_targets_account_id", "publishing_targets", ["account_id"])
    op.create_table(
        "publish_attempts",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column(
            "target_id",
            sa.BigInteger,
            sa.ForeignKey(
                "publishing_targets.id",
                ondelete="CASCADE",
                name="fk_publish_attempts_target_id_publishing_targets",
            ),
            nullable=False,
        ),
        sa.Column("post_id", sa.BigInteger, nullable=False),
        sa.Column("outcome", sa.String(24), nullable=False),
        sa.Column("response_code", sa.String(64), nullable=False, server_default=""),
        sa.Column("message", sa.Text, nullable=False, server_default=""),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_publish_attempts"),
    )
    op.create_index("ix_publish_attempts_post_id_id", "publish_attempts", ["post_id", "id"])


def downgrade() -> None:
    for table in (
        "publish_attempts",
        "publishing_targets",
        "publishing_posts",
        "publishing_connections",
        "publishing_accounts",
        "businesses",
    ):
        op.drop_table(table)
