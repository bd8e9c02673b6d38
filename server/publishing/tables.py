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
    "cancelled",
)
ACTIVE_TARGET_STATES = ("scheduled", "pending", "claimed", "sending", "deferred")
FINAL_TARGET_STATES = ("published", "failed", "needs_review", "cancelled")
# A target in these states holds no posting slot (another post may take it).
SLOT_FREE_STATES = ("failed", "cancelled")
LOCAL_TIME_MAX = 19  # "2026-03-29T09:30:00"
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
    # Weekly posting slots in the business's time zone, valid and sorted:
    # [{"day_of_week": 1, "local_time": "09:00"}, ...] (scheduling.py).
    Column("posting_schedule", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
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
    # When it was asked to go out; NULL: at once (or in posting slots: see the targets).
    Column("schedule_time", DateTime(timezone=True)),
    # A wall-clock schedule as given ("2026-03-29T09:30:00") and the zone it was resolved in
    # (the business's if none was given); schedule_time holds the instant it resolved to.
    Column("schedule_local_time", String(LOCAL_TIME_MAX)),
    Column("schedule_time_zone", String(TIME_ZONE_MAX)),
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
    # Sends started (cut-off ones included), and transient failures recorded (the platform's
    # 5xx, timeouts): the worker's two bounds (publisher.py, WorkerSettings).
    Column("attempt_count", Integer, nullable=False, server_default=text("0")),
    Column("failure_count", Integer, nullable=False, server_default=text("0")),
    # When the current send began: reconciliation asks the platform for posts since then.
    Column("send_time", DateTime(timezone=True)),
    # Intermediate platform ids recorded between steps (Instagram's container, a thread's
    # tweets), so a later attempt resumes instead of redoing them.
    Column("checkpoints", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("platform_post_id", String(200), nullable=False, server_default=""),
    Column("uri", String(URI_MAX), nullable=False, server_default=""),
    Column("error", Text, nullable=False, server_default=""),
    Column("publish_time", DateTime(timezone=True)),
    # The posting slot it holds (CreateBusinessPost's next_free_slot); NULL: none.
    Column("slot_time", DateTime(timezone=True)),
    Column("update_time", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("post_id", "account_id"),
    # One post per slot of an account: the account row lock picks slots one at a time; this
    # index proves it (a second holder is an IntegrityError, never a double booking).
    Index(
        "uq_publishing_targets_account_id_slot_time",
        "account_id",
        "slot_time",
        unique=True,
        postgresql_where=text("slot_time IS NOT NULL AND state NOT IN ('failed', 'cancelled')"),
    ),
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
    # An account's targets (the accounts' cascade), and its posts published in the last 24
    # hours (X's daily post cap, server/publishing/ratelimits.py).
    Index("ix_publishing_targets_account_id_publish_time", "account_id", "publish_time"),
    # The app's X posts published in the last 24 hours (X's per-app daily post cap).
    Index("ix_publishing_targets_platform_state_publish_time", "platform", "state", "publish_time"),
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

# The platforms' rate limits in force, shared by every replica (ratelimits.py): a gate key
# (an account, or a whole app) closed until `blocked_until`. Redis holds the same blocks for
# the fast path; this table is the truth when Redis is down or was emptied.
rate_limits = Table(
    "publishing_rate_limits",
    metadata,
    Column("platform", String(16), primary_key=True),
    # "account" (key: the account's id) or "app" (key: the app, "x", "linkedin", "meta").
    Column("scope", String(16), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("blocked_until", DateTime(timezone=True), nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("update_time", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

TABLES = (businesses, accounts, connections, posts, targets, attempts, rate_limits)
