"""AnalyticsService's settings, read from environment variables like the core ones."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class AnalyticsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    # Reports of a profile (and GetDirectoryStats): every ingestion for that profile, and every
    # profile write for the directory, invalidates them, so this only bounds unused entries.
    analytics_cache_ttl_s: int = 3600
    # Raw metric snapshots are kept this many whole months before the current one; older
    # partitions are dropped, and older snapshots refused. Rollups are kept for good.
    analytics_snapshot_retention_months: int = 24
    # Monthly partitions made ahead of time by the partition job.
    analytics_partitions_ahead_months: int = 3
    analytics_partition_interval_s: float = 3600.0
    # Live events (WatchProfileMetrics) kept per profile in its Redis stream (MAXLEN ~).
    analytics_live_max_events: int = 1000
    # Content insights (docs/ANALYTICS.md, "Content insights"). Only the insights worker's
    # writes change them, and it invalidates what it changed, so entries may live for days.
    analytics_insights_cache_ttl_s: int = 3 * 86400
    # The insights worker of this replica: off for a replica that should only answer (the
    # others, or `socialhub insights backfill`, then empty the queue).
    analytics_insights_worker: bool = True
    # Queued posts handled per batch (one transaction), and how often an idle worker looks.
    analytics_insights_batch_size: int = 200
    analytics_insights_poll_s: float = 0.5
