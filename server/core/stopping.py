"""A graceful stop with a deadline: one that overruns says what it is waiting for.

Every step of `Application.stop` is bounded (the drain, the calls' grace, the workers'
grace), so a stop that outlives its budget is a defect. Rather than wait for the
orchestrator's SIGKILL, which leaves no trace, the stop is abandoned at the deadline after
one log line that holds the stack of every task still pending and of every thread.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import traceback
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("socialhub")

# Frames shown per task or thread: enough to see which await or call it sits in.
STACK_FRAMES = 12


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
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        if ident == threading.get_ident():
            continue
        stack = traceback.format_stack(frame)[-STACK_FRAMES:]
        described.append(f"thread {names.get(ident, ident)}:\n{''.join(stack)}")
    return described


def _frames(frames: list[Any]) -> str:
    # Task.get_stack gives the outermost coroutine first, each one frame deep.
    summary = traceback.StackSummary.extract((frame, frame.f_lineno) for frame in frames)
    return "".join(summary.format())
