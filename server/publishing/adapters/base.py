"""The one small interface every platform adapter implements, and what it reports.

An adapter speaks one platform's HTTP API (on `httpx`, base URLs from PublishingSettings,
every call with a timeout) and turns the platform's answers into the outcomes below: the
service decides what an outcome means for a target (retry, defer, fail, reconnect), the
adapter decides which outcome a platform answer is. Tokens travel only inside `Credentials`
and `TokenGrant`, whose reprs hide them, and never appear in a message an adapter returns.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


class Platform(enum.StrEnum):
    X = "x"
    LINKEDIN = "linkedin"
    FACEBOOK = "facebook"
    INSTAGRAM = "instagram"


@dataclass(frozen=True, slots=True)
class Content:
    """What one target publishes, as the user wrote it (validated by `Adapter.check`)."""

    text: str
    media_urls: tuple[str, ...] = ()
    # Posted as a comment (a reply on X) under the published post, once it exists.
    first_comment: str = ""
    # X only: follow-up posts, each a reply to the one before.
    thread: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Credentials:
    """A connected account as an adapter needs it. Decrypted, in memory only."""

    # The platform's id of the account: X user id, LinkedIn person or organization URN,
    # Facebook Page id, Instagram professional account (IG user) id.
    account_id: str
    access_token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """A token endpoint's answer (code exchange or refresh)."""

    access_token: str = field(repr=False)
    # None: the platform issued none (or, on refresh, kept the old one: keep using it).
    refresh_token: str | None = field(repr=False)
    expires_at: datetime | None
    refresh_expires_at: datetime | None = None
    scopes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a new token belongs to (CompleteAccountConnection stores it with the account)."""

    account_id: str
    display_name: str
    handle: str = ""
    avatar_url: str = ""
    # Meta: a Page's own access token, which replaces the user's token for that Page.
    access_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Quota:
    """What a response said about the caller's remaining quota, where the platform says it."""

    # Calls left in the current window and when it resets (X's x-rate-limit-* headers).
    remaining: int | None = None
    reset_at: datetime | None = None
    # The highest percentage of Meta's x-app-usage / x-business-use-case-usage.
    usage_percent: float | None = None
    # The highest of x-app-usage alone: the whole app's budget, shared by every Page.
    app_usage_percent: float | None = None
    # The whole app has no calls left until then (X's x-app-limit-24hour-* headers).
    app_exhausted_until: datetime | None = None


# Outcomes of a publish. Each carries the quota the platform reported with it, if any.


@dataclass(frozen=True, slots=True)
class Published:
    post_id: str
    url: str
    quota: Quota | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """Permanent: the platform refused this content (validation, duplicate). Never retried."""

    message: str
    # The platform's own code: "403 duplicate content", "DUPLICATE_POST", "100", ...
    code: str
    quota: Quota | None = None


@dataclass(frozen=True, slots=True)
class Unauthorized:
    """The access token was refused (401; Meta code 190): refresh, then try once more."""

    message: str
    quota: Quota | None = None


@dataclass(frozen=True, slots=True)
class Throttled:
    """A rate limit was reached: nothing was published; try again at `retry_at`."""

    message: str
    retry_at: datetime
    quota: Quota | None = None


@dataclass(frozen=True, slots=True)
class Transient:
    """A timeout, refused connection or 5xx. `maybe_sent`: the platform may have received
    the request (it was written before the failure), so the post may exist: reconcile
    (`Adapter.find`) before sending again, never resend blindly."""

    message: str
    maybe_sent: bool
    quota: Quota | None = None


PublishOutcome = Published | Rejected | Unauthorized | Throttled | Transient


class CannotTell(enum.Enum):
    """`Adapter.find`'s answer where the platform offers no way to know."""

    CANNOT_TELL = "cannot_tell"


class TokenRefused(Exception):
    """Permanent refusal at the token endpoint (invalid_grant, revoked): the user must
    reconnect. The message is the platform's reason, safe to show (it holds no token)."""


class TokenUnavailable(Exception):
    """Transient failure at the token endpoint (timeout, 5xx): try again later; the account
    stays connected."""


# Records an intermediate platform id (Instagram's media container, the X post a thread
# continues from) before the next step, so a later attempt resumes instead of redoing it.
Checkpoint = Callable[[str, str], Awaitable[None]]


class Adapter(Protocol):
    platform: Platform

    def check(self, content: Content) -> list[tuple[str, str]]:
        """The content's violations of the platform's rules, as (field, description) with
        field one of `text`, `media_urls`, `first_comment`, `thread[i]`; empty when fine."""
        ...

    def authorize_url(self, *, state: str, code_challenge: str, redirect_uri: str) -> str:
        """The OAuth 2.0 consent URL (PKCE, S256) the user opens to connect an account."""
        ...

    async def exchange_code(
        self, *, code: str, code_verifier: str, redirect_uri: str
    ) -> TokenGrant:
        """Raises TokenRefused or TokenUnavailable."""
        ...

    async def refresh(self, refresh_token: str) -> TokenGrant:
        """Raises TokenRefused (invalid_grant: reconnect) or TokenUnavailable (retry)."""
        ...

    async def identity(self, access_token: str) -> Identity:
        """The account a fresh token reaches. Raises TokenRefused or TokenUnavailable."""
        ...

    async def publish(
        self,
        credentials: Credentials,
        content: Content,
        *,
        resume: Mapping[str, str],
        checkpoint: Checkpoint,
    ) -> PublishOutcome:
        """Publish `content`; `resume` holds what `checkpoint` recorded by an earlier attempt
        of the same target. Never raises for a platform's answer or a network failure."""
        ...

    async def find(
        self,
        credentials: Credentials,
        content: Content,
        *,
        since: datetime,
        resume: Mapping[str, str],
    ) -> Published | CannotTell | None:
        """Whether an earlier attempt of this target, sent after `since`, was published:
        the platform's post (found), None (it was not), or CANNOT_TELL. Raises nothing for a
        platform's answer; a failure to ask is CANNOT_TELL."""
        ...

    async def aclose(self) -> None: ...
