"""Domain types of the profiles domain: what the service takes, independent of protobuf."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Column name -> new value; the shape of create and update input.
ProfileValues = dict[str, Any]


@dataclass(frozen=True)
class PlatformStatus:
    platform: str
    active: bool | None = None
    verified: bool | None = None


@dataclass(frozen=True)
class ProfileFilter:
    zone: str | None = None
    party_district: str | None = None
    constituency: str | None = None
    designation: str | None = None
    platform_statuses: tuple[PlatformStatus, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class ProfileOrder:
    column: str = "display_name"
    descending: bool = False
