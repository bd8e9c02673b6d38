"""ProfileService over gRPC: request validation and proto <-> domain mapping only."""

from __future__ import annotations

from collections.abc import Sequence
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
MAX_BATCH_GET = 100
MAX_BATCH_DELETE = 1000


class ProfileServicer(profile_pb2_grpc.ProfileServiceServicer):
    def __init__(self, service: ProfileService) -> None:
        self._service = service

    async def CreateProfile(
        self, request: profile_pb2.CreateProfileRequest, context: Context
    ) -> profile_pb2.Profile:
        validation.require_message(request, "profile")
        request_id = idempotency.parse_request_id(request.request_id)
        values = validation.values_for_create(request.profile)
        # Output-only fields are ignored, so a retry that echoes them back is still the same
        # request.
        digest = idempotency.request_hash(validation.input_only(request.profile))
        return await self._service.create(values, request_id, digest)

    async def GetProfile(
        self, request: profile_pb2.GetProfileRequest, context: Context
    ) -> profile_pb2.Profile:
        return await self._service.get(parse_name(request.name, COLLECTION, "name"))

    async def BatchGetProfiles(
        self, request: profile_pb2.BatchGetProfilesRequest, context: Context
    ) -> profile_pb2.BatchGetProfilesResponse:
        ids = _names_to_ids(request.names, MAX_BATCH_GET)
        return profile_pb2.BatchGetProfilesResponse(profiles=await self._service.batch_get(ids))

    async def UpdateProfile(
        self, request: profile_pb2.UpdateProfileRequest, context: Context
    ) -> profile_pb2.Profile:
        validation.require_message(request, "profile")
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
        ids = _names_to_ids(request.names, MAX_BATCH_DELETE)
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

    async def SummarizeProfiles(
        self, request: profile_pb2.SummarizeProfilesRequest, context: Context
    ) -> profile_pb2.SummarizeProfilesResponse:
        return await self._service.summarize()


def _names_to_ids(names: Sequence[str], maximum: int) -> list[int]:
    if not names:
        raise InvalidArgument.single("names", "must name at least one profile")
    if len(names) > maximum:
        raise InvalidArgument.single("names", f"must name at most {maximum} profiles")
    return [parse_name(name, COLLECTION, f"names[{index}]") for index, name in enumerate(names)]
