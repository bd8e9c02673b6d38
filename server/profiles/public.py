"""What other domains may use of the profiles domain: its hooks and a few reads.

Other domains never touch the profiles table or its cache tags. They ask here whether a
profile exists (locking it against deletion for the rest of their transaction), list profile
ids for bulk loads, read counts over the whole directory (a DirectoryReader, which the profiles
domain provides on the DomainContext: cached, and fresh after every profile write), and plug
into ProfileService through two hooks: a deletion hook, called in the deleting transaction,
and the source of the counters another domain keeps about profiles (followers, following,
posts), which GetProfile and the profile listings show.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from server.profiles import repository
from server.profiles.demo import DISTRICTS, TOPICS
from server.profiles.directory import DirectoryReader, DirectoryStats, GroupCounts, PlatformCounts

__all__ = [
    "DISTRICTS",
    "TOPICS",
    "CounterSource",
    "DeletionHook",
    "DirectoryReader",
    "DirectoryStats",
    "GroupCounts",
    "PlatformCounts",
    "ProfileCounters",
    "ProfileHooks",
    "all_profile_ids",
    "lock_profiles",
    "profile_exists",
]

# Called inside the deleting transaction with the ids about to go; returns cache tags (of the
# hook's own domain) to invalidate once it commits.
DeletionHook = Callable[[AsyncConnection, Sequence[int]], Awaitable[list[str]]]


class ProfileCounters(NamedTuple):
    followers: int = 0
    following: int = 0
    posts: int = 0


NO_COUNTERS = ProfileCounters()


class CounterSource(Protocol):
    """Counters of profiles, fresh as of the call (their keeper decides how to cache them)."""

    async def counters_of(self, profile_id: int) -> ProfileCounters: ...

    async def counters_of_many(
        self, profile_ids: Sequence[int]
    ) -> Mapping[int, ProfileCounters]: ...


@dataclass
class ProfileHooks:
    """Filled by the domains that build on profiles, before the server starts."""

    deletion: list[DeletionHook] = field(default_factory=list)
    counters: CounterSource | None = None


async def profile_exists(conn: AsyncConnection, profile_id: int, *, lock: bool = False) -> bool:
    """With `lock`, the profile cannot be deleted before the caller's transaction ends."""
    return await repository.exists(conn, profile_id, lock=lock)


async def lock_profiles(conn: AsyncConnection, profile_ids: Sequence[int]) -> set[int]:
    """Lock the existing profiles of `profile_ids` against deletion, in id order (so two
    transactions locking overlapping sets cannot deadlock); return the ids that exist."""
    return await repository.lock_existing(conn, profile_ids)


async def all_profile_ids(conn: AsyncConnection) -> list[int]:
    return await repository.all_ids(conn)
