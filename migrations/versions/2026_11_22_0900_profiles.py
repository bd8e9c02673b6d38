"""Profiles, with filter, sort and full-text indexes; request ids for idempotency.

Revision ID: 0001_profiles
Revises:
Create Date: 2026-11-22 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001_profiles"
down_revision = None
branch_labels = None
depends_on = None

PLATFORMS = ("facebook", "x", "instagram", "youtube", "linkedin")
FILTER_COLUMNS = ("zone", "party_district", "constituency", "designation")
SEARCHED = ("display_name", "username", *(f"{p}_handle" for p in PLATFORMS), "designation", "bio")


def _platform_columns(platform: str) -> list[sa.Column[object]]:
    return [
        sa.Column(f"{platform}_handle", sa.String(100)),
        sa.Column(f"{platform}_followers", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column(f"{platform}_active", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column(f"{platform}_verified", sa.Boolean, nullable=False, server_default=sa.false()),
    ]


def upgrade() -> None:
    total = " + ".join(f"{p}_followers" for p in PLATFORMS)
    document = " || ' ' || ".join(f"coalesce({c}, '')" for c in SEARCHED)
    op.create_table(
        "profiles",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("username", sa.String(100)),
        sa.Column("designation", sa.String(100)),
        sa.Column("zone", sa.String(100)),
        sa.Column("party_district", sa.String(100)),
        sa.Column("constituency", sa.String(100)),
        sa.Column("date_of_birth", sa.Date),
        sa.Column("email", sa.String(254)),
        sa.Column("phone", sa.String(32)),
        sa.Column("bio", sa.String(2000)),
        *(column for platform in PLATFORMS for column in _platform_columns(platform)),
        sa.Column(
            "total_followers", sa.BigInteger, sa.Computed(total, persisted=True), nullable=False
        ),
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR,
            sa.Computed(f"to_tsvector('simple'::regconfig, {document})", persisted=True),
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("id", name="pk_profiles"),
        sa.UniqueConstraint("username", name="uq_profiles_username"),
        *(
            sa.CheckConstraint(
                f"{p}_followers >= 0", name=f"ck_profiles_{p}_followers_non_negative"
            )
            for p in PLATFORMS
        ),
    )
    for column in FILTER_COLUMNS:
        op.create_index(f"ix_profiles_{column}", "profiles", [column])
    op.create_index("ix_profiles_zone_designation", "profiles", ["zone", "designation"])
    op.create_index("ix_profiles_display_name_id", "profiles", ["display_name", "id"])
    op.create_index("ix_profiles_created_at_id", "profiles", ["created_at", "id"])
    op.create_index("ix_profiles_total_followers_id", "profiles", ["total_followers", "id"])
    for platform in PLATFORMS:
        op.create_index(
            f"ix_profiles_{platform}_followers_id", "profiles", [f"{platform}_followers", "id"]
        )
    op.create_index(
        "ix_profiles_search_vector", "profiles", ["search_vector"], postgresql_using="gin"
    )

    op.create_table(
        "request_ids",
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("request_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("resource_id", sa.BigInteger),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("scope", "request_id", name="pk_request_ids"),
    )
    op.create_index("ix_request_ids_created_at", "request_ids", ["created_at"])


def downgrade() -> None:
    op.drop_table("request_ids")
    op.drop_table("profiles")
