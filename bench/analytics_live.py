"""Live delivery: ingestion on one replica to 1,000 WatchProfileMetrics subscribers on another.

    .venv/bin/python -m bench.analytics_live              # both scenarios; docs/ANALYTICS.md
    .venv/bin/python -m bench.analytics_live --watchers 100 --duration 5   # smoke

Two `socialhub serve` processes (replicas A and B) share one embedded PostgreSQL and Redis.
A separate client process opens the watchers on B (spread over --channels channels, so a
few HTTP/2 connections carry them, as a gateway would) and stamps each message as it arrives;
this process sends BatchCreateMetricSnapshots to A at a steady rate, one snapshot per call,
each for a new post whose id names the event. Both use CLOCK_MONOTONIC, which is one clock
for every process of the machine.

A delivery's latency is its arrival in the watcher process minus the moment just before the
ingesting call was sent: it includes the whole ingestion (transaction, commit, cache
invalidation, XADD), B's reader, the gRPC stream and the client's own scheduling. Before the
measured phase every profile gets warm-up snapshots until every watcher has received one,
so all of them are subscribed; warm-up events are not counted.

Scenarios: "spread", the watchers over 100 profiles (10 each), and "concentrated", over 5
profiles (200 each). Each watch is a call in flight on B, so both replicas run with
MAX_CONCURRENT_RPCS=2000 (the default 1000 would leave no room beside 1,000 watchers).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import psutil
import uvloop
from google.protobuf.timestamp_pb2 import Timestamp
from socialhub.v1 import analytics_pb2, analytics_pb2_grpc, profile_pb2

from bench import credentials
from bench.feed_bench import _asyncpg_url, machine
from bench.processes import Process, start_socialhub
from server.core.embedded import EmbeddedPostgres, EmbeddedRedis

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
MAX_CONCURRENT_RPCS = 2000
SCENARIOS = {"spread": 100, "concentrated": 5}  # profiles watched


def _ts(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


# --- the watcher process ------------------------------------------------------------------------


@dataclass
class _Watchers:
    total: int
    ready: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    # Per watcher: (post_id, arrival in monotonic ns, arrival minus the event's record_time
    # in wall-clock ns) of every event received.
    received: list[list[tuple[str, int, int]]] = field(default_factory=list)
    all_ready: asyncio.Event = field(default_factory=asyncio.Event)


async def _watch(
    stub: analytics_pb2_grpc.AnalyticsServiceAsyncStub,
    profile_id: int,
    log: list[tuple[str, int, int]],
    state: _Watchers,
) -> None:
    call = stub.WatchProfileMetrics(
        analytics_pb2.WatchProfileMetricsRequest(profile=f"profiles/{profile_id}")
    )
    try:
        async for message in call:
            log.append(
                (
                    message.metrics.post_id,
                    time.monotonic_ns(),
                    time.time_ns() - message.record_time.ToNanoseconds(),
                )
            )
            if len(log) == 1:
                state.ready += 1
                if state.ready == state.total:
                    state.all_ready.set()
    except grpc.aio.AioRpcError as error:
        if error.code() != grpc.StatusCode.CANCELLED:
            name = error.code().name
            state.errors[name] = state.errors.get(name, 0) + 1


async def _watch_all(
    address: str, key: str, profiles: list[int], per_profile: int, channels: int, pipe: Connection
) -> None:
    opened = [credentials.aio_channel(address, key) for _ in range(channels)]
    stubs = [analytics_pb2_grpc.AnalyticsServiceStub(c) for c in opened]
    state = _Watchers(total=len(profiles) * per_profile)
    tasks = []
    for index in range(state.total):
        log: list[tuple[str, int, int]] = []
        state.received.append(log)
        profile_id = profiles[index % len(profiles)]
        tasks.append(asyncio.create_task(_watch(stubs[index % channels], profile_id, log, state)))
    pipe.send(("opened", state.total))
    loop = asyncio.get_running_loop()
    await state.all_ready.wait()
    pipe.send(("ready", state.total))
    # The parent says when the measured phase has drained.
    await loop.run_in_executor(None, pipe.recv)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for channel in opened:
        await channel.close()
    watched = [profiles[index % len(profiles)] for index in range(state.total)]
    pipe.send(("results", {"received": state.received, "watched": watched, "errors": state.errors}))


def watcher_main(
    address: str, key: str, profiles: list[int], per_profile: int, channels: int, pipe: Connection
) -> None:
    uvloop.run(_watch_all(address, key, profiles, per_profile, channels, pipe))


# --- the ingesting side -------------------------------------------------------------------------


def _snapshot(profile_id: int, post_id: str, now: datetime) -> analytics_pb2.MetricSnapshot:
    return analytics_pb2.MetricSnapshot(
        profile=f"profiles/{profile_id}",
        platform=profile_pb2.PLATFORM_INSTAGRAM,
        post_id=post_id,
        publish_time=_ts(now - timedelta(hours=1)),
        observe_time=_ts(now),
        likes=10,
        comments=2,
        views=100,
    )


async def _receive(pipe: Connection, timeout_s: float) -> tuple[str, Any]:
    loop = asyncio.get_running_loop()
    ready = await loop.run_in_executor(None, pipe.poll, timeout_s)
    if not ready:
        raise TimeoutError(f"the watcher process said nothing for {timeout_s} s")
    message: tuple[str, Any] = pipe.recv()
    return message


async def _warm_up(
    stub: analytics_pb2_grpc.AnalyticsServiceAsyncStub, profiles: list[int], pipe: Connection
) -> int:
    """Snapshots for every profile, every half second, until every watcher has one."""
    loop = asyncio.get_running_loop()
    rounds = 0
    while True:
        now = datetime.now(UTC)
        await stub.BatchCreateMetricSnapshots(
            analytics_pb2.BatchCreateMetricSnapshotsRequest(
                metric_snapshots=[_snapshot(p, f"warm-{rounds}", now) for p in profiles]
            )
        )
        rounds += 1
        if await loop.run_in_executor(None, pipe.poll, 0.5):
            kind, _ = pipe.recv()
            assert kind == "ready", kind
            return rounds
        if rounds > 120:
            raise TimeoutError("the watchers did not all receive a warm-up event in 60 s")


async def _ingest(
    stub: analytics_pb2_grpc.AnalyticsServiceAsyncStub, profiles: list[int], rate: float, count: int
) -> tuple[dict[str, tuple[int, int]], list[float], int]:
    """`count` calls at `rate` per second, each started on schedule even if earlier ones are
    still running. Returns post_id -> (profile, send time ns), call latencies and failures."""
    sent: dict[str, tuple[int, int]] = {}
    latencies: list[float] = []
    failures = 0
    start = time.monotonic()

    async def one(seq: int) -> None:
        nonlocal failures
        profile_id = profiles[seq % len(profiles)]
        post_id = f"m-{seq}"
        request = analytics_pb2.BatchCreateMetricSnapshotsRequest(
            metric_snapshots=[_snapshot(profile_id, post_id, datetime.now(UTC))]
        )
        before = time.monotonic_ns()
        sent[post_id] = (profile_id, before)
        try:
            await stub.BatchCreateMetricSnapshots(request)
        except grpc.aio.AioRpcError:
            failures += 1
            del sent[post_id]
        latencies.append((time.monotonic_ns() - before) / 1e6)

    tasks = []
    for seq in range(count):
        delay = start + seq / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(seq)))
    await asyncio.gather(*tasks)
    return sent, latencies, failures


def _quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]

    return {
        "p50_ms": round(statistics.median(ordered), 1),
        "p90_ms": round(rank(0.90), 1),
        "p99_ms": round(rank(0.99), 1),
        "max_ms": round(ordered[-1], 1),
    }


async def scenario(
    name: str,
    database_url: str,
    a: Process,
    b: Process,
    args: argparse.Namespace,
) -> dict[str, Any]:
    profile_count = SCENARIOS[name]
    per_profile = args.watchers // profile_count
    conn = await asyncpg.connect(_asyncpg_url(database_url))
    try:
        profiles = [
            r["id"]
            for r in await conn.fetch(
                "INSERT INTO profiles (display_name) SELECT 'Live bench ' || n"
                " FROM generate_series(1, $1) n RETURNING id",
                profile_count,
            )
        ]
    finally:
        await conn.close()
    key = credentials.bench_key(database_url)
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    watcher = context.Process(
        target=watcher_main,
        args=(b.address, key, profiles, per_profile, args.channels, child),
        name=f"watchers-{name}",
    )
    watcher.start()
    cpu = {"replica_a": psutil.Process(a.pid), "replica_b": psutil.Process(b.pid)}
    try:
        kind, opened = await _receive(parent, 120)
        assert kind == "opened", kind
        async with credentials.aio_channel(a.address, key) as channel:
            stub = analytics_pb2_grpc.AnalyticsServiceStub(channel)
            warm_rounds = await _warm_up(stub, profiles, parent)
            before = {p: c.cpu_times() for p, c in cpu.items()}
            watcher_cpu = psutil.Process(watcher.pid).cpu_times()
            started = time.monotonic()
            count = int(args.rate * args.duration)
            sent, call_ms, failures = await _ingest(stub, profiles, args.rate, count)
            elapsed = time.monotonic() - started
        await asyncio.sleep(args.drain)
        after = {p: c.cpu_times() for p, c in cpu.items()}
        watcher_after = psutil.Process(watcher.pid).cpu_times()
        parent.send("stop")
        kind, results = await _receive(parent, 120)
        assert kind == "results", kind
    finally:
        watcher.join(30)
        if watcher.is_alive():
            watcher.kill()

    latencies: list[float] = []
    after_commit: list[float] = []
    delivered = duplicates = 0
    for log, profile_id in zip(results["received"], results["watched"], strict=True):
        seen: set[str] = set()
        for post_id, arrived, since_record in log:
            origin = sent.get(post_id)
            if origin is None or origin[0] != profile_id:
                continue  # a warm-up event
            if post_id in seen:
                duplicates += 1
                continue
            seen.add(post_id)
            delivered += 1
            latencies.append((arrived - origin[1]) / 1e6)
            after_commit.append(since_record / 1e6)
    expected = len(sent) * per_profile

    def cpu_s(start: Any, end: Any) -> float:
        return round(float(end.user + end.system - start.user - start.system), 1)

    return {
        "scenario": name,
        "profiles": profile_count,
        "watchers": profile_count * per_profile,
        "watchers_per_profile": per_profile,
        "channels": args.channels,
        "watchers_opened": opened,
        "warm_up_rounds": warm_rounds,
        "events_sent": len(sent),
        "ingest_failures": failures,
        "ingest_rate_per_s": round(len(sent) / elapsed, 1),
        "ingest_call": _quantiles(call_ms),
        "expected_deliveries": expected,
        "delivered": delivered,
        "duplicates": duplicates,
        "watch_errors": results["errors"],
        "delivery": _quantiles(latencies),
        # From the event's record_time (stamped on A once its transaction committed, before
        # the XADD) to arrival: the fan-out alone, ingestion excluded.
        "after_commit": _quantiles(after_commit),
        "cpu_s": {
            **{name: cpu_s(before[name], after[name]) for name in cpu},
            "watcher_process": cpu_s(watcher_cpu, watcher_after),
            "wall_s": round(elapsed + args.drain, 1),
        },
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "| scenario | watchers | events sent | delivered / expected | p50 ms | p99 ms | max ms |"
        " ingest call p50 / p99 ms | after commit p50 / p99 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["scenarios"]:
        d = r["delivery"]
        lines.append(
            f"| {r['scenario']} ({r['profiles']} profiles, {r['watchers_per_profile']} each)"
            f" | {r['watchers']} | {r['events_sent']}"
            f" | {r['delivered']:,} / {r['expected_deliveries']:,}"
            f" | {d.get('p50_ms')} | {d.get('p99_ms')} | {d.get('max_ms')}"
            f" | {r['ingest_call'].get('p50_ms')} / {r['ingest_call'].get('p99_ms')}"
            f" | {r['after_commit'].get('p50_ms')} / {r['after_commit'].get('p99_ms')} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--channels", type=int, default=10)
    parser.add_argument("--rate", type=float, default=10.0, help="ingesting calls per second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of ingestion")
    parser.add_argument("--drain", type=float, default=5.0, help="seconds to wait after it")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), action="append")
    parser.add_argument("--state-dir", type=Path, default=REPO / ".state" / "bench-analytics-live")
    args = parser.parse_args()

    postgres = EmbeddedPostgres(args.state_dir / "postgres", durable=False)
    redis = EmbeddedRedis(args.state_dir / "redis")
    database_url = postgres.start()
    redis_url = redis.start()
    replicas: list[Process] = []
    try:
        env = {**os.environ, "DATABASE_URL": database_url}
        subprocess.run([sys.executable, "-m", "server", "migrate"], env=env, check=True, cwd=REPO)
        settings = {"MAX_CONCURRENT_RPCS": str(MAX_CONCURRENT_RPCS)}
        for _ in range(2):
            replicas.append(
                start_socialhub(database_url, redis_url, module="server", settings=settings)
            )
        a, b = replicas
        results = [
            asyncio.run(scenario(name, database_url, a, b, args))
            for name in (args.scenario or list(SCENARIOS))
        ]
        report = {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "settings": {**vars(args), "state_dir": str(args.state_dir)},
            "max_concurrent_rpcs": MAX_CONCURRENT_RPCS,
            "load_average": os.getloadavg(),
            "scenarios": results,
        }
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"analytics-live-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
        path.write_text(json.dumps(report, indent=2))
        print(json.dumps(results, indent=1))
        print(markdown(report))
        print(f"written to {path}")
    finally:
        for replica in replicas:
            replica.stop()
        redis.stop()
        postgres.stop()


if __name__ == "__main__":
    main()
