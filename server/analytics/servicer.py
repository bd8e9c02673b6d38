"""AnalyticsService over gRPC: request validation and proto <-> domain mapping only."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import grpc
from socialhub.v1 import analytics_pb2, analytics_pb2_grpc

from server.analytics import validation
from server.analytics.creators import CreatorSearches
from server.analytics.ingestion import Ingestion, profile_not_found
from server.analytics.insight_reads import InsightReads
from server.analytics.live import ProfileEvents
from server.analytics.model import SnapshotBatch
from server.analytics.partitions import retention_cutoff
from server.analytics.reports import Reports
from server.analytics.service_metrics import ServiceMetrics, clamp_interval
from server.analytics.settings import AnalyticsSettings
from server.core.errors import FieldViolation, InvalidArgument
from server.core.pagination import PageSize, fingerprint

Context = grpc.aio.ServicerContext[Any, Any]
CREATOR_PAGE_SIZE = PageSize(default=50, maximum=500)


class AnalyticsServicer(analytics_pb2_grpc.AnalyticsServiceServicer):
    def __init__(
        self,
        ingestion: Ingestion,
        reports: Reports,
        creators: CreatorSearches,
        settings: AnalyticsSettings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        *,
        live: ProfileEvents,
        service_metrics: ServiceMetrics,
        insights: InsightReads,
    ) -> None:
        self._insights = insights
        self._live = live
        self._service_metrics = service_metrics
        self._ingestion = ingestion
        self._reports = reports
        self._creators = creators
        self._settings = settings
        self._clock = clock

    def _snapshots(self, request: Any) -> SnapshotBatch:
        now = self._clock()
        return validation.snapshot_batch(
            request.metric_snapshots, now, retention_cutoff(self._settings, now)
        )

    async def BatchCreateMetricSnapshots(
        self, request: analytics_pb2.BatchCreateMetricSnapshotsRequest, context: Context
    ) -> analytics_pb2.BatchCreateMetricSnapshotsResponse:
        result = await self._ingestion.snapshot_batch(self._snapshots(request))
        return analytics_pb2.BatchCreateMetricSnapshotsResponse(
            created_count=result.created, unchanged_count=result.unchanged
        )

    async def ImportMetricSnapshots(
        self,
        request_iterator: AsyncIterator[analytics_pb2.ImportMetricSnapshotsRequest],
        context: Context,
    ) -> analytics_pb2.ImportMetricSnapshotsResponse:
        """Each message its own transaction, in order; a bad or failing message ends the
        stream, the ones before it committed and the ones after it not applied. Pipelined:
        while a message's transaction runs, the next one is received and checked, and the
        previous one's cache invalidation and live events go out."""
        ready: asyncio.Queue[SnapshotBatch | BaseException | None] = asyncio.Queue(maxsize=1)
        reader = asyncio.create_task(self._read_messages(request_iterator, ready))
        announcing: asyncio.Task[None] | None = None
        messages = created = unchanged = 0
        try:
            while (batch := await ready.get()) is not None:
                if isinstance(batch, BaseException):
                    raise batch
                applied = await self._ingestion.apply(batch)
                if announcing is not None:
                    await announcing  # one message's events after the other's
                announcing = asyncio.create_task(self._ingestion.announce(batch, applied))
                messages += 1
                created += len(applied.indexes)
                unchanged += batch.received - len(applied.indexes)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            if announcing is not None:
                # What was committed is announced even if the call ends here.
                await asyncio.shield(announcing)
        return analytics_pb2.ImportMetricSnapshotsResponse(
            message_count=messages, created_count=created, unchanged_count=unchanged
        )

    async def _read_messages(
        self,
        request_iterator: AsyncIterator[analytics_pb2.ImportMetricSnapshotsRequest],
        ready: asyncio.Queue[SnapshotBatch | BaseException | None],
    ) -> None:
        """Each message received and checked, in order, then None; or the error that ends the
        stream (a bad message named by its index in the stream)."""
        index = 0
        try:
            async for message in request_iterator:
                try:
                    batch = self._snapshots(message)
                except InvalidArgument as error:
                    # The paths are the message's own; the description says which message.
                    await ready.put(
                        InvalidArgument(
                            [
                                FieldViolation(v.field, f"(message {index}) {v.description}")
                                for v in error.violations
                            ],
                            reason=error.reason,
                        )
                    )
                    return
                await ready.put(batch)
                index += 1
        except Exception as error:  # receiving failed: the handler raises it
            await ready.put(error)
            return
        await ready.put(None)

    async def BatchCreateFollowerCounts(
        self, request: analytics_pb2.BatchCreateFollowerCountsRequest, context: Context
    ) -> analytics_pb2.BatchCreateFollowerCountsResponse:
        items = validation.follower_counts(request.follower_counts, self._clock())
        recorded = await self._ingestion.follower_counts(items)
        return analytics_pb2.BatchCreateFollowerCountsResponse(recorded_count=recorded)

    async def BatchCreateAudienceSnapshots(
        self, request: analytics_pb2.BatchCreateAudienceSnapshotsRequest, context: Context
    ) -> analytics_pb2.BatchCreateAudienceSnapshotsResponse:
        items = validation.audiences(request.audience_snapshots, self._clock())
        recorded = await self._ingestion.audiences(items)
        return analytics_pb2.BatchCreateAudienceSnapshotsResponse(recorded_count=recorded)

    async def GetDirectoryStats(
        self, request: analytics_pb2.GetDirectoryStatsRequest, context: Context
    ) -> analytics_pb2.GetDirectoryStatsResponse:
        return await self._reports.directory_stats()

    async def GetProfileAnalytics(
        self, request: analytics_pb2.GetProfileAnalyticsRequest, context: Context
    ) -> analytics_pb2.GetProfileAnalyticsResponse:
        return await self._reports.profile_analytics(validation.report_query(request))

    async def GetPostAnalytics(
        self, request: analytics_pb2.GetPostAnalyticsRequest, context: Context
    ) -> analytics_pb2.GetPostAnalyticsResponse:
        return await self._reports.post_analytics(*validation.post_key(request))

    async def GetAudienceDemographics(
        self, request: analytics_pb2.GetAudienceDemographicsRequest, context: Context
    ) -> analytics_pb2.GetAudienceDemographicsResponse:
        return await self._reports.audience(*validation.audience_query(request))

    async def SearchCreators(
        self, request: analytics_pb2.SearchCreatorsRequest, context: Context
    ) -> analytics_pb2.SearchCreatorsResponse:
        search = validation.creator_search(request)
        page_size = CREATOR_PAGE_SIZE.resolve(request.page_size)
        # The token is bound to everything but the page fields.
        bound = analytics_pb2.SearchCreatorsRequest()
        bound.CopyFrom(request)
        bound.ClearField("page_size")
        bound.ClearField("page_token")
        return await self._creators.search(
            search, page_size, request.page_token, fingerprint("SearchCreators", bound)
        )

    async def WatchProfileMetrics(
        self, request: analytics_pb2.WatchProfileMetricsRequest, context: Context
    ) -> AsyncIterator[analytics_pb2.WatchProfileMetricsResponse]:
        profile_id, resume = validation.watch_profile(request)
        if not await self._reports.profile_exists(profile_id):
            raise profile_not_found(profile_id)
        async for event in self._live.watch(profile_id, resume):
            yield event

    async def WatchServiceMetrics(
        self, request: analytics_pb2.WatchServiceMetricsRequest, context: Context
    ) -> AsyncIterator[analytics_pb2.WatchServiceMetricsResponse]:
        interval = clamp_interval(validation.interval_seconds(request))
        async for sample in self._service_metrics.watch(interval, fleet=request.fleet):
            yield sample

    async def GetPostInsights(
        self, request: analytics_pb2.GetPostInsightsRequest, context: Context
    ) -> analytics_pb2.PostInsights:
        return await self._insights.post_insights(validation.insights_name(request.name, "posts"))

    async def GetProfileInsights(
        self, request: analytics_pb2.GetProfileInsightsRequest, context: Context
    ) -> analytics_pb2.ProfileInsights:
        profile_id = validation.insights_name(request.name, "profiles")
        return await self._insights.profile_insights(profile_id)
