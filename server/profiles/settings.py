"""ProfileService's settings, read from environment variables like the core ones."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class ProfileSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    profile_cache_ttl_s: int = 3600
    # List and search pages, list counts and SummarizeProfiles: every profile write bumps them.
    listing_cache_ttl_s: int = 600
