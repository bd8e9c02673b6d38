"""A connected account's working credentials: decrypted on use, refreshed before they expire
and after the platform refuses them, one refresh per account at a time across replicas.

The refresh runs while holding the account's row lock (SELECT ... FOR UPDATE), so every other
worker that wants the same account waits and then reads the new token instead of refreshing
again: X's refresh tokens are single-use, and a second refresh with the old one would be
refused (and the account lost). Whoever gets the lock re-reads the row first: a token newer
than the one that failed (token_version), or no longer near expiry, means another replica
already refreshed it. The lock is held for one HTTP call at most, bounded by its timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from server.publishing import repository
from server.publishing.adapters.base import (
    Adapter,
    Credentials,
    Platform,
    TokenGrant,
    TokenRefused,
    TokenUnavailable,
)
from server.publishing.mapping import account_name
from server.publishing.tokens import Sealer

log = logging.getLogger("socialhub.publishing")

# A transient failure at the token endpoint is retried this many times in all, with
# exponential backoff and jitter, before the attempt gives up (the account stays connected).
REFRESH_ATTEMPTS = 3


class AccountUnusable(Exception):
    """The account cannot publish: disconnected, or a person must reconnect it."""


@dataclass(frozen=True, slots=True)
class Working:
    """Credentials to publish with, and the token version they came from."""

    credentials: Credentials
    version: int


def encrypted_grant(
    cipher: Sealer, name: str, grant: TokenGrant, *, keep_refresh: bytes | None = None
) -> dict[str, Any]:
    """The account columns a token grant sets (tokens encrypted for account `name`)."""
    refresh = (
        cipher.encrypt(grant.refresh_token, name)
        if grant.refresh_token is not None
        else keep_refresh
    )
    values: dict[str, Any] = {
        "access_token": cipher.encrypt(grant.access_token, name),
        "refresh_token": refresh,
        "token_expire_time": grant.expires_at,
    }
    if grant.refresh_expires_at is not None:
        values["refresh_expire_time"] = grant.refresh_expires_at
    if grant.scopes:
        values["scopes"] = list(grant.scopes)
    return values


class TokenKeeper:
    def __init__(
        self,
        engine: AsyncEngine,
        cipher: Sealer,
        adapters: Mapping[Platform, Adapter],
        refresh_margin_s: float,
    ) -> None:
        self._engine = engine
        self._cipher = cipher
        self._adapters = adapters
        self._margin = timedelta(seconds=refresh_margin_s)

    async def credentials(self, account_id: int) -> Working:
        """Working credentials, refreshed first when they expire within the margin."""
        async with self._engine.connect() as conn:
            row = self._usable(await repository.account_secrets(conn, account_id))
        if self._expiring(row) and row.refresh_token is not None:
            return await self._refresh(account_id, failed_version=None)
        return self._working(row)

    async def refresh_after_refusal(self, account_id: int, failed_version: int) -> Working:
        """The platform refused the token of `failed_version`: refresh it (once for everyone).
        Raises AccountUnusable if it cannot be refreshed for good."""
        return await self._refresh(account_id, failed_version=failed_version)

    async def _refresh(self, account_id: int, failed_version: int | None) -> Working:
        # An unusable account is marked in the transaction, which must commit before the
        # error is raised (raising inside it would roll the mark back).
        async with self._engine.begin() as conn:
            working, unusable = await self._refresh_locked(conn, account_id, failed_version)
        if unusable is not None:
            raise AccountUnusable(unusable)
        assert working is not None
        return working

    async def _refresh_locked(
        self, conn: AsyncConnection, account_id: int, failed_version: int | None
    ) -> tuple[Working | None, str | None]:
        row = self._usable(await repository.account_secrets(conn, account_id, lock=True))
        already_done = (
            row.token_version != failed_version
            if failed_version is not None
            else not self._expiring(row)
        )
        if already_done:
            return self._working(row), None
        name = account_name(row.business_id, row.id)
        if row.refresh_token is None:
            why = "the platform refused the access token, and there is no refresh token"
            await repository.mark_needs_reconnect(conn, account_id, why)
            return None, f"reconnect the account: {why}"
        refresh_token = self._cipher.decrypt(row.refresh_token, name)
        adapter = self._adapters[Platform(row.platform)]
        try:
            grant = await self._refresh_with_retries(adapter, refresh_token)
        except TokenRefused as refused:
            why = f"the platform refused the refresh token: {refused}"
            await repository.mark_needs_reconnect(conn, account_id, why)
            log.warning("account %s needs reconnecting: %s", name, refused)
            return None, f"reconnect the account: {why}"
        values = encrypted_grant(self._cipher, name, grant, keep_refresh=row.refresh_token)
        await repository.store_tokens(conn, account_id, values)
        log.info("refreshed the tokens of %s", name)
        credentials = Credentials(row.platform_account_id, grant.access_token)
        return Working(credentials, row.token_version + 1), None

    @staticmethod
    async def _refresh_with_retries(adapter: Adapter, refresh_token: str) -> TokenGrant:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(TokenUnavailable),
            stop=stop_after_attempt(REFRESH_ATTEMPTS),
            wait=wait_random_exponential(multiplier=0.2, max=2.0),
            reraise=True,
        ):
            with attempt:
                return await adapter.refresh(refresh_token)
        raise AssertionError("unreachable: AsyncRetrying reraises")

    def _expiring(self, row: Any) -> bool:
        expires = row.token_expire_time
        return expires is not None and expires - self._margin <= datetime.now(UTC)

    @staticmethod
    def _usable(row: Any) -> Any:
        if row is None or row.state == "disconnected" or row.access_token is None:
            raise AccountUnusable("the account is disconnected")
        if row.state == "needs_reconnect":
            raise AccountUnusable(f"reconnect the account: {row.state_reason}")
        return row

    def _working(self, row: Any) -> Working:
        token = self._cipher.decrypt(row.access_token, account_name(row.business_id, row.id))
        return Working(Credentials(row.platform_account_id, token), row.token_version)
