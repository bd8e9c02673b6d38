"""Domain types of the feed domain: what the service takes, independent of protobuf."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Verb(enum.StrEnum):
    """What an activity event records; stored as text in activity.verb."""

    POST_CREATED = "post.created"
    POST_UPDATED = "post.updated"
    POST_DELETED = "post.deleted"
    FOLLOWED = "profile.followed"
    UNFOLLOWED = "profile.unfollowed"
    COMMENTED = "comment.created"
    COMMENT_DELETED = "comment.deleted"
    LIKED = "post.liked"
    UNLIKED = "post.unliked"


@dataclass(frozen=True)
class NewPost:
    author_id: int
    body: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class PostChanges:
    """Only the fields named in the update mask are set."""

    body: str | None = None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class Page:
    """One page request: the resolved size, the raw token and what it must be bound to."""

    size: int
    token: str
    fingerprint: str


@dataclass(frozen=True)
class StreamRequest:
    batch_size: int
    cursor: str
    fingerprint: str
