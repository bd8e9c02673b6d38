"""Closed-loop load generation: N concurrent callers, a warm-up, then a measured window.

The loop (`closed_loop`) is written once and drives any kind of client: gRPC here,
HTTP/1.1 in bench/httpload.py, raw asyncpg and Redis floors in bench/floorload.py.
Each run happens in a spawned process (`run_driver_in_subprocess`) on uvloop, so the
client's CPU is not the server's; the server's CPU comes from /proc, summed over the
process trees of the pids given, for CPU per call.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import statistics
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import grpc
import psutil

from bench import credentials

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Callers still busy this long after the window closes are cancelled and count as errors,
# so a hung server fails the run instead of hanging the benchmark.
STRAGGLER_GRACE_S = 30.0

# One call of a caller: takes the call number, raises one of the run's expected error
# types on failure.
Call = Callable[[int], Awaitable[object]]
# A gRPC call factory takes a channel and returns a coroutine function that makes one call.
CallFactory = Callable[[grpc.aio.Channel], Callable[[int], Awaitable[Any]]]
# A run's body: a module-level coroutine function, so a spawned process can unpickle it.
Driver = Callable[..., Coroutine[Any, Any, "Result"]]
# Which processes to charge: a pid (with its descendants), several, or none.
Pids = int | Sequence[int] | None


@dataclass
class Result:
    scenario: str
    concurrency: int
    calls: int
    errors: int
    seconds: float
    calls_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    server_cpu_us_per_call: float | None
    # The load generator's own process, to show it was not the bottleneck.
    client_cpu_us_per_call: float | None = None
    # Other charged processes (PostgreSQL, Redis behind an application server), if any.
    backing_cpu_us_per_call: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its threads so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


# (pid, create time) names one process even if the pid is reused.
CpuSample = dict[tuple[int, float], float]


def as_pid_list(pids: Pids) -> list[int]:
    if pids is None:
        return []
    return [pids] if isinstance(pids, int) else list(pids)


def cpu_sample(pids: Iterable[int]) -> CpuSample:
    """CPU seconds so far of each process in the trees rooted at `pids`.

    A root that is gone raises psutil.NoSuchProcess: its figures would be meaningless.
    Descendants may come and go (PostgreSQL backends) and are read as found.
    """
    sample: CpuSample = {}
    for pid in pids:
        root = psutil.Process(pid)
        for process in (root, *root.children(recursive=True)):
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    sample[(process.pid, process.create_time())] = times.user + times.system
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
    return sample


def cpu_used(before: CpuSample, after: CpuSample) -> float:
    """CPU seconds spent between two samples of the same trees.

    A process present at both counts its delta; one that started in between counts all of
    its CPU; one that ended in between is not seen (its parent has not been charged yet).
    """
    return sum(seconds - before.get(key, 0.0) for key, seconds in after.items())


@dataclass
class _CpuMeter:
    """Server, backing and own-process CPU between `start` and `stop`."""

    server_pids: list[int]
    backing_pids: list[int]
    _server: CpuSample = field(default_factory=dict)
    _backing: CpuSample = field(default_factory=dict)
    _client: float = 0.0

    def start(self) -> None:
        self._server = cpu_sample(self.server_pids)
        self._backing = cpu_sample(self.backing_pids)
        self._client = time.process_time()

    def stop(self) -> tuple[float | None, float | None, float]:
        client = time.process_time() - self._client
        server = cpu_used(self._server, cpu_sample(self.server_pids)) if self.server_pids else None
        backing = (
            cpu_used(self._backing, cpu_sample(self.backing_pids)) if self.backing_pids else None
        )
        return server, backing, client


def _percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return sorted_values[index]


@dataclass
class _Window:
    """The shared state of one run's callers."""

    stop_at: float
    expected_errors: tuple[type[BaseException], ...]
    measuring: bool = False
    errors: int = 0
    latencies: list[float] = field(default_factory=list)

    async def caller(self, worker: int, call: Call) -> None:
        clock = time.perf_counter
        iteration = 0
        while clock() < self.stop_at:
            started = clock()
            try:
                await call(worker * 1_000_003 + iteration)
            except self.expected_errors:
                if self.measuring:
                    self.errors += 1
                # A call failing without awaiting (refused connection) must not starve the loop.
                await asyncio.sleep(0)
            else:
                if self.measuring:
                    self.latencies.append(clock() - started)
            iteration += 1

    async def wait(self, tasks: list[asyncio.Task[None]]) -> None:
        """Wait for the callers; cancel stragglers past the grace period as errors."""
        timeout = max(0.0, self.stop_at - time.perf_counter()) + STRAGGLER_GRACE_S
        _done, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        self.errors += len(pending)
        for task in tasks:
            if task not in pending:
                task.result()  # an unexpected exception is a bug in the client: raise it


