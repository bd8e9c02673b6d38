"""LinkedIn Posts API (versioned /rest, Rest.li 2.0), its OAuth 2.0 endpoints, and the
Comments API for a first comment."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from server.publishing.adapters.base import (
    CannotTell,
    Checkpoint,
    Content,
    Credentials,
    Identity,
    Platform,
    Published,
    PublishOutcome,
    Rejected,
    Throttled,
    TokenGrant,
    Transient,
    Unauthorized,
)
from server.publishing.adapters.http import (
    bearer,
    client,
    json_body,
    network_failure,
    next_utc_midnight,
    safe,
    same_text,
    server_error,
)
from server.publishing.adapters.oauth import consent_url, grant, token_call
from server.publishing.settings import PublishingSettings

MAX_COMMENTARY = 3000
MAX_COMMENT = 1250
# Commentary is "little text": these characters are markup unless escaped, and an unescaped
# one silently truncates or garbles the post.
_RESERVED = re.compile(r"([\\|{}@\[\]()<>#*_~])")


def little_text(text: str) -> str:
    return _RESERVED.sub(r"\\\1", text)


class LinkedInAdapter:
    platform = Platform.LINKEDIN

    def __init__(self, settings: PublishingSettings) -> None:
        self._settings = settings
        self._http = client(settings, settings.linkedin_api_base_url)
        self._oauth = client(settings, settings.linkedin_oauth_base_url)

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._oauth.aclose()

    def _headers(self, access_token: str) -> dict[str, str]:
        return {
            **bearer(access_token),
            "LinkedIn-Version": self._settings.linkedin_version,
            "X-Restli-Protocol-Version": "2.0.0",
        }

    def check(self, content: Content) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if not content.text.strip():
            problems.append(("text", "LinkedIn needs text"))
        if len(content.text) > MAX_COMMENTARY:
            problems.append(
                (
                    "text",
                    f"LinkedIn allows {MAX_COMMENTARY} characters; this has {len(content.text)}",
                )
            )
        if len(content.first_comment) > MAX_COMMENT:
            problems.append(("first_comment", f"LinkedIn comments allow {MAX_COMMENT} characters"))
        if content.media_urls:
            # LinkedIn takes media as image/video URNs from its upload APIs, not URLs.
            problems.append(("media_urls", "media on LinkedIn is not supported yet: text only"))
        problems += [(f"thread[{i}]", "threads are for X only") for i in range(len(content.thread))]
        return problems

    def authorize_url(self, *, state: str, code_challenge: str, redirect_uri: str) -> str:
        return consent_url(
            f"{self._settings.linkedin_oauth_base_url}/authorization",
            client_id=self._settings.linkedin_client_id,
            redirect_uri=redirect_uri,
            scope=" ".join(self._settings.linkedin_scopes),
            state=state,
            code_challenge=code_challenge,
        )

    async def exchange_code(
        self, *, code: str, code_verifier: str, redirect_uri: str
    ) -> TokenGrant:
        return await self._token(
            grant_type="authorization_code",
            code=code,
            redirect_uri=redirect_uri,
            code_verifier=code_verifier,
        )

    async def refresh(self, refresh_token: str) -> TokenGrant:
        # The refresh token is reusable until it expires (365 days from the consent; refreshing
        # does not extend it); LinkedIn returns it again with its remaining lifetime.
        return await self._token(grant_type="refresh_token", refresh_token=refresh_token)

    async def _token(self, **form: str) -> TokenGrant:
        form |= {
            "client_id": self._settings.linkedin_client_id,
            "client_secret": self._settings.linkedin_client_secret,
        }
        return grant(await token_call("LinkedIn", self._oauth.post("/accessToken", data=form)))

    async def identity(self, access_token: str) -> Identity:
        # OpenID Connect userinfo (scopes openid, profile): `sub` is the member's person id.
        # Organization pages would need r_organization_admin; members only for now.
        user = await token_call(
            "LinkedIn", self._http.get("/v2/userinfo", headers=bearer(access_token))
        )
        return Identity(
            account_id=f"urn:li:person:{user.get('sub', '')}",
            display_name=str(user.get("name", "")),
            avatar_url=str(user.get("picture", "")),
        )

    def _url(self, urn: str) -> str:
        return f"{self._settings.linkedin_web_base_url}/feed/update/{urn}"

    async def publish(
        self,
        credentials: Credentials,
        content: Content,
        *,
        resume: Mapping[str, str],
        checkpoint: Checkpoint,
    ) -> PublishOutcome:
        urn = resume.get("post")
        if urn is None:
            body = {
                "author": credentials.account_id,
                "commentary": little_text(content.text),
                "visibility": "PUBLIC",
                "distribution": {
                    "feedDistribution": "MAIN_FEED",
                    "targetEntities": [],
                    "thirdPartyDistributionChannels": [],
                },
                "lifecycleState": "PUBLISHED",
                "isReshareDisabledByAuthor": False,
            }
            outcome = await self._send(credentials, "/rest/posts", body)
            if not isinstance(outcome, httpx.Response):
                return outcome
            urn = outcome.headers.get("x-restli-id")
            if not urn:
                return Transient("LinkedIn: the post was accepted without an id", True)
            await checkpoint("post", urn)
        if content.first_comment and "comment" not in resume:
            comment = {
                "actor": credentials.account_id,
                "object": urn,
                "message": {"text": little_text(content.first_comment)},
            }
            path = f"/rest/socialActions/{quote(urn, safe='')}/comments"
            outcome = await self._send(credentials, path, comment)
            if not isinstance(outcome, httpx.Response):
                return outcome
            await checkpoint("comment", str(json_body(outcome).get("id", "")))
        return Published(urn, self._url(urn))

    async def _send(
        self, credentials: Credentials, path: str, body: dict[str, Any]
    ) -> httpx.Response | PublishOutcome:
        try:
            response = await self._http.post(
                path, json=body, headers=self._headers(credentials.access_token)
            )
        except httpx.HTTPError as exc:
            return network_failure("LinkedIn", exc)
        if response.status_code in (200, 201):
            return response
        return _failure(response)

    async def find(
        self,
        credentials: Credentials,
        content: Content,
        *,
        since: datetime,
        resume: Mapping[str, str],
    ) -> Published | CannotTell | None:
        if "post" in resume:
            return Published(resume["post"], self._url(resume["post"]))
        # The author finder, newest first. A Rest.li 2.0 URN in a query is percent-encoded.
        query = f"q=author&author={quote(credentials.account_id, safe='')}"
        try:
            response = await self._http.get(
                f"/rest/posts?{query}&count=50&sortBy=LAST_MODIFIED",
                headers=self._headers(credentials.access_token),
            )
        except httpx.HTTPError:
            return CannotTell.CANNOT_TELL
        if response.status_code != 200:
            return CannotTell.CANNOT_TELL
        after_ms = (since.astimezone(UTC) - timedelta(seconds=1)).timestamp() * 1000
        for post in json_body(response).get("elements") or []:
            created = post.get("publishedAt") or post.get("createdAt") or 0
            if (
                post.get("id")
                and created >= after_ms
                and same_text(str(post.get("commentary", "")), little_text(content.text))
            ):
                return Published(str(post["id"]), self._url(str(post["id"])))
        return None


def _failure(response: httpx.Response) -> PublishOutcome:
    status = response.status_code
    body = json_body(response)
    message = f"LinkedIn: {safe(body.get('message') or status)}"
    code = str(body.get("code") or body.get("serviceErrorCode") or status)
    if status == 401:
        return Unauthorized(message)
    if status == 429:
        # LinkedIn sends no Retry-After: its limits are per application and member per day,
        # reset at midnight UTC.
        return Throttled(message, next_utc_midnight())
    if status >= 500:
        return server_error("LinkedIn", response)
    if status == 422 and "duplicate" in message.lower():
        return Rejected(message, "DUPLICATE_POST")
    return Rejected(message, code)
