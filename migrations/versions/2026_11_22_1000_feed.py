"""Feed: posts, follows, comments, likes, the activity log, and profile counters.

Revision ID: 0002_feed
Revises: 0001_profiles
Create Date: 2026-11-22 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002_feed"
down_revision = "0001_profiles"
branch_labels = None
depends_on = None

PROFILE_COUNTERS = ("followers_count", "following_count", "posts_count")
POST_COUNTERS = ("like_count", "comment_count", "share_count", "view_count")


def _created_at() -> sa.Column[object]:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    )


def upgrade() -> None:
    for counter in PROFILE_COUNTERS:
        op.add_column(
            "profiles",
            sa.Column(counter, sa.BigInteger, nullable=False, server_default="0"),
        )
        op.create_check_constraint(
            f"ck_profiles_{counter}_non_negative", "profiles", f"{counter} >= 0"
        )

    op.create_table(
        "posts",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column(
            "author_id",
            sa.BigInteger,
            sa.ForeignKey("profiles.id", name="fk_posts_author_id_profiles", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("body", sa.String(5000), nullable=False),
        sa.Column(
            "metadata",
            postgresql.JSONB,
            nullable=False,
            server_default=sa.text("'{}'::jsonb"),
        ),
        *(
            sa.Column(counter, sa.BigInteger, nullable=False, server_default="0")
            for counter in POST_COUNTERS
        ),
        _created_at(),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("id", name="pk_posts"),
        *(
            sa.CheckConstraint(f"{c} >= 0", name=f"ck_posts_{c}_non_negative")
            for c in POST_COUNTERS
        ),
    )
    op.create_index(
        "ix_posts_author_id_created_at_id",
        "posts",
        ["author_id", sa.text("created_at DESC"), sa.text("id DESC")],
    )
    op.create_index(
        "ix_posts_created_at_id", "posts", [sa.text("created_at DESC"), sa.text("id DESC")]
    )
    op.create_index(
        "ix_posts_metadata",
        "posts",
        ["metadata"],
        postgresql_using="gin",
        postgresql_ops={"metadata": "jsonb_path_ops"},
    )

    op.create_table(
        "follows",
        sa.Column(
            "follower_id",
            sa.BigInteger,
            sa.ForeignKey(
                "profiles.id", name="fk_follows_follower_id_profiles", ondelete="CASCADE"
            ),
            nullable=False,
        ),
        sa.Column(
            "followee_id",
            sa.BigInteger,
            sa.ForeignKey(
                "profiles.id", name="fk_follows_followee_id_profiles", ondelete="CASCADE"
            ),
            nullable=False,
        ),
        _created_at(),
        sa.PrimaryKeyConstraint("follower_id", "followee_id", name="pk_follows"),
        sa.CheckConstraint("follower_id <> followee_id", name="ck_follows_not_self"),
    )
    op.create_index(
        "ix_follows_followee_id_created_at",
        "follows",
        ["followee_id", "created_at", "follower_id"],
    )
    op.create_index(
        "ix_follows_follower_id_created_at",
        "follows",
        ["follower_id", "created_at", "followee_id"],
    )

    op.create_table(
        "comments",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column(
            "post_id",
            sa.BigInteger,
            sa.ForeignKey("posts.id", name="fk_comments_post_id_posts", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "author_id",
            sa.BigInteger,
            sa.ForeignKey("profiles.id", name="fk_comments_author_id_profiles", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("body", sa.String(2000), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_comments"),
    )
    op.create_index(
        "ix_comments_post_id_created_at_id", "comments", ["post_id", "created_at", "id"]
    )
    op.create_index("ix_comments_author_id", "comments", ["author_id"])

    op.create_table(
        "likes",
        sa.Column(
            "post_id",
            sa.BigInteger,
            sa.ForeignKey("posts.id", name="fk_likes_post_id_posts", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "profile_id",
            sa.BigInteger,
            sa.ForeignKey("profiles.id", name="fk_likes_profile_id_profiles", ondelete="CASCADE"),
            nullable=False,
        ),
        _created_at(),
        sa.PrimaryKeyConstraint("post_id", "profile_id", name="pk_likes"),
    )
    op.create_index("ix_likes_profile_id", "likes", ["profile_id"])

    op.create_table(
        "activity",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("actor_id", sa.BigInteger, nullable=False),
        sa.Column("verb", sa.String(32), nullable=False),
        sa.Column("object", sa.String(200), nullable=False),
        sa.Column(
            "payload", postgresql.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")
        ),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_activity"),
    )
    op.create_index(
        "ix_activity_actor_id_created_at_id",
        "activity",
        ["actor_id", sa.text("created_at DESC"), sa.text("id DESC")],
    )
    op.create_index("ix_activity_created_at", "activity", ["created_at"])


def downgrade() -> None:
    op.drop_table("activity")
    op.drop_table("likes")
    op.drop_table("comments")
    op.drop_table("follows")
    op.drop_table("posts")
    for counter in reversed(PROFILE_COUNTERS):
        op.drop_constraint(f"ck_profiles_{counter}_non_negative", "profiles", type_="check")
        op.drop_column("profiles", counter)
