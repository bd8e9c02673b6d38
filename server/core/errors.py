"""Domain errors. Raised anywhere; mapped to gRPC status codes in one interceptor."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class DomainError(Exception):
    """Base of every error a client is meant to see. `reason` is stable and machine-readable:
    it becomes ErrorInfo.reason, says what happened (`PROFILE_NOT_FOUND`, not `NOT_FOUND`) and is
    listed in docs/API.md (tests/core/test_api_docs.py checks both ways). `metadata` goes into
    the status's ErrorInfo beside it."""

    reason: str
    metadata: Mapping[str, str] = MappingProxyType({})

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


class InvalidArgument(DomainError):
    """Bad fields of the request, each named in a BadRequest violation. The default reason
    covers ordinary field validation; a case a client handles apart gets a reason of its own."""

    def __init__(
        self, violations: list[FieldViolation], *, reason: str = "REQUEST_FIELD_INVALID"
    ) -> None:
        summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__(f"invalid request: {summary}", reason=reason)
        self.violations = violations

    @classmethod
    def single(
        cls, field: str, description: str, *, reason: str = "REQUEST_FIELD_INVALID"
    ) -> InvalidArgument:
        return cls([FieldViolation(field, description)], reason=reason)


# The errors below have no default reason: a NotFound that does not say what was not found
# (or a conflict that does not say which) is no use to a client that branches on it.


class NotFound(DomainError):
    pass


class AlreadyExists(DomainError):
    pass


class Aborted(DomainError):
    pass


class FailedPrecondition(DomainError):
    pass


class Unavailable(DomainError):
    pass


class OutOfRange(DomainError):
    """A position (a cursor, an event id) past what is kept: the client starts over."""


class Unauthenticated(DomainError):
    """No credentials, or ones that prove nothing (unknown, expired, revoked); the reason says
    which."""


class PermissionDenied(DomainError):
    """The caller is known but lacks `scope`, or (with a reason of its own) may not reach the
    tenant a request names."""

    def __init__(self, message: str, *, scope: str = "", reason: str = "SCOPE_MISSING") -> None:
        super().__init__(message, reason=reason)
        self.scope = scope
        if scope:
            self.metadata = {"scope": scope}


class ResourceExhausted(DomainError):
    """The server sheds the call; RetryInfo says when to try again."""

    def __init__(
        self, message: str, *, retry_after_s: float, reason: str = "SERVER_OVERLOADED"
    ) -> None:
        super().__init__(message, reason=reason)
        self.retry_after_s = retry_after_s


class Violations:
    """Collects field violations so a request reports all its bad fields at once."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.items.append(FieldViolation(field, description))

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgument(self.items)
