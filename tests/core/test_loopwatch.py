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


class StallSeen(logging.Handler):
    """Set once the watch has logged a stall, so the loop is held at least until then."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.logged = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "event loop stalled":
            self.logged.set()


def _hold_the_loop(stall: StallSeen, after_s: float) -> None:
    # What a synchronous call on the loop's thread does to every call. It lasts until the
    # watch has reported it (a timed hold lost that race once in CI, with the watch's thread
    # not scheduled until the hold was over), then `after_s` more.
    assert stall.logged.wait(timeout=10)
    time.sleep(after_s)


def test_a_stall_is_logged_with_what_held_the_loop(caplog: pytest.LogCaptureFixture) -> None:
    lags = Lags()
    watch = LoopWatch(stall_s=0.3, beat_s=0.05, lag=lags)
    caplog.set_level(logging.WARNING, logger="socialhub.loop")
    stall = StallSeen()
    logging.getLogger("socialhub.loop").addHandler(stall)

    async def scenario() -> None:
        watch.start()
        try:
            await asyncio.sleep(0.3)
            assert caplog.records == []  # a loop that turns is not reported
            _hold_the_loop(stall, after_s=0.4)
            await asyncio.sleep(0.3)
        finally:
            await watch.stop()

    try:
        asyncio.run(scenario())
    finally:
        logging.getLogger("socialhub.loop").removeHandler(stall)

    stalled, turned = caplog.records
    assert stalled.getMessage() == "event loop stalled"
    assert stalled.silent_s >= 0.3  # type: ignore[attr-defined]
    assert any("_hold_the_loop" in thread for thread in stalled.threads)  # type: ignore[attr-defined]
    assert turned.getMessage() == "event loop turns again"
    assert 0.7 <= turned.stalled_s < 11  # type: ignore[attr-defined]
    assert max(lags.seen) >= 0.65
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
