"""When a failed call is tried again, and the gRPC service config's share of it.

Two layers, each doing what the other cannot:
- gRPC's own retries (the service config's `retryPolicy`) re-send idempotent calls that end
  UNAVAILABLE or ABORTED, with exponential backoff, before the application sees anything, and
  transparently when a connection drops before the call reached a server. They cannot read
  the server's `google.rpc.RetryInfo`, and they see methods, not requests.
- This module's policy runs above them, in the client's interceptor: it waits the server's
  `RetryInfo.retry_delay` on RESOURCE_EXHAUSTED, UNAVAILABLE and ABORTED, and backs off on
  UNAVAILABLE and ABORTED for calls that are safe only because they carry a `request_id`
  (which the service config cannot see). Its attempts are bounded and share the call's deadline.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool

from socialhub.client.errors import SocialhubError

# The codes a server uses for "this may work if you try again" (AIP-194).
RETRYABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED, grpc.StatusCode.RESOURCE_EXHAUSTED}
)
# What gRPC's own retries re-send: without RetryInfo, RESOURCE_EXHAUSTED may be a quota that
# waiting does not fix, so only the server's explicit delay makes it retryable.
TRANSPORT_RETRYABLE = ("UNAVAILABLE", "ABORTED")
# Socialhub's read methods (the server's scopes call the same verbs reads, server/core/auth.py).
READ_VERBS = ("Get", "List", "Search", "BatchGet", "Stream", "Watch")
_SAFE_LEVELS = (
    descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS,
    descriptor_pb2.MethodOptions.IDEMPOTENT,
)


def is_idempotent(method: str) -> bool:
    """Whether `/package.Service/Method` may be sent twice: its proto says so
    (`option idempotency_level`), or it is a read by its verb."""
    service, _, name = method.lstrip("/").partition("/")
    try:
        descriptor = descriptor_pool.Default().FindMethodByName(f"{service}.{name}")
    except KeyError:
        descriptor = None
    if descriptor is not None and descriptor.GetOptions().idempotency_level in _SAFE_LEVELS:
        return True
    return name.startswith(READ_VERBS)


def carries_request_id(request: object) -> bool:
    """A create with a `request_id` is answered once however often it arrives (AIP-155)."""
    return bool(getattr(request, "request_id", ""))


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long a client tries a call again.

    `max_attempts` bounds this layer's attempts (the first one included); gRPC's own retries
    (`transport_max_attempts`, at most 5) may re-send each of them, so a call is sent at most
    `max_attempts * transport_max_attempts` times, always within its deadline.
    """

    max_attempts: int = 4
    transport_max_attempts: int = 3
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    backoff_multiplier: float = 2.0
    # RetryInfo is a minimum: a little more spreads the callers a shed server sent away at once.
    retry_delay_jitter: float = 0.2
    idempotent: Callable[[str], bool] = field(default=is_idempotent)

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or not 1 <= self.transport_max_attempts <= 5:
            raise ValueError("max_attempts >= 1 and 1 <= transport_max_attempts <= 5")

    def backoff_s(self, attempt: int) -> float:
        """Full-jitter exponential backoff after failed attempt `attempt` (1-based)."""
        ceiling = self.initial_backoff_s * self.backoff_multiplier ** (attempt - 1)
        return random.uniform(0, min(ceiling, self.max_backoff_s))

    def wait_before_retry(
        self, method: str, request: object, error: SocialhubError, attempt: int
    ) -> float | None:
        """Seconds to wait before trying again after failed attempt `attempt`, or None."""
        if attempt >= self.max_attempts or error.code() not in RETRYABLE:
            return None
        idempotent = self.idempotent(method)
        if not (idempotent or carries_request_id(request)):
            return None
        if error.retry_delay is not None:
            delay = error.retry_delay.total_seconds()
            return delay * (1 + random.uniform(0, self.retry_delay_jitter))
        if idempotent or error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
            # gRPC's retries already backed off on this one; a bare RESOURCE_EXHAUSTED is final.
            return None
        return self.backoff_s(attempt)

    def method_config(self, methods: Iterable[str]) -> dict[str, Any] | None:
        """The service config's `methodConfig` entry retrying the idempotent `methods`."""
        names = []
        for method in methods:
            service, _, name = method.lstrip("/").partition("/")
            if self.idempotent(method):
                names.append({"service": service, "method": name})
        if not names or self.transport_max_attempts < 2:
            return None
        return {
            "name": names,
            "retryPolicy": {
                "maxAttempts": self.transport_max_attempts,
                "initialBackoff": f"{self.initial_backoff_s}s",
                "maxBackoff": f"{self.max_backoff_s}s",
                "backoffMultiplier": self.backoff_multiplier,
                "retryableStatusCodes": list(TRANSPORT_RETRYABLE),
            },
        }
