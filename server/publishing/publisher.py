"""The publishing worker every replica runs: claims due targets and publishes them.

A target's life (docs/PUBLISHING.md) is a state machine in PostgreSQL. A worker leases due
targets with `FOR UPDATE SKIP LOCKED` (pending -> claimed), marks one `sending` before the
first byte leaves, and records the outcome; each step is an UPDATE conditional on the state
it leaves and on the worker's lease, so two workers never both send one target. A target
found `sending` under a lease that ran out (its worker died mid-request), or left with
`send_time` set after a failure where the platform may have received the request, has an
outcome nobody knows: it is reconciled first, by asking the platform whether the post
exists (`Adapter.find`), and sent again only if it does not; where the platform cannot
tell, it becomes NEEDS_REVIEW, never a second post.

Idle workers wait on NOTIFY (notify.py) or until the next due time, with a ceiling of
`poll_s`; they never spin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from server.core.tasks import stop_task
from server.publishing import repository
from server.publishing.adapters.base import (
    Adapter,
    CannotTell,
    Content,
    Platform,
    Published,
    PublishOutcome,
    Rejected,
    Throttled,
    TokenUnavailable,
    Transient,
    Unauthorized,
)
from server.publishing.credentials import AccountUnusable, TokenKeeper, Working
from server.publishing.notify import Changes
from server.publishing.ratelimits import RateGate

log = logging.getLogger("socialhub.publishing")

# How far before `send_time` reconciliation looks for the post (clocks of the platform and
# of PostgreSQL differ by this much at most).
CLOCK_SKEW = timedelta(minutes=2)


class LeaseLost(Exception):
    """The target was claimed again while this run's call was in flight: the new claim owns
    it (and reconciles what this run sent); this run must take no further step."""


@dataclass(frozen=True)
class WorkerSettings:
    lease_s: float = 120.0
    poll_s: float = 1.0
    concurrency: int = 16
    # Transient failures are retried this many attempts in all, backing off from
    # `retry_base_s` (doubling, with full jitter) up to `retry_max_s`.
    max_attempts: int = 5
    # Sends started in all, those cut off by a stopped worker or a lost lease included (they
    # are no failure of the platform's, so `max_attempts` does not count them): a target that
    # keeps taking its worker down stops here.
    max_sends: int = 25
    retry_base_s: float = 1.0
    retry_max_s: float = 300.0
    # On shutdown, sends in flight get this long before they are cut off.
    stop_grace_s: float = 10.0


def backoff_s(attempt: int, settings: WorkerSettings) -> float:
    """Exponential backoff with full jitter (AWS's "full jitter"): the delay before the next
    attempt is persisted as the target's due time, across replicas and restarts, which an
    in-process retry loop (tenacity) cannot do; tenacity retries the token refreshes."""
    ceiling = min(settings.retry_max_s, settings.retry_base_s * 2 ** max(attempt - 1, 0))
    return random.uniform(ceiling / 2, ceiling)


class Publisher:
    def __init__(
        self,
        engine: AsyncEngine,
        adapters: Mapping[Platform, Adapter],
        keeper: TokenKeeper,
        changes: Changes,
        gate: RateGate,
        settings: WorkerSettings,
    ) -> None:
        self.engine = engine
        self.adapters = adapters
        self.keeper = keeper
        self.changes = changes
        self.gate = gate
        self.settings = settings
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._running: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="publishing-worker")

    async def stop(self) -> None:
        """Stop claiming; give the targets being sent `stop_grace_s` to finish, then cancel
        them: a target cut off while sending is reconciled by whoever claims it next."""
        if self._loop_task is not None:
            await stop_task(self._loop_task)
        if self._running:
            await asyncio.wait(self._running, timeout=self.settings.stop_grace_s)
        await asyncio.gather(*(stop_task(task) for task in list(self._running)))

    async def _run(self) -> None:
        while True:
            try:
                claimed = await self._claim()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("claiming due targets failed; trying again shortly")
                claimed = 0
            if claimed:
                continue
            await self._idle()

    async def _claim(self) -> int:
        free = self.settings.concurrency - len(self._running)
        if free <= 0:
            await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
            return 1
        self.changes.due.clear()
        async with self.engine.begin() as conn:
            # A lease is this claim's, not the replica's: if this replica claims a target
            # again (an earlier run's call outlived its lease), that run's writes match no more.
            lease = f"{self.owner}/{uuid.uuid4().hex[:8]}"
            rows = await repository.claim_due(conn, lease, self.settings.lease_s, free)
        for row in rows:
            task = asyncio.create_task(self._publish(row), name=f"publish-target-{row.id}")
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        return len(rows)

    async def _idle(self) -> None:
        timeout = self.settings.poll_s
        async with self.engine.connect() as conn:
            due = await repository.next_due_time(conn)
        if due is not None:
            timeout = min(timeout, max((due - datetime.now(UTC)).total_seconds(), 0.0))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.changes.due.wait(), timeout)

    async def _publish(self, row: Any) -> None:
        try:
            await TargetRun(self, row).run()
        except asyncio.CancelledError:
            raise
        except LeaseLost:
            log.warning("target %s: lease lost mid-publish; stopped before the next step", row.id)
        except Exception:
            # The lease runs out and another worker reconciles it: nothing is lost.
            log.exception("publishing target %s failed unexpectedly", row.id)


class TargetRun:
    """One claimed target, from the claim to its next state."""

    def __init__(self, publisher: Publisher, row: Any) -> None:
        self.p = publisher
        self.target = row
        # This claim's lease: every write below is conditional on it.
        self.owner: str = row.lease_owner
        self.resume: dict[str, str] = dict(row.checkpoints or {})

    async def run(self) -> None:
        content = await self._content()
        if content is None:
            return
        try:
            working = await self.p.keeper.credentials(self.target.account_id)
        except AccountUnusable as unusable:
            if self.target.send_time is not None:
                # An earlier attempt may have published it, and nobody can ask the platform.
                message = (
                    f"{unusable}; an interrupted attempt may have published it: check the "
                    "account once it is reconnected"
                )
                await self._finish("needs_review", "unknown", message, error=message)
                return
            await self._finish("failed", "unauthorized", str(unusable), error=str(unusable))
            return
        except TokenUnavailable as error:
            # The token endpoint's trouble, not this post's: retried without a bound.
            await self._retry_later(
                f"could not refresh the account's token: {error}", counted=False
            )
            return
        adapter = self.p.adapters[Platform(self.target.platform)]
        earlier_send = self.target.send_time
        if earlier_send is not None and not await self._reconcile(adapter, working, content):
            return
        if await self._gave_up():
            return
        # A limit already reached (by any replica) defers without calling the platform.
        # After reconciliation: a deferral forgets send_time, so only a target whose
        # earlier send is settled may be deferred.
        block = await self.p.gate.blocked(self.target.platform, self.target.account_id)
        if block is not None:
            await self._defer(f"{block.reason}; not sent", block.until, time.monotonic())
            return
        if not await self._mark_sending():
            return
        started = time.monotonic()
        outcome = await adapter.publish(
            working.credentials, content, resume=self.resume, checkpoint=self._checkpoint
        )
        if isinstance(outcome, Unauthorized):
            outcome, working = await self._after_refusal(adapter, working, content, outcome)
        await self._record_limits(outcome)
        if (
            isinstance(outcome, Rejected)
            and earlier_send is not None
            and await self._published_meanwhile(adapter, working, content, earlier_send, outcome)
        ):
            return
        await self._record(outcome, started)

    async def _gave_up(self) -> bool:
        """FAILED, if the bounds on failures or on sends are reached (checked once an earlier
        send is settled as not published)."""
        settings = self.p.settings
        if self.target.failure_count >= settings.max_attempts:
            async with self.p.engine.connect() as conn:
                last = await repository.last_attempt_message(conn, self.target.id)
            message = f"gave up after {self.target.failure_count} attempts: {last}"
        elif self.target.attempt_count >= settings.max_sends:
            message = (
                f"gave up after {self.target.attempt_count} sends that never answered (a "
                "worker stopped or lost its lease during each); the platform has no such post"
            )
        else:
            return False
        await self._finish("failed", "transient", message, error=message)
        return True

    async def _record_limits(self, outcome: PublishOutcome) -> None:
        """Teach the shared gate what the platform said about its limits; never fatal (the
        target's outcome is recorded regardless, and a missed block costs one 429 later)."""
        try:
            await self.p.gate.record(self.target.platform, self.target.account_id, outcome)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("target %s: recording rate limits failed", self.target.id)

    async def _content(self) -> Content | None:
        async with self.p.engine.connect() as conn:
            post = await repository.get_post_by_id(conn, self.target.post_id)
        if post is None:
            return None
        return Content(
            text=post.text,
            media_urls=tuple(post.media_uris),
            first_comment=post.first_comment,
            thread=tuple(post.thread),
        )

    async def _reconcile(self, adapter: Adapter, working: Working, content: Content) -> bool:
        """An earlier send's outcome is unknown: True to send now, False if settled here."""
        since = self.target.send_time - CLOCK_SKEW
        started = time.monotonic()
        found = await adapter.find(working.credentials, content, since=since, resume=self.resume)
        if isinstance(found, Published):
            await self._finish(
                "published",
                "reconciled",
                "an earlier attempt had published it",
                started=started,
                published=found,
            )
            return False
        if found is CannotTell.CANNOT_TELL:
            message = (
                "an attempt was interrupted after the request may have reached the platform, "
                "which cannot tell whether it was published: check the account, then publish "
                "again if it is missing"
            )
            await self._finish("needs_review", "unknown", message, started=started, error=message)
            return False
        return True

    async def _published_meanwhile(
        self,
        adapter: Adapter,
        working: Working,
        content: Content,
        earlier_send: datetime,
        refused: Rejected,
    ) -> bool:
        """A send after a reconciliation found nothing was refused: the earlier send may have
        landed in between (a platform still working on it then), and the refusal be of this
        duplicate (X, LinkedIn, Facebook) or of a container already published (Instagram).
        Asked once more: True if published after all (and settled here)."""
        started = time.monotonic()
        found = await adapter.find(
            working.credentials, content, since=earlier_send - CLOCK_SKEW, resume=self.resume
        )
        if not isinstance(found, Published):
            return False
        message = f"an earlier attempt had published it; this one was refused: {refused.message}"
        await self._finish("published", "reconciled", message, started=started, published=found)
        return True

    async def _after_refusal(
        self, adapter: Adapter, working: Working, content: Content, outcome: Unauthorized
    ) -> tuple[PublishOutcome, Working]:
        """Refresh (once, whoever gets there first) and try again once."""
        try:
            working = await self.p.keeper.refresh_after_refusal(
                self.target.account_id, working.version
            )
        except AccountUnusable as unusable:
            return Unauthorized(str(unusable)), working
        except TokenUnavailable:
            return Transient("could not refresh the account's token", maybe_sent=False), working
        retried = await adapter.publish(
            working.credentials, content, resume=self.resume, checkpoint=self._checkpoint
        )
        if isinstance(retried, Unauthorized):
            why = f"reconnect the account: the platform refused a fresh token ({retried.message})"
            async with self.p.engine.begin() as conn:
                await repository.mark_needs_reconnect(conn, self.target.account_id, why)
            return Unauthorized(why), working
        return retried, working

    async def _record(self, outcome: PublishOutcome, started: float) -> None:
        match outcome:
            case Published():
                await self._finish("published", "published", "", started=started, published=outcome)
            case Rejected(message=message, code=code):
                await self._finish(
                    "failed", "rejected", message, started=started, error=message, code=code
                )
            case Unauthorized(message=message):
                await self._finish(
                    "failed", "unauthorized", message, started=started, error=message
                )
            case Throttled(message=message, retry_at=retry_at):
                await self._defer(message, retry_at, started)
            case Transient(message=message, maybe_sent=maybe_sent):
                await self._retry_later(message, maybe_sent=maybe_sent, started=started)

    # --- transitions, each conditional on the state left and on this worker's lease ---

    async def _mark_sending(self) -> bool:
        async with self.p.engine.begin() as conn:
            row = await repository.transition(
                conn,
                self.target.id,
                owner=self.owner,
                leaving="claimed",
                values={
                    "state": "sending",
                    "send_time": datetime.now(UTC),
                    "attempt_count": self.target.attempt_count + 1,
                },
            )
            if row is not None:
                # The call starts with a whole lease, however long the claim waited.
                await repository.extend_lease(
                    conn, self.target.id, self.owner, self.p.settings.lease_s
                )
        if row is None:
            log.info("target %s: lease lost before sending", self.target.id)
            return False
        self.target = row
        return True

    async def _checkpoint(self, key: str, value: str) -> None:
        self.resume[key] = value
        async with self.p.engine.begin() as conn:
            saved = await repository.save_checkpoint(conn, self.target.id, self.owner, key, value)
            await repository.extend_lease(conn, self.target.id, self.owner, self.p.settings.lease_s)
        if not saved:
            # Another claim holds the target (this call outlived the lease): it reconciles
            # and publishes; a next step from here (Instagram's media_publish after a late
            # container) would publish twice.
            raise LeaseLost(self.target.id)

    async def _finish(
        self,
        state: str,
        outcome: str,
        message: str,
        *,
        started: float | None = None,
        published: Published | None = None,
        error: str = "",
        code: str = "",
    ) -> None:
        values: dict[str, Any] = {
            "state": state,
            "error": error,
            "lease_owner": None,
            "lease_expire_time": None,
            "send_time": None,
        }
        if published is not None:
            values |= {
                "platform_post_id": published.post_id,
                "uri": published.url,
                "publish_time": datetime.now(UTC),
            }
        await self._leave(values, outcome, message, started, code)

    async def _defer(self, message: str, retry_at: datetime, started: float) -> None:
        values = {
            "state": "deferred",
            "due_time": retry_at,
            "lease_owner": None,
            "lease_expire_time": None,
            "send_time": None,
        }
        await self._leave(values, "throttled", message, started, "")

    async def _retry_later(
        self,
        message: str,
        *,
        maybe_sent: bool = False,
        started: float | None = None,
        counted: bool = True,
    ) -> None:
        settings = self.p.settings
        failures = self.target.failure_count + counted
        if failures >= settings.max_attempts and not maybe_sent:
            error = f"gave up after {failures} attempts: {message}"
            await self._finish("failed", "transient", message, started=started, error=error)
            return
        delay = backoff_s(max(failures, 1), settings)
        values: dict[str, Any] = {
            "state": "pending",
            "due_time": datetime.now(UTC) + timedelta(seconds=delay),
            "lease_owner": None,
            "lease_expire_time": None,
            "failure_count": failures,
        }
        if not maybe_sent:
            # Certainly not received: the next attempt sends without asking the platform.
            values["send_time"] = None
        await self._leave(values, "transient", message, started, "")

    async def _leave(
        self,
        values: dict[str, Any],
        outcome: str,
        message: str,
        started: float | None,
        code: str,
    ) -> None:
        duration_ms = 0 if started is None else int((time.monotonic() - started) * 1000)
        async with self.p.engine.begin() as conn:
            row = await repository.transition(
                conn, self.target.id, owner=self.owner, leaving=self.target.state, values=values
            )
            if row is None:
                log.warning(
                    "target %s: lease lost; its outcome is left to reconciliation", self.target.id
                )
                return
            await repository.insert_attempt(
                conn,
                {
                    "target_id": self.target.id,
                    "post_id": self.target.post_id,
                    "outcome": outcome,
                    "response_code": code,
                    "message": message,
                    "start_time": datetime.now(UTC) - timedelta(milliseconds=duration_ms),
                    "duration_ms": duration_ms,
                },
            )
            await repository.notify(conn, f"post:{self.target.post_id}")
            if values["state"] in ("pending", "deferred"):
                await repository.notify(conn, "due")
        self.target = row
