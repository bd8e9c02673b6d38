"""The publishing domain's values, as the servicer hands them to the services."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from server.publishing.adapters.base import Content, Platform


@dataclass(frozen=True, slots=True)
class Page:
    size: int
    token: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a post goes out: at most one of an instant, a wall-clock time (in `time_zone`, or
    the business's if empty) or each account's next free posting slot; none of them: now."""

    instant: datetime | None = None
    local_time: datetime | None = None
    time_zone: str = ""
    next_free_slot: bool = False


@dataclass(frozen=True, slots=True)
class NewPost:
    content: Content
    # The targets' accounts, in request order.
    account_ids: tuple[int, ...]
    schedule: Schedule = Schedule()


@dataclass(frozen=True, slots=True)
class PostChanges:
    """UpdateBusinessPost: the paths of its mask, with the request's values. Fields not in
    `paths` keep the post's; `schedule` is None unless a schedule path was given. A schedule
    with only `time_zone` ("time_zone" alone in the mask) moves the post's local time to that
    zone (empty: the business's); a local time without "time_zone" in the mask keeps the
    post's zone."""

    paths: frozenset[str]
    content: Content
    account_ids: tuple[int, ...]
    schedule: Schedule | None


@dataclass(frozen=True, slots=True)
class PostFilter:
    # Worker states a target must be in (any target), from `state = "..."`.
    states: tuple[str, ...] | None = None
    account_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class DirectTokens:
    """ConnectAccount's tokens, obtained elsewhere."""

    platform: Platform
    access_token: str
    refresh_token: str | None
    expire_time: datetime | None
    scopes: tuple[str, ...]

    def __repr__(self) -> str:
        return f"DirectTokens(platform={self.platform!r}, expire_time={self.expire_time!r})"
