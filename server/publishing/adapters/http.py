"""What the three platform adapters share: their httpx client, and the mapping of a failed
exchange to `Transient` with the right `maybe_sent`.

Messages built here name the platform and the kind of failure, never `str(exc)`: an httpx
exception's text can carry the request URL, and Meta accepts tokens in query strings.
"""

from __future__ import annotations

import functools
import html
import re
import ssl
from datetime import UTC, datetime, timedelta
from typing import Any

import certifi
import httpx

from server.publishing.adapters.base import Transient
from server.publishing.settings import PublishingSettings


@functools.cache
def _tls() -> ssl.SSLContext:
    # Loading the CA bundle takes ~0.1 s: once per process, not once per client.
    return ssl.create_default_context(cafile=certifi.where())


def client(settings: PublishingSettings, base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        verify=_tls(),
        timeout=httpx.Timeout(
            settings.platform_timeout_s, connect=settings.platform_connect_timeout_s
        ),
        # Platforms answer a publish with 201 and a body; a redirect would be a mistake here.
        follow_redirects=False,
    )


def bearer(access_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token}"}


def network_failure(platform: str, exc: httpx.HTTPError) -> Transient:
    """A request that got no usable answer. Only a failure before the request left this
    process (no connection, or a pool wait) proves nothing reached the platform."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return Transient(f"{platform}: could not connect ({type(exc).__name__})", False)
    if isinstance(exc, httpx.TimeoutException):
        return Transient(f"{platform}: no answer in time ({type(exc).__name__})", True)
    # RemoteProtocolError, ReadError, WriteError...: the request may have been written.
    return Transient(f"{platform}: connection lost ({type(exc).__name__})", True)


def json_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def server_error(platform: str, response: httpx.Response) -> Transient:
    # A 5xx after the request was written: the platform may have acted on it.
    return Transient(f"{platform}: HTTP {response.status_code} from the platform", True)


def next_utc_midnight(now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    return (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


def expires_at(expires_in: object) -> datetime | None:
    if isinstance(expires_in, int | float) and expires_in > 0:
        return datetime.now(UTC) + timedelta(seconds=float(expires_in))
    return None


_URL = re.compile(r"https?://\S+", re.IGNORECASE)


def same_text(published: str, sent: str) -> bool:
    """Whether a post's text as a platform returns it is the text we sent. Platforms rewrite
    links (X's t.co), escape HTML (X's &amp;) and trim whitespace, so compare what survives."""

    def normal(text: str) -> str:
        return " ".join(_URL.sub("<url>", html.unescape(text)).split())

    return normal(published) == normal(sent)


def safe(text: object, limit: int = 300) -> str:
    """A platform's error text, bounded, for an outcome message."""
    return str(text)[:limit]
