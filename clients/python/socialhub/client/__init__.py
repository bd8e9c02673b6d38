"""A small typed client over the generated stubs (socialhub.v1).

    from socialhub.client import Tls, aio_connect, items
    from socialhub.v1 import profile_pb2, profile_pb2_grpc

    async with aio_connect("api.example.org:443", api_key=key) as channel:
        profiles = profile_pb2_grpc.ProfileServiceStub(channel)
        async for profile in items(profiles.ListProfiles, profile_pb2.ListProfilesRequest()):
            print(profile.name)

Every failed call raises SocialhubError (a grpc.RpcError) with its google.rpc details decoded.
"""

from socialhub.client.channel import SYSTEM_ROOTS, Tls, aio_connect, connect, service_config
from socialhub.client.errors import FieldViolation, SocialhubError
from socialhub.client.pagination import items, pages
from socialhub.client.retry import RetryPolicy, is_idempotent
from socialhub.client.streams import resume_stream

__all__ = [
    "SYSTEM_ROOTS",
    "FieldViolation",
    "RetryPolicy",
    "SocialhubError",
    "Tls",
    "aio_connect",
    "connect",
    "is_idempotent",
    "items",
    "pages",
    "resume_stream",
    "service_config",
]
