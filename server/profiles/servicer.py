"""ProfileService over gRPC: request validation and proto <-> domain mapping only."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import empty_pb2
from socialhub.v1 import profile_pb2, profile_pb2_grpc

from server.core import idempotency
from server.core.errors import InvalidArgument, Violations
from server.core.names import format_name, parse_name
from server.core.pagination import PageSize, fingerprint
from server.profiles import validation
from server.profiles.mapping import COLLECTION
from server.profiles.service import ProfileService

Context = grpc.aio.ServicerContext[Any, Any]
PAGE_SIZE = PageSize(default=50, maximum=500)
TOP_LIMIT = PageSize(default=15, maximum=100)
MAX_BATCH_DELETE = 1000


class ProfileServicer(profile_pb2_grpc.ProfileServiceServicer):
    def __init__(self, service: ProfileService) -> None:
        self._service = service

    async def CreateProfile(
        self, request: profile_pb2.CreateProfileRequest, context: Context
    ) -> profile_pb2.Profile:
        request_id = idempotency.parse_request_id(request.request_id)
        values = validation.values_for_create(request.profile)
        digest = idempotency.request_hash(request.profile)
        return await self._service.create(values, request_id, digest)

    async def GetProfile(
        self, request: profile_pb2.GetProfileRequest, context: Context
    ) -> profile_pb2.Profile:
        return await self._service.get(parse_name(request.name, COLLECTION, "name"))

    async def UpdateProfile(
        self, request: profile_pb2.UpdateProfileRequest, context: Context
    ) -> profile_pb2.Profile:
        profile_id = parse_name(request.profile.name, COLLECTION, "profile.name")
        values = validation.values_for_update(request.profile, list(request.update_mask.paths))
        return await self._service.update(profile_id, values)

    async def DeleteProfile(
        self, request: profile_pb2.DeleteProfileRequest, context: Context
    ) -> empty_pb2.Empty:
        await self._service.delete(parse_name(request.name, COLLECTION, "name"))
        return empty_pb2.Empty()

    async def BatchDeleteProfiles(
        self, request: profile_pb2.BatchDeleteProfilesRequest, context: Context
    ) -> profile_pb2.BatchDeleteProfilesResponse:
        if not request.names:
            raise InvalidArgument.single("names", "must name at least one profile")
        if len(request.names) > MAX_BATCH_DELETE:
            raise InvalidArgument.single("names", f"must name at most {MAX_BATCH_DELETE} profiles")
        ids = [
            parse_name(name, COLLECTION, f"names[{index}]")
            for index, name in enumerate(request.names)
        ]
        deleted = await self._service.batch_delete(
            list(dict.fromkeys(ids)), allow_missing=request.allow_missing
        )
        return profile_pb2.BatchDeleteProfilesResponse(
            deleted_names=[format_name(COLLECTION, i) for i in deleted]
        )

    async def ListProfiles(
        self, request: profile_pb2.ListProfilesRequest, context: Context
    ) -> profile_pb2.ListProfilesResponse:
        violations = Violations()
        profile_filter = validation.filter_from_proto(violations, request.filter)
        order = validation.order_from_proto(violations, request.order)
        violations.raise_if_any()
        page_size = PAGE_SIZE.resolve(request.page_size)
        return await self._service.list_profiles(
            profile_filter,
            order,
            page_size,
            request.page_token,
            fingerprint("ListProfiles", request.filter, request.order),
        )

    async def SearchProfiles(
        self, request: profile_pb2.SearchProfilesRequest, context: Context
    ) -> profile_pb2.SearchProfilesResponse:
        violations = Violations()
        query = validation.search_query(violations, request.query)
        profile_filter = validation.filter_from_proto(violations, request.filter)
        violations.raise_if_any()
        page_size = PAGE_SIZE.resolve(request.page_size)
        return await self._service.search(
            query,
            profile_filter,
            page_size,
            request.page_token,
            fingerprint("SearchProfiles", request.query, request.filter),
        )

    async def ListTopProfiles(
        self, request: profile_pb2.ListTopProfilesRequest, context: Context
    ) -> profile_pb2.ListTopProfilesResponse:
        violations = Violations()
        platform = validation.platform_of(violations, "platform", request.platform, optional=True)
        violations.raise_if_any()
        limit = TOP_LIMIT.resolve(request.limit, field="limit")
        profiles = await self._service.top(validation.followers_column(platform), limit)
        return profile_pb2.ListTopProfilesResponse(profiles=profiles)

    async def GetFilterOptions(
        self, request: profile_pb2.GetFilterOptionsRequest, context: Context
    ) -> profile_pb2.FilterOptions:
        return await self._service.filter_options()
