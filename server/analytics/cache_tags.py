"""The cache tag of one profile's analytics: every ingestion for the profile bumps it."""

from __future__ import annotations


def profile_tag(profile_id: int) -> str:
    return f"analytics:profile:{profile_id}"
