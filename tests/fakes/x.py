"""A fake X API v2: OAuth 2.0 with PKCE and single-use refresh tokens, POST /2/tweets with
rate-limit headers and duplicate detection, GET /2/users/me and GET /2/users/:id/tweets
(which, like X, returns links as t.co links and HTML-escapes &, < and >)."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import time
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.publishing.adapters.x_text import weighted_length
from tests.fakes.platform import FakeAccount, FakePlatform, FakePost, form_or_query

DUPLICATE = "You are not allowed to create a Tweet with duplicate content."
_URL = re.compile(r"https?://\S+")


def _problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse(
        {"title": title, "detail": detail, "type": "about:blank", "status": status, **extra},
        status,
    )


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class FakeX(FakePlatform):
    name = "x"
    single_use_refresh = True
    access_ttl_s = 7200.0
    # POST /2/tweets' window, as X reports it in x-rate-limit-*.
    window_s = 900
    window_limit = 100

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.window_s, self.window_limit = FakeX.window_s, FakeX.window_limit
            self._enforce_window = False
            # POST /2/tweets calls by (account, window number).
            self._window_calls: dict[tuple[str, int], int] = {}
            # The app's 24-hour post limit (every account's posts count): off until asked.
            self._app_limit: int | None = None
            self._app_used = 0
            self._app_reset = 0

    def rate_window(self, limit: int, seconds: int) -> None:
        """POST /2/tweets allows `limit` calls per account in each window of `seconds`
        (aligned on the epoch, like X's 15 minutes), reporting what is left in
        x-rate-limit-*, and answers 429 past it until the window resets (until `reset()`)."""
        with self._lock:
            self.window_s, self.window_limit = seconds, limit
            self._enforce_window = True

    def app_daily_limit(self, limit: int) -> None:
        """POST /2/tweets allows `limit` posts in 24 hours for the whole app, every account's
        counting, reported in x-app-limit-24hour-* as X does; past it, 429 (until `reset()`)."""
        with self._lock:
            self._app_limit, self._app_used = limit, 0
            self._app_reset = int(time.time()) + 24 * 3600

    def _app_headers(self) -> dict[str, str]:
        if self._app_limit is None:
            return {}
        return {
            "x-app-limit-24hour-limit": str(self._app_limit),
            "x-app-limit-24hour-remaining": str(max(0, self._app_limit - self._app_used)),
            "x-app-limit-24hour-reset": str(self._app_reset),
        }

    def add_account(self, name: str = "", handle: str = "") -> FakeAccount:
        user_id = self.next_id()
        handle = handle or f"user{user_id}"
        access, refresh = self.mint(user_id)
        account = FakeAccount(user_id, name or handle, handle, access, refresh)
        with self._lock:
            self.accounts[user_id] = account
        return account

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                self.route("GET", "/i/oauth2/authorize", self.authorize),
                self.route("POST", "/2/oauth2/token", self._token),
                self.route("GET", "/2/users/me", self._me),
                self.route("POST", "/2/tweets", self._create),
                self.route("GET", "/2/users/{id}/tweets", self._timeline),
            ]
        )

    def _rate_headers(self, endpoint: str, remaining: int | None = None) -> dict[str, str]:
        window_end = (int(time.time()) // self.window_s + 1) * self.window_s
        if remaining is None:
            remaining = max(0, self.window_limit - self.calls(endpoint))
        return {
            "x-rate-limit-limit": str(self.window_limit),
            "x-rate-limit-remaining": str(remaining),
            "x-rate-limit-reset": str(window_end),
        }

    def throttled(self, request: Request, endpoint: str) -> Response:
        response = _problem(429, "Too Many Requests", "Too Many Requests")
        response.headers.update(self._rate_headers(endpoint, remaining=0))
        return response

    def server_error(self, status: int) -> Response:
        return _problem(status, "Service Unavailable", "Service Unavailable")

    def _unauthorized(self) -> Response:
        return _problem(401, "Unauthorized", "Unauthorized")

    async def _token(self, request: Request) -> Response:
        params = await form_or_query(request)
        client_id = params.get("client_id", "")
        basic = request.headers.get("authorization", "")
        if basic.lower().startswith("basic "):
            client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
            if secret != self.client_secret:
                return JSONResponse(
                    {
                        "error": "unauthorized_client",
                        "error_description": "Missing valid authorization header",
                    },
                    401,
                )
        if client_id != self.client_id:
            return JSONResponse(
                {
                    "error": "invalid_request",
                    "error_description": "Missing required parameter [client_id].",
                },
                400,
            )
        grant_type = params.get("grant_type")
        if grant_type == "authorization_code":
            account_id = self.redeem_code(
                params.get("code", ""),
                params.get("code_verifier", ""),
                params.get("redirect_uri", ""),
            )
        elif grant_type == "refresh_token":
            account_id, _ = self.use_refresh_token(params.get("refresh_token", ""))
        else:
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        if account_id is None:
            return JSONResponse(
                {
                    "error": "invalid_grant",
                    "error_description": "Value passed for the token was invalid.",
                },
                400,
            )
        access, refresh = self.mint(account_id)
        return JSONResponse(
            {
                "token_type": "bearer",
                "expires_in": int(self.access_ttl_s),
                "access_token": access,
                "scope": "tweet.read tweet.write users.read offline.access",
                "refresh_token": refresh,
            }
        )

    async def _me(self, request: Request) -> Response:
        account_id, _ = self.bearer(request)
        if account_id is None:
            return self._unauthorized()
        account = self.accounts[account_id]
        return JSONResponse(
            {
                "data": {
                    "id": account.account_id,
                    "name": account.name,
                    "username": account.handle,
                    "profile_image_url": f"https://pbs.twimg.com/profile_images/{account_id}.jpg",
                }
            }
        )

    async def _create(self, request: Request) -> Response:
        endpoint = "POST /2/tweets"
        account_id, _ = self.bearer(request)
        if account_id is None:
            return self._unauthorized()
        body = await request.json()
        with self._lock:
            window = (account_id, int(time.time()) // self.window_s)
            used = self._window_calls[window] = self._window_calls.get(window, 0) + 1
            if self._enforce_window and used > self.window_limit:
                return self.throttled(request, endpoint)
            if self._app_limit is not None:
                self._app_used += 1
                if self._app_used > self._app_limit:
                    throttled = self.throttled(request, endpoint)
                    throttled.headers.update(self._app_headers())
                    return throttled
            app_headers = self._app_headers()
        text = body.get("text")
        reply_to = (body.get("reply") or {}).get("in_reply_to_tweet_id")
        headers = self._rate_headers(endpoint, remaining=max(0, self.window_limit - used))
        headers |= app_headers
        invalid = (
            "text must be a string"
            if not isinstance(text, str) or not text
            else "text is longer than 280 weighted characters"
            if weighted_length(text) > 280
            else "media is not supported by this fake"
            if body.get("media")
            else ""
        )
        with self._lock:
            ids = {p.id for p in self._posts}
            if not invalid and reply_to and reply_to not in ids:
                invalid = "in_reply_to_tweet_id: the post you are replying to does not exist"
            if invalid:
                return JSONResponse(
                    {
                        "errors": [{"message": invalid, "parameters": {}}],
                        "title": "Invalid Request",
                        "detail": "One or more parameters to your request was invalid.",
                        "type": "https://api.twitter.com/2/problems/invalid-request",
                    },
                    400,
                    headers=headers,
                )
            if any(p.account_id == account_id and p.text == text for p in self._posts):
                response = _problem(403, "Forbidden", DUPLICATE)
                response.headers.update(headers)
                return response
            post = self._publish(
                FakePost(
                    self.next_id(),
                    account_id,
                    text,
                    time.time(),
                    reply_to,
                    kind="reply" if reply_to else "post",
                )
            )
        return JSONResponse(
            {"data": {"id": post.id, "text": post.text, "edit_history_tweet_ids": [post.id]}},
            201,
            headers=headers,
        )

    async def _timeline(self, request: Request) -> Response:
        if self.bearer(request)[0] is None:
            return self._unauthorized()
        user_id = request.path_params["id"]
        q = request.query_params
        start = q.get("start_time")
        since = datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp() if start else 0
        size = int(q.get("max_results", "10"))
        offset = int(q.get("pagination_token") or 0)
        fields = set(q.get("tweet.fields", "").split(","))
        tweets = [p for p in reversed(self.posts(user_id, kind=None)) if p.created_at >= since]
        page = tweets[offset : offset + size]
        data = []
        for post in page:
            item: dict[str, Any] = {
                "id": post.id,
                "text": _as_x_shows(post.text),
                "edit_history_tweet_ids": [post.id],
            }
            if "created_at" in fields:
                item["created_at"] = _iso(post.created_at)
            if "referenced_tweets" in fields and post.reply_to:
                item["referenced_tweets"] = [{"type": "replied_to", "id": post.reply_to}]
            data.append(item)
        meta: dict[str, Any] = {"result_count": len(data)}
        if data:
            meta |= {"newest_id": data[0]["id"], "oldest_id": data[-1]["id"]}
        if offset + size < len(tweets):
            meta["next_token"] = str(offset + size)
        return JSONResponse({"data": data, "meta": meta} if data else {"meta": meta})


def _as_x_shows(text: str) -> str:
    def shorten(match: re.Match[str]) -> str:
        return "https://t.co/" + hashlib.sha1(match.group().encode()).hexdigest()[:10]

    return html.escape(_URL.sub(shorten, text), quote=False)
