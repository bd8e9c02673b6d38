"""One typed settings object, read from environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the service. Each field is read from the upper-case env var of its name."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    # Where to serve. Port 0 picks a free port (tests).
    host: str = "127.0.0.1"
    port: int = 50051
    # Server processes sharing the port (SO_REUSEPORT): one process uses one core at most.
    workers: int = Field(default=1, ge=1)

    # External servers. When unset, embedded ones are started under STATE_DIR.
    database_url: str | None = None
    redis_url: str | None = None
    state_dir: Path = Path(".state")

    # "auto": load demo data on first start of an embedded database only.
    seed_demo: str = Field(default="auto", pattern="^(auto|always|never)$")
    demo_profiles: int = 3000

    db_pool_size: int = 10
    db_max_overflow: int = 10
    db_pool_timeout_s: float = 5.0
    db_pool_recycle_s: int = 1800
    # Testing each pooled connection before use costs a round trip per call. Without it, a
    # database restart fails the calls holding stale connections with UNAVAILABLE (retryable)
    # and SQLAlchemy then recycles the whole pool (docs/BENCHMARKS.md).
    db_pool_pre_ping: bool = False
    db_statement_timeout_ms: int = 10_000

    redis_timeout_s: float = 0.25
    # After a Redis error, skip Redis for this long instead of paying a timeout per call.
    redis_retry_after_s: float = 1.0

    # Off: every read goes to PostgreSQL (benchmarks compare both).
    cache_enabled: bool = True
    profile_cache_ttl_s: int = 3600
    listing_cache_ttl_s: int = 600
    top_profiles_cache_ttl_s: int = 300

    # The first page of a home timeline is cached this long at most (see docs/FEED.md).
    timeline_cache_ttl_s: int = 30
    # A new or deleted post invalidates the cached timelines of at most this many followers;
    # followers beyond it see the change when their entry expires (timeline_cache_ttl_s).
    timeline_fanout_limit: int = 10_000

    # Activity events older than this are deleted by a periodic job, in batches.
    activity_retention_days: int = 90
    activity_purge_interval_s: float = 3600.0
    activity_purge_batch: int = 5000
    # Request ids (idempotency keys) are kept a day; expired ones are purged this often.
    request_id_purge_interval_s: float = 3600.0

    # Signs page tokens. Set a secret of your own in production so tokens cannot be forged.
    page_token_secret: str = "socialhub-dev-page-token-secret"

    health_check_interval_s: float = 2.0
    shutdown_grace_s: float = 10.0
    max_concurrent_rpcs: int = 1000

    log_level: str = "INFO"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"
