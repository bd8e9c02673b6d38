"""The analytics domain, as the composition root plugs it in (after profiles and feed, which it
reads through server.profiles.public and server.feed.public)."""

from __future__ import annotations

from collections.abc import Sequence

from socialhub.v1 import analytics_pb2, analytics_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncConnection

from server.analytics import insight_repository
from server.analytics.cache_tags import post_insights_tag, profile_tag
from server.analytics.creators import CreatorSearches
from server.analytics.ingestion import Ingestion
from server.analytics.insight_models import model_version, shared_models
from server.analytics.insight_reads import InsightReads
from server.analytics.insight_tables import INSIGHT_TABLES
from server.analytics.insight_worker import InsightWorker, QueueGauges, enqueue_post_changes
from server.analytics.live import ProfileEvents
from server.analytics.partitions import Partitions
from server.analytics.reports import Reports
from server.analytics.seeding import AnalyticsDemo
from server.analytics.service_metrics import ServiceMetrics
from server.analytics.servicer import AnalyticsServicer
from server.analytics.settings import AnalyticsSettings
from server.analytics.tables import TABLES
from server.core.db import create_engine
from server.core.domain import Domain, DomainContext, Job, Plugin, Service, Worker
from server.feed.public import FeedHooks
from server.profiles.public import DirectoryReader, ProfileHooks

SERVICE_NAME = analytics_pb2.DESCRIPTOR.services_by_name["AnalyticsService"].full_name


async def _forget_profiles(conn: AsyncConnection, profile_ids: Sequence[int]) -> list[str]:
    # Their rows go with them (ON DELETE CASCADE); their cached reports must go too, and the
    # cached insights of their posts (which feed deletes by cascade, calling no post hook).
    posts = await insight_repository.post_ids_of(conn, profile_ids)
    return [
        *(profile_tag(profile_id) for profile_id in profile_ids),
        *(post_insights_tag(post_id) for post_id in posts),
    ]


def build(context: DomainContext) -> Plugin:
    settings = context.settings_for(AnalyticsSettings)
    context.require(ProfileHooks).deletion.append(_forget_profiles)
    partitions = Partitions(context.engine, settings)
    live = ProfileEvents(context.cache.redis, max_events=settings.analytics_live_max_events)
    service_metrics = ServiceMetrics(context.metrics, context.cache.redis)
    ingestion = Ingestion(context.engine, context.cache, partitions, live)
    reports = Reports(
        context.engine,
        context.cache,
        context.require(DirectoryReader),
        settings.analytics_cache_ttl_s,
    )
    creators = CreatorSearches(context.engine, context.tokens)
    # FeedService posts: queued in feed's writing transactions, analysed by the worker.
    context.require(FeedHooks).post_changes.append(enqueue_post_changes)
    insights = InsightReads(context.engine, context.cache, settings.analytics_insights_cache_ttl_s)
    workers: list[Worker] = [live, service_metrics]
    if settings.analytics_insights_worker:
        # Its own connection: polling the queue never holds one of the calls' pooled ones.
        one_connection = context.settings.model_copy(
            update={"db_pool_size": 1, "db_max_overflow": 0}
        )
        workers.append(
            InsightWorker(
                create_engine(one_connection, context.database_url),
                context.cache,
                ingestion,
                shared_models,
                model_version(),
                batch_size=settings.analytics_insights_batch_size,
                poll_s=settings.analytics_insights_poll_s,
                owns_engine=True,
                gauges=None if context.metrics is None else QueueGauges.create(context.metrics),
            )
        )
    servicer = AnalyticsServicer(
        ingestion,
        reports,
        creators,
        settings,
        live=live,
        service_metrics=service_metrics,
        insights=insights,
    )
    return Plugin(
        services=[
            Service(
                SERVICE_NAME,
                scope="analytics",
                register=lambda server: analytics_pb2_grpc.add_AnalyticsServiceServicer_to_server(
                    servicer, server
                ),
            )
        ],
        jobs=[
            Job(
                "analytics-partitions",
                settings.analytics_partition_interval_s,
                partitions.maintain,
            )
        ],
        workers=workers,
    )


DOMAIN = Domain(
    name="analytics",
    tables=(*TABLES, *INSIGHT_TABLES),
    build=build,
    settings=AnalyticsSettings,
    demo=AnalyticsDemo(),
)
