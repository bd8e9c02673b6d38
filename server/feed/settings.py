"""FeedService's settings, read from environment variables like the core ones."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class FeedSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    # The first page of a home timeline is cached this long at most (see docs/FEED.md).
    timeline_cache_ttl_s: int = 30
    # A new or deleted post invalidates the cached timelines of at most this many followers;
    # followers beyond it see the change when their entry expires (timeline_cache_ttl_s).
    timeline_fanout_limit: int = 10_000
    # A profile's cached counters (GetProfile); every change bumps them, so this only bounds
    # how long an unused entry stays in Redis.
    counters_cache_ttl_s: int = 3600

    # Activity events older than this are deleted by a periodic job, in batches.
    activity_retention_days: int = 90
    activity_purge_interval_s: float = 3600.0
    activity_purge_batch: int = 5000
