"""Proto enums <-> the names the analytics tables store."""

from __future__ import annotations

from socialhub.v1 import analytics_pb2, profile_pb2

PROFILE_COLLECTION = "profiles"

PLATFORM_BY_ENUM: dict[int, str] = {
    profile_pb2.PLATFORM_FACEBOOK: "facebook",
    profile_pb2.PLATFORM_X: "x",
    profile_pb2.PLATFORM_INSTAGRAM: "instagram",
    profile_pb2.PLATFORM_YOUTUBE: "youtube",
    profile_pb2.PLATFORM_LINKEDIN: "linkedin",
    # Posts and engagement made through FeedService, which the insights worker records.
    profile_pb2.PLATFORM_SOCIALHUB: "socialhub",
}
# What clients may ingest: every platform but the one the service records itself.
INGESTED_PLATFORMS = frozenset(PLATFORM_BY_ENUM.values()) - {"socialhub"}
ENUM_BY_PLATFORM = {name: number for number, name in PLATFORM_BY_ENUM.items()}

AGE_BY_ENUM: dict[int, str] = {
    analytics_pb2.AGE_RANGE_13_17: "13-17",
    analytics_pb2.AGE_RANGE_18_24: "18-24",
    analytics_pb2.AGE_RANGE_25_34: "25-34",
    analytics_pb2.AGE_RANGE_35_44: "35-44",
    analytics_pb2.AGE_RANGE_45_54: "45-54",
    analytics_pb2.AGE_RANGE_55_64: "55-64",
    analytics_pb2.AGE_RANGE_65_PLUS: "65+",
}
ENUM_BY_AGE = {name: number for number, name in AGE_BY_ENUM.items()}

GENDER_BY_ENUM: dict[int, str] = {
    analytics_pb2.AUDIENCE_GENDER_FEMALE: "female",
    analytics_pb2.AUDIENCE_GENDER_MALE: "male",
    analytics_pb2.AUDIENCE_GENDER_OTHER: "other",
}
ENUM_BY_GENDER = {name: number for number, name in GENDER_BY_ENUM.items()}

GRANULARITY_BY_ENUM: dict[int, str] = {
    analytics_pb2.GRANULARITY_DAY: "day",
    analytics_pb2.GRANULARITY_WEEK: "week",
    analytics_pb2.GRANULARITY_MONTH: "month",
}
