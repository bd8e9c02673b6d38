"""The cache tag of one profile's analytics: every ingestion for the profile bumps it."""

from __future__ import annotations


def profile_tag(profile_id: int) -> str:
    return f"analytics:profile:{profile_id}"


def post_insights_tag(post_id: int) -> str:
    """The tag of one FeedService post's cached insights: the insights worker bumps it."""
    return f"analytics:post-insights:{post_id}"
