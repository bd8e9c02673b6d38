"""Request validation and proto -> domain mapping for ProfileService."""

from __future__ import annotations

import re
from datetime import date

from email_validator import EmailNotValidError, validate_email
from google.protobuf.message import Message
from socialhub.v1 import profile_pb2

from server.core.errors import InvalidArgument, Violations
from server.core.validation import check_text
from server.profiles.model import PlatformStatus, ProfileFilter, ProfileOrder, ProfileValues
from server.profiles.tables import (
    FILTER_COLUMNS,
    LENGTHS,
    MAX_TOTAL_FOLLOWERS,
    PLATFORMS,
    total_followers,
)

PLATFORM_BY_ENUM = {
    profile_pb2.PLATFORM_FACEBOOK: "facebook",
    profile_pb2.PLATFORM_X: "x",
    profile_pb2.PLATFORM_INSTAGRAM: "instagram",
    profile_pb2.PLATFORM_YOUTUBE: "youtube",
    profile_pb2.PLATFORM_LINKEDIN: "linkedin",
}
TEXT_FIELDS = (
    "display_name",
    "username",
    "designation",
    "zone",
    "party_district",
    "constituency",
    "email",
    "phone",
    "bio",
)
PRESENCE_FIELDS = ("handle", "followers", "active", "verified")
OUTPUT_ONLY = frozenset(
    {
        "name",
        "total_followers",
        "create_time",
        "update_time",
        "followers_count",
        "following_count",
        "posts_count",
    }
)
MUTABLE_TOP_LEVEL = (*TEXT_FIELDS, "date_of_birth", *PLATFORMS)
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
MAX_QUERY_LENGTH = 200
FILTER_VALUE_MAX = 100
# Active and verified for each platform; more conditions can only repeat these.
MAX_PLATFORM_STATUSES = 2 * len(PLATFORMS)


def require_message(request: Message, field: str) -> None:
    """A REQUIRED message field must be present, not merely empty-valued."""
    if not request.HasField(field):
        raise InvalidArgument.single(field, "is required")


def input_only(profile: profile_pb2.Profile) -> profile_pb2.Profile:
    """`profile` without the fields a request cannot set (its name and the output-only ones)."""
    copy = profile_pb2.Profile()
    copy.CopyFrom(profile)
    message: Message = copy  # field names from a set, not literals
    for field in OUTPUT_ONLY:
        message.ClearField(field)
    return copy


def _text_value(violations: Violations, profile: profile_pb2.Profile, column: str) -> str | None:
    value: str = getattr(profile, column)
    field = f"profile.{column}"
    check_text(violations, field, value, LENGTHS[column])
    if column == "display_name" and not value.strip():
        violations.add(field, "is required")
    if column == "email" and value:
        try:
            validate_email(value, check_deliverability=False)
        except EmailNotValidError as error:
            # The library lists every offending character; keep error trailers small.
            violations.add(field, f"is not a valid email address: {str(error)[:200]}")
    return value or None


def _date_value(violations: Violations, value: str) -> date | None:
    if not value:
        return None
    try:
        if not _ISO_DATE.fullmatch(value):
            raise ValueError
        parsed = date.fromisoformat(value)
    except ValueError:
        violations.add("profile.date_of_birth", "must be a date formatted YYYY-MM-DD")
        return None
    if parsed > date.today():
        violations.add("profile.date_of_birth", "must not be in the future")
    return parsed


def _presence_values(
    violations: Violations, profile: profile_pb2.Profile, platform: str, fields: tuple[str, ...]
) -> ProfileValues:
    presence: profile_pb2.PlatformPresence = getattr(profile, platform)
    prefix = f"profile.{platform}"
    values: ProfileValues = {}
    if "handle" in fields:
        check_text(violations, f"{prefix}.handle", presence.handle, LENGTHS["handle"])
        values[f"{platform}_handle"] = presence.handle or None
    if "followers" in fields:
        if presence.followers < 0:
            violations.add(f"{prefix}.followers", "must be >= 0")
        values[f"{platform}_followers"] = presence.followers
    if "active" in fields:
        values[f"{platform}_active"] = presence.active
    if "verified" in fields:
        values[f"{platform}_verified"] = presence.verified
    if fields == PRESENCE_FIELDS and not presence.handle and presence.ByteSize():
        violations.add(f"{prefix}.handle", "is required when the presence has other fields set")
    return values


def _field_values(violations: Violations, profile: profile_pb2.Profile, path: str) -> ProfileValues:
    if path in TEXT_FIELDS:
        return {path: _text_value(violations, profile, path)}
    if path == "date_of_birth":
        return {path: _date_value(violations, profile.date_of_birth)}
    platform, _, sub_field = path.partition(".")
    return _presence_values(
        violations, profile, platform, (sub_field,) if sub_field else PRESENCE_FIELDS
    )


