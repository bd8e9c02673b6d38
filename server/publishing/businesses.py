"""Business use cases: create (idempotent), get, list (the caller's), update."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from socialhub.v1 import publishing_pb2
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.core import idempotency
from server.core.errors import NotFound
from server.core.pagination import PageTokens, next_token
from server.publishing import repository
from server.publishing.mapping import business_from_row, business_name
from server.publishing.model import Page

CREATE_SCOPE = "CreateBusiness"


def business_not_found(business_id: int) -> NotFound:
    return NotFound(f"{business_name(business_id)} does not exist", reason="BUSINESS_NOT_FOUND")


async def require_business(conn: AsyncConnection, business_id: int) -> None:
    if not await repository.business_exists(conn, business_id):
        raise business_not_found(business_id)


class BusinessService:
    def __init__(self, engine: AsyncEngine, tokens: PageTokens) -> None:
        self._engine = engine
        self._tokens = tokens

    async def create(
        self,
        display_name: str,
        time_zone: str,
        request_id: uuid.UUID | None,
        digest: str,
    ) -> publishing_pb2.Business:
        async with self._engine.begin() as conn:
            earlier = await idempotency.replay(conn, CREATE_SCOPE, request_id, digest, self._load)
            if earlier is not None:
                return earlier
            row = await repository.insert_business(conn, display_name, time_zone)
            if request_id is not None:
                await idempotency.record(conn, CREATE_SCOPE, request_id, row.id)
        return business_from_row(row)

    @staticmethod
    async def _load(conn: AsyncConnection, business_id: int) -> publishing_pb2.Business:
        row = await repository.get_business(conn, business_id)
        if row is None:
            raise business_not_found(business_id)
        return business_from_row(row)

    async def get(self, business_id: int) -> publishing_pb2.Business:
        async with self._engine.connect() as conn:
            return await self._load(conn, business_id)

    async def list_businesses(
        self, only: Sequence[int] | None, page: Page
    ) -> tuple[list[publishing_pb2.Business], str]:
        position = self._tokens.decode(page.token, page.fingerprint)
        after = int(position[0]) if position else None  # type: ignore[arg-type]
        async with self._engine.connect() as conn:
            rows = await repository.list_businesses(conn, only, after, page.size + 1)
        shown, token = next_token(
            self._tokens, rows, page.size, lambda row: (row.id,), page.fingerprint
        )
        return [business_from_row(row) for row in shown], token

    async def update(self, business_id: int, values: Mapping[str, Any]) -> publishing_pb2.Business:
        async with self._engine.begin() as conn:
            row = await repository.update_business(conn, business_id, values)
        if row is None:
            raise business_not_found(business_id)
        return business_from_row(row)
