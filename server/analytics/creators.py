"""Creator search: keyset pages over analytics_creators, which ingestion keeps current.

Not cached: every ingestion of any profile can move a creator in the order, so a cached page
would be retired by nearly every write of a live feed; each page is one index range instead.
"""

from __future__ import annotations

from typing import Any

from socialhub.v1 import analytics_pb2
from sqlalchemy.ext.asyncio import AsyncEngine

from server.analytics import insight_repository, repository
from server.analytics.mapping import ENUM_BY_PLATFORM
from server.analytics.model import CreatorSearch
from server.core.db import autocommit_reads
from server.core.pagination import PageTokens, next_token


class CreatorSearches:
    def __init__(self, engine: AsyncEngine, tokens: PageTokens) -> None:
        self._reads = autocommit_reads(engine)
        self._tokens = tokens

    async def search(
        self, search: CreatorSearch, page_size: int, page_token: str, request_fingerprint: str
    ) -> analytics_pb2.SearchCreatorsResponse:
        position = self._tokens.decode(page_token, request_fingerprint)
        async with self._reads.connect() as conn:
            rows = await repository.search_creators(conn, search, position, page_size + 1)
            page, token = next_token(
                self._tokens,
                rows,
                page_size,
                lambda row: (getattr(row, search.order_column), row.profile_id),
                request_fingerprint,
            )
            # Apart from the search's statement, one primary-key read for the page: the
            # statement itself stays one range of the order's index when no content filter
            # is asked for.
            topics = await insight_repository.primary_topics(conn, [r.profile_id for r in page])
        return analytics_pb2.SearchCreatorsResponse(
            creators=[_creator(row, search, topics.get(row.profile_id, ("", ""))) for row in page],
            next_page_token=token,
        )


def _creator(row: Any, search: CreatorSearch, topics: tuple[str, str]) -> analytics_pb2.Creator:
    return analytics_pb2.Creator(
        primary_category=topics[0],
        primary_language_code=topics[1],
        profile=f"profiles/{row.profile_id}",
        platform=ENUM_BY_PLATFORM[row.platform],  # type: ignore[arg-type]
        followers=row.followers,
        post_count=row.posts,
        engagement=row.engagement,
        engagement_rate=row.engagement_rate,
        audience_country_share=float(row.countries.get(search.audience_country, 0.0))
        if search.audience_country
        else 0.0,
    )
