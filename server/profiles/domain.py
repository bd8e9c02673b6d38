"""The profiles domain, as the composition root plugs it in."""

from __future__ import annotations

from socialhub.v1 import profile_pb2, profile_pb2_grpc

from server.core.domain import Domain, DomainContext, Plugin, Service
from server.profiles.public import DirectoryReader, ProfileHooks
from server.profiles.seeding import ProfileDemo
from server.profiles.service import ProfileService
from server.profiles.servicer import ProfileServicer
from server.profiles.settings import ProfileSettings
from server.profiles.tables import profiles

SERVICE_NAME = profile_pb2.DESCRIPTOR.services_by_name["ProfileService"].full_name


def build(context: DomainContext) -> Plugin:
    # Domains listed after this one fill the hooks while they build, before any call.
    hooks = ProfileHooks()
    context.provide(hooks)
    settings = context.settings_for(ProfileSettings)
    context.provide(DirectoryReader(context.engine, context.cache, settings.listing_cache_ttl_s))
    service = ProfileService(context.engine, context.cache, context.tokens, settings, hooks)
    servicer = ProfileServicer(service)
    return Plugin(
        services=[
            Service(
                SERVICE_NAME,
                scope="profiles",
                register=lambda server: profile_pb2_grpc.add_ProfileServiceServicer_to_server(
                    servicer, server
                ),
            )
        ]
    )


DOMAIN = Domain(
    name="profiles",
    tables=(profiles,),
    build=build,
    settings=ProfileSettings,
    demo=ProfileDemo(),
)
