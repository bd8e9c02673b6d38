"""The composition root: the one place that lists the domains.

Adding a domain means its folder under server/, its proto, its migration, and one line in
DOMAINS (after the domains whose public modules it uses).
"""

from __future__ import annotations

from typing import Any

from pydantic_settings import BaseSettings
from sqlalchemy import MetaData

from server.analytics.domain import DOMAIN as ANALYTICS
from server.core.app import Application
from server.core.config import Settings
from server.core.domain import Domain
from server.core.schema import core_tables
from server.feed.domain import DOMAIN as FEED
from server.profiles.domain import DOMAIN as PROFILES
from server.publishing.domain import DOMAIN as PUBLISHING

DOMAINS: tuple[Domain, ...] = (PROFILES, FEED, PUBLISHING, ANALYTICS)


def application(
    settings: Settings, database_url: str, redis_url: str, **options: Any
) -> Application:
    return Application(settings, database_url, redis_url, domains=DOMAINS, **options)


def target_metadata() -> MetaData:
    """The complete schema the code expects (migrations compare against it)."""
    metadata = core_tables()[0].metadata
    assert all(table.metadata is metadata for domain in DOMAINS for table in domain.tables)
    return metadata


def data_tables() -> list[str]:
    """Every table a test may fill, for the per-test cleanup."""
    return [
        *(table.name for table in core_tables()),
        *(table.name for domain in DOMAINS for table in domain.tables),
    ]


def setting_names() -> set[str]:
    """The environment variables the service reads: core settings and every domain's."""
    classes: list[type[BaseSettings]] = [Settings]
    classes += [domain.settings for domain in DOMAINS if domain.settings is not None]
    return {name.upper() for kind in classes for name in kind.model_fields}
