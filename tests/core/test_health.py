from __future__ import annotations

import threading
import time
from collections.abc import Callable

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from socialhub.v1 import profile_pb2
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from tests.harness import Isolated

PROFILE_SERVICE = "socialhub.v1.ProfileService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def wait_for(condition: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def readyz(metrics_port: int) -> int:
    """The status of GET /readyz on the metrics port."""
    return httpx.get(f"http://127.0.0.1:{metrics_port}/readyz", timeout=5).status_code


def status_of(health: health_pb2_grpc.HealthStub, service: str) -> int:
    response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return int(response.status)


def test_overall_and_each_service_report_serving(health: health_pb2_grpc.HealthStub) -> None:
    assert status_of(health, "") == SERVING
    assert status_of(health, PROFILE_SERVICE) == SERVING


def test_unknown_service_is_not_found(health: health_pb2_grpc.HealthStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        status_of(health, "socialhub.v1.NoSuchService")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_every_service(channel: grpc.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    response = next(iter(stub.ServerReflectionInfo(iter([request]))))
    names = {service.name for service in response.list_services_response.service}
    assert {PROFILE_SERVICE, "grpc.health.v1.Health"} <= names


@pytest.mark.slow
def test_database_outage_flips_health_and_fails_calls_cleanly(isolated: Isolated) -> None:
    backing = isolated.backing
    health = health_pb2_grpc.HealthStub(isolated.channel)
    profiles = ProfileServiceStub(isolated.channel)
    watched: list[int] = []
    watch = health.Watch(health_pb2.HealthCheckRequest(service=PROFILE_SERVICE))

    def follow() -> None:
        try:
            for response in watch:
                watched.append(int(response.status))
        except grpc.RpcError:
            pass  # cancelled at the end of the test

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    wait_for(lambda: watched == [SERVING])

    app = isolated.server.app
    assert app is not None
    assert readyz(app.metrics_port) == 200
    backing.postgres.stop()
    try:
        wait_for(lambda: status_of(health, PROFILE_SERVICE) == NOT_SERVING)
        assert status_of(health, "") == NOT_SERVING
        # The HTTP probe of balancers that cannot ask gRPC health says the same.
        assert readyz(app.metrics_port) == 503
        # Liveness says only that the process serves: no probe restarts it for the outage.
        assert status_of(health, "liveness") == SERVING
        with pytest.raises(grpc.RpcError) as caught:
            profiles.ListProfiles(profile_pb2.ListProfilesRequest(), timeout=30)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        backing.restart_postgres()

    wait_for(lambda: status_of(health, PROFILE_SERVICE) == SERVING)
    wait_for(lambda: watched[-1:] == [SERVING])
    assert readyz(app.metrics_port) == 200
    assert watched[:3] == [SERVING, NOT_SERVING, SERVING]
    watch.cancel()
    assert profiles.ListProfiles(profile_pb2.ListProfilesRequest()).total_size == 0
