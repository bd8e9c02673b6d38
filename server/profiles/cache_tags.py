"""The cache tags of profile data, shared with the domains that change profile counters."""

from __future__ import annotations

# Every list, search and SummarizeProfiles page and every count: one write bumps them all.
LISTINGS_TAG = "profiles"


def profile_tag(profile_id: int) -> str:
    """GetProfile's entry for one profile."""
    return f"profile:{profile_id}"
