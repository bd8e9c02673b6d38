from __future__ import annotations

import grpc
import pytest
from socialhub.v1.publishing_pb2_grpc import PublishingServiceStub

from tests.fakes import Fakes


@pytest.fixture
def publishing(channel: grpc.Channel) -> PublishingServiceStub:
    return PublishingServiceStub(channel)


@pytest.fixture(autouse=True)
def fresh_fakes(fakes: Fakes) -> Fakes:
    """Each test starts with fakes that have no accounts, posts or knobs set."""
    fakes.reset()
    return fakes
