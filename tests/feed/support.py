"""Helpers for the feed tests: profiles through the API, bulk data through COPY."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from socialhub.v1 import feed_pb2, profile_pb2
from socialhub.v1.feed_pb2_grpc import FeedServiceStub
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from tests.harness import Backing
from tests.helpers import error_info, field_violations, new_profile

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_profiles(profiles: ProfileServiceStub, count: int) -> list[str]:
    return [
        profiles.CreateProfile(
            profile_pb2.CreateProfileRequest(profile=new_profile(f"Person {i}"))
        ).name
        for i in range(count)
    ]


def struct(**fields: Any) -> struct_pb2.Struct:
    value = struct_pb2.Struct()
    value.update(fields)
    return value


def tags_of(value: struct_pb2.Struct) -> list[str]:
    return [item.string_value for item in value.fields["tags"].list_value.values]


def post(feed: FeedServiceStub, author: str, body: str = "hello", **fields: Any) -> feed_pb2.Post:
    """Create a post; `fields` are Post fields (tags=[...], location=Location(...), ...)."""
    return feed.CreatePost(
        feed_pb2.CreatePostRequest(post=feed_pb2.Post(author=author, body=body, **fields))
    )


def id_of(name: str) -> int:
    return int(name.rsplit("/", 1)[1])


def by_author(profile: str) -> str:
    """ListPosts' filter for one author's posts."""
    return f'author = "{profile}"'


def home_timeline_of(profile: str) -> str:
    """ListPosts' filter for a profile's home timeline."""
    return f'home_timeline = "{profile}"'


def followee_is(profile: str) -> str:
    """ListFollows' filter (with parent "profiles/-") for a profile's followers."""
    return f'followee = "{profile}"'


def follow_name(follower: str, followee: str) -> str:
    return f"{follower}/follows/{id_of(followee)}"


def like_name(post_name: str, profile: str) -> str:
    return f"{post_name}/likes/{id_of(profile)}"


def relationship_name(profile: str, other: str) -> str:
    return f"{profile}/relationships/{id_of(other)}"


def follower_of(follow: feed_pb2.Follow) -> str:
    """The following profile of a Follow: the parent of its name."""
    return follow.name.rsplit("/", 2)[0]


def profile(profiles: ProfileServiceStub, name: str) -> profile_pb2.Profile:
    return profiles.GetProfile(profile_pb2.GetProfileRequest(name=name))


def invalid(call: Any, field: str) -> str:
    """Run `call`, expect INVALID_ARGUMENT naming `field`, return the description."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    violations = field_violations(caught.value)
    assert field in violations, violations
    return violations[field]


def not_found(call: Any, reason: str | None = None) -> None:
    """Run `call`, expect NOT_FOUND (with ErrorInfo `reason`, when given)."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND, caught.value.details()
    if reason is not None:
        assert error_info(caught.value).reason == reason


def copy_profiles(backing: Backing, count: int) -> list[int]:
    """`count` bare profiles with COPY; returns their ids."""
    with backing.sql() as conn:
        with conn.cursor().copy("COPY profiles (display_name, x_handle) FROM STDIN") as copy:
            for index in range(count):
                copy.write_row((f"Bulk {index}", f"bulk{index}"))
        rows = conn.execute("SELECT id FROM profiles ORDER BY id").fetchall()
    return [row[0] for row in rows]


def copy_posts(backing: Backing, rows: Iterable[tuple[int, str, list[str], datetime]]) -> None:
    """Posts (author_id, body, tags, created_at) with COPY, counters fixed afterwards."""
    with backing.sql() as conn:
        columns = "author_id, body, tags, created_at, updated_at"
        with conn.cursor().copy(f"COPY posts ({columns}) FROM STDIN") as copy:
            for author_id, body, tags, created_at in rows:
                copy.write_row((author_id, body, tags, created_at, created_at))
        conn.execute(
            "INSERT INTO profile_counters (profile_id, posts_count) "
            "SELECT author_id, count(*) FROM posts GROUP BY author_id "
            "ON CONFLICT (profile_id) DO UPDATE SET posts_count = excluded.posts_count"
        )


def copy_follows(backing: Backing, pairs: Sequence[tuple[int, int]]) -> None:
    with backing.sql() as conn:
        with conn.cursor().copy(
            "COPY follows (follower_id, followee_id, created_at) FROM STDIN"
        ) as copy:
            for index, (follower, followee) in enumerate(pairs):
                copy.write_row((follower, followee, T0 + timedelta(seconds=index)))
        for column, key in (("followers_count", "followee_id"), ("following_count", "follower_id")):
            conn.execute(
                f"INSERT INTO profile_counters (profile_id, {column}) "
                f"SELECT {key}, count(*) FROM follows GROUP BY {key} "
                f"ON CONFLICT (profile_id) DO UPDATE SET {column} = excluded.{column}"
            )
