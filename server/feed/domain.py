"""The feed domain, as the composition root plugs it in (after profiles, which it builds on)."""

from __future__ import annotations

from socialhub.v1 import feed_pb2, feed_pb2_grpc

from server.core.domain import Domain, DomainContext, Job, Plugin, Service
from server.feed.counters import CounterReads
from server.feed.public import FeedHooks
from server.feed.retention import ActivityRetention
from server.feed.seeding import FeedDemo
from server.feed.service import FeedService
from server.feed.servicer import FeedServicer
from server.feed.settings import FeedSettings
from server.feed.tables import activity, comments, follows, likes, posts, profile_counters
from server.profiles.public import ProfileHooks

SERVICE_NAME = feed_pb2.DESCRIPTOR.services_by_name["FeedService"].full_name


def build(context: DomainContext) -> Plugin:
    settings = context.settings_for(FeedSettings)
    hooks = FeedHooks()
    context.provide(hooks)
    feed = FeedService(context.engine, context.cache, context.tokens, settings, hooks)
    profile_hooks = context.require(ProfileHooks)
    profile_hooks.deletion.append(feed.release_profiles)
    profile_hooks.counters = CounterReads(
        context.engine, context.cache, settings.counters_cache_ttl_s
    )
    retention = ActivityRetention(context.engine, settings)
    servicer = FeedServicer(feed)
    return Plugin(
        services=[
            Service(
                SERVICE_NAME,
                scope="feed",
                register=lambda server: feed_pb2_grpc.add_FeedServiceServicer_to_server(
                    servicer, server
                ),
            )
        ],
        jobs=[
            Job("activity-retention", settings.activity_purge_interval_s, retention.purge_once),
        ],
    )


DOMAIN = Domain(
    name="feed",
    tables=(profile_counters, posts, follows, comments, likes, activity),
    build=build,
    settings=FeedSettings,
    demo=FeedDemo(),
)
