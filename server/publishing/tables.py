"""The publishing tables: businesses, their accounts, posts, targets and publish attempts.

Tokens are stored only encrypted (server/publishing/tokens.py), as bytes. A target's
`state` is the worker's state machine (docs/PUBLISHING.md); every change of it is an UPDATE
conditional on the state it leaves, so two workers can never both send one target.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from server.core.db import metadata

# Column lengths are the validation limits too.
DISPLAY_NAME_MAX = 200
TIME_ZONE_MAX = 64
# The longest text any platform takes (Facebook's 63,206 characters).
TEXT_MAX = 63_206
URI_MAX = 2048
MEDIA_MAX = 10
THREAD_MAX = 25
TARGETS_MAX = 20

ACCOUNT_STATES = ("connected", "needs_reconnect", "disconnected")
# pending: due, waiting for a worker; claimed: a worker leased it; sending: the request may be
# on its way (an outcome nobody knows if the worker dies: reconciled before any resend).
TARGET_STATES = (
    "scheduled",
    "pending",
    "claimed",
    "sending",
    "deferred",
    "published",
    "failed",
    "needs_review",
)
ACTIVE_TARGET_STATES = ("scheduled", "pending", "claimed", "sending", "deferred")
FINAL_TARGET_STATES = ("published", "failed", "needs_review")
PLATFORMS = ("x", "linkedin", "facebook", "instagram")


def _one_of(column: str, values: tuple[str, ...]) -> CheckConstraint:
    listed = ", ".join(f"'{value}'" for value in values)
    return CheckConstraint(f"{column} IN ({listed})", name=f"{column}_known")


businesses = Table(
    "businesses",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("display_name", String(DISPLAY_NAME_MAX), nullable=False),
    Column("time_zone", String(TIME_ZONE_MAX), nullable=False, server_default="UTC"),
    Column("create_time", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("update_time", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

accounts = Table(
    "publishing_accounts",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column(
        "business_id",
        BigInteger,
        ForeignKey("businesses.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("platform", String(16), nullable=False),
    Column("platform_account_id", String(200), nullable=False),
    Column("display_name", String(DISPLAY_NAME_MAX), nullable=False, server_default=""),
    Column("handle", String(200), nullable=False, server_default=""),
    Column("avatar_uri", String(URI_MAX), nullable=False, server_default=""),
    Column("state", String(16), nullable=False, server_default="connected"),
    Column("state_reason", Text, nullable=False, server_default=""),
    # AES-GCM ciphertexts (tokens.py), the account's name as associated data. NULL once
    # disconnected.
    Column("access_token", LargeBinary),
    Column("refresh_token", LargeBinary),
    Column("token_expire_time", DateTime(timezone=True)),
    Column("refresh_expire_time", DateTime(timezone=True)),
    Column("scopes", ARRAY(Text), nullable=False, server_default="{}"),
    # Bumped by every new token: a worker refreshes after a 401 only if the token it used is
    # still the current one (else another replica already did).
    Column("token_version", Integer, nullable=False, server_default=text("0")),
    Column("create_time", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("update_time", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("business_id", "platform", "platform_account_id"),
    _one_of("state", ACCOUNT_STATES),
    _one_of("platform", PLATFORMS),
)

# StartAccountConnection's states, each usable once until it expires.
connections = Table(
    "publishing_connections",
    metadata,
    Column("state", String(64), primary_key=True),
    Column(
        "business_id",
        BigInteger,
        ForeignKey("businesses.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("platform", String(16), nullable=False),
    # The PKCE verifier, encrypted like the tokens (the state as associated data).
    Column("code_verifier", LargeBinary, nullable=False),
    Column("redirect_uri", String(URI_MAX), nullable=False),
    Column("expire_time", DateTime(timezone=True), nullable=False),
    Index("ix_publishing_connections_expire_time", "expire_time"),
)

posts = Table(
    "publishing_posts",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column(
        "business_id",
        BigInteger,
        ForeignKey("businesses.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("text", Text, nullable=False),
    Column("media_uris", ARRAY(Text), nullable=False, server_default="{}"),
    Column("first_comment", Text, nullable=False, server_default=""),
    Column("thread", ARRAY(Text), nullable=False, server_default="{}"),
    # When it was asked to go out; NULL: at once.
    Column("schedule_time", DateTime(timezone=True)),
    Column("create_time", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("update_time", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # ListBusinessPosts: a business's posts, newest first.
    Index("ix_publishing_posts_business_id_create_time_id", "business_id", "create_time", "id"),
)

targets = Table(
    "publishing_targets",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column(
        "post_id",
        BigInteger,
        ForeignKey("publishing_posts.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column(
        "account_id",
        BigInteger,
        ForeignKey("publishing_accounts.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("platform", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    # When a worker may take it next (pending, deferred, scheduled).
    Column("due_time", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The worker holding it (claimed, sending) and until when.
    Column("lease_owner", String(100)),
    Column("lease_expire_time", DateTime(timezone=True)),
    Column("attempt_count", Integer, nullable=False, server_default=text("0")),
    # When the current send began: reconciliation asks the platform for posts since then.
    Column("send_time", DateTime(timezone=True)),
    # Intermediate platform ids recorded between steps (Instagram's container, a thread's
    # tweets), so a later attempt resumes instead of redoing them.
    Column("checkpoints", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("platform_post_id", String(200), nullable=False, server_default=""),
    Column("uri", String(URI_MAX), nullable=False, server_default=""),
    Column("error", Text, nullable=False, server_default=""),
    Column("publish_time", DateTime(timezone=True)),
    Column("update_time", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("post_id", "account_id"),
    _one_of("state", TARGET_STATES),
    # The workers' claim: due work in due order, among the few active rows only.
    Index(
        "ix_publishing_targets_due_time",
        "due_time",
        postgresql_where=text("state IN ('pending', 'deferred', 'scheduled')"),
    ),
    # Leases that ran out (a worker died): found without scanning final rows.
    Index(
        "ix_publishing_targets_lease_expire_time",
        "lease_expire_time",
        postgresql_where=text("state IN ('claimed', 'sending')"),
    ),
    Index("ix_publishing_targets_account_id", "account_id"),
)

attempts = Table(
    "publish_attempts",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column(
        "target_id",
        BigInteger,
        ForeignKey("publishing_targets.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("post_id", BigInteger, nullable=False),
    Column("outcome", String(24), nullable=False),
    Column("response_code", String(64), nullable=False, server_default=""),
    Column("message", Text, nullable=False, server_default=""),
    Column("start_time", DateTime(timezone=True), nullable=False),
    Column("duration_ms", BigInteger, nullable=False),
    # ListPublishAttempts: a post's attempts, oldest first.
    Index("ix_publish_attempts_post_id_id", "post_id", "id"),
)

TABLES = (businesses, accounts, connections, posts, targets, attempts)
