"""Who is calling, and may they: credentials to a principal, and the scope each method needs.

A call proves itself with `authorization: Bearer <API key>` or, when a client CA is
configured, with its verified client certificate (server/core/tls.py); a key, when sent,
decides. Each RPC needs `<service scope>.read` or `.write` (by its verb, `access_of`), or
`admin`, which grants everything. Health and reflection are open.

Verified keys are kept in process for `API_KEY_CACHE_TTL_S`, so a call costs no database
round trip and a revoked key stops working on every replica within that bound. A key sent
as `Bearer <key>` exactly is also found by the header's text, so a call with a cached key is
one dictionary lookup and one clock comparison: no parsing, hashing or await, which cost
more than the rest of the guard together (docs/BENCHMARKS.md, "Authentication cost"). Unknown,
revoked and expired keys are remembered for as long, so garbage cannot hammer the database:
that cannot delay a new key, whose secret nobody can present before it is created. Lookups
of the same key are coalesced and at most `MAX_CONCURRENT_LOOKUPS` run at once, so a flood of
distinct made-up keys costs a bounded share of the pool. `last_used_time` is written off the
call's path, at most about once a minute per key and replica.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from cachetools import TTLCache
from sqlalchemy.ext.asyncio import AsyncEngine

from server.core import apikeys
from server.core.db import autocommit_reads
from server.core.errors import PermissionDenied, Unauthenticated
from server.core.tasks import stop_task

log = logging.getLogger("socialhub.auth")

ADMIN = apikeys.ADMIN_SCOPE
# Method verbs that only read (AIP-131..136 and streams); every other verb writes.
# "Summarize" is a custom method's verb (ProfileService.SummarizeProfiles: counts, no write).
READ_VERBS = ("BatchGet", "Get", "List", "Search", "Stream", "Summarize", "Watch")
# Services any caller may use: probes must work without credentials, and reflection only
# describes the API (REFLECTION_ENABLED=false removes it).
OPEN_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)
MAX_CONCURRENT_LOOKUPS = 4
CACHE_SIZE = 10_000
TOUCH_INTERVAL_S = 60.0
# Uses of the keys within this long are written in one statement.
TOUCH_BATCH_S = 1.0


def access_of(method: str) -> str:
    """ "read" or "write" for a method name (`GetProfile`, `BatchDeleteProfiles`)."""
    for verb in READ_VERBS:
        rest = method[len(verb) :]
        if method.startswith(verb) and (not rest or rest[0].isupper()):
            return "read"
    return "write"


def required_scope(service_scope: str, method: str) -> str:
    return f"{service_scope}.{access_of(method)}"


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller. `tenants` empty: not bound to any tenant."""

    name: str
    scopes: frozenset[str]
    tenants: tuple[str, ...] = ()
    key_id: int | None = None

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or ADMIN in self.scopes

    def may_access(self, tenant: str) -> bool:
        """Whether this caller may touch data of `tenant` (a resource name: businesses/7)."""
        return not self.tenants or tenant in self.tenants


# What `AUTH_ENABLED=false` serves every call as.
ANONYMOUS = Principal("anonymous (AUTH_ENABLED=false)", frozenset({ADMIN}))

# Context variables belong at module level (contextvars docs). grpc.aio serves each RPC in
# a task of its own, with its own copy of the context, so a principal set while serving one
# call is never seen by another and needs no reset.
_principal: ContextVar[Principal] = ContextVar("socialhub_principal")


def current_principal() -> Principal:
    """The caller of the RPC being served; domains check tenancy with it (`may_access`).

    Raises Unauthenticated where there is none: outside an RPC, or in an open service.
    """
    try:
        return _principal.get()
    except LookupError:
        raise Unauthenticated("this needs an authenticated caller", reason="NO_PRINCIPAL") from None


def principal_name() -> str | None:
    """Who the current call is, for its log line; None before authentication."""
    principal = _principal.get(None)
    return None if principal is None else principal.name


def bind(principal: Principal) -> None:
    """Make `principal` the current one for the rest of this call (the RPC wrapper does it)."""
    _principal.set(principal)


Context = Any  # grpc.aio.ServicerContext: only invocation_metadata() and auth_context()
Guard = Callable[[Context], Awaitable[Principal]]


@dataclass(frozen=True, slots=True)
class _Rejected:
    # Kept as text: raising one cached exception object again and again would grow its
    # traceback on every call.
    message: str
    reason: str

    def error(self) -> Unauthenticated:
        return Unauthenticated(self.message, reason=self.reason)


