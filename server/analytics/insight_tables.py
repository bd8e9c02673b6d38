"""The content-insight tables: the queue of changed feed posts, each post's insights, and their
aggregates per profile (what GetProfileInsights and creator search's filters read).

None references feed's posts table: analytics learns of posts only through feed's hooks and
reads (server.feed.public), and a deleted post's insights go when the worker handles its queue
row. They do go with their profile (ON DELETE CASCADE), like every analytics row.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from server.core.db import metadata

SENTIMENT_MAX = 8
CATEGORY_MAX = 40
LANGUAGE_MAX = 8
VERSION_MAX = 64
HASH_MAX = 64
# The last failure's "Class: message", cut to this many characters.
ERROR_MAX = 300

# The outbox feed's hook fills in the writing transaction (one row per post, however many
# changes) and the insights worker empties, claiming rows with FOR UPDATE SKIP LOCKED.
analytics_feed_queue = Table(
    "analytics_feed_queue",
    metadata,
    Column("post_id", BigInteger, primary_key=True),
    # Created or edited: its text must be (re)analysed.
    Column("needs_insight", Boolean, nullable=False),
    # Created or engaged with: its likes and comments must be recorded as a metric snapshot.
    Column("needs_metrics", Boolean, nullable=False),
    Column("enqueued_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Failed handlings of the post since it was last queued for its text (an outage of
    # PostgreSQL or Redis is not one), and the last one's error class and message.
    Column("failures", Integer, nullable=False, server_default=text("0")),
    Column("last_error", String(ERROR_MAX)),
    # Set when `failures` reached the worker's bound: the row stays (nothing is lost) but is no
    # longer claimed, until an edit of the post queues it again or an operator requeues it.
    Column("dead_lettered_at", DateTime(timezone=True)),
    # The worker claims the oldest live rows first, in this index's order (dead letters are
    # not in it, so however many pile up, a claim never reads past them).
    Index(
        "ix_analytics_feed_queue_claim",
        "enqueued_at",
        "post_id",
        postgresql_where=text("dead_lettered_at IS NULL"),
    ),
)

analytics_post_insights = Table(
    "analytics_post_insights",
    metadata,
    Column("post_id", BigInteger, primary_key=True),
    Column("profile_id", BigInteger, ForeignKey("profiles.id", ondelete="CASCADE"), nullable=False),
    Column("sentiment", String(SENTIMENT_MAX), nullable=False),
    Column("sentiment_score", Float(precision=53), nullable=False),
    Column("sentiment_confidence", Float(precision=53), nullable=False),
    Column("category", String(CATEGORY_MAX), nullable=False),
    Column("category_confidence", Float(precision=53), nullable=False),
    Column("language", String(LANGUAGE_MAX), nullable=False),
    Column("language_confidence", Float(precision=53), nullable=False),
    Column("model_version", String(VERSION_MAX), nullable=False),
    # sha256 of the text analysed: an edit that leaves the text alone is not analysed again.
    Column("text_hash", String(HASH_MAX), nullable=False),
    Column("post_create_time", DateTime(timezone=True), nullable=False),
    Column("post_update_time", DateTime(timezone=True), nullable=False),
    Column("analyze_time", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("sentiment_score BETWEEN -1 AND 1", name="sentiment_score_range"),
    # A profile's aggregates are recomputed from its rows; consistency reads recent ones.
    Index(
        "ix_analytics_post_insights_profile_id_post_create_time", "profile_id", "post_create_time"
    ),
)

# One row per profile with analysed posts, recomputed from analytics_post_insights by the
# worker in the transaction that changed them (so it never drifts from them).
analytics_profile_insights = Table(
    "analytics_profile_insights",
    metadata,
    Column(
        "profile_id",
        BigInteger,
        ForeignKey("profiles.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("posts", BigInteger, nullable=False),
    Column("sentiment_sum", Float(precision=53), nullable=False),
    Column("positive", BigInteger, nullable=False),
    Column("neutral", BigInteger, nullable=False),
    Column("negative", BigInteger, nullable=False),
    # Posts whose category confidence is at least CONFIDENT_CATEGORY.
    Column("confident", BigInteger, nullable=False),
    # {"Music": 3, ...} and {"en": 2, ...}: posts per category and per language.
    Column("categories", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("languages", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    # The most frequent (ties by name): what creator search's category and language filter.
    Column("primary_category", String(CATEGORY_MAX), nullable=False),
    Column("primary_language", String(LANGUAGE_MAX), nullable=False),
    CheckConstraint("posts > 0", name="posts_positive"),
    Index("ix_analytics_profile_insights_primary_category", "primary_category", "profile_id"),
    Index("ix_analytics_profile_insights_primary_language", "primary_language", "profile_id"),
)

INSIGHT_TABLES = (analytics_feed_queue, analytics_post_insights, analytics_profile_insights)
