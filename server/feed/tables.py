"""The feed tables (posts, follows, comments, likes, activity, profile counters)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from server.core.db import metadata

# Column lengths are the validation limits too.
POST_BODY_MAX = 5000
COMMENT_BODY_MAX = 2000
VERB_MAX = 32
OBJECT_MAX = 200
LOCATION_MAX = 100
LANGUAGE_MAX = 35

POST_COUNTERS = ("like_count", "comment_count", "share_count", "view_count")
PROFILE_COUNTERS = ("followers_count", "following_count", "posts_count")

# The counters this domain keeps about each profile, exact in the transaction that follows,
# unfollows, posts or deletes. A profile without a row has zero of each. They live here, not on
# the profiles table, so that feed writes touch only feed rows (docs/ARCHITECTURE.md).
profile_counters = Table(
    "profile_counters",
    metadata,
    Column(
        "profile_id",
        BigInteger,
        ForeignKey("profiles.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    *(
        Column(counter, BigInteger, nullable=False, server_default=text("0"))
        for counter in PROFILE_COUNTERS
    ),
    *(CheckConstraint(f"{c} >= 0", name=f"{c}_non_negative") for c in PROFILE_COUNTERS),
)

posts = Table(
    "posts",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column(
        "author_id",
        BigInteger,
        ForeignKey("profiles.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("body", String(POST_BODY_MAX), nullable=False),
    # Typed post fields (migration 0005_post_fields). Empty values are '' and '{}', not NULL,
    # so rows map to messages without a check per field; media and attributes are NULL when
    # absent, so most rows decode no JSON at all.
    Column("tags", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("location_district", String(LOCATION_MAX), nullable=False, server_default=text("''")),
    Column("language_code", String(LANGUAGE_MAX), nullable=False, server_default=text("''")),
    Column("media", JSONB),
    Column("attributes", JSONB),
    *(
        Column(counter, BigInteger, nullable=False, server_default=text("0"))
        for counter in POST_COUNTERS
    ),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    *(CheckConstraint(f"{c} >= 0", name=f"{c}_non_negative") for c in POST_COUNTERS),
    # Author feeds, timelines (one index range per followee) and streams.
    Index(
        "ix_posts_author_id_created_at_id",
        "author_id",
        text("created_at DESC"),
        text("id DESC"),
    ),
    # Tag search when a tag is common: walk posts newest first and filter.
    Index("ix_posts_created_at_id", text("created_at DESC"), text("id DESC")),
    # Tag search (tags @> ARRAY[...]): array element statistics estimate tag combinations.
    Index("ix_posts_tags", "tags", postgresql_using="gin"),
)

follows = Table(
    "follows",
    metadata,
    Column(
        "follower_id", BigInteger, ForeignKey("profiles.id", ondelete="CASCADE"), nullable=False
    ),
    Column(
        "followee_id", BigInteger, ForeignKey("profiles.id", ondelete="CASCADE"), nullable=False
    ),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The primary key also answers "whom does X follow" for timelines and relationships.
    PrimaryKeyConstraint("follower_id", "followee_id"),
    CheckConstraint("follower_id <> followee_id", name="not_self"),
    Index("ix_follows_followee_id_created_at", "followee_id", "created_at", "follower_id"),
    Index("ix_follows_follower_id_created_at", "follower_id", "created_at", "followee_id"),
)

comments = Table(
    "comments",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("post_id", BigInteger, ForeignKey("posts.id", ondelete="CASCADE"), nullable=False),
    Column("author_id", BigInteger, ForeignKey("profiles.id", ondelete="CASCADE"), nullable=False),
    Column("body", String(COMMENT_BODY_MAX), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_comments_post_id_created_at_id", "post_id", "created_at", "id"),
    # Deleting a profile cascades to its comments.
    Index("ix_comments_author_id", "author_id"),
)

likes = Table(
    "likes",
    metadata,
    Column("post_id", BigInteger, ForeignKey("posts.id", ondelete="CASCADE"), nullable=False),
    Column("profile_id", BigInteger, ForeignKey("profiles.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("post_id", "profile_id"),
    # Deleting a profile cascades to its likes.
    Index("ix_likes_profile_id", "profile_id"),
)

# Append-only. No foreign key on purpose: the log outlives the rows it talks about, and a
# retention job (server/feed/retention.py) keeps it bounded.
activity = Table(
    "activity",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("actor_id", BigInteger, nullable=False),
    Column("verb", String(VERB_MAX), nullable=False),
    Column("object", String(OBJECT_MAX), nullable=False),
    Column("payload", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index(
        "ix_activity_actor_id_created_at_id", "actor_id", text("created_at DESC"), text("id DESC")
    ),
    Index("ix_activity_created_at", "created_at"),
)