@dataclass(slots=True)
class _Accepted:
    principal: Principal
    key_id: int
    expire_at: float | None  # time.time() seconds
    touch_at: float  # when last_used_time is next due, time.time() seconds
    fresh_until: float  # when the cache must look the key up again, time.monotonic() seconds
    # Until when (time.monotonic() seconds) a call may use this entry without `verify`'s
    # checks: the earliest of `fresh_until`, the key's expiry and its next touch.
    good_until: float = 0.0

    def recheck(self, monotonic_now: float, now: float) -> None:
        due = self.touch_at if self.expire_at is None else min(self.touch_at, self.expire_at)
        self.good_until = min(self.fresh_until, monotonic_now + (due - now))


def _rejection(stored: apikeys.ApiKey | None, now: float) -> _Rejected | None:
    if stored is None:
        return _Rejected("unknown API key", reason="API_KEY_INVALID")
    if stored.revoke_time is not None:
        return _Rejected(f"API key {stored.prefix} is revoked", reason="API_KEY_REVOKED")
    if stored.expire_time is not None and stored.expire_time.timestamp() <= now:
        return _Rejected(f"API key {stored.prefix} has expired", reason="API_KEY_EXPIRED")
    return None


_MALFORMED = _Rejected("not a Socialhub API key", reason="API_KEY_INVALID")


