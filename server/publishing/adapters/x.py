"""X API v2: POST /2/tweets (threads as reply chains), OAuth 2.0 with PKCE at /2/oauth2/token
(single-use refresh tokens), GET /2/users/:id/tweets to reconcile."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

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
    Quota,
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
    safe,
    same_text,
    server_error,
)
from server.publishing.adapters.oauth import consent_url, grant, token_call
from server.publishing.adapters.x_text import X_MAX_WEIGHTED_LENGTH, weighted_length
from server.publishing.settings import PublishingSettings

# X's 15-minute windows: when a 429 carries no reset header, try again after one window.
_DEFAULT_BACKOFF = timedelta(minutes=15)


class XAdapter:
    platform = Platform.X

    def __init__(self, settings: PublishingSettings) -> None:
        self._settings = settings
        self._http = client(settings, settings.x_api_base_url)

    async def aclose(self) -> None:
        await self._http.aclose()

    def check(self, content: Content) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if not content.text.strip():
            problems.append(("text", "X needs text in every post"))
        texts = [("text", content.text)]
        texts += [(f"thread[{i}]", t) for i, t in enumerate(content.thread)]
        if content.first_comment:
            texts.append(("first_comment", content.first_comment))
        for field, text in texts:
            length = weighted_length(text)
            if length > X_MAX_WEIGHTED_LENGTH:
                problems.append(
                    (
                        field,
                        f"X allows {X_MAX_WEIGHTED_LENGTH} weighted characters (a URL counts "
                        f"23, most CJK characters and emoji count 2); this has {length}",
                    )
                )
            elif field != "text" and not text.strip():
                problems.append((field, "X needs text in every post"))
        if content.media_urls:
            # X takes media ids from its own upload endpoint, not URLs; not supported yet.
            problems.append(("media_urls", "media on X is not supported yet: post text only"))
        return problems

    def authorize_url(self, *, state: str, code_challenge: str, redirect_uri: str) -> str:
        return consent_url(
            self._settings.x_authorize_url,
            client_id=self._settings.x_client_id,
            redirect_uri=redirect_uri,
            scope=" ".join(self._settings.x_scopes),
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
        # Single-use: the grant carries the next refresh token, which must be stored at once.
        return await self._token(grant_type="refresh_token", refresh_token=refresh_token)

    async def _token(self, **form: str) -> TokenGrant:
        form["client_id"] = self._settings.x_client_id
        # A confidential client authenticates with Basic; a public client sends client_id only.
        request = (
            self._http.post(
                "/2/oauth2/token",
                data=form,
                auth=httpx.BasicAuth(self._settings.x_client_id, self._settings.x_client_secret),
            )
            if self._settings.x_client_secret
            else self._http.post("/2/oauth2/token", data=form)
        )
        return grant(await token_call("X", request))

    async def identity(self, access_token: str) -> Identity:
        request = self._http.get(
            "/2/users/me", params={"user.fields": "profile_image_url"}, headers=bearer(access_token)
        )
        user = (await token_call("X", request)).get("data") or {}
        return Identity(
            account_id=str(user.get("id", "")),
            display_name=str(user.get("name", "")),
            handle=str(user.get("username", "")),
            avatar_url=str(user.get("profile_image_url", "")),
        )

    def _url(self, tweet_id: str) -> str:
        # The handle may have changed since the account was connected; /i/web/status does not.
        return f"{self._settings.x_web_base_url}/i/web/status/{tweet_id}"

    async def publish(
        self,
        credentials: Credentials,
        content: Content,
        *,
        resume: Mapping[str, str],
        checkpoint: Checkpoint,
    ) -> PublishOutcome:
        ids: list[str] = []
        quota: Quota | None = None
        # Each checkpointed tweet is not sent again: a resumed thread continues where it stopped.
        for i, text in enumerate([content.text, *content.thread]):
            key = f"tweet:{i}"
            if key in resume:
                ids.append(resume[key])
                continue
            outcome = await self._create(credentials, text, ids[-1] if ids else None)
            if not isinstance(outcome, tuple):
                return outcome
            tweet_id, quota = outcome
            await checkpoint(key, tweet_id)
            ids.append(tweet_id)
        if content.first_comment and "comment" not in resume:
            outcome = await self._create(credentials, content.first_comment, ids[0])
            if not isinstance(outcome, tuple):
                return outcome
            comment_id, quota = outcome
            await checkpoint("comment", comment_id)
        return Published(ids[0], self._url(ids[0]), quota)

    async def _create(
        self, credentials: Credentials, text: str, reply_to: str | None
    ) -> tuple[str, Quota | None] | PublishOutcome:
        body: dict[str, Any] = {"text": text}
        if reply_to:
            body["reply"] = {"in_reply_to_tweet_id": reply_to}
        try:
            response = await self._http.post(
                "/2/tweets", json=body, headers=bearer(credentials.access_token)
            )
        except httpx.HTTPError as exc:
            return network_failure("X", exc)
        quota = _quota(response)
        if response.status_code in (200, 201):
            tweet_id = (json_body(response).get("data") or {}).get("id")
            if tweet_id:
                return str(tweet_id), quota
            return Transient("X: the post was accepted without an id", True, quota)
        return _failure(response, quota)

    async def find(
        self,
        credentials: Credentials,
        content: Content,
        *,
        since: datetime,
        resume: Mapping[str, str],
        checkpoint: Checkpoint | None = None,
    ) -> Published | CannotTell | None:
        """Matches the thread, post by post along its reply chain, in the account's tweets
        since `since`. A thread found in part is recorded through `checkpoint` (when given)
        and reported as not published, so the next publish continues it."""
        tweets = await self._timeline(credentials, since)
        if tweets is None:
            return CannotTell.CANNOT_TELL
        ids: list[str] = []
        for i, text in enumerate([content.text, *content.thread]):
            found = resume.get(f"tweet:{i}") or _match(tweets, text, ids[-1] if ids else None)
            if found is None:
                break
            ids.append(found)
        if not ids:
            return None
        if len(ids) < 1 + len(content.thread) and checkpoint is not None:
            for i, tweet_id in enumerate(ids):
                if f"tweet:{i}" not in resume:
                    await checkpoint(f"tweet:{i}", tweet_id)
            return None
        return Published(ids[0], self._url(ids[0]))

    async def _timeline(self, credentials: Credentials, since: datetime) -> list[Any] | None:
        params = {
            # X rejects fractional seconds here; one second earlier loses nothing.
            "start_time": (since.astimezone(UTC) - timedelta(seconds=1)).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
            "max_results": "100",
            "tweet.fields": "created_at,referenced_tweets",
        }
        tweets: list[Any] = []
        for _ in range(5):  # 500 posts since a lost attempt is more than any account makes
            try:
                response = await self._http.get(
                    f"/2/users/{credentials.account_id}/tweets",
                    params=params,
                    headers=bearer(credentials.access_token),
                )
            except httpx.HTTPError:
                return None
            if response.status_code != 200:
                return None
            body = json_body(response)
            tweets += body.get("data") or []
            next_token = (body.get("meta") or {}).get("next_token")
            if not next_token:
                return tweets
            params["pagination_token"] = next_token
        return tweets


def _match(tweets: list[Any], text: str, reply_to: str | None) -> str | None:
    for tweet in tweets:
        replied = [r.get("id") for r in tweet.get("referenced_tweets") or []]
        matches = tweet.get("id") and same_text(str(tweet.get("text", "")), text)
        if matches and (reply_to is None or reply_to in replied):
            return str(tweet["id"])
    return None


def _failure(response: httpx.Response, quota: Quota | None) -> PublishOutcome:
    status = response.status_code
    body = json_body(response)
    errors = body.get("errors") or [{}]
    message = safe(errors[0].get("message") or body.get("detail") or body.get("title") or status)
    if status == 401:
        return Unauthorized(f"X: {message}", quota)
    if status == 429:
        return Throttled(f"X: {message}", _retry_at(response), quota)
    if status >= 500:
        return server_error("X", response)
    if status == 403 and "duplicate" in message.lower():
        return Rejected(f"X: {message}", "403 duplicate content", quota)
    return Rejected(f"X: {message}", str(status), quota)


def _epoch(value: str | None) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value or ""), UTC)
    except ValueError:
        return None


def _quota(response: httpx.Response) -> Quota | None:
    remaining = response.headers.get("x-rate-limit-remaining")
    reset_at = _epoch(response.headers.get("x-rate-limit-reset"))
    app_exhausted_until = None
    if response.headers.get("x-app-limit-24hour-remaining") == "0":
        app_exhausted_until = _epoch(response.headers.get("x-app-limit-24hour-reset"))
    if remaining is None and reset_at is None and app_exhausted_until is None:
        return None
    return Quota(
        remaining=int(remaining) if remaining else None,
        reset_at=reset_at,
        app_exhausted_until=app_exhausted_until,
    )


def _retry_at(response: httpx.Response) -> datetime:
    """The latest reset among the exhausted windows: the 15-minute endpoint window, and the
    24-hour post limits X reports on POST /2/tweets, per user (x-user-limit-24hour-*) and per
    app (x-app-limit-24hour-*)."""
    resets = []
    for prefix in ("x-rate-limit", "x-user-limit-24hour", "x-app-limit-24hour"):
        reset = _epoch(response.headers.get(f"{prefix}-reset"))
        if reset and response.headers.get(f"{prefix}-remaining", "0") == "0":
            resets.append(reset)
    return max(resets, default=datetime.now(UTC) + _DEFAULT_BACKOFF)
