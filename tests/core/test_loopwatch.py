"""The loop watch names what holds the event loop, and measures its lag."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from server.core.loopwatch import LoopWatch


class Lags:
    def __init__(self) -> None:
        self.seen: list[float] = []

    def observe(self, amount: float) -> None:
        self.seen.append(amount)


def _hold_the_loop(seconds: float) -> None:
    time.sleep(seconds)  # what a synchronous call on the loop's thread does to every call


def test_a_stall_is_logged_with_what_held_the_loop(caplog: pytest.LogCaptureFixture) -> None:
    lags = Lags()
    watch = LoopWatch(stall_s=0.3, beat_s=0.05, lag=lags)
    caplog.set_level(logging.WARNING, logger="socialhub.loop")

    async def scenario() -> None:
        watch.start()
        try:
            await asyncio.sleep(0.3)
            assert caplog.records == []  # a loop that turns is not reported
            _hold_the_loop(0.8)
            await asyncio.sleep(0.3)
        finally:
            await watch.stop()

    asyncio.run(scenario())

    stalled, turned = caplog.records
    assert stalled.getMessage() == "event loop stalled"
    assert stalled.silent_s >= 0.3  # type: ignore[attr-defined]
    assert any("_hold_the_loop" in thread for thread in stalled.threads)  # type: ignore[attr-defined]
    assert turned.getMessage() == "event loop turns again"
    assert 0.6 <= turned.stalled_s < 1.5  # type: ignore[attr-defined]
    assert max(lags.seen) >= 0.7
    assert sorted(lags.seen)[len(lags.seen) // 2] < 0.05  # the other beats were on time


def _watch_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name == "loop-watch"}


def test_stop_ends_the_thread_and_the_task() -> None:
    others = _watch_threads()  # the session's servers run watches of their own

    async def scenario() -> None:
        watch = LoopWatch(stall_s=0.3, beat_s=0.05)
        watch.start()
        await asyncio.sleep(0.1)
        assert len(_watch_threads() - others) == 1
        await watch.stop()
        assert not [task for task in asyncio.all_tasks() if task.get_name() == "loop-watch"]

    asyncio.run(scenario())
    assert _watch_threads() - others == set()
