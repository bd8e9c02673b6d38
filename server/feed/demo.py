"""Deterministic demo posts, follows, comments and likes for `socialhub seed` and first start."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from server.profiles.public import DISTRICTS, TOPICS

POST_COLUMNS = (
    "author_id",
    "body",
    "tags",
    "location_district",
    "language_code",
    "media",
    "created_at",
    "updated_at",
)
FOLLOW_COLUMNS = ("follower_id", "followee_id", "created_at")
COMMENT_COLUMNS = ("post_id", "author_id", "body", "created_at")
LIKE_COLUMNS = ("post_id", "profile_id", "created_at")

TAGS = (
    *(topic.replace("'", "").replace(" ", "-") for topic in TOPICS),
    "townhall",
    "volunteers",
    "budget",
    "election",
    "community",
)
OPENERS = (
    "Met residents today about",
    "Our plan for",
    "Thank you to everyone who came to talk about",
    "New figures on",
    "Join us this weekend to discuss",
    "Proud of the progress on",
    "Questions answered live on",
)
CLOSERS = (
    "More soon.",
    "Share your ideas below.",
    "Every voice counts.",
    "Details in the thread.",
    "See you there!",
    "",
)
REPLIES = (
    "Great work, thank you!",
    "When will this reach our ward?",
    "Please look at the bus routes too.",
    "Count me in.",
    "What is the budget for this?",
    "Well said.",
    "Shared with my neighbours.",
)
SPAN = timedelta(days=120)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def post_records(
    author_ids: Sequence[int], count: int, seed: int = 11, start: int = 0
) -> Iterator[tuple[Any, ...]]:
    """`count` posts in POST_COLUMNS order, spread over the last 120 days."""
    rng = random.Random(seed * 1_000_003 + start)
    now = _now()
    for _ in range(count):
        tags = rng.sample(TAGS, rng.randint(1, 3))
        district = rng.choice(DISTRICTS)
        media = None
        if rng.random() < 0.3:
            # The stored form of Post.media (server/feed/mapping.py).
            media = json.dumps(
                [
                    {
                        "kind": rng.choice(("image", "video")),
                        "url": f"https://media.example.org/{rng.getrandbits(48):012x}",
                    }
                ]
            )
        topic = tags[0].replace("-", " ")
        body = f"{rng.choice(OPENERS)} {topic}. {rng.choice(CLOSERS)}".strip()
        created = now - SPAN * rng.random() ** 2  # more posts recently
        yield (rng.choice(author_ids), body, tags, district, "en", media, created, created)


def follow_records(
    profile_ids: Sequence[int], count: int, seed: int = 13
) -> Iterator[tuple[Any, ...]]:
    """About `count` distinct follows; popular profiles (low index) attract more followers."""
    if len(profile_ids) < 2:
        return
    rng = random.Random(seed)
    now = _now()
    seen: set[tuple[int, int]] = set()
    attempts = 0
    limit = min(count, len(profile_ids) * (len(profile_ids) - 1))
    while len(seen) < limit and attempts < limit * 4:
        attempts += 1
        follower = rng.choice(profile_ids)
        followee = profile_ids[min(int(rng.paretovariate(1.2)) - 1, len(profile_ids) - 1)]
        if rng.random() < 0.5:
            followee = rng.choice(profile_ids)
        pair = (follower, followee)
        if follower == followee or pair in seen:
            continue
        seen.add(pair)
        yield (follower, followee, now - SPAN * rng.random())


def comment_records(
    posts: Sequence[tuple[int, datetime]], profile_ids: Sequence[int], count: int, seed: int = 17
) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(seed)
    now = _now()
    for _ in range(count if posts else 0):
        post_id, created = rng.choice(posts)
        at = min(created + timedelta(minutes=rng.randint(1, 60 * 48)), now)
        yield (post_id, rng.choice(profile_ids), rng.choice(REPLIES), at)


def like_records(
    posts: Sequence[tuple[int, datetime]], profile_ids: Sequence[int], count: int, seed: int = 19
) -> Iterator[tuple[Any, ...]]:
    """About `count` distinct (post, profile) likes."""
    rng = random.Random(seed)
    now = _now()
    seen: set[tuple[int, int]] = set()
    limit = min(count, len(posts) * len(profile_ids))
    attempts = 0
    while len(seen) < limit and attempts < limit * 4:
        attempts += 1
        post_id, created = rng.choice(posts)
        pair = (post_id, rng.choice(profile_ids))
        if pair in seen:
            continue
        seen.add(pair)
        yield (*pair, min(created + timedelta(minutes=rng.randint(1, 600)), now))
