"""One adapter per platform (see `base.py` for the interface and its outcomes)."""

from __future__ import annotations

from server.publishing.adapters.base import Adapter, Platform
from server.publishing.adapters.facebook import FacebookAdapter
from server.publishing.adapters.instagram import InstagramAdapter
from server.publishing.adapters.linkedin import LinkedInAdapter
from server.publishing.adapters.meta import MetaGraph
from server.publishing.adapters.x import XAdapter
from server.publishing.settings import PublishingSettings


def build_adapters(settings: PublishingSettings) -> dict[Platform, Adapter]:
    """Each adapter owns its HTTP client (close them all with `aclose()`); Facebook and
    Instagram share Meta's, which the last of them to close closes."""
    graph = MetaGraph(settings)
    return {
        Platform.X: XAdapter(settings),
        Platform.LINKEDIN: LinkedInAdapter(settings),
        Platform.FACEBOOK: FacebookAdapter(graph),
        Platform.INSTAGRAM: InstagramAdapter(graph),
    }


__all__ = ["build_adapters"]
