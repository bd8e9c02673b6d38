"""One exception for every failed Socialhub call, with its google.rpc details decoded."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from types import MappingProxyType
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

# The trailer in which gRPC servers send the whole google.rpc.Status, details included.
STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request (google.rpc.BadRequest.FieldViolation)."""

    field: str
    description: str
    reason: str = ""


class SocialhubError(grpc.RpcError):
    """A call that ended with a status other than OK.

    It is still a `grpc.RpcError` with `code()`, `details()` and `trailing_metadata()`, so code
    written against plain gRPC keeps working; the attributes below are the decoded details:
    `reason` and `domain` (ErrorInfo) say what happened, `field_violations` (BadRequest) which
    fields were wrong, `retry_delay` (RetryInfo) when to try again, `request_id` (RequestInfo)
    which server log line to look for.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        status: status_pb2.Status | None = None,
        trailing_metadata: tuple[tuple[str, str | bytes], ...] = (),
    ) -> None:
        super().__init__(message)
        self._code = code
        self.message = message
        self.status = status or status_pb2.Status(code=code.value[0], message=message)
        self._trailing_metadata = trailing_metadata
        self.reason = ""
        self.domain = ""
        self.metadata: Mapping[str, str] = MappingProxyType({})
        self.field_violations: tuple[FieldViolation, ...] = ()
        self.retry_delay: timedelta | None = None
        self.request_id = ""
        self.serving_data = ""
        self._decode(self.status.details)

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> SocialhubError:
        """Decode a failed call (sync or asyncio) of any gRPC channel."""
        if isinstance(error, SocialhubError):
            return error
        code_of = getattr(error, "code", None)
        details_of = getattr(error, "details", None)
        trailers_of = getattr(error, "trailing_metadata", None)
        code = code_of() if callable(code_of) else None
        message = details_of() if callable(details_of) else None
        trailers = _pairs(trailers_of() if callable(trailers_of) else None)
        status = _status(trailers)
        decoded = cls(
            code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN,
            message or (status.message if status is not None else "") or str(error),
            status=status,
            trailing_metadata=trailers,
        )
        decoded.__cause__ = error
        return decoded

    def _decode(self, details: Iterable[any_pb2.Any]) -> None:
        violations: list[FieldViolation] = []
        for detail in details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                self.reason, self.domain = info.reason, info.domain
                self.metadata = MappingProxyType(dict(info.metadata))
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad_request = error_details_pb2.BadRequest()
                detail.Unpack(bad_request)
                violations.extend(
                    FieldViolation(v.field, v.description, v.reason)
                    for v in bad_request.field_violations
                )
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                self.retry_delay = retry.retry_delay.ToTimedelta()
            elif detail.Is(error_details_pb2.RequestInfo.DESCRIPTOR):
                request = error_details_pb2.RequestInfo()
                detail.Unpack(request)
                self.request_id, self.serving_data = request.request_id, request.serving_data
        self.field_violations = tuple(violations)

    # The grpc.RpcError / grpc.Call accessors, for code written against plain gRPC.
    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self.message

    def trailing_metadata(self) -> tuple[Any, ...]:
        # (key, value) pairs; typed loosely to match grpc.RpcError's stub (_Metadatum).
        return self._trailing_metadata

    def __str__(self) -> str:
        reason = f" {self.reason}" if self.reason else ""
        known = not self.request_id or self.request_id in self.message
        request = "" if known else f" (request_id={self.request_id})"
        return f"{self._code.name}{reason}: {self.message}{request}"

    def __repr__(self) -> str:
        return f"SocialhubError({self._code.name}, reason={self.reason!r}, {self.message!r})"


def _pairs(metadata: Any) -> tuple[tuple[str, str | bytes], ...]:
    """Trailers as (key, value) pairs: sync calls give tuples of _Metadatum, asyncio a
    grpc.aio.Metadata; both iterate as pairs."""
    if not metadata:
        return ()
    return tuple((str(key), value) for key, value in metadata)


def _status(trailers: tuple[tuple[str, str | bytes], ...]) -> status_pb2.Status | None:
    for key, value in trailers:
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status()
            try:
                status.ParseFromString(value)
            except DecodeError:
                return None  # not from a google.rpc server: keep the code and message only
            return status
    return None
