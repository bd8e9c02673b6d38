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
class NewPost:
    content: Content
    # The targets' accounts, in request order.
    account_ids: tuple[int, ...]
    schedule_time: datetime | None = None


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
