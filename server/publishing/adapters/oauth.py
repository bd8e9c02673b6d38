"""OAuth 2.0 pieces the three platforms share: the consent URL with PKCE, and a token
endpoint's answer turned into a TokenGrant, TokenRefused or TokenUnavailable."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from server.publishing.adapters.base import TokenGrant, TokenRefused, TokenUnavailable
from server.publishing.adapters.http import expires_at, json_body, network_failure, safe


def consent_url(
    base: str, *, client_id: str, redirect_uri: str, scope: str, state: str, code_challenge: str
) -> str:
    """The authorization-code consent URL with a PKCE (S256) challenge."""
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
        "code_challenge": code_challenge,
        "code_challenge_method": "S256",
    }
    separator = "&" if "?" in base else "?"
    return base + separator + urlencode(params, quote_via=quote)


async def token_call(platform: str, request: Awaitable[httpx.Response]) -> dict[str, Any]:
    """The JSON of a successful token-endpoint (or identity) call. A 4xx other than 429 is a
    permanent refusal of this grant (invalid_grant: expired, revoked or already used);
    a 429, 5xx or network failure is transient and must never disconnect the account."""
    try:
        response = await request
    except httpx.HTTPError as exc:
        raise TokenUnavailable(network_failure(platform, exc).message) from None
    if response.status_code == 429 or response.status_code >= 500:
        raise TokenUnavailable(f"{platform}: HTTP {response.status_code} from the platform")
    body = json_body(response)
    if response.status_code >= 400:
        raise TokenRefused(f"{platform}: {refusal_reason(body, response.status_code)}")
    return body


def refusal_reason(body: dict[str, Any], status: int) -> str:
    error = body.get("error")
    if isinstance(error, dict):  # Meta: {"error": {"message", "code", ...}}
        return safe(f"{error.get('message', 'refused')} (code {error.get('code')})")
    description = body.get("error_description") or body.get("message") or body.get("detail")
    if error and description:
        return safe(f"{error}: {description}")
    return safe(error or description or f"HTTP {status}")


def grant(body: dict[str, Any]) -> TokenGrant:
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise TokenUnavailable("the token endpoint answered without an access token")
    scope = body.get("scope") or ""
    return TokenGrant(
        access_token=token,
        refresh_token=body.get("refresh_token") or None,
        expires_at=expires_at(body.get("expires_in")),
        refresh_expires_at=expires_at(body.get("refresh_token_expires_in")),
        scopes=tuple(s for s in str(scope).replace(",", " ").split() if s),
    )
