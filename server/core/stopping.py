"""A graceful stop with a deadline: one that overruns says what it is waiting for.

Every step of `Application.stop` is bounded (the drain, the calls' grace, the workers'
grace), so a stop that outlives its budget is a defect. Rather than wait for the
orchestrator's SIGKILL, which leaves no trace, the stop is abandoned at the deadline after
one log line that holds the stack of every task still pending and of every thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

log = logging.getLogger("socialhub")

# Frames shown per task or thread: enough to see which await or call it sits in.
STACK_FRAMES = 12


class PartStops:
    """The stops of a whole made of parts: each part is stopped whatever the stops before it
    raised (a part whose database is gone must not keep the others running), and the
    failures, each noted with its part, are raised together at the end."""

    def __init__(self) -> None:
        self.failures: list[Exception] = []

    async def stop(self, part: str, stop: Awaitable[object]) -> None:
        try:
            await stop
        except Exception as error:
            error.add_note(f"while stopping {part}")
            self.failures.append(error)

    def raise_failures(self, whole: str) -> None:
        if self.failures:
            raise ExceptionGroup(
                f"stopping {whole} failed in {len(self.failures)} part(s)", self.failures
            )


class StopOverran(Exception):
    """The graceful stop did not finish within its deadline (logged with what it awaited)."""


async def stop_within(stop: Coroutine[Any, Any, None], timeout_s: float) -> None:
    """Run `stop`; past `timeout_s`, log what is still pending, cancel it and raise."""
    task = asyncio.ensure_future(stop)
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if task in done:
        task.result()
        return
    log.error(
        "the graceful stop overran its deadline; abandoning it",
        extra={"deadline_s": timeout_s, "pending": pending_work()},
    )
    task.cancel()
    raise StopOverran(f"the graceful stop took longer than {timeout_s} s")


def pending_work() -> list[str]:
    """Each pending task (but this one) and each thread, with the innermost frames it is in."""
    current = asyncio.current_task()
    described = [
        f"task {task.get_name()}:\n{_frames(task.get_stack(limit=STACK_FRAMES))}"
        for task in asyncio.all_tasks()
        if task is not current and not task.done()
    ]
    return described + pending_threads()


def _frames(frames: list[Any]) -> str:
    # Task.get_stack gives the outermost coroutine first, each one frame deep.
    summary = traceback.StackSummary.extract((frame, frame.f_lineno) for frame in frames)
    return "".join(summary.format())


# After the stop, the event loop's own teardown (cancelling what is left, joining its
# threads, gRPC's poller thread) gets this long before the process leaves without it.
TEARDOWN_S = 5.0


class TeardownWatch:
    """Leaves the process if the event loop's teardown hangs after the stop is over.

    Seen in the compose drill (2 runs of 10, a replica that had served under load): the stop
    finished and logged "server stopped" in 3 s, then the process did not exit until the
    orchestrator's SIGKILL. The loop's teardown cancels every task left once and waits for
    them: a task on Redis can lose that cancellation (redis-py swallows some, see
    server/core/tasks.py, which our own stops now repeat), and grpc's AsyncIO poller thread
    can block in its shutdown (grpc/grpc#40989). Nothing is left to do by then, so the
    process leaves with the stop's exit code, after `before_exit` (the embedded servers' stop,
    where `serve` runs them) and one log line with every thread's stack.
    """

    def __init__(self, before_exit: Callable[[], None] = lambda: None) -> None:
        self._before_exit = before_exit
        self._timer: threading.Timer | None = None

    def arm(self, exit_code: int, timeout_s: float = TEARDOWN_S) -> None:
        self._timer = threading.Timer(timeout_s, self._leave, args=(exit_code, timeout_s))
        self._timer.daemon = True
        self._timer.start()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _leave(self, exit_code: int, timeout_s: float) -> None:
        log.error(
            "the event loop's teardown hangs after the stop; leaving without it",
            extra={"after_s": timeout_s, "pending": pending_threads()},
        )
        try:
            self._before_exit()
        except Exception:
            log.exception("cleaning up before leaving failed")
        logging.shutdown()
        os._exit(exit_code)


def pending_threads() -> list[str]:
    """Every thread but the caller's, with the innermost frames it is in."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    described = []
    for ident, frame in sys._current_frames().items():
        if ident == threading.get_ident():
            continue
        stack = traceback.format_stack(frame)[-STACK_FRAMES:]
        described.append(f"thread {names.get(ident, ident)}:\n{''.join(stack)}")
    return described
