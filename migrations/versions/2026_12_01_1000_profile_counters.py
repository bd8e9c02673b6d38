"""Profile counters move to a table of the feed domain, which keeps them.

Followers, following and posts counts are FeedService's data: kept in its own table, a follow
or a post writes only feed rows and invalidates only feed cache entries (docs/ARCHITECTURE.md).
A profile without a row has zero of each.

Revision ID: 0003_profile_counters
Revises: 0002_feed
Create Date: 2026-12-01 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_profile_counters"
down_revision = "0002_feed"
branch_labels = None
depends_on = None

COUNTERS = ("followers_count", "following_count", "posts_count")


def upgrade() -> None:
    op.create_table(
        "profile_counters",
        sa.Column(
            "profile_id",
            sa.BigInteger,
            sa.ForeignKey(
                "profiles.id", name="fk_profile_counters_profile_id_profiles", ondelete="CASCADE"
            ),
            primary_key=True,
        ),
        *(sa.Column(c, sa.BigInteger, nullable=False, server_default="0") for c in COUNTERS),
        *(
            sa.CheckConstraint(f"{c} >= 0", name=op.f(f"ck_profile_counters_{c}_non_negative"))
            for c in COUNTERS
        ),
        sa.PrimaryKeyConstraint("profile_id", name="pk_profile_counters"),
    )
    columns = ", ".join(COUNTERS)
    op.execute(
        f"INSERT INTO profile_counters (profile_id, {columns}) "
        f"SELECT id, {columns} FROM profiles "
        f"WHERE followers_count > 0 OR following_count > 0 OR posts_count > 0"
    )
    for counter in COUNTERS:
        op.drop_constraint(f"ck_profiles_{counter}_non_negative", "profiles", type_="check")
        op.drop_column("profiles", counter)


def downgrade() -> None:
    for counter in COUNTERS:
        op.add_column(
            "profiles", sa.Column(counter, sa.BigInteger, nullable=False, server_default="0")
        )
        op.create_check_constraint(
            f"ck_profiles_{counter}_non_negative", "profiles", f"{counter} >= 0"
        )
    assignments = ", ".join(f"{c} = counters.{c}" for c in COUNTERS)
    op.execute(
        f"UPDATE profiles SET {assignments} FROM profile_counters counters "
        f"WHERE counters.profile_id = profiles.id"
    )
    op.drop_table("profile_counters")
