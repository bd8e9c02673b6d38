"""A fake LinkedIn: OAuth 2.0 (/oauth/v2/authorization, /oauth/v2/accessToken; 60-day access
tokens, 365-day reusable refresh tokens), /v2/userinfo, and the versioned Posts API
(/rest/posts create and author finder, /rest/socialActions/{urn}/comments) with its required
headers, x-restli-id, 422 DUPLICATE_POST and header-less 429s.

Stricter than LinkedIn in one place: an unescaped little-text reserved character in
commentary is refused (LinkedIn silently truncates the post there instead)."""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tests.fakes.platform import FakeAccount, FakePlatform, FakePost, form_or_query

# A reserved character not preceded by a backslash (itself not escaped).
_UNESCAPED = re.compile(r"(?<!\\)(?:\\\\)*[|{}@\[\]()<>#*_~]")


def _error(status: int, message: str, code: str = "", service_code: int = 0) -> JSONResponse:
    body: dict[str, Any] = {"status": status, "message": message}
    if code:
        body["code"] = code
    if service_code:
        body["serviceErrorCode"] = service_code
    return JSONResponse(body, status)


class FakeLinkedIn(FakePlatform):
    name = "linkedin"
    single_use_refresh = False
    access_ttl_s = 60 * 86400.0
    refresh_ttl_s = 365 * 86400.0

    def add_account(self, name: str = "", handle: str = "") -> FakeAccount:
        person = f"urn:li:person:{self.next_id()}"
        access, refresh = self.mint(person)
        account = FakeAccount(person, name or f"Member {person[-4:]}", handle, access, refresh)
        with self._lock:
            self.accounts[person] = account
        return account

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                self.route("GET", "/oauth/v2/authorization", self.authorize),
                self.route("POST", "/oauth/v2/accessToken", self._token),
                self.route("GET", "/v2/userinfo", self._userinfo),
                self.route("POST", "/rest/posts", self._create),
                self.route("GET", "/rest/posts", self._finder),
                self.route("POST", "/rest/socialActions/{urn}/comments", self._comment),
            ]
        )

    def throttled(self, request: Request, endpoint: str) -> Response:
        # No Retry-After, no rate-limit headers: LinkedIn's daily limits reset at midnight UTC.
        return _error(
            429,
            "Resource level throttle APPLICATION DAY limit for calls to this resource is reached.",
        )

    def server_error(self, status: int) -> Response:
        return _error(status, "Internal Server Error")

    def _refused(self, request: Request) -> tuple[str | None, Response | None]:
        account_id, why = self.bearer(request)
        if account_id is None and why == "expired":
            return None, _error(
                401, "The token used in the request has expired", "EXPIRED_ACCESS_TOKEN", 65601
            )
        if account_id is None:
            return None, _error(401, "Invalid access token", "INVALID_ACCESS_TOKEN", 65600)
        if request.url.path.startswith("/rest/"):
            if not request.headers.get("linkedin-version"):
                return None, _error(
                    400,
                    "A version must be present. Please specify a version by adding the "
                    "LinkedIn-Version header.",
                    "VERSION_MISSING",
                )
            if request.headers.get("x-restli-protocol-version") != "2.0.0":
                return None, _error(
                    400,
                    "Rest.li protocol version 2.0.0 is required (X-Restli-Protocol-Version)",
                    "ILLEGAL_ARGUMENT",
                )
        return account_id, None

    async def _token(self, request: Request) -> Response:
        params = await form_or_query(request)
        if (
            params.get("client_id") != self.client_id
            or params.get("client_secret") != self.client_secret
        ):
            return JSONResponse(
                {"error": "invalid_client", "error_description": "Client authentication failed"},
                401,
            )
        refresh: str | None
        if params.get("grant_type") == "authorization_code":
            account_id = self.redeem_code(
                params.get("code", ""),
                params.get("code_verifier", ""),
                params.get("redirect_uri", ""),
            )
            if account_id is None:
                return self._invalid_grant(
                    "The provided authorization grant is invalid, expired or revoked"
                )
            access, refresh = self.mint(account_id)
            refresh_expires = time.time() + self.refresh_ttl_s
        elif params.get("grant_type") == "refresh_token":
            refresh = params.get("refresh_token", "")
            account_id, refresh_expires = self.use_refresh_token(refresh)
            if account_id is None:
                return self._invalid_grant(
                    "The provided refresh token is invalid, expired or revoked"
                )
            access, _ = self.mint(account_id, refresh=False)
        else:
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        return JSONResponse(
            {
                "access_token": access,
                "expires_in": int(self.access_ttl_s),
                "refresh_token": refresh,
                # Refreshing does not extend the refresh token: it reports what is left of it.
                "refresh_token_expires_in": int(refresh_expires - time.time()),
                "scope": "openid,profile,w_member_social",
            }
        )

    def _invalid_grant(self, description: str) -> Response:
        return JSONResponse({"error": "invalid_grant", "error_description": description}, 400)

    async def _userinfo(self, request: Request) -> Response:
        account_id, refused = self._refused(request)
        if refused:
            return refused
        account = self.accounts[str(account_id)]
        return JSONResponse(
            {
                "sub": account.account_id.rsplit(":", 1)[-1],
                "name": account.name,
                "picture": "https://media.licdn.com/dms/image/fake.jpg",
                "email_verified": True,
            }
        )

    async def _create(self, request: Request) -> Response:
        account_id, refused = self._refused(request)
        if refused:
            return refused
        body = await request.json()
        author, commentary = body.get("author"), body.get("commentary")
        if author != account_id:
            return _error(
                403,
                "Not enough permissions to access: partnerApiPostsExternal.CREATE",
                "ACCESS_DENIED",
                100,
            )
        missing = [k for k in ("visibility", "distribution", "lifecycleState") if k not in body]
        if missing or not isinstance(commentary, str):
            return _error(
                422,
                f"/{(missing or ['commentary'])[0]} :: field is required",
                "UNPROCESSABLE_ENTITY",
            )
        if len(commentary) > 3000 or _UNESCAPED.search(commentary):
            return _error(422, "/commentary :: invalid little text", "UNPROCESSABLE_ENTITY")
        with self._lock:
            for post in self._posts:
                if post.account_id == author and post.text == commentary and post.kind == "post":
                    return _error(422, f"Content is a duplicate of {post.id}", "DUPLICATE_POST")
            urn = f"urn:li:share:{self.next_id()}"
            self._publish(
                FakePost(
                    urn, author, commentary, time.time(), extra={"visibility": body["visibility"]}
                )
            )
        return Response(status_code=201, headers={"x-restli-id": urn, "x-linkedin-id": urn})

    async def _finder(self, request: Request) -> Response:
        _, refused = self._refused(request)
        if refused:
            return refused
        q = request.query_params
        if q.get("q") != "author" or not q.get("author"):
            return _error(400, "Finder q=author with an author is required", "ILLEGAL_ARGUMENT")
        count = int(q.get("count", "10"))
        posts = list(reversed(self.posts(unquote(q["author"]))))[:count]
        return JSONResponse(
            {
                "paging": {"start": 0, "count": count, "links": []},
                "elements": [
                    {
                        "id": p.id,
                        "author": p.account_id,
                        "commentary": p.text,
                        "visibility": p.extra.get("visibility", "PUBLIC"),
                        "lifecycleState": "PUBLISHED",
                        "createdAt": int(p.created_at * 1000),
                        "publishedAt": int(p.created_at * 1000),
                        "lastModifiedAt": int(p.created_at * 1000),
                    }
                    for p in posts
                ],
            }
        )

    async def _comment(self, request: Request) -> Response:
        account_id, refused = self._refused(request)
        if refused:
            return refused
        urn = unquote(request.path_params["urn"])
        body = await request.json()
        with self._lock:
            if urn not in {p.id for p in self._posts}:
                return _error(404, f"Post {urn} does not exist", "NOT_FOUND")
            comment_id = self.next_id()
            self._publish(
                FakePost(
                    comment_id,
                    str(account_id),
                    str((body.get("message") or {}).get("text", "")),
                    time.time(),
                    reply_to=urn,
                    kind="comment",
                )
            )
        return JSONResponse(
            {"id": comment_id, "object": urn, "$URN": f"urn:li:comment:({urn},{comment_id})"}, 201
        )