class Authenticator:
    """Turns a call's credentials into a Principal, and hands out per-method guards."""

    def __init__(
        self,
        engine: AsyncEngine | None,
        *,
        enabled: bool = True,
        cache_ttl_s: float = 10.0,
        scopes_by_service: Mapping[str, str] | None = None,
        client_principals: Mapping[str, Principal] | None = None,
        touch_interval_s: float = TOUCH_INTERVAL_S,
    ) -> None:
        self.enabled = enabled
        self.scopes_by_service = dict(scopes_by_service or {})
        self._engine = engine
        self._reads = None if engine is None else autocommit_reads(engine)
        self._clients = dict(client_principals or {})
        self._touch_interval_s = touch_interval_s
        self._cache_ttl_s = cache_ttl_s
        self._accepted: TTLCache[bytes, _Accepted] = TTLCache(CACHE_SIZE, cache_ttl_s)
        # The same entries by the header's text, `Bearer <key>` only: one header per key, so
        # only as many as keys in use. An entry is good until its own `good_until`.
        self._by_header: dict[str, _Accepted] = {}
        # Apart from the accepted ones: a flood of made-up keys only evicts its own kind.
        self._rejected: TTLCache[bytes, _Rejected] = TTLCache(CACHE_SIZE, cache_ttl_s)
        self._loading: dict[bytes, asyncio.Task[_Accepted | _Rejected]] = {}
        self._lookups = asyncio.Semaphore(MAX_CONCURRENT_LOOKUPS)
        self._used: set[int] = set()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ per method

    def guard(self, method: str) -> Guard | None:
        """What a call of `method` (`/pkg.Service/Method`) must pass; None for open services.

        Decided once per method, at registration. A service without a scope prefix (a
        benchmark's floor, say) needs `admin`: unknown means closed.
        """
        service, _, name = method.lstrip("/").partition("/")
        if service in OPEN_SERVICES:
            return None
        if not self.enabled:
            return _anonymous
        prefix = self.scopes_by_service.get(service)
        scope = ADMIN if prefix is None else required_scope(prefix, name)
        authenticate = self.authenticate
        by_header = self._by_header
        monotonic = time.monotonic

        async def guard(context: Context) -> Principal:
            # Every call runs this: all but a key's first in each TTL, and its touches, end
            # with the dictionary lookup (`_cached`, inlined).
            principal = None
            for key, value in context.invocation_metadata() or ():
                if key == "authorization":
                    accepted = by_header.get(value)
                    if accepted is not None and monotonic() < accepted.good_until:
                        principal = accepted.principal
                    break
            if principal is None:
                principal = await authenticate(context)
            if not principal.allows(scope):
                raise PermissionDenied(f"this call needs the scope {scope}", scope=scope)
            return principal

        return guard

    # ------------------------------------------------------------ per call

    async def authenticate(self, context: Context) -> Principal:
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                return await self.verify(value)
        if self._clients:
            return self._certified(context)
        raise Unauthenticated(
            "this call needs an API key: send the metadata 'authorization: Bearer <key>'",
            reason="API_KEY_MISSING",
        )

    def _cached(self, header: str) -> Principal | None:
        """The principal of a header verified within the TTL, unless its key expired or is due
        a `last_used_time` write; None sends the call down `verify`'s full path."""
        accepted = self._by_header.get(header)
        if accepted is None or time.monotonic() >= accepted.good_until:
            return None
        return accepted.principal

    async def verify(self, header: str) -> Principal:
        """The principal of an `authorization` header's value, `Bearer <key>`."""
        principal = self._cached(header)
        if principal is not None:
            return principal
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key:
            raise Unauthenticated(
                "the authorization metadata must be 'Bearer <key>'", reason="API_KEY_INVALID"
            )
        key = key.strip()
        digest = apikeys.digest(key)
        accepted = self._accepted.get(digest)
        if accepted is None:
            outcome = self._rejected.get(digest) or await self._look_up(key, digest)
            if isinstance(outcome, _Rejected):
                self._by_header.pop(header, None)
                raise outcome.error()
            accepted = outcome
        now = time.time()
        if accepted.expire_at is not None and now >= accepted.expire_at:
            raise Unauthenticated("the API key has expired", reason="API_KEY_EXPIRED")
        if now >= accepted.touch_at:
            accepted.touch_at = now + self._touch_interval_s
            accepted.recheck(time.monotonic(), now)
            self._used.add(accepted.key_id)
            self._wake.set()
        if header == f"Bearer {key}" and self._by_header.get(header) is not accepted:
            if len(self._by_header) >= CACHE_SIZE:
                self._by_header.clear()
            self._by_header[header] = accepted
        return accepted.principal

    def _certified(self, context: Context) -> Principal:
        subjects = context.auth_context().get("x509_subject")
        if not subjects:
            raise Unauthenticated(
                "this call needs an API key or a client certificate", reason="API_KEY_MISSING"
            )
        subject = subjects[0].decode()
        principal = self._clients.get(subject)
        if principal is None:
            raise Unauthenticated(
                f"no principal is configured for the client certificate {subject}",
                reason="CLIENT_CERTIFICATE_UNKNOWN",
            )
        return principal

    async def _look_up(self, key: str, digest: bytes) -> _Accepted | _Rejected:
        if not apikeys.is_well_formed(key):
            return _MALFORMED
        task = self._loading.get(digest)
        if task is None:
            task = asyncio.ensure_future(self._load(digest))
            self._loading[digest] = task
            task.add_done_callback(lambda done: self._loaded(digest, done))
        # Shielded: a caller that gives up must not cancel the lookup others wait for.
        return await asyncio.shield(task)

    def _loaded(self, digest: bytes, task: asyncio.Task[_Accepted | _Rejected]) -> None:
        self._loading.pop(digest, None)
        if not task.cancelled():
            task.exception()  # retrieved: waiters that gave up must not make asyncio warn

    async def _load(self, digest: bytes) -> _Accepted | _Rejected:
        assert self._reads is not None, "keys need a database"
        async with self._lookups, self._reads.connect() as conn:
            stored = await apikeys.find_digest(conn, digest)
        # Read before the TTL cache stores the entry (on the same clock): the header's copy
        # never outlives it.
        fresh_until = time.monotonic() + self._cache_ttl_s
        now = time.time()
        rejection = _rejection(stored, now)
        if rejection is not None:
            self._rejected[digest] = rejection
            return rejection
        assert stored is not None
        accepted = _Accepted(
            Principal(
                name=f"{stored.name} ({stored.prefix})",
                scopes=frozenset(stored.scopes),
                tenants=stored.tenants,
                key_id=stored.id,
            ),
            key_id=stored.id,
            expire_at=None if stored.expire_time is None else stored.expire_time.timestamp(),
            # As stored: so a key another replica (or an earlier entry) marked is not marked
            # again within the interval.
            touch_at=(
                0.0
                if stored.last_used_time is None
                else stored.last_used_time.timestamp() + self._touch_interval_s
            ),
            fresh_until=fresh_until,
        )
        accepted.recheck(fresh_until - self._cache_ttl_s, now)
        self._accepted[digest] = accepted
        return accepted

    # ------------------------------------------------------------ last_used_time

    def start(self) -> None:
        if self.enabled and self._engine is not None:
            self._writer = asyncio.create_task(self._write_uses(), name="api-key-last-used")

    async def stop(self) -> None:
        if self._writer is not None:
            await stop_task(self._writer)
            self._writer = None
            await self._flush()

    async def _write_uses(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(TOUCH_BATCH_S)
            self._wake.clear()
            await self._flush()

    async def _flush(self) -> None:
        if not self._used or self._engine is None:
            return
        used, self._used = self._used, set()
        try:
            async with self._engine.begin() as conn:
                await apikeys.mark_used(conn, used)
        except Exception:
            # Only a record for operators: no call fails for it; the next use rewrites it.
            log.warning("could not record API key use", exc_info=True)


async def _anonymous(context: Context) -> Principal:
    return ANONYMOUS
