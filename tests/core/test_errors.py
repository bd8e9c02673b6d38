from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from socialhub.v1 import profile_pb2
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from server.core import errors
from server.core.errors import FieldViolation, InvalidArgument
from server.core.interceptors import ERROR_DOMAIN, status_for
from tests.harness import Backing, ServerThread, test_settings
from tests.helpers import error_info, error_reason, new_profile, request_id, rich_status

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
    assert error_reason(error) == "INTERNAL_ERROR"
    # AIP-193: the id is a RequestInfo detail, not ErrorInfo metadata (and still in the text).
    assert request_id(error) == "req-42"
    assert "request_id" not in error_info(error).metadata


def test_overload_is_resource_exhausted_with_retry_info(backing: Backing) -> None:
    thread = ServerThread(
        test_settings(max_concurrent_rpcs=0), backing.database_url, backing.redis_url
    ).start()
    try:
        with backing.channel(thread.address) as channel:
            with pytest.raises(grpc.RpcError) as caught:
                ProfileServiceStub(channel).GetProfile(
                    profile_pb2.GetProfileRequest(name="profiles/1")
                )
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
    assert error_reason(caught.value) == "SERVER_OVERLOADED"
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_invalid_argument_carries_bad_request_and_error_info(profiles: ProfileServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        profiles.GetProfile(profile_pb2.GetProfileRequest(name="users/1"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = rich_status(caught.value).details
    assert any(d.Is(error_details_pb2.BadRequest.DESCRIPTOR) for d in details)
    assert error_reason(caught.value) == "REQUEST_FIELD_INVALID"
    assert error_info(caught.value).domain == "socialhub.dev"
    assert request_id(caught.value), "every error names its request"


def test_a_request_id_sent_by_the_client_comes_back_in_request_info(
    profiles: ProfileServiceStub,
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        profiles.GetProfile(
            profile_pb2.GetProfileRequest(name="users/1"), metadata=(("x-request-id", "mine-7"),)
        )
    assert request_id(caught.value) == "mine-7"


@pytest.mark.parametrize(
    "error",
    [
        InvalidArgument.single("name", "is required"),
        errors.NotFound("profiles/9 does not exist", reason="PROFILE_NOT_FOUND"),
        errors.AlreadyExists("taken", reason="USERNAME_TAKEN"),
        errors.Aborted("moved on", reason="ETAG_MISMATCH"),
        errors.FailedPrecondition("not now", reason="FOLLOW_SELF"),
        errors.Unavailable("later", reason="DATABASE_UNAVAILABLE"),
        errors.Unauthenticated("who?", reason="API_KEY_MISSING"),
        errors.PermissionDenied("no", scope="admin"),
        errors.ResourceExhausted("busy", retry_after_s=0.1),
        RuntimeError("boom"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_every_status_has_the_service_domain_a_specific_reason_and_request_info(
    error: BaseException,
) -> None:
    status = status_for(error, request_id="req-1")
    infos = [d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    requests = [d for d in status.details if d.Is(error_details_pb2.RequestInfo.DESCRIPTOR)]
    assert len(infos) == 1
    assert len(requests) == 1
    info = error_details_pb2.ErrorInfo()
    infos[0].Unpack(info)
    request = error_details_pb2.RequestInfo()
    requests[0].Unpack(request)
    assert info.domain == ERROR_DOMAIN == "socialhub.dev"
    assert request.request_id == "req-1"
    assert "request_id" not in info.metadata
    # A reason says what happened: never just the name of the status code it travels with.
    assert info.reason
    assert info.reason not in code_pb2.Code.keys()  # noqa: SIM118 (an enum wrapper, not a dict)
    assert info.reason == info.reason.upper()


def test_errors_whose_cause_a_client_branches_on_need_a_reason() -> None:
    # The four would otherwise all say NOT_FOUND / ALREADY_EXISTS / ...: mypy rejects the call,
    # and so does Python at run time.
    for cls in (errors.NotFound, errors.AlreadyExists, errors.Aborted, errors.FailedPrecondition):
        with pytest.raises(TypeError):
            cls("no reason")  # type: ignore[call-arg]


def test_error_details_stay_small_whatever_the_input_echoes() -> None:
    hostile = "\U0010fffd" * 10_000
    error = InvalidArgument([FieldViolation(f"field{i}{hostile}", hostile) for i in range(50)])
    status = status_for(error, request_id="r")
    # grpc-message is percent-encoded (up to 3x) and details are base64 (4/3x) in trailers
    # that clients cap at 8 KiB.
    assert 3 * len(status.message.encode()) + 4 / 3 * status.ByteSize() < 8000
    assert status.code == code_pb2.INVALID_ARGUMENT


def test_a_request_id_reused_for_another_create_says_so(profiles: ProfileServiceStub) -> None:
    key = "3b2f1c9e-7d4a-4e8b-9c1d-2a5e6f7a8b9c"
    profiles.CreateProfile(
        profile_pb2.CreateProfileRequest(profile=new_profile("One"), request_id=key)
    )
    with pytest.raises(grpc.RpcError) as caught:
        profiles.CreateProfile(
            profile_pb2.CreateProfileRequest(profile=new_profile("Two"), request_id=key)
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(caught.value) == "REQUEST_ID_REUSED"
