"""Small helpers shared by tests: building requests, reading rich errors, stopping servers."""

from __future__ import annotations

import subprocess
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from socialhub.v1 import profile_pb2


def new_profile(display_name: str = "Ada Lovelace", **fields: Any) -> profile_pb2.Profile:
    if not any(key in fields for key in ("facebook", "x", "instagram", "youtube", "linkedin")):
        fields["x"] = profile_pb2.PlatformPresence(handle="ada", followers=10, active=True)
    return profile_pb2.Profile(display_name=display_name, **fields)


def rich_status(error: grpc.RpcError) -> status_pb2.Status:
    status = rpc_status.from_call(error)
    assert status is not None, "the error carries no google.rpc.Status details"
    return status


def field_violations(error: grpc.RpcError) -> dict[str, str]:
    """Field -> description of every BadRequest violation in the error."""
    violations: dict[str, str] = {}
    for detail in rich_status(error).details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations.update({v.field: v.description for v in bad_request.field_violations})
    return violations


def error_reason(error: grpc.RpcError) -> str:
    for detail in rich_status(error).details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    raise AssertionError("no ErrorInfo in the error")


def error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    for detail in rich_status(error).details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    raise AssertionError("no ErrorInfo in the error")


def request_id(error: grpc.RpcError) -> str:
    """The request id of the error's google.rpc.RequestInfo detail."""
    for detail in rich_status(error).details:
        if detail.Is(error_details_pb2.RequestInfo.DESCRIPTOR):
            info = error_details_pb2.RequestInfo()
            detail.Unpack(info)
            return str(info.request_id)
    raise AssertionError("no RequestInfo in the error")


def stopped_in_time(process: subprocess.Popen[Any], timeout_s: float) -> int:
    """SIGTERM, then its exit code; fails if the server is still up after `timeout_s`, killing
    it first: a server left running on the session's database would claim later tests' work."""
    process.terminate()
    try:
        return process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"the server did not stop within {timeout_s} s of SIGTERM") from None