def values_for_create(profile: profile_pb2.Profile) -> ProfileValues:
    violations = Violations()
    values: ProfileValues = {}
    for path in MUTABLE_TOP_LEVEL:
        values.update(_field_values(violations, profile, path))
    if not any(values[f"{platform}_handle"] for platform in PLATFORMS):
        violations.add("profile", "at least one platform handle is required")
    if total_followers(values) > MAX_TOTAL_FOLLOWERS:
        violations.add("profile", f"followers must add up to at most {MAX_TOTAL_FOLLOWERS}")
    violations.raise_if_any()
    return values


def _check_mask_path(violations: Violations, path: str) -> None:
    top, separator, sub_field = path.partition(".")
    if top in OUTPUT_ONLY:
        # Truncated like below: error details travel in size-capped trailers.
        violations.add("update_mask", f"'{path[:100]}' is output only")
    # "bio." or "x." must not pass as "bio" or "x": a separator needs a presence field after it.
    elif top not in MUTABLE_TOP_LEVEL or (
        separator and (top not in PLATFORMS or sub_field not in PRESENCE_FIELDS)
    ):
        violations.add("update_mask", f"'{path[:100]}' is not an updatable field of Profile")


def values_for_update(profile: profile_pb2.Profile, paths: list[str]) -> ProfileValues:
    violations = Violations()
    if not paths:
        violations.add("update_mask", "must name at least one field")
    expanded = list(MUTABLE_TOP_LEVEL) if paths == ["*"] else paths
    for path in expanded:
        _check_mask_path(violations, path)
        if violations.items:
            break  # one bad path is enough: thousands would overflow the error's trailers
    violations.raise_if_any()
    values: ProfileValues = {}
    for path in expanded:
        values.update(_field_values(violations, profile, path))
    violations.raise_if_any()
    return values


def platform_of(violations: Violations, field: str, value: int, *, optional: bool) -> str | None:
    if value == profile_pb2.PLATFORM_UNSPECIFIED and optional:
        return None
    platform: str | None = PLATFORM_BY_ENUM.get(value)  # type: ignore[call-overload]
    if platform is None:
        violations.add(field, "must be one of the PLATFORM_ values other than UNSPECIFIED")
    return platform


def filter_from_proto(
    violations: Violations, message: profile_pb2.ProfileFilter, field: str = "filter"
) -> ProfileFilter:
    exact: dict[str, str | None] = {}
    for column in FILTER_COLUMNS:
        value: str = getattr(message, column)
        check_text(violations, f"{field}.{column}", value, FILTER_VALUE_MAX)
        exact[column] = value or None
    statuses = []
    if len(message.platform_statuses) > MAX_PLATFORM_STATUSES:
        violations.add(
            f"{field}.platform_statuses", f"must hold at most {MAX_PLATFORM_STATUSES} conditions"
        )
        return ProfileFilter(**exact, platform_statuses=())
    for index, status in enumerate(message.platform_statuses):
        platform = platform_of(
            violations,
            f"{field}.platform_statuses[{index}].platform",
            status.platform,
            optional=False,
        )
        if platform is not None:
            statuses.append(
                PlatformStatus(
                    platform=platform,
                    active=status.active if status.HasField("active") else None,
                    verified=status.verified if status.HasField("verified") else None,
                )
            )
    return ProfileFilter(**exact, platform_statuses=tuple(statuses))


def followers_column(platform: str | None) -> str:
    return f"{platform}_followers" if platform else "total_followers"


def order_from_proto(violations: Violations, message: profile_pb2.ProfileOrder) -> ProfileOrder:
    platform = platform_of(violations, "order.platform", message.platform, optional=True)
    field = message.field
    if field == profile_pb2.PROFILE_SORT_FIELD_FOLLOWERS:
        return ProfileOrder(followers_column(platform), message.descending)
    if platform is not None:
        violations.add("order.platform", "applies only to PROFILE_SORT_FIELD_FOLLOWERS")
    if field in (
        profile_pb2.PROFILE_SORT_FIELD_UNSPECIFIED,
        profile_pb2.PROFILE_SORT_FIELD_DISPLAY_NAME,
    ):
        return ProfileOrder("display_name", message.descending)
    if field == profile_pb2.PROFILE_SORT_FIELD_CREATE_TIME:
        return ProfileOrder("created_at", message.descending)
    violations.add("order.field", "is not a known PROFILE_SORT_FIELD_ value")
    return ProfileOrder()


def search_query(violations: Violations, query: str) -> str:
    check_text(violations, "query", query, MAX_QUERY_LENGTH)
    if not query.strip():
        violations.add("query", "is required")
    return query
