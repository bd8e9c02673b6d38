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
    """`values` are the posts columns the request sets (tags, location_district, ...)."""

    author_id: int
    body: str
    values: dict[str, Any]

    @property
    def tags(self) -> list[str]:
        return list(self.values.get("tags", []))


@dataclass(frozen=True)
class PostChanges:
    """The posts columns named (through their fields) in the update mask, and those fields."""

    values: dict[str, Any]
    fields: tuple[str, ...]
    # Set by a full replacement ("*"): the author it names, which must be the post's own.
    author_id: int | None = None


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
