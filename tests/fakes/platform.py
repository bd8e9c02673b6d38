"""What every fake platform shares: tokens, the OAuth consent with PKCE, published posts, and
the knobs that make an endpoint fail, stall, throttle or lose its answer.

State is guarded by one lock: handlers run on the server's thread, knobs on the test's.
Endpoints are named by method and route template, as in "POST /2/tweets".
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import random
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class FakePost:
    """Something a fake platform published: a post, a reply, a comment or a media."""

    id: str
    account_id: str
    text: str
    created_at: float
    reply_to: str | None = None
    kind: str = "post"
    media_url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class FakeAccount:
    account_id: str
    name: str
    handle: str
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)


@dataclass
class _Token:
    account_id: str
    expires_at: float
    revoked: bool = False
    used: bool = False


@dataclass
class _Fault:
    endpoint: str | None
    kind: str  # "fail" | "stall" | "drop" | "hold"
    times: int
    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


class _CutAnswer(Response):
    """Promises a body and ends after one byte: uvicorn closes the connection, so the client
    sees the call fail after the platform has done the work."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"4096")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"{", "more_body": True})


class FakePlatform:
    name = "platform"
    # X's refresh tokens are single-use; LinkedIn's last until they expire.
    single_use_refresh = True
    access_ttl_s = 7200.0
    refresh_ttl_s = 180 * 86400.0

    def __init__(self, client_id: str, client_secret: str) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.url = ""  # set once the server listens
        self._lock = threading.RLock()
        self._ids = itertools.count(1_000_001)
        self.reset()

    # -- state -------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every account, token, post and knob (between tests)."""
        with self._lock:
            self.accounts: dict[str, FakeAccount] = {}
            self._access: dict[str, _Token] = {}
            self._refresh: dict[str, _Token] = {}
            self._codes: dict[str, dict[str, str]] = {}
            self._posts: list[FakePost] = []
            self._faults: list[_Fault] = []
            self._calls: dict[str, int] = {}
            self._throttle: tuple[str | None, int] | None = None
            self._latency: dict[str | None, tuple[float, float]] = {}
            # Calls being answered, by the client's port: (endpoint, "received"|"accepted").
            self._in_flight: dict[int, tuple[str, str]] = {}
            self._random = random.Random(0)
            self.consenting: str | None = None

    def next_id(self) -> str:
        return str(next(self._ids))

    def posts(self, account_id: str | None = None, *, kind: str | None = "post") -> list[FakePost]:
        """What was published, oldest first (kind None: posts, replies and comments)."""
        with self._lock:
            return [
                replace(p)
                for p in self._posts
                if (account_id is None or p.account_id == account_id)
                and (kind is None or p.kind == kind)
            ]

    def calls(self, endpoint: str | None = None) -> int:
        with self._lock:
            if endpoint is None:
                return sum(self._calls.values())
            return self._calls.get(endpoint, 0)

    def _publish(self, post: FakePost) -> FakePost:
        with self._lock:
            self._posts.append(post)
        return post

    # -- tokens ------------------------------------------------------------------------

    def mint(self, account_id: str, *, refresh: bool = True) -> tuple[str, str | None]:
        with self._lock:
            access = f"{self.name}-at-{secrets.token_urlsafe(16)}"
            self._access[access] = _Token(account_id, time.time() + self.access_ttl_s)
            if not refresh:
                return access, None
            refresh_token = f"{self.name}-rt-{secrets.token_urlsafe(16)}"
            self._refresh[refresh_token] = _Token(account_id, time.time() + self.refresh_ttl_s)
            return access, refresh_token

    def issued_tokens(self) -> list[str]:
        """Every access and refresh token issued since the last reset (to assert no leak)."""
        with self._lock:
            return [*self._access, *self._refresh]

    def expire_access_tokens(self, account_id: str | None = None) -> None:
        """Every access token (of one account) is now expired: calls answer 401 (Meta 190)."""
        with self._lock:
            for token in self._access.values():
                if account_id is None or token.account_id == account_id:
                    token.expires_at = 0

    def revoke_refresh_token(self, refresh_token: str) -> None:
        with self._lock:
            self._refresh[refresh_token].revoked = True

    def revoke_account(self, account_id: str) -> None:
        """The user removed the app: every token of the account is refused (invalid_grant)."""
        with self._lock:
            for token in [*self._access.values(), *self._refresh.values()]:
                if token.account_id == account_id:
                    token.revoked = True

    def bearer(self, request: Request) -> tuple[str | None, str]:
        """The account of the request's token, or None and why not."""
        header = request.headers.get("authorization", "")
        return self.token_account(header[7:] if header.lower().startswith("bearer ") else "")

    def token_account(self, token: str) -> tuple[str | None, str]:
        with self._lock:
            found = self._access.get(token)
            if found is None or found.revoked:
                return None, "invalid"
            if found.expires_at < time.time():
                return None, "expired"
            return found.account_id, ""

    def use_refresh_token(self, refresh_token: str) -> tuple[str | None, float]:
        """The account a refresh token belongs to (spending it if single-use), and its
        expiry; None when it is unknown, revoked, expired or already used."""
        with self._lock:
            token = self._refresh.get(refresh_token)
            if token is None or token.revoked or token.used or token.expires_at < time.time():
                return None, 0
            token.used = self.single_use_refresh
            return token.account_id, token.expires_at

    # -- OAuth consent (auto-approved) and PKCE ----------------------------------------

    def consent_as(self, account_id: str) -> None:
        """The account the next consents pick (default: the last one added)."""
        with self._lock:
            self.consenting = account_id

    def consenting_account(self) -> str:
        with self._lock:
            if self.consenting:
                return self.consenting
            if not self.accounts:
                self.add_account()
            return list(self.accounts)[-1]

    def add_account(self, name: str = "") -> FakeAccount:
        raise NotImplementedError

    def app(self) -> Starlette:
        raise NotImplementedError

    async def authorize(self, request: Request) -> Response:
        """The consent page, approved at once: redirects with a code bound to the PKCE
        challenge and the redirect URI, after checking what the platform checks."""
        q = request.query_params
        problem = (
            "client_id is not this app's"
            if q.get("client_id") != self.client_id
            else "response_type must be code"
            if q.get("response_type") != "code"
            else "code_challenge_method must be S256"
            if q.get("code_challenge_method") != "S256" or not q.get("code_challenge")
            else "redirect_uri is required"
            if not q.get("redirect_uri")
            else ""
        )
        if problem:
            return JSONResponse({"error": "invalid_request", "error_description": problem}, 400)
        code = secrets.token_urlsafe(16)
        with self._lock:
            self._codes[code] = {
                "account_id": self.consenting_account(),
                "challenge": q["code_challenge"],
                "redirect_uri": q["redirect_uri"],
                "scope": q.get("scope", ""),
            }
        query = urlencode({"code": code, "state": q.get("state", "")})
        return RedirectResponse(f"{q['redirect_uri']}?{query}", status_code=302)

    def redeem_code(self, code: str, verifier: str, redirect_uri: str) -> str | None:
        """The account a code was granted for; a code works once, with its PKCE verifier."""
        with self._lock:
            grant = self._codes.pop(code, None)
        if grant is None or grant["redirect_uri"] != redirect_uri:
            return None
        digest = hashlib.sha256(verifier.encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant["challenge"]:
            return None
        return grant["account_id"]

    # -- knobs -------------------------------------------------------------------------

    def fail(
        self,
        endpoint: str | None,
        status: int = 503,
        body: Any = None,
        *,
        times: int = 1,
        headers: dict[str, str] | None = None,
    ) -> None:
        """The next `times` calls of `endpoint` (None: any) answer `status` and `body`
        (default: a platform-like 5xx body) without doing anything."""
        self._add(_Fault(endpoint, "fail", times, status, body, headers or {}))

    def stall(self, endpoint: str | None, seconds: float, *, times: int = 1) -> None:
        """The next `times` calls sleep `seconds` before being handled (then they are)."""
        self._add(_Fault(endpoint, "stall", times, seconds=seconds))

    def drop(self, endpoint: str | None, *, times: int = 1) -> None:
        """The next `times` calls are handled (the post is created) and then the connection
        is cut before the answer: the client cannot know it worked."""
        self._add(_Fault(endpoint, "drop", times))

    def hold(self, endpoint: str | None, seconds: float, *, times: int = 1) -> None:
        """The next `times` calls are handled (the post is created), then the answer is held
        back `seconds`: a client that dies meanwhile never learns that it worked."""
        self._add(_Fault(endpoint, "hold", times, seconds=seconds))

    def latency(self, endpoint: str | None, low_s: float, high_s: float, *, seed: int = 0) -> None:
        """Every call of `endpoint` (None: any) from now on sleeps a uniformly random
        `low_s`..`high_s` before being handled, until `reset()` (`high_s` 0: no latency)."""
        with self._lock:
            self._random = random.Random(seed)
            if high_s <= 0:
                self._latency.pop(endpoint, None)
            else:
                self._latency[endpoint] = (low_s, high_s)

    def throttle_after(self, calls: int, endpoint: str | None = None) -> None:
        """After `calls` more calls of `endpoint` (None: any), every call is throttled the
        platform's way, until `reset()` or `throttle_after(...)` again."""
        with self._lock:
            self._throttle = (endpoint, calls)

    def _add(self, fault: _Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def in_flight(self) -> dict[int, tuple[str, str]]:
        """The calls being answered now, by the client's TCP port: their endpoint, and
        "received" (not handled yet), or "accepted" / "refused" (handled, and the answer,
        a success or an error, held back by `hold`)."""
        with self._lock:
            return dict(self._in_flight)

    def _phase(self, port: int, endpoint: str, phase: str | None) -> None:
        with self._lock:
            if phase is None:
                self._in_flight.pop(port, None)
            else:
                self._in_flight[port] = (endpoint, phase)

    def _delay(self, endpoint: str) -> float:
        with self._lock:
            bounds = self._latency.get(endpoint) or self._latency.get(None)
            return self._random.uniform(*bounds) if bounds else 0.0

    def _take(self, endpoint: str) -> tuple[_Fault | None, bool]:
        with self._lock:
            self._calls[endpoint] = self._calls.get(endpoint, 0) + 1
            throttled = False
            if self._throttle and self._throttle[0] in (None, endpoint):
                left = self._throttle[1]
                throttled = left <= 0
                self._throttle = (self._throttle[0], left - 1)
            for fault in self._faults:
                if fault.endpoint in (None, endpoint):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault, throttled
            return None, throttled

    # -- routing -----------------------------------------------------------------------

    def throttled(self, request: Request, endpoint: str) -> Response:
        raise NotImplementedError

    def server_error(self, status: int) -> Response:
        return JSONResponse({"message": "Internal Server Error", "status": status}, status)

    def decorate(self, request: Request, response: Response) -> Response:
        """Headers the platform adds to every answer (Meta's usage headers)."""
        return response

    def route(self, method: str, path: str, handler: Handler, endpoint: str = "") -> Route:
        name = endpoint or f"{method} {path}"

        async def endpoint_fn(request: Request) -> Response:
            port = request.client.port if request.client else 0
            self._phase(port, name, "received")
            try:
                return await answer(request, port)
            finally:
                self._phase(port, name, None)

        async def answer(request: Request, port: int) -> Response:
            delay = self._delay(name)
            if delay:
                await asyncio.sleep(delay)
            fault, throttled = self._take(name)
            if fault and fault.kind == "fail":
                if fault.body is None and fault.status >= 500:
                    response = self.server_error(fault.status)
                else:
                    response = JSONResponse(fault.body, fault.status, headers=fault.headers)
                return self.decorate(request, response)
            if fault and fault.kind == "stall":
                await asyncio.sleep(fault.seconds)
            if throttled:
                return self.decorate(request, self.throttled(request, name))
            response = await handler(request)
            if fault and fault.kind == "drop":
                return _CutAnswer()
            if fault and fault.kind == "hold":
                self._phase(port, name, "accepted" if response.status_code < 400 else "refused")
                await asyncio.sleep(fault.seconds)
            return self.decorate(request, response)

        return Route(path, endpoint_fn, methods=[method])


async def form_or_query(request: Request) -> dict[str, str]:
    """Parameters as OAuth and Graph endpoints take them: query string and form body."""
    params = dict(request.query_params)
    # Parsed here: Starlette's request.form() needs python-multipart, not a dependency.
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        params |= dict(parse_qsl((await request.body()).decode()))
    return params
