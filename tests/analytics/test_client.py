"""The Python client (socialhub.client) sends a client stream with the key and decodes its
errors, on its synchronous and asyncio channels."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from socialhub.client import SocialhubError, aio_connect, connect
from socialhub.v1 import analytics_pb2
from socialhub.v1.analytics_pb2_grpc import AnalyticsServiceStub
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from tests.analytics.support import at, profile, snapshot
from tests.harness import Backing, ServerThread


def test_import_through_the_python_client(
    backing: Backing, server: ServerThread, profiles: ProfileServiceStub
) -> None:
    owner = profile(profiles)
    good = analytics_pb2.ImportMetricSnapshotsRequest(
        metric_snapshots=[snapshot(owner, "p", at(10), likes=1)]
    )
    bad = analytics_pb2.ImportMetricSnapshotsRequest(
        metric_snapshots=[snapshot(owner, "p", at(11), likes=-1)]
    )
    with connect(server.address, api_key=backing.admin_key, tls=None, timeout=5) as channel:
        stub = AnalyticsServiceStub(channel)
        assert stub.ImportMetricSnapshots(iter([good])).created_count == 1
        with pytest.raises(SocialhubError) as caught:
            stub.ImportMetricSnapshots(iter([good, bad]))
        assert caught.value.reason == "REQUEST_FIELD_INVALID"
        assert [v.field for v in caught.value.field_violations] == ["metric_snapshots[0].likes"]

    async def messages() -> AsyncIterator[analytics_pb2.ImportMetricSnapshotsRequest]:
        yield good
        yield analytics_pb2.ImportMetricSnapshotsRequest(
            metric_snapshots=[snapshot(owner, "p", at(12), likes=3)]
        )

    async def run() -> analytics_pb2.ImportMetricSnapshotsResponse:
        async with aio_connect(
            server.address, api_key=backing.admin_key, tls=None, timeout=5
        ) as channel:
            stub = AnalyticsServiceStub(channel)
            response: analytics_pb2.ImportMetricSnapshotsResponse = (
                await stub.ImportMetricSnapshots(messages())
            )
            with pytest.raises(SocialhubError) as caught:
                await stub.ImportMetricSnapshots(_bad(bad))
            assert caught.value.reason == "REQUEST_FIELD_INVALID"
            return response

    response = asyncio.run(run())
    assert (response.message_count, response.created_count, response.unchanged_count) == (2, 1, 1)


async def _bad(
    message: analytics_pb2.ImportMetricSnapshotsRequest,
) -> AsyncIterator[analytics_pb2.ImportMetricSnapshotsRequest]:
    yield message