def _per_call_us(seconds: float | None, calls: int) -> float | None:
    return round(seconds / calls * 1e6, 1) if seconds is not None and calls else None


def _result(
    scenario: str,
    concurrency: int,
    window: _Window,
    seconds: float,
    cpu: tuple[float | None, float | None, float],
) -> Result:
    ordered = sorted(window.latencies)
    calls = len(ordered)
    server, backing, client = cpu
    return Result(
        scenario=scenario,
        concurrency=concurrency,
        calls=calls,
        errors=window.errors,
        seconds=round(seconds, 3),
        calls_per_s=round(calls / seconds, 1) if seconds else 0.0,
        p50_ms=round(_percentile(ordered, 0.50) * 1000, 3),
        p90_ms=round(_percentile(ordered, 0.90) * 1000, 3),
        p99_ms=round(_percentile(ordered, 0.99) * 1000, 3),
        server_cpu_us_per_call=_per_call_us(server, calls),
        client_cpu_us_per_call=_per_call_us(client, calls),
        backing_cpu_us_per_call=_per_call_us(backing, calls),
    )


async def closed_loop(
    scenario: str,
    calls: Sequence[Call],
    *,
    duration_s: float,
    warmup_s: float,
    expected_errors: tuple[type[BaseException], ...],
    server_pid: Pids = None,
    backing_pids: Pids = None,
) -> Result:
    """Run one caller per entry of `calls` back to back for `warmup_s + duration_s`.

    Only calls finishing after the warm-up are measured. A call raising one of
    `expected_errors` counts as an error; any other exception aborts the run. CPU figures
    are per successful call; `server_pid` and `backing_pids` include their descendants.
    """
    window = _Window(time.perf_counter() + warmup_s + duration_s, expected_errors)
    tasks = [asyncio.create_task(window.caller(i, call)) for i, call in enumerate(calls)]
    await asyncio.sleep(warmup_s)
    meter = _CpuMeter(as_pid_list(server_pid), as_pid_list(backing_pids))
    window.measuring = True
    meter.start()
    window_start = time.perf_counter()
    await window.wait(tasks)
    seconds = time.perf_counter() - window_start
    return _result(scenario, len(calls), window, seconds, meter.stop())


async def drive(
    address: str,
    scenario: str,
    factory: CallFactory,
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    server_pid: Pids,
    backing_pids: Pids = None,
    send_key: bool = True,
) -> Result:
    """gRPC: `concurrency` callers sharing one channel, as an application's clients would,
    sending this run's API key (bench.credentials) unless `send_key` is false."""
    channel_of = credentials.aio_channel if send_key else grpc.aio.insecure_channel
    async with channel_of(address) as channel:
        call = factory(channel)
        return await closed_loop(
            scenario,
            [call] * concurrency,
            duration_s=duration_s,
            warmup_s=warmup_s,
            expected_errors=(grpc.aio.AioRpcError,),
            server_pid=server_pid,
            backing_pids=backing_pids,
        )


def _run_on_uvloop(coroutine: Coroutine[Any, Any, Result]) -> Result:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def _child(results: Any, driver: Driver, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    try:
        results.put(("ok", _run_on_uvloop(driver(*args, **kwargs)).as_dict()))
    except BaseException:
        results.put(("error", traceback.format_exc()))


def _await_child(results: Any, process: Any) -> tuple[str, Any]:
    """The child's report; fails instead of blocking forever if the child died without one."""
    while True:
        try:
            report: tuple[str, Any] = results.get(timeout=0.5)
            return report
        except queue.Empty:
            if process.is_alive():
                continue
        try:  # it may have reported just before exiting
            report = results.get(timeout=1.0)
            return report
        except queue.Empty:
            raise RuntimeError(
                f"the load generator exited with code {process.exitcode} and no result"
            ) from None


def run_driver_in_subprocess(driver: Driver, *args: Any, **kwargs: Any) -> Result:
    """Run `driver(*args, **kwargs)` on uvloop in a spawned process and return its Result.

    Spawned, not forked: forking a process that runs gRPC threads is not safe, and a fresh
    process shares nothing (channels, pools, caches) with this one.
    """
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=_child, args=(results, driver, args, kwargs), daemon=True)
    process.start()
    try:
        status, payload = _await_child(results, process)
    finally:
        process.join(10)
        if process.is_alive():
            process.terminate()
            process.join()
    if status != "ok":
        raise RuntimeError(f"the load generator failed:\n{payload}")
    return Result(**payload)


def run_in_subprocess(*args: Any, **kwargs: Any) -> Result:
    """Run the gRPC `drive` (same arguments) in a fresh process: it shares no gRPC state
    with this one."""
    return run_driver_in_subprocess(drive, *args, **kwargs)


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}
