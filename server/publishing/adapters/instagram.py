"""Instagram content publishing: a media container (POST /{ig-user-id}/media), polled until
FINISHED, then POST /{ig-user-id}/media_publish. The container is checkpointed, so a resumed
attempt reuses it, and its status (PUBLISHED) tells whether an earlier attempt published."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

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
    TokenGrant,
    TokenRefused,
    Transient,
)
from server.publishing.adapters.facebook import VIDEO_SUFFIXES
from server.publishing.adapters.http import same_text
from server.publishing.adapters.meta import MetaGraph

MAX_CAPTION = 2200
MAX_HASHTAGS = 30


class InstagramAdapter:
    platform = Platform.INSTAGRAM

    def __init__(self, graph: MetaGraph) -> None:
        self._graph = graph.retain()
        self._settings = graph.settings

    async def aclose(self) -> None:
        await self._graph.release()

    def check(self, content: Content) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if len(content.text) > MAX_CAPTION:
            problems.append(
                ("text", f"Instagram allows {MAX_CAPTION} characters; this has {len(content.text)}")
            )
        if content.text.count("#") > MAX_HASHTAGS:
            problems.append(("text", f"Instagram allows {MAX_HASHTAGS} hashtags"))
        if not content.media_urls:
            problems.append(("media_urls", "Instagram needs an image or a video"))
        elif len(content.media_urls) > 1:
            problems.append(("media_urls", "Instagram: one image or video per post for now"))
        if len(content.first_comment) > MAX_CAPTION:
            problems.append(("first_comment", f"Instagram allows {MAX_CAPTION} characters"))
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
        # The Instagram professional account linked to the first granted Page that has one;
        # it publishes with that Page's token.
        fields = "id,name,access_token,instagram_business_account{id,username,profile_picture_url}"
        for page in await self._graph.get_identity(access_token, fields):
            ig = page.get("instagram_business_account")
            if isinstance(ig, dict) and ig.get("id"):
                return Identity(
                    account_id=str(ig["id"]),
                    display_name=str(ig.get("username") or page.get("name", "")),
                    handle=str(ig.get("username", "")),
                    avatar_url=str(ig.get("profile_picture_url", "")),
                    access_token=page.get("access_token"),
                )
        raise TokenRefused("Meta: no granted Page has an Instagram professional account")

    async def publish(
        self,
        credentials: Credentials,
        content: Content,
        *,
        resume: Mapping[str, str],
        checkpoint: Checkpoint,
    ) -> PublishOutcome:
        media_id = resume.get("media")
        quota: Quota | None = None
        if media_id is None:
            outcome = await self._publish_container(credentials, content, resume, checkpoint)
            if not isinstance(outcome, tuple):
                return outcome
            media_id, quota = outcome
            await checkpoint("media", media_id)
        if content.first_comment and "comment" not in resume:
            answer = await self._graph.call(
                "POST",
                f"/{media_id}/comments",
                credentials.access_token,
                data={"message": content.first_comment},
            )
            if not isinstance(answer, tuple):
                return answer
            await checkpoint("comment", str(answer[0].get("id", "")))
        return Published(media_id, await self._permalink(credentials, media_id), quota)

    async def _publish_container(
        self,
        credentials: Credentials,
        content: Content,
        resume: Mapping[str, str],
        checkpoint: Checkpoint,
    ) -> tuple[str, Quota | None] | PublishOutcome:
        container = resume.get("container")
        for _ in range(2):  # a second time only when the checkpointed container expired
            if container is None:
                created = await self._create_container(credentials, content)
                if not isinstance(created, str):
                    return created
                container = created
                await checkpoint("container", container)
            status = await self._wait(credentials, container)
            if status == "EXPIRED":  # unpublished for 24 hours: Instagram wants a new one
                container = None
                continue
            if status == "PUBLISHED":  # an earlier attempt published it; its answer was lost
                found = await self._find_media(credentials, content, since=None)
                if isinstance(found, Published):
                    return found.post_id, None
                return Transient("Instagram: published, but the media is not listed yet", True)
            if not isinstance(status, str):
                return status
            if status == "ERROR":
                return Rejected("Instagram could not process the media", "container ERROR")
            if status != "FINISHED":
                # Nothing is published yet; the next attempt resumes with this container.
                return Transient("Instagram: the media is still being processed", False)
            answer = await self._graph.call(
                "POST",
                f"/{credentials.account_id}/media_publish",
                credentials.access_token,
                data={"creation_id": container},
            )
            if not isinstance(answer, tuple):
                return answer
            media_id = answer[0].get("id")
            if not media_id:
                return Transient("Instagram: published without an id", True, answer[1])
            return str(media_id), answer[1]
        return Rejected("Instagram: the media container expired twice", "container EXPIRED")

    async def _create_container(
        self, credentials: Credentials, content: Content
    ) -> str | PublishOutcome:
        url = content.media_urls[0]
        media = (
            {"media_type": "REELS", "video_url": url}
            if url.lower().endswith(VIDEO_SUFFIXES)
            else {"image_url": url}
        )
        answer = await self._graph.call(
            "POST",
            f"/{credentials.account_id}/media",
            credentials.access_token,
            data={**media, "caption": content.text},
        )
        if not isinstance(answer, tuple):
            return answer
        if not answer[0].get("id"):
            return Transient("Instagram: the container was created without an id", True)
        return str(answer[0]["id"])

    async def _wait(self, credentials: Credentials, container: str) -> str | PublishOutcome:
        """The container's status_code once it is no longer IN_PROGRESS, or the last one."""
        status = "IN_PROGRESS"
        for attempt in range(max(1, self._settings.instagram_container_polls)):
            if attempt:
                await asyncio.sleep(self._settings.instagram_container_poll_s)
            answer = await self._graph.call(
                "GET", f"/{container}", credentials.access_token, params={"fields": "status_code"}
            )
            if not isinstance(answer, tuple):
                return answer
            status = str(answer[0].get("status_code", ""))
            if status != "IN_PROGRESS":
                return status
        return status

    async def _permalink(self, credentials: Credentials, media_id: str) -> str:
        answer = await self._graph.call(
            "GET", f"/{media_id}", credentials.access_token, params={"fields": "permalink"}
        )
        if isinstance(answer, tuple) and answer[0].get("permalink"):
            return str(answer[0]["permalink"])
        # The post exists: a failed lookup of its link must not make the publish fail.
        return self._settings.instagram_web_base_url

    async def find(
        self,
        credentials: Credentials,
        content: Content,
        *,
        since: datetime,
        resume: Mapping[str, str],
    ) -> Published | CannotTell | None:
        if "media" in resume:
            return Published(resume["media"], await self._permalink(credentials, resume["media"]))
        if "container" in resume:
            # The container tells: only PUBLISHED means media_publish went through.
            status = await self._wait_once(credentials, resume["container"])
            if status is None:
                return CannotTell.CANNOT_TELL
            if status != "PUBLISHED":
                return None
        return await self._find_media(credentials, content, since=since)

    async def _wait_once(self, credentials: Credentials, container: str) -> str | None:
        answer = await self._graph.call(
            "GET", f"/{container}", credentials.access_token, params={"fields": "status_code"}
        )
        return str(answer[0].get("status_code")) if isinstance(answer, tuple) else None

    async def _find_media(
        self, credentials: Credentials, content: Content, *, since: datetime | None
    ) -> Published | CannotTell | None:
        answer = await self._graph.call(
            "GET",
            f"/{credentials.account_id}/media",
            credentials.access_token,
            params={"fields": "id,caption,timestamp,permalink", "limit": "50"},
        )
        if not isinstance(answer, tuple):
            return CannotTell.CANNOT_TELL
        after = since.astimezone(UTC) - timedelta(seconds=1) if since else None
        for media in answer[0].get("data") or []:
            if after and _timestamp(media) < after:
                continue
            if media.get("id") and same_text(str(media.get("caption", "")), content.text):
                url = str(media.get("permalink") or self._settings.instagram_web_base_url)
                return Published(str(media["id"]), url)
        return None


def _timestamp(media: dict[str, Any]) -> datetime:
    try:
        return datetime.strptime(str(media.get("timestamp")), "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        return datetime.max.replace(tzinfo=UTC)  # unknown: do not rule it out
