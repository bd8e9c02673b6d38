"""Facebook Pages: POST /{page-id}/feed for text, /{page-id}/photos for one image,
/{post-id}/comments for the first comment, /{page-id}/feed to reconcile."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from server.publishing.adapters.base import (
    CannotTell,
    Checkpoint,
    Content,
    Credentials,
    Identity,
    Platform,
    Published,
    PublishOutcome,
    TokenGrant,
    TokenRefused,
    Transient,
)
from server.publishing.adapters.http import same_text
from server.publishing.adapters.meta import MetaGraph

MAX_MESSAGE = 63206
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".webm")


class FacebookAdapter:
    platform = Platform.FACEBOOK

    def __init__(self, graph: MetaGraph) -> None:
        self._graph = graph.retain()
        self._web = graph.settings.meta_web_base_url

    async def aclose(self) -> None:
        await self._graph.release()

    def check(self, content: Content) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if not content.text.strip() and not content.media_urls:
            problems.append(("text", "Facebook needs text or an image"))
        if len(content.text) > MAX_MESSAGE:
            problems.append(
                ("text", f"Facebook allows {MAX_MESSAGE} characters; this has {len(content.text)}")
            )
        if len(content.media_urls) > 1:
            problems.append(("media_urls", "Facebook: one image per post for now"))
        elif content.media_urls and content.media_urls[0].lower().endswith(VIDEO_SUFFIXES):
            problems.append(("media_urls", "Facebook: videos are not supported yet"))
        problems += [(f"thread[{i}]", "threads are for X only") for i in range(len(content.thread))]
        return problems

    def authorize_url(self, *, state: str, code_challenge: str, redirect_uri: str) -> str:
        return self._graph.authorize_url(
            state=state, code_challenge=code_challenge, redirect_uri=redirect_uri
        )

    async def exchange_code(
        self, *, code: str, code_verifier: str, redirect_uri: str
    ) -> TokenGrant:
        return await self._graph.exchange_code(
            code=code, code_verifier=code_verifier, redirect_uri=redirect_uri
        )

    async def refresh(self, refresh_token: str) -> TokenGrant:
        return await self._graph.refresh(refresh_token)

    async def identity(self, access_token: str) -> Identity:
        # The first Page the user granted; its own token replaces the user's for publishing.
        pages = await self._graph.get_identity(access_token, "id,name,access_token,picture")
        if not pages:
            raise TokenRefused("Meta: the user granted access to no Facebook Page")
        page = pages[0]
        picture = ((page.get("picture") or {}).get("data") or {}).get("url", "")
        return Identity(
            account_id=str(page.get("id", "")),
            display_name=str(page.get("name", "")),
            avatar_url=str(picture),
            access_token=page.get("access_token"),
        )

    def _url(self, post_id: str) -> str:
        return f"{self._web}/{post_id}"

    async def publish(
        self,
        credentials: Credentials,
        content: Content,
        *,
        resume: Mapping[str, str],
        checkpoint: Checkpoint,
    ) -> PublishOutcome:
        token = credentials.access_token
        post_id = resume.get("post")
        quota = None
        if post_id is None:
            if content.media_urls:
                data = {"url": content.media_urls[0], "message": content.text}
                answer = await self._graph.call(
                    "POST", f"/{credentials.account_id}/photos", token, data=data
                )
            else:
                data = {"message": content.text}
                answer = await self._graph.call(
                    "POST", f"/{credentials.account_id}/feed", token, data=data
                )
            if not isinstance(answer, tuple):
                return answer
            body, quota = answer
            # /photos answers the photo's id and the feed post's id; the post is what we link.
            post_id = str(body.get("post_id") or body.get("id") or "")
            if not post_id:
                return Transient("Meta: the post was accepted without an id", True, quota)
            await checkpoint("post", post_id)
        if content.first_comment and "comment" not in resume:
            answer = await self._graph.call(
                "POST", f"/{post_id}/comments", token, data={"message": content.first_comment}
            )
            if not isinstance(answer, tuple):
                return answer
            body, quota = answer
            await checkpoint("comment", str(body.get("id", "")))
        return Published(post_id, self._url(post_id), quota)

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
        params = {
            "fields": "id,message,created_time",
            "since": str(int((since.astimezone(UTC) - timedelta(seconds=1)).timestamp())),
            "limit": "100",
        }
        answer = await self._graph.call(
            "GET", f"/{credentials.account_id}/feed", credentials.access_token, params=params
        )
        if not isinstance(answer, tuple):
            return CannotTell.CANNOT_TELL
        for post in answer[0].get("data") or []:
            if post.get("id") and same_text(str(post.get("message", "")), content.text):
                return Published(str(post["id"]), self._url(str(post["id"])))
        return None
