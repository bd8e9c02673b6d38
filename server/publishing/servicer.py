"""PublishingService over gRPC: tenancy, request validation and proto <-> domain mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import empty_pb2
from socialhub.v1 import publishing_pb2, publishing_pb2_grpc

from server.core import idempotency
from server.core.errors import InvalidArgument, Violations
from server.core.pagination import PageSize, fingerprint
from server.publishing import validation
from server.publishing.accounts import AccountService
from server.publishing.businesses import BusinessService
from server.publishing.model import Page
from server.publishing.posts import PostService

Context = grpc.aio.ServicerContext[Any, Any]
LIST_PAGE = PageSize(default=50, maximum=500)


def _page(page_size: int, page_token: str, *binding: str) -> Page:
    return Page(LIST_PAGE.resolve(page_size), page_token, fingerprint(*binding))


class PublishingServicer(publishing_pb2_grpc.PublishingServiceServicer):
    def __init__(
        self, businesses: BusinessService, accounts: AccountService, posts: PostService
    ) -> None:
        self._businesses = businesses
        self._accounts = accounts
        self._posts = posts

    # --- businesses ---

    async def CreateBusiness(
        self, request: publishing_pb2.CreateBusinessRequest, context: Context
    ) -> publishing_pb2.Business:
        validation.authorize_unbound()
        request_id = idempotency.parse_request_id(request.request_id)
        if not request.HasField("business"):
            raise InvalidArgument.single("business", "is required")
        violations = Violations()
        validation.business_fields(violations, request.business, "business")
        violations.raise_if_any()
        return await self._businesses.create(
            request.business.display_name,
            request.business.time_zone or "UTC",
            request_id,
            idempotency.request_hash(request.business),
        )

    async def GetBusiness(
        self, request: publishing_pb2.GetBusinessRequest, context: Context
    ) -> publishing_pb2.Business:
        return await self._businesses.get(validation.business_id(request.name, "name"))

    async def ListBusinesses(
        self, request: publishing_pb2.ListBusinessesRequest, context: Context
    ) -> publishing_pb2.ListBusinessesResponse:
        only = validation.caller_businesses()
        binding = ",".join(map(str, only)) if only is not None else "*"
        page = _page(request.page_size, request.page_token, "ListBusinesses", binding)
        businesses, token = await self._businesses.list_businesses(only, page)
        return publishing_pb2.ListBusinessesResponse(businesses=businesses, next_page_token=token)

    async def UpdateBusiness(
        self, request: publishing_pb2.UpdateBusinessRequest, context: Context
    ) -> publishing_pb2.Business:
        if not request.HasField("business"):
            raise InvalidArgument.single("business", "is required")
        business, values = validation.business_update(request)
        return await self._businesses.update(business, values)

    # --- accounts ---

    async def StartAccountConnection(
        self, request: publishing_pb2.StartAccountConnectionRequest, context: Context
    ) -> publishing_pb2.StartAccountConnectionResponse:
        business = validation.business_id(request.parent, "parent")
        platform = validation.platform(request.platform, "platform")
        return await self._accounts.start_connection(business, platform)

    async def CompleteAccountConnection(
        self, request: publishing_pb2.CompleteAccountConnectionRequest, context: Context
    ) -> publishing_pb2.CompleteAccountConnectionResponse:
        business = validation.business_id(request.parent, "parent")
        violations = Violations()
        for field, value in (("state", request.state), ("code", request.code)):
            if not value:
                violations.add(field, "is required")
            elif len(value) > validation.TOKEN_MAX:
                violations.add(field, f"must be at most {validation.TOKEN_MAX} characters")
        violations.raise_if_any()
        account = await self._accounts.complete_connection(business, request.state, request.code)
        return publishing_pb2.CompleteAccountConnectionResponse(account=account)

    async def ConnectAccount(
        self, request: publishing_pb2.ConnectAccountRequest, context: Context
    ) -> publishing_pb2.ConnectAccountResponse:
        business = validation.business_id(request.parent, "parent")
        tokens = validation.direct_tokens(request)
        account = await self._accounts.connect(business, tokens)
        return publishing_pb2.ConnectAccountResponse(account=account)

    async def GetAccount(
        self, request: publishing_pb2.GetAccountRequest, context: Context
    ) -> publishing_pb2.Account:
        business, account = validation.child_ids(request.name, "accounts", "name")
        return await self._accounts.get(business, account)

    async def ListAccounts(
        self, request: publishing_pb2.ListAccountsRequest, context: Context
    ) -> publishing_pb2.ListAccountsResponse:
        business = validation.business_id(request.parent, "parent")
        page = _page(request.page_size, request.page_token, "ListAccounts", str(business))
        accounts, token = await self._accounts.list_accounts(business, page)
        return publishing_pb2.ListAccountsResponse(accounts=accounts, next_page_token=token)

    async def UpdateAccount(
        self, request: publishing_pb2.UpdateAccountRequest, context: Context
    ) -> publishing_pb2.Account:
        if not request.HasField("account"):
            raise InvalidArgument.single("account", "is required")
        business, account, slots = validation.account_update(request)
        return await self._accounts.set_posting_schedule(business, account, slots)

    async def DisconnectAccount(
        self, request: publishing_pb2.DisconnectAccountRequest, context: Context
    ) -> publishing_pb2.DisconnectAccountResponse:
        business, account = validation.child_ids(request.name, "accounts", "name")
        disconnected = await self._accounts.disconnect(business, account)
        return publishing_pb2.DisconnectAccountResponse(account=disconnected)

    # --- posts ---

    async def CreateBusinessPost(
        self, request: publishing_pb2.CreateBusinessPostRequest, context: Context
    ) -> publishing_pb2.BusinessPost:
        business = validation.business_id(request.parent, "parent")
        request_id = idempotency.parse_request_id(request.request_id)
        if not request.HasField("business_post"):
            raise InvalidArgument.single("business_post", "is required")
        new = validation.new_post(business, request)
        digest = idempotency.request_hash(request)
        return await self._posts.create(business, new, request_id, digest)

    async def GetBusinessPost(
        self, request: publishing_pb2.GetBusinessPostRequest, context: Context
    ) -> publishing_pb2.BusinessPost:
        business, post = validation.child_ids(request.name, "posts", "name")
        return await self._posts.get(business, post)

    async def ListBusinessPosts(
        self, request: publishing_pb2.ListBusinessPostsRequest, context: Context
    ) -> publishing_pb2.ListBusinessPostsResponse:
        business = validation.business_id(request.parent, "parent")
        where = validation.post_filter(request.filter, business)
        page = _page(
            request.page_size, request.page_token, "ListBusinessPosts", str(business), repr(where)
        )
        posts, token = await self._posts.list_posts(business, where, page)
        return publishing_pb2.ListBusinessPostsResponse(business_posts=posts, next_page_token=token)

    async def UpdateBusinessPost(
        self, request: publishing_pb2.UpdateBusinessPostRequest, context: Context
    ) -> publishing_pb2.BusinessPost:
        if not request.HasField("business_post"):
            raise InvalidArgument.single("business_post", "is required")
        business, post, changes = validation.post_update(request)
        return await self._posts.update(business, post, changes)

    async def CancelBusinessPost(
        self, request: publishing_pb2.CancelBusinessPostRequest, context: Context
    ) -> publishing_pb2.CancelBusinessPostResponse:
        business, post = validation.child_ids(request.name, "posts", "name")
        cancelled = await self._posts.cancel(business, post)
        return publishing_pb2.CancelBusinessPostResponse(business_post=cancelled)

    async def DeleteBusinessPost(
        self, request: publishing_pb2.DeleteBusinessPostRequest, context: Context
    ) -> empty_pb2.Empty:
        business, post = validation.child_ids(request.name, "posts", "name")
        await self._posts.delete(business, post)
        return empty_pb2.Empty()

    async def ListPublishAttempts(
        self, request: publishing_pb2.ListPublishAttemptsRequest, context: Context
    ) -> publishing_pb2.ListPublishAttemptsResponse:
        business, post = validation.child_ids(request.parent, "posts", "parent")
        page = _page(
            request.page_size, request.page_token, "ListPublishAttempts", f"{business}/{post}"
        )
        attempts, token = await self._posts.attempts(business, post, page)
        return publishing_pb2.ListPublishAttemptsResponse(
            publish_attempts=attempts, next_page_token=token
        )

    async def WatchBusinessPost(
        self, request: publishing_pb2.WatchBusinessPostRequest, context: Context
    ) -> AsyncIterator[publishing_pb2.WatchBusinessPostResponse]:
        business, post = validation.child_ids(request.name, "posts", "name")
        async for current in self._posts.watch(business, post):
            yield publishing_pb2.WatchBusinessPostResponse(business_post=current)
