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
    """Base of every error a client is meant to see. `reason` is stable and machine-readable;
    `metadata` goes into the status's ErrorInfo beside it."""

    reason = "ERROR"
    metadata: Mapping[str, str] = MappingProxyType({})

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


class InvalidArgument(DomainError):
    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: list[FieldViolation], *, reason: str | None = None) -> None:
        summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__(f"invalid request: {summary}", reason=reason)
        self.violations = violations

    @classmethod
    def single(cls, field: str, description: str) -> InvalidArgument:
        return cls([FieldViolation(field, description)])


class NotFound(DomainError):
    reason = "NOT_FOUND"


class AlreadyExists(DomainError):
    reason = "ALREADY_EXISTS"


class Aborted(DomainError):
    reason = "ABORTED"


class FailedPrecondition(DomainError):
    reason = "FAILED_PRECONDITION"


class Unavailable(DomainError):
    reason = "UNAVAILABLE"


class Unauthenticated(DomainError):
    """No credentials, or ones that prove nothing (unknown, expired, revoked)."""

    reason = "UNAUTHENTICATED"


class PermissionDenied(DomainError):
    """The caller is known but lacks `scope`."""

    reason = "SCOPE_MISSING"

    def __init__(self, message: str, *, scope: str) -> None:
        super().__init__(message)
        self.scope = scope
        self.metadata = {"scope": scope}


class ResourceExhausted(DomainError):
    reason = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
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
