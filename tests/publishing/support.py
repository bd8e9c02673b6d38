"""Helpers for the publishing tests: businesses and accounts through the API, on the fakes."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from socialhub.v1 import profile_pb2, publishing_pb2
from socialhub.v1.publishing_pb2_grpc import PublishingServiceStub

from tests.fakes import Fakes
from tests.fakes.platform import FakeAccount
from tests.helpers import rich_status

Target = publishing_pb2.PublishTarget
FINAL = {Target.STATE_PUBLISHED, Target.STATE_FAILED, Target.STATE_NEEDS_REVIEW}
PLATFORMS = {
    "x": profile_pb2.PLATFORM_X,
    "linkedin": profile_pb2.PLATFORM_LINKEDIN,
    "facebook": profile_pb2.PLATFORM_FACEBOOK,
    "instagram": profile_pb2.PLATFORM_INSTAGRAM,
}
IMAGE = "https://cdn.example.org/photo.jpg"


@dataclass(frozen=True)
class Connected:
    name: str  # businesses/{b}/accounts/{a}
    platform: str
    fake: FakeAccount
    # The id the fake publishes under (the Instagram account's, for Instagram).
    platform_account_id: str


def consent(authorize_uri: str) -> dict[str, str]:
    """What a platform fake's consent page (approved at once) sends back to the redirect
    URI: its query, `code` and `state`."""
    answer = httpx.get(authorize_uri, follow_redirects=False, timeout=5)
    assert answer.status_code in (302, 303), answer.text
    query = urllib.parse.urlparse(answer.headers["location"]).query
    return dict(urllib.parse.parse_qsl(query))


def new_business(stub: PublishingServiceStub, display_name: str = "Acme Bakery") -> str:
    created = stub.CreateBusiness(
        publishing_pb2.CreateBusinessRequest(
            business=publishing_pb2.Business(display_name=display_name, time_zone="Europe/Paris")
        )
    )
    return created.name


def connect(
    stub: PublishingServiceStub, fakes: Fakes, business: str, platform: str, **fake: Any
) -> Connected:
    """A fresh account on the platform's fake, connected with ConnectAccount."""
    if platform in ("facebook", "instagram"):
        page = fakes.meta.add_account(**fake)
        token, refresh = page.user_access_token, None
        fake_account: FakeAccount = page
        platform_id = page.instagram_id if platform == "instagram" else page.account_id
    else:
        fake_account = getattr(fakes, platform).add_account(**fake)
        token, refresh = fake_account.access_token, fake_account.refresh_token
        platform_id = fake_account.account_id
    request = publishing_pb2.ConnectAccountRequest(
        parent=business,
        platform=PLATFORMS[platform],
        access_token=token,
        refresh_token=refresh or "",
    )
    request.token_expire_time.FromDatetime(datetime.now(UTC) + timedelta(hours=2))
    account = stub.ConnectAccount(request).account
    assert platform_id is not None
    return Connected(account.name, platform, fake_account, platform_id)


def post_request(
    business: str, accounts: list[str], text: str = "Fresh bread at 7", **fields: Any
) -> publishing_pb2.CreateBusinessPostRequest:
    return publishing_pb2.CreateBusinessPostRequest(
        parent=business,
        business_post=publishing_pb2.BusinessPost(
            text=text,
            targets=[Target(account=account) for account in accounts],
            **fields,
        ),
    )


def in_future(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC) + timedelta(seconds=seconds))
    return stamp


def watch_until_final(
    stub: PublishingServiceStub, name: str, timeout: float = 20.0
) -> list[publishing_pb2.BusinessPost]:
    """Every message WatchBusinessPost sends; the last has every target final."""
    seen = [
        message.business_post
        for message in stub.WatchBusinessPost(
            publishing_pb2.WatchBusinessPostRequest(name=name), timeout=timeout
        )
    ]
    assert seen, "the stream sent nothing"
    assert all(target.state in FINAL for target in seen[-1].targets), seen[-1]
    return seen


def states(post: publishing_pb2.BusinessPost) -> list[str]:
    return [Target.State.Name(target.state) for target in post.targets]


def attempts(stub: PublishingServiceStub, post: str) -> list[publishing_pb2.PublishAttempt]:
    return list(
        stub.ListPublishAttempts(
            publishing_pb2.ListPublishAttemptsRequest(parent=post, page_size=500)
        ).publish_attempts
    )


def violations_of(error: grpc.RpcError) -> list[tuple[str, str]]:
    """Every BadRequest violation, in order (one field may be named for several targets)."""
    found: list[tuple[str, str]] = []
    for detail in rich_status(error).details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            found += [(v.field, v.description) for v in bad_request.field_violations]
    return found
