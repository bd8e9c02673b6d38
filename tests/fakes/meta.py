"""A fake Meta Graph API (under /v23.0): Facebook Login with PKCE and the long-lived token
exchange, /me/accounts with Page tokens, Page feed and photos, comments, Instagram media
containers (IN_PROGRESS, then FINISHED after `container_delay_s`, PUBLISHED once) and
media_publish. Every answer carries x-app-usage and x-business-use-case-usage; errors are
Graph's {"error": {...}} bodies (190 for a bad token, 506 duplicate, throttling codes)."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tests.fakes.platform import FakeAccount, FakePlatform, FakePost, form_or_query

VERSION = "v23.0"


@dataclass
class MetaPage(FakeAccount):
    """A Facebook Page (account_id, Page access_token) owned by a user (user_access_token),
    with its Instagram professional account (instagram_id) unless made without one."""

    instagram_id: str | None = None
    instagram_username: str = ""
    user_id: str = ""
    user_access_token: str = field(default="", repr=False)


@dataclass
class _Container:
    id: str
    ig_user_id: str
    caption: str
    media_url: str
    ready_at: float
    status: str = "IN_PROGRESS"  # then FINISHED, PUBLISHED, ERROR, EXPIRED
    # What IN_PROGRESS turns into once ready (fail_next_container makes it ERROR).
    ready_status: str = "FINISHED"


def _graph_error(
    status: int, message: str, code: int, subcode: int | None = None, **extra: Any
) -> JSONResponse:
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code}
    if subcode:
        error["error_subcode"] = subcode
    error |= extra | {"fbtrace_id": secrets.token_urlsafe(8)}
    return JSONResponse({"error": error}, status)


def _time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


class FakeMeta(FakePlatform):
    name = "meta"
    access_ttl_s = 60 * 86400.0  # long-lived user tokens
    # Instagram containers stay IN_PROGRESS this long.
    container_delay_s = 0.0
    # x-app-usage reaches 100% after this many calls per Page (Meta's app limit is 200 calls
    # an hour per user of the app), counted since `reset()`.
    usage_limit = 200
    # What a throttled call answers: the error code and Meta's estimate, in minutes.
    throttle_code = 80001
    regain_minutes = 7

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self._containers: dict[str, _Container] = {}
            self._users: dict[str, str] = {}  # page tokens by page id
            self._next_container_status: str | None = None

    def add_account(self, name: str = "", handle: str = "", *, instagram: bool = True) -> MetaPage:
        user_id = self.next_id()
        page_id = self.next_id()
        user_token, _ = self.mint(user_id, refresh=False)
        page_token, _ = self.mint(page_id, refresh=False)
        with self._lock:
            self._access[page_token].expires_at = float("inf")  # Page tokens do not expire
        ig = self.next_id() if instagram else None
        page = MetaPage(
            page_id,
            name or f"Page {page_id}",
            handle,
            page_token,
            None,
            instagram_id=ig,
            instagram_username=handle or f"ig{ig}",
            user_id=user_id,
            user_access_token=user_token,
        )
        with self._lock:
            self.accounts[page_id] = page
        return page

    add_page = add_account

    def fail_next_container(self, status: str = "ERROR") -> None:
        """The next container created ends in `status` (ERROR or EXPIRED)."""
        with self._lock:
            self._next_container_status = status

    def expire_container(self, container_id: str) -> None:
        with self._lock:
            self._containers[container_id].status = "EXPIRED"

    def containers(self) -> list[dict[str, str]]:
        with self._lock:
            return [{"id": c.id, "status": self._status(c)} for c in self._containers.values()]

    def app(self) -> Starlette:
        v = f"/{VERSION}"
        return Starlette(
            routes=[
                self.route("GET", f"{v}/dialog/oauth", self.authorize, "GET /dialog/oauth"),
                self.route("GET", f"{v}/oauth/access_token", self._token, "/oauth/access_token"),
                self.route("POST", f"{v}/oauth/access_token", self._token, "/oauth/access_token"),
                self.route("GET", f"{v}/me/accounts", self._accounts, "GET /me/accounts"),
                self.route("POST", f"{v}/{{id}}/feed", self._feed_post, "POST /{page_id}/feed"),
                self.route("GET", f"{v}/{{id}}/feed", self._feed, "GET /{page_id}/feed"),
                self.route("POST", f"{v}/{{id}}/photos", self._photo, "POST /{page_id}/photos"),
                self.route("POST", f"{v}/{{id}}/comments", self._comment, "POST /{id}/comments"),
                self.route("POST", f"{v}/{{id}}/media", self._container, "POST /{ig_id}/media"),
                self.route("GET", f"{v}/{{id}}/media", self._media_list, "GET /{ig_id}/media"),
                self.route(
                    "POST",
                    f"{v}/{{id}}/media_publish",
                    self._media_publish,
                    "POST /{ig_id}/media_publish",
                ),
                self.route("GET", f"{v}/{{id}}", self._object, "GET /{id}"),
            ]
        )

    # -- usage, throttling, errors -------------------------------------------------------

    def _usage(self, regain: int = 0) -> dict[str, str]:
        limit = self.usage_limit * max(1, len(self.accounts))
        percent = min(100, self.calls() * 100 // max(1, limit))
        app = {"call_count": percent, "total_cputime": percent // 2, "total_time": percent // 2}
        buc = {
            "0": [
                {
                    "type": "pages",
                    "call_count": percent,
                    "total_cputime": percent // 2,
                    "total_time": percent // 2,
                    "estimated_time_to_regain_access": regain,
                }
            ]
        }
        return {"x-app-usage": json.dumps(app), "x-business-use-case-usage": json.dumps(buc)}

    def decorate(self, request: Request, response: Response) -> Response:
        for key, value in self._usage().items():
            response.headers.setdefault(key, value)
        return response

    def throttled(self, request: Request, endpoint: str) -> Response:
        response = _graph_error(
            400,
            "There have been too many calls to this account. Wait a bit and try again.",
            self.throttle_code,
            is_transient=True,
        )
        response.headers.update(self._usage(regain=self.regain_minutes))
        return response

    def server_error(self, status: int) -> Response:
        return _graph_error(
            status,
            "An unexpected error has occurred. Please retry your request later.",
            2,
            is_transient=True,
        )

    def _account(
        self, request: Request, params: dict[str, str]
    ) -> tuple[str | None, Response | None]:
        # Graph also takes the token as a parameter (the adapters send a header).
        account_id, why = (
            self.token_account(params["access_token"])
            if "access_token" in params
            else self.bearer(request)
        )
        if account_id is None and why == "expired":
            return None, _graph_error(
                400, "Error validating access token: Session has expired.", 190, 463
            )
        if account_id is None:
            return None, _graph_error(
                400, "Invalid OAuth access token - Cannot parse access token", 190
            )
        return account_id, None

    def _page_for(self, object_id: str, token_account: str) -> MetaPage | None:
        """The Page that `object_id` (a Page or its Instagram account) belongs to, if the
        token's account (the Page itself, or its owner) may act on it."""
        with self._lock:
            for page in self.accounts.values():
                assert isinstance(page, MetaPage)
                if object_id in (page.account_id, page.instagram_id) and token_account in (
                    page.account_id,
                    page.user_id,
                ):
                    return page
        return None

    def _no_object(self, object_id: str) -> Response:
        return _graph_error(
            400,
            f"Unsupported post request. Object with ID '{object_id}' does not exist, cannot "
            "be loaded due to missing permissions, or does not support this operation.",
            100,
            33,
        )

    # -- OAuth -------------------------------------------------------------------------

    async def _token(self, request: Request) -> Response:
        p = await form_or_query(request)
        if p.get("client_id") != self.client_id or p.get("client_secret") != self.client_secret:
            return _graph_error(400, "Error validating client secret.", 1, 0)
        if p.get("grant_type") == "fb_exchange_token":
            account_id, why = self.token_account(p.get("fb_exchange_token", ""))
            if account_id is None:
                return _graph_error(400, f"Error validating access token ({why}).", 190)
        else:
            account_id = self.redeem_code(
                p.get("code", ""), p.get("code_verifier", ""), p.get("redirect_uri", "")
            )
            if account_id is None:
                return _graph_error(
                    400, "This authorization code has been used or is invalid.", 100, 36009
                )
        access, _ = self.mint(account_id, refresh=False)
        return JSONResponse(
            {"access_token": access, "token_type": "bearer", "expires_in": int(self.access_ttl_s)}
        )

    def consenting_account(self) -> str:
        # Facebook Login is the user's consent: codes are for the user behind the Page.
        page = self.accounts.get(super().consenting_account())
        assert isinstance(page, MetaPage)
        return page.user_id

    async def _accounts(self, request: Request) -> Response:
        user_id, refused = self._account(request, dict(request.query_params))
        if refused:
            return refused
        fields = request.query_params.get("fields", "id,name")
        pages = []
        for page in list(self.accounts.values()):
            assert isinstance(page, MetaPage)
            if page.user_id != user_id:
                continue
            item: dict[str, Any] = {"id": page.account_id, "name": page.name}
            if "access_token" in fields:
                item["access_token"] = page.access_token
            if "picture" in fields:
                item["picture"] = {
                    "data": {"url": f"https://scontent.xx.fbcdn.net/{page.account_id}.jpg"}
                }
            if "instagram_business_account" in fields and page.instagram_id:
                item["instagram_business_account"] = {
                    "id": page.instagram_id,
                    "username": page.instagram_username,
                    "profile_picture_url": f"https://scontent.cdninstagram.com/{page.instagram_id}.jpg",
                }
            pages.append(item)
        return JSONResponse({"data": pages, "paging": {"cursors": {}}})

    # -- Facebook Page -----------------------------------------------------------------

    async def _feed_post(self, request: Request) -> Response:
        return await self._page_post(request, photo=False)

    async def _photo(self, request: Request) -> Response:
        return await self._page_post(request, photo=True)

    async def _page_post(self, request: Request, *, photo: bool) -> Response:
        p = await form_or_query(request)
        account_id, refused = self._account(request, p)
        if refused:
            return refused
        page = self._page_for(request.path_params["id"], str(account_id))
        if page is None:
            return self._no_object(request.path_params["id"])
        message = p.get("message", "")
        if photo and not p.get("url"):
            return _graph_error(400, "(#324) Requires upload file", 324)
        if not photo and not message and not p.get("link"):
            return _graph_error(400, "(#100) Missing message or attachment", 100)
        if len(message) > 63206:
            return _graph_error(400, "(#100) The message is too long", 100)
        with self._lock:
            last = [x for x in self._posts if x.account_id == page.account_id and x.kind == "post"]
            if message and last and last[-1].text == message:
                return _graph_error(
                    400,
                    "(#506) Duplicate status message",
                    506,
                    1455006,
                    error_user_title="Duplicate Status Update",
                    error_user_msg="This status update is identical to the last one you posted. "
                    "Try posting something different, or delete your previous update.",
                )
            post_id = f"{page.account_id}_{self.next_id()}"
            self._publish(
                FakePost(post_id, page.account_id, message, time.time(), media_url=p.get("url"))
            )
        if photo:
            return JSONResponse({"id": self.next_id(), "post_id": post_id})
        return JSONResponse({"id": post_id})

    async def _feed(self, request: Request) -> Response:
        p = dict(request.query_params)
        account_id, refused = self._account(request, p)
        if refused:
            return refused
        page = self._page_for(request.path_params["id"], str(account_id))
        if page is None:
            return self._no_object(request.path_params["id"])
        since = float(p.get("since", 0))
        posts = [x for x in reversed(self.posts(page.account_id)) if x.created_at >= since]
        limit = int(p.get("limit", 25))
        return JSONResponse(
            {
                "data": [
                    {"id": x.id, "message": x.text, "created_time": _time(x.created_at)}
                    for x in posts[:limit]
                ]
            }
        )

    async def _comment(self, request: Request) -> Response:
        p = await form_or_query(request)
        account_id, refused = self._account(request, p)
        if refused:
            return refused
        target = request.path_params["id"]
        with self._lock:
            if target not in {x.id for x in self._posts}:
                return self._no_object(target)
            comment_id = self.next_id()
            self._publish(
                FakePost(
                    comment_id,
                    str(account_id),
                    p.get("message", ""),
                    time.time(),
                    reply_to=target,
                    kind="comment",
                )
            )
        return JSONResponse({"id": comment_id})

    # -- Instagram ---------------------------------------------------------------------

    def _status(self, container: _Container) -> str:
        if container.status == "IN_PROGRESS" and time.time() >= container.ready_at:
            container.status = container.ready_status
        return container.status

    async def _container(self, request: Request) -> Response:
        p = await form_or_query(request)
        account_id, refused = self._account(request, p)
        if refused:
            return refused
        ig_id = request.path_params["id"]
        page = self._page_for(ig_id, str(account_id))
        if page is None or page.instagram_id != ig_id:
            return self._no_object(ig_id)
        url = p.get("image_url") or p.get("video_url")
        if not url:
            return _graph_error(400, "(#100) The parameter image_url is required", 100)
        if p.get("video_url") and p.get("media_type") not in ("REELS", "VIDEO", "STORIES"):
            return _graph_error(400, "(#100) media_type REELS is required for video", 100)
        if len(p.get("caption", "")) > 2200:
            return _graph_error(400, "(#100) The caption is too long", 100, 2207003)
        with self._lock:
            container = _Container(
                self.next_id(),
                ig_id,
                p.get("caption", ""),
                url,
                time.time() + self.container_delay_s,
            )
            if self._next_container_status:
                container.ready_status = self._next_container_status
                self._next_container_status = None
            self._containers[container.id] = container
        return JSONResponse({"id": container.id})

    async def _media_publish(self, request: Request) -> Response:
        p = await form_or_query(request)
        account_id, refused = self._account(request, p)
        if refused:
            return refused
        ig_id = request.path_params["id"]
        if self._page_for(ig_id, str(account_id)) is None:
            return self._no_object(ig_id)
        with self._lock:
            container = self._containers.get(p.get("creation_id", ""))
            if container is None or container.ig_user_id != ig_id:
                return self._no_object(p.get("creation_id", ""))
            status = self._status(container)
            if status == "IN_PROGRESS":
                return _graph_error(
                    400,
                    "Media ID is not available",
                    9007,
                    2207027,
                    error_user_msg="The media is not ready for publishing, please wait",
                )
            if status != "FINISHED":
                return _graph_error(
                    400, f"The media container is {status} and cannot be published", 9007, 2207008
                )
            container.status = "PUBLISHED"
            media = self._publish(
                FakePost(
                    self.next_id(),
                    ig_id,
                    container.caption,
                    time.time(),
                    media_url=container.media_url,
                    extra={"container": container.id, "shortcode": secrets.token_urlsafe(8)},
                )
            )
        return JSONResponse({"id": media.id})

    async def _media_list(self, request: Request) -> Response:
        p = dict(request.query_params)
        account_id, refused = self._account(request, p)
        if refused:
            return refused
        ig_id = request.path_params["id"]
        if self._page_for(ig_id, str(account_id)) is None:
            return self._no_object(ig_id)
        limit = int(p.get("limit", 25))
        return JSONResponse(
            {
                "data": [
                    {
                        "id": m.id,
                        "caption": m.text,
                        "timestamp": _time(m.created_at),
                        "permalink": f"https://www.instagram.com/p/{m.extra['shortcode']}/",
                    }
                    for m in list(reversed(self.posts(ig_id)))[:limit]
                ]
            }
        )

    async def _object(self, request: Request) -> Response:
        p = dict(request.query_params)
        _, refused = self._account(request, p)
        if refused:
            return refused
        object_id = request.path_params["id"]
        with self._lock:
            container = self._containers.get(object_id)
            if container is not None:
                status = self._status(container)
                return JSONResponse({"id": object_id, "status_code": status, "status": status})
            for post in self._posts:
                if post.id == object_id:
                    shortcode = post.extra.get("shortcode")
                    body: dict[str, Any] = {"id": post.id}
                    if shortcode:
                        body["permalink"] = f"https://www.instagram.com/p/{shortcode}/"
                    else:
                        body["message"] = post.text
                    return JSONResponse(body)
        return self._no_object(object_id)
