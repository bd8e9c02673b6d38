"""Closed-loop gRPC load generator: N concurrent callers, warm-up, then a measured window.

It runs in its own process (see `run_in_subprocess`) so the client's CPU is not
the server's, and it reads the server's CPU time from /proc for CPU per call.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

import grpc

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# A call factory takes a channel and returns a coroutine function that makes one call.
CallFactory = Callable[[grpc.aio.Channel], Callable[[int], Awaitable[Any]]]


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its threads so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return sorted_values[index]


async def drive(
    address: str,
    scenario: str,
    factory: CallFactory,
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    server_pid: int | None,
) -> Result:
    latencies: list[float] = []
    errors = 0
    measuring = False
    stop_at = time.monotonic() + warmup_s + duration_s
    async with grpc.aio.insecure_channel(address) as channel:
        call = factory(channel)

        async def caller(worker: int) -> None:
            nonlocal errors
            iteration = 0
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                try:
                    await call(worker * 1_000_003 + iteration)
                except grpc.aio.AioRpcError:
                    if measuring:
                        errors += 1
                    continue
                finally:
                    iteration += 1
                if measuring:
                    latencies.append(time.perf_counter() - started)

        tasks = [asyncio.create_task(caller(i)) for i in range(concurrency)]
        await asyncio.sleep(warmup_s)
        measuring = True
        cpu_before = process_cpu_seconds(server_pid) if server_pid else None
        window_start = time.perf_counter()
        await asyncio.gather(*tasks)
        seconds = time.perf_counter() - window_start
        cpu_after = process_cpu_seconds(server_pid) if server_pid else None
    ordered = sorted(latencies)
    calls = len(ordered)
    cpu_per_call = (
        (cpu_after - cpu_before) / calls * 1e6
        if cpu_before is not None and cpu_after is not None and calls
        else None
    )
    return Result(
        scenario=scenario,
        concurrency=concurrency,
        calls=calls,
        errors=errors,
        seconds=round(seconds, 3),
        calls_per_s=round(calls / seconds, 1) if seconds else 0.0,
        p50_ms=round(_percentile(ordered, 0.50) * 1000, 3),
        p90_ms=round(_percentile(ordered, 0.90) * 1000, 3),
        p99_ms=round(_percentile(ordered, 0.99) * 1000, 3),
        server_cpu_us_per_call=round(cpu_per_call, 1) if cpu_per_call is not None else None,
    )


def _child(queue: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    try:
        import uvloop

        result = uvloop.run(drive(*args, **kwargs))
    except ImportError:
        result = asyncio.run(drive(*args, **kwargs))
    queue.put(result.as_dict())


def run_in_subprocess(*args: Any, **kwargs: Any) -> Result:
    """Run `drive` in a fresh process (spawned, so it shares no gRPC state with this one)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue, args, kwargs))
    process.start()
    result = Result(**queue.get())
    process.join()
    return result


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}
