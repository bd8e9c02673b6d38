"""Tenancy (AIP-211): a key bound to businesses reaches only those, through every RPC.

Each RPC of PublishingService (read from the generated descriptor, so a new one cannot be
forgotten) is called with a key bound to business A and one bound to B: on its own business
it works, on the other one it is PERMISSION_DENIED (BUSINESS_ACCESS_DENIED), and on a business
that does not exist it is the very same error, so nothing tells the two apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from socialhub.v1 import profile_pb2, publishing_pb2
from socialhub.v1.publishing_pb2_grpc import PublishingServiceStub

from tests.fakes import Fakes
from tests.harness import Backing, ServerThread
from tests.helpers import error_info
from tests.publishing.support import connect, consent, in_future, new_business, post_request

METHODS = [
    method.name
    for method in publishing_pb2.DESCRIPTOR.services_by_name["PublishingService"].methods
]
# The two methods that name no business: checked by tests of their own below.
UNSCOPED = {"CreateBusiness", "ListBusinesses"}
GHOST = "businesses/999999"
SCOPES = ["publishing.read", "publishing.write"]


@dataclass(frozen=True)
class Tenant:
    """A business with one connected account and one scheduled (so deletable) post."""

    business: str
    account: str
    post: str
    exists: bool = True


@dataclass(frozen=True)
class World:
    admin: PublishingServiceStub
    fakes: Fakes


Call = Callable[[World, PublishingServiceStub, Tenant], object]


def _consent(world: World, tenant: Tenant) -> tuple[str, str]:
    """(state, code) of a consent for `tenant`, started by the admin; made up for a ghost."""
    if not tenant.exists:
        return "no-such-state", "no-such-code"
    started = world.admin.StartAccountConnection(
        publishing_pb2.StartAccountConnectionRequest(
            parent=tenant.business, platform=profile_pb2.PLATFORM_X
        )
    )
    query = consent(started.authorize_uri)
    assert query["state"] == started.state, query
    return started.state, query["code"]


def _complete(world: World, stub: PublishingServiceStub, tenant: Tenant) -> object:
    state, code = _consent(world, tenant)
    return stub.CompleteAccountConnection(
        publishing_pb2.CompleteAccountConnectionRequest(
            parent=tenant.business, state=state, code=code
        )
    )


def _connect(world: World, stub: PublishingServiceStub, tenant: Tenant) -> object:
    fresh = world.fakes.x.add_account()
    return stub.ConnectAccount(
        publishing_pb2.ConnectAccountRequest(
            parent=tenant.business,
            platform=profile_pb2.PLATFORM_X,
            access_token=fresh.access_token,
            refresh_token=fresh.refresh_token or "",
        )
    )


def _watch(world: World, stub: PublishingServiceStub, tenant: Tenant) -> object:
    # Server streaming: the error comes with the first message. The post is scheduled, so
    # the stream would not end: the first message is enough.
    stream = stub.WatchBusinessPost(
        publishing_pb2.WatchBusinessPostRequest(name=tenant.post), timeout=10
    )
    try:
        return next(iter(stream))
    finally:
        stream.cancel()


SCOPED: dict[str, Call] = {
    "GetBusiness": lambda w, stub, t: stub.GetBusiness(
        publishing_pb2.GetBusinessRequest(name=t.business)
    ),
    "UpdateBusiness": lambda w, stub, t: stub.UpdateBusiness(
        publishing_pb2.UpdateBusinessRequest(
            business=publishing_pb2.Business(name=t.business, display_name="Renamed"),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
        )
    ),
    "StartAccountConnection": lambda w, stub, t: stub.StartAccountConnection(
        publishing_pb2.StartAccountConnectionRequest(
            parent=t.business, platform=profile_pb2.PLATFORM_LINKEDIN
        )
    ),
    "CompleteAccountConnection": _complete,
    "ConnectAccount": _connect,
    "GetAccount": lambda w, stub, t: stub.GetAccount(
        publishing_pb2.GetAccountRequest(name=t.account)
    ),
    "ListAccounts": lambda w, stub, t: stub.ListAccounts(
        publishing_pb2.ListAccountsRequest(parent=t.business)
    ),
    "DisconnectAccount": lambda w, stub, t: stub.DisconnectAccount(
        publishing_pb2.DisconnectAccountRequest(name=t.account)
    ),
    "CreateBusinessPost": lambda w, stub, t: stub.CreateBusinessPost(
        post_request(t.business, [t.account], "Later", schedule_time=in_future(3600))
    ),
    "GetBusinessPost": lambda w, stub, t: stub.GetBusinessPost(
        publishing_pb2.GetBusinessPostRequest(name=t.post)
    ),
    "ListBusinessPosts": lambda w, stub, t: stub.ListBusinessPosts(
        publishing_pb2.ListBusinessPostsRequest(
            parent=t.business, filter=f'account = "{t.account}"'
        )
    ),
    "DeleteBusinessPost": lambda w, stub, t: stub.DeleteBusinessPost(
        publishing_pb2.DeleteBusinessPostRequest(name=t.post)
    ),
    "UpdateAccount": lambda w, stub, t: stub.UpdateAccount(
        publishing_pb2.UpdateAccountRequest(
            account=publishing_pb2.Account(
                name=t.account,
                posting_schedule=[publishing_pb2.PostingSlot(day_of_week=1, local_time="09:00")],
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["posting_schedule"]),
        )
    ),
    "UpdateBusinessPost": lambda w, stub, t: stub.UpdateBusinessPost(
        publishing_pb2.UpdateBusinessPostRequest(
            business_post=publishing_pb2.BusinessPost(name=t.post, text="Edited"),
            update_mask=field_mask_pb2.FieldMask(paths=["text"]),
        )
    ),
    "CancelBusinessPost": lambda w, stub, t: stub.CancelBusinessPost(
        publishing_pb2.CancelBusinessPostRequest(name=t.post)
    ),
    "ListPublishAttempts": lambda w, stub, t: stub.ListPublishAttempts(
        publishing_pb2.ListPublishAttemptsRequest(parent=t.post)
    ),
    "WatchBusinessPost": _watch,
}


def _tenant(admin: PublishingServiceStub, fakes: Fakes, display_name: str) -> Tenant:
    business = new_business(admin, display_name)
    account = connect(admin, fakes, business, "x")
    post = admin.CreateBusinessPost(
        post_request(business, [account.name], "Tomorrow", schedule_time=in_future(3600))
    )
    return Tenant(business, account.name, post.name)


@dataclass(frozen=True)
class Keyed:
    tenant: Tenant
    stub: PublishingServiceStub


@pytest.fixture
def world(publishing: PublishingServiceStub, fakes: Fakes) -> World:
    return World(publishing, fakes)


@pytest.fixture
def tenants(
    backing: Backing, server: ServerThread, publishing: PublishingServiceStub, fakes: Fakes
) -> Iterator[tuple[Keyed, Keyed]]:
    """Businesses A and B, each with a stub whose key is bound to it alone."""
    a = _tenant(publishing, fakes, "A")
    b = _tenant(publishing, fakes, "B")
    key_a = backing.issue_key("tenant A", SCOPES, tenants=[a.business])
    key_b = backing.issue_key("tenant B", SCOPES, tenants=[b.business])
    with (
        backing.channel(server.address, key_a) as channel_a,
        backing.channel(server.address, key_b) as channel_b,
    ):
        yield Keyed(a, PublishingServiceStub(channel_a)), Keyed(b, PublishingServiceStub(channel_b))


def _ghost() -> Tenant:
    return Tenant(GHOST, f"{GHOST}/accounts/1", f"{GHOST}/posts/1", exists=False)


def _denied(call: Callable[..., object], *args: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args)
    error = caught.value
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED, (error.code(), error.details())
    assert error_info(error).reason == "BUSINESS_ACCESS_DENIED"
    return error


def test_every_rpc_has_a_tenancy_case() -> None:
    missing = set(METHODS) - set(SCOPED) - UNSCOPED
    assert not missing, f"RPCs without a tenancy case in this file: {sorted(missing)}"
    assert not set(SCOPED) - set(METHODS), "cases for RPCs that no longer exist"


@pytest.mark.parametrize("method", sorted(set(METHODS) - UNSCOPED))
def test_a_bound_key_reaches_its_business_and_no_other(
    method: str, world: World, tenants: tuple[Keyed, Keyed]
) -> None:
    call = SCOPED[method]
    for mine, theirs in (tenants, tenants[::-1]):
        # The other business first: the own call may delete or disconnect what it names.
        foreign = _denied(call, world, mine.stub, theirs.tenant)
        ghost = _denied(call, world, mine.stub, _ghost())
        assert ghost.details() == foreign.details(), "a missing business must look the same"
        assert error_info(ghost) == error_info(foreign)

        call(world, mine.stub, mine.tenant)


def test_a_refused_call_changes_nothing_in_the_other_business(
    world: World, tenants: tuple[Keyed, Keyed]
) -> None:
    a, b = tenants
    state, code = _consent(world, b.tenant)
    request = publishing_pb2.CompleteAccountConnectionRequest(
        parent=b.tenant.business, state=state, code=code
    )
    _denied(a.stub.CompleteAccountConnection, request)
    _denied(SCOPED["DisconnectAccount"], world, a.stub, b.tenant)
    _denied(SCOPED["DeleteBusinessPost"], world, a.stub, b.tenant)

    # B's state was not used up by A's attempt, and its account and post are untouched.
    b.stub.CompleteAccountConnection(request)
    account = b.stub.GetAccount(publishing_pb2.GetAccountRequest(name=b.tenant.account))
    assert account.state == publishing_pb2.Account.STATE_CONNECTED
    b.stub.GetBusinessPost(publishing_pb2.GetBusinessPostRequest(name=b.tenant.post))


def test_a_foreign_account_named_inside_an_own_request_is_denied_alike(
    world: World, tenants: tuple[Keyed, Keyed]
) -> None:
    a, b = tenants
    ghost_accounts = [f"{b.tenant.business}/accounts/999999", _ghost().account]
    answers = []
    for account in [b.tenant.account, *ghost_accounts]:
        post = post_request(a.tenant.business, [account])
        answers.append(_denied(a.stub.CreateBusinessPost, post).details())
        listing = publishing_pb2.ListBusinessPostsRequest(
            parent=a.tenant.business, filter=f'account = "{account}"'
        )
        answers.append(_denied(a.stub.ListBusinessPosts, listing).details())
    assert len(set(answers)) == 1, answers
    listed = a.stub.ListBusinessPosts(
        publishing_pb2.ListBusinessPostsRequest(parent=a.tenant.business)
    )
    assert [post.name for post in listed.business_posts] == [a.tenant.post], "none was made"


def test_list_businesses_lists_only_the_keys_own(
    publishing: PublishingServiceStub, tenants: tuple[Keyed, Keyed]
) -> None:
    new_business(publishing, "Unbound")
    for keyed in tenants:
        listed = keyed.stub.ListBusinesses(publishing_pb2.ListBusinessesRequest(page_size=500))
        assert [b.name for b in listed.businesses] == [keyed.tenant.business]
        assert not listed.next_page_token
    everything = publishing.ListBusinesses(publishing_pb2.ListBusinessesRequest(page_size=500))
    assert len(everything.businesses) == 3


def test_a_bound_key_cannot_create_businesses(
    publishing: PublishingServiceStub, tenants: tuple[Keyed, Keyed]
) -> None:
    request = publishing_pb2.CreateBusinessRequest(
        business=publishing_pb2.Business(display_name="Sneaky")
    )
    for keyed in tenants:
        _denied(keyed.stub.CreateBusiness, request)
    everything = publishing.ListBusinesses(publishing_pb2.ListBusinessesRequest(page_size=500))
    assert len(everything.businesses) == 2
