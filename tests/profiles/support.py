"""Helpers shared by the ProfileService tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from socialhub.v1 import profile_pb2
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from server.profiles.seeding import seed_profiles
from tests.harness import ServerThread
from tests.helpers import field_violations, new_profile


def create(profiles: ProfileServiceStub, display_name: str = "Ada Lovelace", **fields: Any) -> str:
    """Create a profile and return its name."""
    request = profile_pb2.CreateProfileRequest(profile=new_profile(display_name, **fields))
    return profiles.CreateProfile(request).name


def invalid(call: Callable[[], object]) -> dict[str, str]:
    """Run `call`, expect INVALID_ARGUMENT, and return its field violations."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    return field_violations(caught.value)


def list_pages(
    profiles: ProfileServiceStub, request: profile_pb2.ListProfilesRequest
) -> Iterator[profile_pb2.ListProfilesResponse]:
    """Every page of a listing, following next_page_token to the end."""
    page = profile_pb2.ListProfilesRequest()
    page.CopyFrom(request)
    while True:
        response = profiles.ListProfiles(page)
        yield response
        if not response.next_page_token:
            return
        page.page_token = response.next_page_token


def search_pages(
    profiles: ProfileServiceStub, request: profile_pb2.SearchProfilesRequest
) -> Iterator[profile_pb2.SearchProfilesResponse]:
    page = profile_pb2.SearchProfilesRequest()
    page.CopyFrom(request)
    while True:
        response = profiles.SearchProfiles(page)
        yield response
        if not response.next_page_token:
            return
        page.page_token = response.next_page_token


def seed(server: ServerThread, count: int) -> None:
    """Bulk-load `count` demo profiles behind the service's back (no cache invalidation)."""
    assert server.app is not None
    assert server.app.engine is not None
    server.run(seed_profiles(server.app.engine, count, progress=False))
