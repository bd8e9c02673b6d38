"""Profile use cases: transactions, idempotency and cache policy."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from socialhub.v1 import profile_pb2
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.core import idempotency
from server.core.cache import Cache
from server.core.db import autocommit_reads, unique_violation
from server.core.errors import AlreadyExists, InvalidArgument, NotFound
from server.core.names import format_name
from server.core.pagination import PageTokens, next_token
from server.profiles import repository
from server.profiles.cache_tags import LISTINGS_TAG, profile_tag
from server.profiles.mapping import COLLECTION, profile_from_row
from server.profiles.model import ProfileFilter, ProfileOrder, ProfileValues
from server.profiles.public import NO_COUNTERS, ProfileCounters, ProfileHooks
from server.profiles.settings import ProfileSettings
from server.profiles.tables import (
    FILTER_COLUMNS,
    MAX_TOTAL_FOLLOWERS,
    PLATFORMS,
    total_followers,
)

CREATE_SCOPE = "CreateProfile"
# BatchGetProfiles' cache misses each read one row; this many at once keeps a batch of cold
# profiles from taking the whole connection pool from the calls beside it.
BATCH_GET_CONCURRENT_READS = 4


def _not_found(profile_id: int) -> NotFound:
    return NotFound(
        f"{format_name(COLLECTION, profile_id)} does not exist", reason="PROFILE_NOT_FOUND"
    )


async def _existing_profile(conn: AsyncConnection, profile_id: int) -> profile_pb2.Profile:
    row = await repository.get(conn, profile_id)
    if row is None:
        raise _not_found(profile_id)
    return profile_from_row(row)


def _raise_if_username_taken(error: exc.IntegrityError) -> None:
    if unique_violation(error) == "uq_profiles_username":
        raise AlreadyExists("that username is taken", reason="USERNAME_TAKEN") from None


class ProfileService:
    def __init__(
        self,
        engine: AsyncEngine,
        cache: Cache,
        tokens: PageTokens,
        settings: ProfileSettings,
        hooks: ProfileHooks,
    ) -> None:
        self._engine = engine
        self._reads = autocommit_reads(engine)
        self._cache = cache
        self._tokens = tokens
        self._settings = settings
        self._hooks = hooks

    # Counters (followers, following, posts) belong to the domain that keeps them; they are
    # laid over the profile data here, after the cache, so a follow never empties a listing.

    async def _counted(self, profile: profile_pb2.Profile, profile_id: int) -> profile_pb2.Profile:
        source = self._hooks.counters
        if source is not None:
            _set_counters(profile, await source.counters_of(profile_id))
        return profile

    async def _all_counted(self, profiles: Sequence[profile_pb2.Profile]) -> None:
        source = self._hooks.counters
        if source is None or not profiles:
            return
        ids = [_id_of(profile) for profile in profiles]
        counters = await source.counters_of_many(ids)
        for profile, profile_id in zip(profiles, ids, strict=True):
            _set_counters(profile, counters.get(profile_id, NO_COUNTERS))

    async def create(
        self, values: ProfileValues, request_id: uuid.UUID | None, request_digest: str
    ) -> profile_pb2.Profile:
        async with self._engine.begin() as conn:
            earlier = await idempotency.replay(
                conn, CREATE_SCOPE, request_id, request_digest, _existing_profile
            )
            if earlier is not None:
                return await self._counted(earlier, _id_of(earlier))
            try:
                row = await repository.insert(conn, values)
            except exc.IntegrityError as error:
                _raise_if_username_taken(error)
                raise
            if request_id is not None:
                await idempotency.record(conn, CREATE_SCOPE, request_id, row.id)
        await self._cache.invalidate(LISTINGS_TAG)
        return profile_from_row(row)

    async def _cached_profile(
        self, profile_id: int, reads: asyncio.Semaphore | None = None
    ) -> profile_pb2.Profile:
        """GetProfile's cache entry, without the counters."""

        async def load() -> bytes:
            if reads is None:
                row = await self._read_row(profile_id)
            else:
                async with reads:
                    row = await self._read_row(profile_id)
            if row is None:
                raise _not_found(profile_id)
            return profile_from_row(row).SerializeToString()

        payload = await self._cache.read_through(
            f"profile:{profile_id}",
            tag=profile_tag(profile_id),
            ttl_s=self._settings.profile_cache_ttl_s,
            load=load,
        )
        return profile_pb2.Profile.FromString(payload)

    async def _read_row(self, profile_id: int) -> Any | None:
        async with self._reads.connect() as conn:
            return await repository.get_for_read(conn, profile_id)

    async def get(self, profile_id: int) -> profile_pb2.Profile:
        return await self._counted(await self._cached_profile(profile_id), profile_id)

    async def batch_get(self, profile_ids: Sequence[int]) -> list[profile_pb2.Profile]:
        """All of `profile_ids`, in their order, or NOT_FOUND for the first one missing.

        Each profile comes from GetProfile's cache entry (hits cost one Redis read each, all
        in flight at once); the counters of all of them take one read, as in a list page."""
        reads = asyncio.Semaphore(BATCH_GET_CONCURRENT_READS)
        unique = list(dict.fromkeys(profile_ids))
        results = await asyncio.gather(
            *(self._cached_profile(i, reads) for i in unique), return_exceptions=True
        )
        found: dict[int, profile_pb2.Profile] = {}
        for profile_id, result in zip(unique, results, strict=True):
            if isinstance(result, BaseException):
                raise result  # the first in request order: NOT_FOUND names that one
            found[profile_id] = result
        profiles = []
        for profile_id in profile_ids:
            # A name given twice gets two messages, not one shared object.
            profile = profile_pb2.Profile()
            profile.CopyFrom(found[profile_id])
            profiles.append(profile)
        await self._all_counted(profiles)
        return profiles

    async def update(self, profile_id: int, values: ProfileValues) -> profile_pb2.Profile:
        async with self._engine.begin() as conn:
            current = await repository.get(conn, profile_id, for_update=True)
            if current is None:
                raise _not_found(profile_id)
            merged = {**current._mapping, **values}
            if not any(merged[f"{platform}_handle"] for platform in PLATFORMS):
                raise InvalidArgument.single(
                    "update_mask", "the update would leave the profile with no platform handle"
                )
            if total_followers(merged) > MAX_TOTAL_FOLLOWERS:
                raise InvalidArgument.single(
                    "profile", f"followers must add up to at most {MAX_TOTAL_FOLLOWERS}"
                )
            try:
                row = await repository.update_values(conn, profile_id, values)
            except exc.IntegrityError as error:
                _raise_if_username_taken(error)
                raise
        await self._cache.invalidate(profile_tag(profile_id), LISTINGS_TAG)
        return await self._counted(profile_from_row(row), profile_id)

    async def delete(self, profile_id: int) -> None:
        await self.batch_delete([profile_id], allow_missing=False)

    async def batch_delete(self, profile_ids: Sequence[int], *, allow_missing: bool) -> list[int]:
        """Delete all of `profile_ids` or, unless `allow_missing`, none of them."""
        async with self._engine.begin() as conn:
            # Other domains settle what they keep about these profiles (counters on the
            # profiles they followed, say) in this same transaction.
            affected_tags = [
                tag for hook in self._hooks.deletion for tag in await hook(conn, profile_ids)
            ]
            deleted = await repository.delete_many(conn, profile_ids)
            missing = sorted(set(profile_ids) - set(deleted))
            if missing and not allow_missing:
                raise _not_found(missing[0])
        await self._cache.invalidate(
            *(profile_tag(i) for i in deleted), *affected_tags, LISTINGS_TAG
        )
        return deleted

    async def list_profiles(
        self,
        profile_filter: ProfileFilter,
        order: ProfileOrder,
        page_size: int,
        page_token: str,
        request_fingerprint: str,
    ) -> profile_pb2.ListProfilesResponse:
        # Decoded before the cache is consulted: a tampered or foreign token never gets a page.
        position = self._tokens.decode(page_token, request_fingerprint)

        async def load() -> bytes:
            async with self._reads.connect() as conn:
                rows = await repository.list_page(
                    conn, profile_filter, order, position, page_size + 1
                )
            page, token = next_token(
                self._tokens,
                rows,
                page_size,
                lambda row: (row._mapping[order.column], row.id),
                request_fingerprint,
            )
            total = await self._count(profile_filter, request_fingerprint)
            return profile_pb2.ListProfilesResponse(
                profiles=[profile_from_row(row) for row in page],
                next_page_token=token,
                total_size=total,
            ).SerializeToString()

        payload = await self._cached_page(request_fingerprint, page_size, page_token, load)
        response = profile_pb2.ListProfilesResponse.FromString(payload)
        await self._all_counted(response.profiles)
        return response

    async def _cached_page(
        self,
        request_fingerprint: str,
        page_size: int,
        page_token: str,
        load: Callable[[], Awaitable[bytes]],
    ) -> bytes:
        """List and search pages change only when a listed profile does: every profile write
        bumps LISTINGS_TAG, so a cached page is never older than the last committed write.
        Counters are not part of the cached page (see _all_counted)."""
        key = hashlib.sha256(f"{request_fingerprint}|{page_size}|{page_token}".encode())
        return await self._cache.read_through(
            f"profiles:page:{key.hexdigest()[:40]}",
            tag=LISTINGS_TAG,
            ttl_s=self._settings.listing_cache_ttl_s,
            load=load,
        )

    async def _count(self, profile_filter: ProfileFilter, request_fingerprint: str) -> int:
        async def load() -> bytes:
            async with self._reads.connect() as conn:
                return str(await repository.count(conn, profile_filter)).encode()

        # Counting is the costly part of a List call; it changes only when profiles change.
        payload = await self._cache.read_through(
            f"profiles:count:{_filter_key(profile_filter)}",
            tag=LISTINGS_TAG,
            ttl_s=self._settings.listing_cache_ttl_s,
            load=load,
        )
        return int(payload)

    async def search(
        self,
        query: str,
        profile_filter: ProfileFilter,
        page_size: int,
        page_token: str,
        request_fingerprint: str,
    ) -> profile_pb2.SearchProfilesResponse:
        position = self._tokens.decode(page_token, request_fingerprint)

        async def load() -> bytes:
            async with self._reads.connect() as conn:
                rows = await repository.search_page(
                    conn, query, profile_filter, position, page_size + 1
                )
            page, token = next_token(
                self._tokens, rows, page_size, lambda row: (row.rank, row.id), request_fingerprint
            )
            return profile_pb2.SearchProfilesResponse(
                profiles=[profile_from_row(row) for row in page], next_page_token=token
            ).SerializeToString()

        payload = await self._cached_page(request_fingerprint, page_size, page_token, load)
        response = profile_pb2.SearchProfilesResponse.FromString(payload)
        await self._all_counted(response.profiles)
        return response

    async def summarize(self) -> profile_pb2.SummarizeProfilesResponse:
        async def load() -> bytes:
            async with self._reads.connect() as conn:
                options = await repository.filter_options(conn)
            return _summary_message(options).SerializeToString()

        payload = await self._cache.read_through(
            "profiles:summary",
            tag=LISTINGS_TAG,
            ttl_s=self._settings.listing_cache_ttl_s,
            load=load,
        )
        return profile_pb2.SummarizeProfilesResponse.FromString(payload)


def _id_of(profile: profile_pb2.Profile) -> int:
    return int(profile.name.rpartition("/")[2])


def _set_counters(profile: profile_pb2.Profile, counters: ProfileCounters) -> None:
    profile.followers_count = counters.followers
    profile.following_count = counters.following
    profile.posts_count = counters.posts


def _filter_key(profile_filter: ProfileFilter) -> str:
    # The dataclass repr is a complete, deterministic description of the filter.
    return hashlib.sha256(repr(profile_filter).encode()).hexdigest()[:32]


_OPTION_FIELDS = dict(
    zip(FILTER_COLUMNS, ("zones", "party_districts", "constituencies", "designations"), strict=True)
)


def _summary_message(
    options: dict[str, list[tuple[str, int]]],
) -> profile_pb2.SummarizeProfilesResponse:
    message = profile_pb2.SummarizeProfilesResponse()
    for column, values in options.items():
        getattr(message, _OPTION_FIELDS[column]).extend(
            profile_pb2.FilterValue(value=value, count=count) for value, count in values
        )
    return message
