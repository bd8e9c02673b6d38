"""The profiles table, as the migrations create it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Computed,
    Date,
    DateTime,
    Identity,
    Index,
    String,
    Table,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import TSVECTOR

from server.core.db import metadata

PLATFORMS = ("facebook", "x", "instagram", "youtube", "linkedin")

# Column lengths are the validation limits too.
LENGTHS = {
    "display_name": 200,
    "username": 100,
    "designation": 100,
    "zone": 100,
    "party_district": 100,
    "constituency": 100,
    "email": 254,
    "phone": 32,
    "bio": 2000,
    "handle": 100,
}
FILTER_COLUMNS = ("zone", "party_district", "constituency", "designation")
# total_followers is a generated BIGINT: PostgreSQL fails a write whose sum exceeds it.
MAX_TOTAL_FOLLOWERS = 2**63 - 1


def total_followers(values: Mapping[str, Any]) -> int:
    """The generated column's value for a row, or create input, holding every platform."""
    return sum(int(values[f"{platform}_followers"]) for platform in PLATFORMS)


_TOTAL_FOLLOWERS = " + ".join(f"{p}_followers" for p in PLATFORMS)
_SEARCH_DOCUMENT = " || ' ' || ".join(
    f"coalesce({c}, '')"
    for c in ("display_name", "username", *(f"{p}_handle" for p in PLATFORMS), "designation", "bio")
)


def _platform_columns(platform: str) -> list[Column[object]]:
    return [
        Column(f"{platform}_handle", String(LENGTHS["handle"])),
        Column(f"{platform}_followers", BigInteger, nullable=False, server_default=text("0")),
        Column(f"{platform}_active", Boolean, nullable=False, server_default=text("false")),
        Column(f"{platform}_verified", Boolean, nullable=False, server_default=text("false")),
    ]


profiles = Table(
    "profiles",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("display_name", String(LENGTHS["display_name"]), nullable=False),
    Column("username", String(LENGTHS["username"]), unique=True),
    Column("designation", String(LENGTHS["designation"])),
    Column("zone", String(LENGTHS["zone"])),
    Column("party_district", String(LENGTHS["party_district"])),
    Column("constituency", String(LENGTHS["constituency"])),
    Column("date_of_birth", Date),
    Column("email", String(LENGTHS["email"])),
    Column("phone", String(LENGTHS["phone"])),
    Column("bio", String(LENGTHS["bio"])),
    *(column for platform in PLATFORMS for column in _platform_columns(platform)),
    Column(
        "total_followers", BigInteger, Computed(_TOTAL_FOLLOWERS, persisted=True), nullable=False
    ),
    Column(
        "search_vector",
        TSVECTOR,
        Computed(f"to_tsvector('simple'::regconfig, {_SEARCH_DOCUMENT})", persisted=True),
    ),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    *(
        CheckConstraint(f"{p}_followers >= 0", name=f"{p}_followers_non_negative")
        for p in PLATFORMS
    ),
    *(Index(None, column) for column in FILTER_COLUMNS),
    Index("ix_profiles_zone_designation", "zone", "designation"),
    # Sort keys end with id so the keyset row comparison (key, id) > (:key, :id) is one index range.
    Index("ix_profiles_display_name_id", "display_name", "id"),
    Index("ix_profiles_created_at_id", "created_at", "id"),
    Index("ix_profiles_total_followers_id", "total_followers", "id"),
    *(Index(f"ix_profiles_{p}_followers_id", f"{p}_followers", "id") for p in PLATFORMS),
    Index("ix_profiles_search_vector", "search_vector", postgresql_using="gin"),
)

# What reads return; the search vector stays in the database.
PROFILE_COLUMNS = tuple(c for c in profiles.c if c.name != "search_vector")
