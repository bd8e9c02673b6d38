"""Connected accounts: OAuth 2.0 with PKCE, direct connection, reads, disconnection.

The authorization code flow: StartAccountConnection stores a random `state` bound to the
business and platform, with the PKCE verifier (encrypted like the tokens), and returns the
platform's consent URL carrying the state and the verifier's S256 challenge.
CompleteAccountConnection takes the state once (deleted as it is read), checks it was issued
for this business and is not expired, exchanges the code with the verifier, asks the platform
whose account the token reaches, and stores it. A state cannot be replayed, used for another
business, or used without the verifier only this service holds.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from socialhub.v1 import publishing_pb2
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.core.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from server.core.pagination import PageTokens, next_token
from server.publishing import repository
from server.publishing.adapters.base import (
    Adapter,
    Identity,
    Platform,
    TokenGrant,
    TokenRefused,
    TokenUnavailable,
)
from server.publishing.businesses import require_business
from server.publishing.credentials import encrypted_grant
from server.publishing.mapping import account_from_row, account_name
from server.publishing.model import DirectTokens, Page
from server.publishing.scheduling import Slot
from server.publishing.settings import PublishingSettings
from server.publishing.tokens import Sealer

log = logging.getLogger("socialhub.publishing")


def account_not_found(business_id: int, account_id: int) -> NotFound:
    return NotFound(
        f"{account_name(business_id, account_id)} does not exist", reason="ACCOUNT_NOT_FOUND"
    )


def _invalid_state() -> InvalidArgument:
    return InvalidArgument.single(
        "state",
        "is not a connection state issued for this business, or was used or expired; "
        "start the connection again",
        reason="CONNECTION_STATE_INVALID",
    )


def pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class AccountService:
    def __init__(
        self,
        engine: AsyncEngine,
        tokens: PageTokens,
        cipher: Sealer,
        adapters: Mapping[Platform, Adapter],
        settings: PublishingSettings,
    ) -> None:
        self._engine = engine
        self._tokens = tokens
        self._cipher = cipher
        self._adapters = adapters
        self._settings = settings

    # --- OAuth 2.0 ---

    async def start_connection(
        self, business_id: int, platform: Platform
    ) -> publishing_pb2.StartAccountConnectionResponse:
        self._check_configured(platform)
        state = secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)
        expire_time = datetime.now(UTC) + timedelta(seconds=self._settings.oauth_state_ttl_s)
        redirect_uri = self._settings.oauth_redirect_uri
        async with self._engine.begin() as conn:
            await require_business(conn, business_id)
            await repository.insert_connection(
                conn,
                {
                    "state": state,
                    "business_id": business_id,
                    "platform": platform.value,
                    "code_verifier": self._cipher.encrypt(verifier, state),
                    "redirect_uri": redirect_uri,
                    "expire_time": expire_time,
                },
            )
        uri = self._adapters[platform].authorize_url(
            state=state, code_challenge=pkce_challenge(verifier), redirect_uri=redirect_uri
        )
        response = publishing_pb2.StartAccountConnectionResponse(authorize_uri=uri, state=state)
        response.expire_time.FromDatetime(expire_time)
        return response

    async def complete_connection(
        self, business_id: int, state: str, code: str
    ) -> publishing_pb2.Account:
        async with self._engine.begin() as conn:
            taken = await repository.take_connection(conn, state, business_id)
        if taken is None or taken.expire_time <= datetime.now(UTC):
            raise _invalid_state()
        platform = Platform(taken.platform)
        adapter = self._adapters[platform]
        verifier = self._cipher.decrypt(taken.code_verifier, state)
        grant = await _ask_platform(
            adapter.exchange_code(
                code=code, code_verifier=verifier, redirect_uri=taken.redirect_uri
            )
        )
        identity = await _ask_platform(adapter.identity(grant.access_token))
        return await self._store(business_id, platform, grant, identity)

    # --- direct connection ---

    async def connect(self, business_id: int, tokens: DirectTokens) -> publishing_pb2.Account:
        async with self._engine.connect() as conn:
            await require_business(conn, business_id)
        identity = await _ask_platform(
            self._adapters[tokens.platform].identity(tokens.access_token)
        )
        grant = TokenGrant(
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            expires_at=tokens.expire_time,
            scopes=tokens.scopes,
        )
        return await self._store(business_id, tokens.platform, grant, identity)

    async def _store(
        self, business_id: int, platform: Platform, grant: TokenGrant, identity: Identity
    ) -> publishing_pb2.Account:
        if identity.access_token is not None:
            # Meta: the Page's own token publishes for the Page; the user's token stays out.
            grant = TokenGrant(
                access_token=identity.access_token,
                refresh_token=None,
                expires_at=None,
                scopes=grant.scopes,
            )
        async with self._engine.begin() as conn:
            await require_business(conn, business_id)
            # The id is needed for the associated data: claim the row, then seal the tokens.
            row = await repository.upsert_account(
                conn,
                {
                    "business_id": business_id,
                    "platform": platform.value,
                    "platform_account_id": identity.account_id,
                    "display_name": identity.display_name[:200],
                    "handle": identity.handle[:200],
                    "avatar_uri": identity.avatar_url[:2048],
                },
            )
            name = account_name(business_id, row.id)
            values: dict[str, Any] = encrypted_grant(self._cipher, name, grant)
            values.setdefault("refresh_expire_time", None)
            values.setdefault("scopes", list(grant.scopes))
            await repository.store_tokens(conn, row.id, values)
            stored = await repository.get_account(conn, business_id, row.id)
        assert stored is not None
        log.info("connected %s (%s)", name, platform.value)
        return account_from_row(stored)

    def _check_configured(self, platform: Platform) -> None:
        client_ids = {
            Platform.X: self._settings.x_client_id,
            Platform.LINKEDIN: self._settings.linkedin_client_id,
            Platform.FACEBOOK: self._settings.meta_app_id,
            Platform.INSTAGRAM: self._settings.meta_app_id,
        }
        if not client_ids[platform]:
            raise FailedPrecondition(
                f"{platform.value} has no OAuth client configured on this server",
                reason="PLATFORM_NOT_CONFIGURED",
            )

    # --- reads and disconnection ---

    async def get(self, business_id: int, account_id: int) -> publishing_pb2.Account:
        async with self._engine.connect() as conn:
            row = await repository.get_account(conn, business_id, account_id)
        if row is None:
            raise account_not_found(business_id, account_id)
        return account_from_row(row)

    async def list_accounts(
        self, business_id: int, page: Page
    ) -> tuple[list[publishing_pb2.Account], str]:
        position = self._tokens.decode(page.token, page.fingerprint)
        after = int(position[0]) if position else None  # type: ignore[arg-type]
        async with self._engine.connect() as conn:
            await require_business(conn, business_id)
            rows = await repository.list_accounts(conn, business_id, after, page.size + 1)
        shown, token = next_token(
            self._tokens, rows, page.size, lambda row: (row.id,), page.fingerprint
        )
        return [account_from_row(row) for row in shown], token

    async def set_posting_schedule(
        self, business_id: int, account_id: int, slots: Sequence[Slot]
    ) -> publishing_pb2.Account:
        """UpdateAccount: the weekly posting slots (posts already in a slot keep it)."""
        async with self._engine.begin() as conn:
            row = await repository.set_posting_schedule(
                conn, business_id, account_id, [slot.as_json() for slot in slots]
            )
        if row is None:
            raise account_not_found(business_id, account_id)
        return account_from_row(row)

    async def disconnect(self, business_id: int, account_id: int) -> publishing_pb2.Account:
        async with self._engine.begin() as conn:
            row = await repository.disconnect_account(conn, business_id, account_id)
        if row is None:
            raise account_not_found(business_id, account_id)
        return account_from_row(row)

    async def of_business(
        self, conn: AsyncConnection, business_id: int, account_ids: Sequence[int]
    ) -> dict[int, Any]:
        rows = await repository.accounts_of(conn, business_id, account_ids)
        return {row.id: row for row in rows}


async def _ask_platform(call: Any) -> Any:
    """A token endpoint's or identity's answer; refusals and outages as domain errors."""
    try:
        return await call
    except TokenRefused as refused:
        raise FailedPrecondition(
            f"the platform refused the authorization: {refused}",
            reason="PLATFORM_AUTHORIZATION_FAILED",
        ) from None
    except TokenUnavailable as error:
        raise Unavailable(
            f"the platform could not be reached: {error}", reason="PLATFORM_UNAVAILABLE"
        ) from None
