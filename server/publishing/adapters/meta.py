"""Meta Graph API, shared by the Facebook Page and Instagram adapters: one HTTP client, the
OAuth flow, the usage headers and the error codes.

Tokens go in an `Authorization: Bearer` header and in POST bodies, never in a query string:
Graph accepts them there too, and a URL ends up in logs and exception texts.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from server.publishing.adapters.base import (
    PublishOutcome,
    Quota,
    Rejected,
    Throttled,
    TokenGrant,
    TokenRefused,
    Transient,
    Unauthorized,
)
from server.publishing.adapters.http import (
    bearer,
    client,
    json_body,
    network_failure,
    safe,
    server_error,
)
from server.publishing.adapters.oauth import consent_url, grant, token_call
from server.publishing.settings import PublishingSettings

# Application (4), user (17), Page (32), per-call (613) and business use case (80001 Pages,
# 80002 Instagram, 80005-80014 other products) limits.
THROTTLE_CODES = frozenset({4, 17, 32, 613, *range(80001, 80015)})
# Meta's limits are rolling one-hour windows; without an estimate, wait for one to pass.
DEFAULT_THROTTLE_WAIT = timedelta(hours=1)
INVALID_TOKEN = 190
DUPLICATE = 506

Answer = tuple[dict[str, Any], Quota | None]


class MetaGraph:
    def __init__(self, settings: PublishingSettings) -> None:
        self.settings = settings
        self._http = client(settings, settings.meta_graph_base_url)
        self._users = 0

    def retain(self) -> MetaGraph:
        # Facebook and Instagram share this client; the last adapter to close closes it.
        self._users += 1
        return self

    async def release(self) -> None:
        self._users -= 1
        if self._users <= 0:
            await self._http.aclose()

    async def call(
        self,
        method: str,
        path: str,
        access_token: str,
        *,
        data: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> Answer | PublishOutcome:
        try:
            response = await self._http.request(
                method, path, data=data, params=params, headers=bearer(access_token)
            )
        except httpx.HTTPError as exc:
            return network_failure("Meta", exc)
        quota = usage(response)
        if response.status_code == 200:
            return json_body(response), quota
        return failure(response, quota)

    # OAuth: Meta issues no refresh tokens. The code buys a short-lived user token, exchanged
    # at once for a long-lived one (60 days); a Page token obtained with that does not expire.

    def authorize_url(self, *, state: str, code_challenge: str, redirect_uri: str) -> str:
        return consent_url(
            self.settings.meta_authorize_url,
            client_id=self.settings.meta_app_id,
            redirect_uri=redirect_uri,
            scope=",".join(self.settings.meta_scopes),
            state=state,
            code_challenge=code_challenge,
        )

    async def exchange_code(
        self, *, code: str, code_verifier: str, redirect_uri: str
    ) -> TokenGrant:
        app = {
            "client_id": self.settings.meta_app_id,
            "client_secret": self.settings.meta_app_secret,
        }
        form = {"code": code, "code_verifier": code_verifier, "redirect_uri": redirect_uri}
        short = grant(
            await token_call("Meta", self._http.post("/oauth/access_token", data=app | form))
        )
        exchange = {"grant_type": "fb_exchange_token", "fb_exchange_token": short.access_token}
        return grant(
            await token_call("Meta", self._http.post("/oauth/access_token", data=app | exchange))
        )

    async def refresh(self, refresh_token: str) -> TokenGrant:
        raise TokenRefused("Meta issues no refresh tokens: the account must be reconnected")

    async def get_identity(self, access_token: str, fields: str) -> list[dict[str, Any]]:
        """The Pages (with their own tokens) the user granted access to."""
        request = self._http.get(
            "/me/accounts", params={"fields": fields}, headers=bearer(access_token)
        )
        pages = (await token_call("Meta", request)).get("data") or []
        return [p for p in pages if isinstance(p, dict)]


def usage(response: httpx.Response) -> Quota | None:
    """The highest percentage in x-app-usage and x-business-use-case-usage (or None)."""
    percents: dict[str, list[float]] = {}
    for header in ("x-app-usage", "x-business-use-case-usage"):
        for entry in _usage_entries(response.headers.get(header)):
            percents.setdefault(header, []).extend(
                float(v)
                for k, v in entry.items()
                if k in ("call_count", "total_cputime", "total_time") and isinstance(v, int | float)
            )
    every = [p for values in percents.values() for p in values]
    if not every:
        return None
    app = percents.get("x-app-usage")
    return Quota(usage_percent=max(every), app_usage_percent=max(app) if app else None)


def _usage_entries(raw: str | None) -> list[dict[str, Any]]:
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        return []
    if isinstance(value, dict) and "call_count" in value:  # x-app-usage: one object
        return [value]
    if isinstance(value, dict):  # x-business-use-case-usage: {business id: [entries]}
        return [e for entries in value.values() if isinstance(entries, list) for e in entries]
    return []


def _retry_at(response: httpx.Response) -> datetime:
    minutes = [
        float(e["estimated_time_to_regain_access"])
        for e in _usage_entries(response.headers.get("x-business-use-case-usage"))
        if isinstance(e.get("estimated_time_to_regain_access"), int | float)
    ]
    wait = timedelta(minutes=max(minutes)) if minutes and max(minutes) > 0 else None
    return datetime.now(UTC) + (wait or DEFAULT_THROTTLE_WAIT)


def failure(response: httpx.Response, quota: Quota | None) -> PublishOutcome:
    error = json_body(response).get("error") or {}
    code = error.get("code")
    text = safe(error.get("error_user_msg") or error.get("message") or response.status_code)
    message = f"Meta: {text}"
    if code == INVALID_TOKEN or response.status_code == 401:
        return Unauthorized(message, quota)
    if code in THROTTLE_CODES or response.status_code == 429:
        return Throttled(message, _retry_at(response), quota)
    if response.status_code >= 500:
        return server_error("Meta", response)
    if error.get("is_transient") or code in (1, 2):  # "unknown error", "service unavailable"
        return Transient(message, True, quota)
    subcode = error.get("error_subcode")
    return Rejected(message, f"{code}/{subcode}" if subcode else str(code), quota)
