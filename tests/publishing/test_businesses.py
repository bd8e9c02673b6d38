"""Businesses, and the listings of a business's accounts and posts (AIP-158 pages)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import field_mask_pb2
from socialhub.v1 import publishing_pb2
from socialhub.v1.publishing_pb2_grpc import PublishingServiceStub

from tests.fakes import Fakes
from tests.helpers import error_info, field_violations
from tests.publishing.support import (
    connect,
    in_future,
    new_business,
    post_request,
    watch_until_final,
)


def test_create_get_update_and_a_retried_create(publishing: PublishingServiceStub) -> None:
    request = publishing_pb2.CreateBusinessRequest(
        business=publishing_pb2.Business(display_name="Acme", time_zone="America/New_York"),
        request_id=str(uuid.uuid4()),
    )
    created = publishing.CreateBusiness(request)
    assert publishing.CreateBusiness(request) == created
    assert created.time_zone == "America/New_York"

    updated = publishing.UpdateBusiness(
        publishing_pb2.UpdateBusinessRequest(
            business=publishing_pb2.Business(name=created.name, display_name="Acme Inc"),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
        )
    )

    assert updated.display_name == "Acme Inc"
    assert updated.time_zone == "America/New_York"
    fetched = publishing.GetBusiness(publishing_pb2.GetBusinessRequest(name=created.name))
    assert fetched == updated


@pytest.mark.parametrize(
    ("business", "field"),
    [
        (publishing_pb2.Business(display_name=" "), "business.display_name"),
        (publishing_pb2.Business(display_name="x" * 201), "business.display_name"),
        (publishing_pb2.Business(display_name="A", time_zone="Mars/Olympus"), "business.time_zone"),
    ],
)
def test_bad_businesses_are_invalid(
    publishing: PublishingServiceStub, business: publishing_pb2.Business, field: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        publishing.CreateBusiness(publishing_pb2.CreateBusinessRequest(business=business))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in field_violations(caught.value)


def test_a_missing_business_is_not_found(publishing: PublishingServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        publishing.GetBusiness(publishing_pb2.GetBusinessRequest(name="businesses/4242"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(caught.value).reason == "BUSINESS_NOT_FOUND"


def test_businesses_page_in_order(publishing: PublishingServiceStub) -> None:
    names = [new_business(publishing, f"B{i}") for i in range(5)]
    seen: list[str] = []
    token = ""
    while True:
        page = publishing.ListBusinesses(
            publishing_pb2.ListBusinessesRequest(page_size=2, page_token=token)
        )
        seen += [business.name for business in page.businesses]
        token = page.next_page_token
        if not token:
            break
    assert seen == names
    with pytest.raises(grpc.RpcError) as caught:
        publishing.ListBusinesses(publishing_pb2.ListBusinessesRequest(page_size=-1))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_posts_page_newest_first_and_filter(
    publishing: PublishingServiceStub, fakes: Fakes
) -> None:
    business = new_business(publishing)
    x = connect(publishing, fakes, business, "x")
    linkedin = connect(publishing, fakes, business, "linkedin")
    sent = publishing.CreateBusinessPost(post_request(business, [x.name], "Sent"))
    watch_until_final(publishing, sent.name)
    scheduled = [
        publishing.CreateBusinessPost(
            post_request(business, [linkedin.name], f"Later {i}", schedule_time=in_future(3600))
        ).name
        for i in range(3)
    ]

    def listing(filter_text: str = "", size: int = 2) -> list[str]:
        names: list[str] = []
        token = ""
        while True:
            page = publishing.ListBusinessPosts(
                publishing_pb2.ListBusinessPostsRequest(
                    parent=business, filter=filter_text, page_size=size, page_token=token
                )
            )
            names += [post.name for post in page.business_posts]
            token = page.next_page_token
            if not token:
                return names

    assert listing() == [*reversed(scheduled), sent.name]
    assert listing('state = "PUBLISHED"') == [sent.name]
    assert listing('state = "SCHEDULED"') == list(reversed(scheduled))
    assert listing(f'account = "{x.name}"') == [sent.name]
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert listing(f'create_time >= "{since}" AND state = "FAILED"') == []
    assert len(listing(f'create_time >= "{since}"', size=500)) == 4


def test_a_page_token_works_only_with_its_own_filter(
    publishing: PublishingServiceStub, fakes: Fakes
) -> None:
    business = new_business(publishing)
    account = connect(publishing, fakes, business, "linkedin")
    for i in range(3):
        publishing.CreateBusinessPost(
            post_request(business, [account.name], f"Later {i}", schedule_time=in_future(3600))
        )
    first = publishing.ListBusinessPosts(
        publishing_pb2.ListBusinessPostsRequest(parent=business, page_size=1)
    )
    with pytest.raises(grpc.RpcError) as caught:
        publishing.ListBusinessPosts(
            publishing_pb2.ListBusinessPostsRequest(
                parent=business,
                page_size=1,
                page_token=first.next_page_token,
                filter='state = "SCHEDULED"',
            )
        )
    assert error_info(caught.value).reason == "PAGE_TOKEN_INVALID"


@pytest.mark.parametrize(
    "filter_text",
    ['state = "SENT"', "state = PUBLISHED", 'author = "x"', 'create_time >= "yesterday"'],
)
def test_a_malformed_filter_is_invalid(publishing: PublishingServiceStub, filter_text: str) -> None:
    business = new_business(publishing)
    with pytest.raises(grpc.RpcError) as caught:
        publishing.ListBusinessPosts(
            publishing_pb2.ListBusinessPostsRequest(parent=business, filter=filter_text)
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "filter" in field_violations(caught.value)
