from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from socialhub.v1 import profile_pb2
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from server.core.errors import FieldViolation, InvalidArgument
from server.core.interceptors import status_for
from tests.harness import Backing, ServerThread, test_settings
from tests.helpers import error_reason, rich_status

UNMIGRATED = "unmigrated"


@pytest.fixture
def unmigrated_server(backing: Backing) -> Iterator[ServerThread]:
    """A server whose database has no tables: every query fails unexpectedly."""
    with backing.sql() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {UNMIGRATED}")
        conn.execute(f"CREATE DATABASE {UNMIGRATED}")
    url = backing.database_url.replace("/postgres?", f"/{UNMIGRATED}?")
    # Without api_keys either: authentication would fail first, for the same reason.
    thread = ServerThread(test_settings(auth_enabled=False), url, backing.redis_url).start()
    yield thread
    thread.stop()
    with backing.sql() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {UNMIGRATED} WITH (FORCE)")


def test_unexpected_error_is_internal_with_request_id_and_no_traceback(
    unmigrated_server: ServerThread,
) -> None:
    with grpc.insecure_channel(unmigrated_server.address) as channel:
        stub = ProfileServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetProfile(
                profile_pb2.GetProfileRequest(name="profiles/1"),
                metadata=(("x-request-id", "req-42"),),
            )
    error = caught.value
    assert error.code() == grpc.StatusCode.INTERNAL
    assert "req-42" in (error.details() or "")
    assert "Traceback" not in (error.details() or "")
    assert "profiles" not in (error.details() or ""), "SQL must not leak to clients"
    assert error_reason(error) == "INTERNAL"


def test_overload_is_resource_exhausted_with_retry_info(backing: Backing) -> None:
    thread = ServerThread(
        test_settings(max_concurrent_rpcs=0), backing.database_url, backing.redis_url
    ).start()
    try:
        with backing.channel(thread.address) as channel:
            with pytest.raises(grpc.RpcError) as caught:
                ProfileServiceStub(channel).GetFilterOptions(profile_pb2.GetFilterOptionsRequest())
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    finally:
        thread.stop()
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    retry = [
        d for d in rich_status(caught.value).details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)
    ]
    assert len(retry) == 1
    info = error_details_pb2.RetryInfo()
    retry[0].Unpack(info)
    assert info.retry_delay.ToMilliseconds() > 0
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_invalid_argument_carries_bad_request_and_error_info(profiles: ProfileServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        profiles.GetProfile(profile_pb2.GetProfileRequest(name="users/1"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = rich_status(caught.value).details
    assert any(d.Is(error_details_pb2.BadRequest.DESCRIPTOR) for d in details)
    assert error_reason(caught.value) == "INVALID_ARGUMENT"


def test_error_details_stay_small_whatever_the_input_echoes() -> None:
    hostile = "\U0010fffd" * 10_000
    error = InvalidArgument([FieldViolation(f"field{i}{hostile}", hostile) for i in range(50)])
    status = status_for(error, request_id="r")
    # grpc-message is percent-encoded (up to 3x) and details are base64 (4/3x) in trailers
    # that clients cap at 8 KiB.
    assert 3 * len(status.message.encode()) + 4 / 3 * status.ByteSize() < 8000
    assert status.code == code_pb2.INVALID_ARGUMENT
