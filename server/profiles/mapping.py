"""Database rows -> protobuf messages of the profiles domain."""

from __future__ import annotations

from typing import Any

from socialhub.v1 import profile_pb2

from server.core.db import columns_of
from server.core.names import format_name
from server.core.timestamps import timestamp
from server.profiles.tables import PLATFORMS

COLLECTION = "profiles"
_OPTIONAL_TEXT = (
    "username",
    "designation",
    "zone",
    "party_district",
    "constituency",
    "email",
    "phone",
    "bio",
)


def profile_from_row(row: Any) -> profile_pb2.Profile:
    """From a SQLAlchemy Row or an asyncpg Record (CompiledQuery)."""
    data = columns_of(row)
    profile = profile_pb2.Profile(
        name=format_name(COLLECTION, data["id"]),
        display_name=data["display_name"],
        total_followers=data["total_followers"],
        create_time=timestamp(data["created_at"]),
        update_time=timestamp(data["updated_at"]),
        **{column: data[column] for column in _OPTIONAL_TEXT if data[column] is not None},
    )
    if data["date_of_birth"] is not None:
        profile.date_of_birth = data["date_of_birth"].isoformat()
    for platform in PLATFORMS:
        if data[f"{platform}_handle"] is not None:
            getattr(profile, platform).CopyFrom(
                profile_pb2.PlatformPresence(
                    handle=data[f"{platform}_handle"],
                    followers=data[f"{platform}_followers"],
                    active=data[f"{platform}_active"],
                    verified=data[f"{platform}_verified"],
                )
            )
    return profile
