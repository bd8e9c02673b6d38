"""Fixtures of the AnalyticsService tests."""

from __future__ import annotations

import grpc
import pytest
from socialhub.v1.analytics_pb2_grpc import AnalyticsServiceStub


@pytest.fixture
def analytics(channel: grpc.Channel) -> AnalyticsServiceStub:
    return AnalyticsServiceStub(channel)
