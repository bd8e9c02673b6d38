"""What authentication costs a GetProfile cache hit (issue 8: under 5% of its server CPU).

    .venv/bin/python -m bench.auth_cost            # about 3 minutes; prints JSON and Markdown
    .venv/bin/python -m bench.auth_cost --quick    # a smoke run that measures nothing

Two `socialhub serve` processes on the same data and Redis, one with authentication on (as
production runs) and one with AUTH_ENABLED=false, answer GetProfile for profiles whose
answers are cached. The load generator (bench.loadgen) runs in its own process; server CPU
per call comes from /proc. Runs alternate between the two servers, so drift in the shared
machine's load hits both alike, and the figures are medians of the repeats. The step alone
is also timed in this process: the per-method guard on a key already verified and cached,
which is all that authentication adds to a call after a key's first use.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import grpc
from google.protobuf import message
from socialhub.v1 import profile_pb2, profile_pb2_grpc

from bench import credentials, floorload, loadgen
from bench.processes import REPO, start_socialhub
from bench.suite import Unary, warm_profile_cache
from server.core.auth import Authenticator
from server.core.config import Settings
from server.core.db import create_engine
from server.core.embedded import EmbeddedPostgres, EmbeddedRedis

PROFILE_SERVICE = "socialhub.v1.ProfileService"


async def time_guard(database_url: str, key: str, calls: int) -> dict[str, float]:
    """µs per call of the guard GetProfile runs, on and off, for a key already cached.

    Timed inside a grpc.aio handler, on the real ServicerContext of a call that carries the
    key, so reading the call's metadata from grpc is included.
    """
    engine = create_engine(Settings(db_pool_size=1, db_max_overflow=0), database_url)
    guards = {}
    for label, enabled in (("on", True), ("off", False)):
        authenticator = Authenticator(
            engine,
            enabled=enabled,
            cache_ttl_s=3600,
            scopes_by_service={PROFILE_SERVICE: "profiles"},
            touch_interval_s=3600,
        )
        guard = authenticator.guard(f"/{PROFILE_SERVICE}/GetProfile")
        assert guard is not None
        guards[label] = guard

    async def timed(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        guard = guards[request.decode()]
        await guard(context)  # the one lookup; every later call is a cache hit
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(calls):
                await guard(context)
            best = min(best, (time.perf_counter() - started) / calls * 1e6)
        return str(best).encode()

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "bench.Guard", {"Time": grpc.unary_unary_rpc_method_handler(timed)}
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            method: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                "/bench.Guard/Time"
            )
            metadata = (("authorization", f"Bearer {key}"),)
            return {
                label: round(float(await method(label.encode(), metadata=metadata)), 2)
                for label in guards
            }
    finally:
        await server.stop(None)
        await engine.dispose()


async def profile_ids(database_url: str, limit: int) -> list[int]:
    conn = await asyncpg.connect(floorload.asyncpg_dsn(database_url))
    try:
        return [r["id"] for r in await conn.fetch("SELECT id FROM profiles LIMIT $1", limit)]
    finally:
        await conn.close()


def seed_if_empty(database_url: str, profiles: int) -> None:
    env = os.environ | {"DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"}
    subprocess.run([sys.executable, "-m", "server", "migrate"], env=env, cwd=REPO, check=True)
    if not asyncio.run(profile_ids(database_url, 1)):
        subprocess.run(
            [sys.executable, "-m", "server", "seed", "--profiles", str(profiles)],
            env=env,
            cwd=REPO,
            check=True,
        )


def measure(args: argparse.Namespace, database_url: str, redis_url: str) -> dict[str, Any]:
    ids = asyncio.run(profile_ids(database_url, args.sample))
    requests: list[message.Message] = [
        profile_pb2.GetProfileRequest(name=f"profiles/{i}") for i in ids
    ]
    factory = Unary(profile_pb2_grpc.ProfileServiceStub, "GetProfile", requests)
    servers = {
        # --control: "on" has authentication off too (its clients still send the key), so
        # the difference is the method's noise floor on this machine, not authentication.
        "on": start_socialhub(database_url, redis_url, module="server", auth=not args.control),
        "off": start_socialhub(database_url, redis_url, module="server", auth=False),
    }
    runs: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
    try:
        # Both read the same cached answers: one warm-up fills Redis for both.
        warm_profile_cache(servers["on"].address, redis_url, ids)
        for repeat in range(args.repeats):
            order = ("on", "off") if repeat % 2 == 0 else ("off", "on")
            for label in order:
                server = servers[label]
                result = loadgen.run_in_subprocess(
                    server.address,
                    f"GetProfile (cache hit), auth {label}",
                    factory,
                    concurrency=args.concurrency,
                    duration_s=args.duration,
                    warmup_s=args.warmup,
                    server_pid=server.pid,
                    # Off is no authentication at all: not even the header to parse.
                    send_key=label == "on",
                )
                if result.errors:
                    raise RuntimeError(f"{result.errors} calls failed with auth {label}")
                runs[label].append(result.as_dict())
    finally:
        for server in servers.values():
            server.stop()

    def median(label: str, field: str) -> float:
        return round(float(statistics.median(float(run[field]) for run in runs[label])), 1)

    key = credentials.bench_key(database_url)
    guard = asyncio.run(time_guard(database_url, key, args.guard_calls))
    on, off = median("on", "server_cpu_us_per_call"), median("off", "server_cpu_us_per_call")
    # Runs next to each other share the machine's load of the moment: their differences
    # are steadier than the difference of the medians.
    paired = statistics.median(
        a["server_cpu_us_per_call"] - b["server_cpu_us_per_call"]
        for a, b in zip(runs["on"], runs["off"], strict=True)
    )
    return {
        "control": args.control,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "repeats": args.repeats,
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "server_cpu_us_per_call": {"on": on, "off": off},
        "calls_per_s": {"on": median("on", "calls_per_s"), "off": median("off", "calls_per_s")},
        "p50_ms": {"on": median("on", "p50_ms"), "off": median("off", "p50_ms")},
        "end_to_end_cost_us": round(on - off, 1),
        "end_to_end_cost_percent": round((on - off) / on * 100, 1),
        "paired_cost_us": round(paired, 1),
        "paired_cost_percent": round(paired / on * 100, 1),
        "spread_us": {
            label: [
                min(r["server_cpu_us_per_call"] for r in runs[label]),
                max(r["server_cpu_us_per_call"] for r in runs[label]),
            ]
            for label in runs
        },
        "guard_us": guard,
        "guard_cost_us": round(guard["on"] - guard["off"], 2),
        "guard_cost_percent": round((guard["on"] - guard["off"]) / on * 100, 2),
        "runs": runs,
    }


def markdown(result: dict[str, Any]) -> str:
    cpu, rate = result["server_cpu_us_per_call"], result["calls_per_s"]
    on = "auth off, key sent (control)" if result["control"] else "auth on"
    return "\n".join(
        [
            f"| GetProfile (cache hit) | {on} | auth off | difference |",
            "|---|---:|---:|---:|",
            f"| server CPU per call (median of {result['repeats']}) | {cpu['on']} µs "
            f"| {cpu['off']} µs | {result['end_to_end_cost_us']} µs "
            f"({result['end_to_end_cost_percent']}%) |",
            f"| same, median of the paired differences | | | {result['paired_cost_us']} µs "
            f"({result['paired_cost_percent']}%) |",
            f"| calls per second | {rate['on']} | {rate['off']} | |",
            f"| the guard alone, cached key | {result['guard_us']['on']} µs "
            f"| {result['guard_us']['off']} µs | {result['guard_cost_us']} µs "
            f"({result['guard_cost_percent']}% of the call) |",
        ]
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state-dir", type=Path, default=REPO / ".state" / "bench-auth")
    parser.add_argument("--profiles", type=int, default=5_000)
    parser.add_argument("--sample", type=int, default=1_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--guard-calls", type=int, default=50_000)
    parser.add_argument("--output", type=Path, help="Also write the JSON here.")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--control",
        action="store_true",
        help="Both servers without authentication: what the on/off difference is worth here.",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.profiles, args.sample, args.concurrency = 300, 100, 4
        args.duration, args.warmup, args.repeats, args.guard_calls = 0.5, 0.2, 1, 1_000
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    postgres = EmbeddedPostgres(args.state_dir / "postgres", durable=False)
    redis = EmbeddedRedis(args.state_dir / "redis")
    database_url = postgres.start()
    redis_url = redis.start()
    try:
        seed_if_empty(database_url, args.profiles)
        result = measure(args, database_url, redis_url)
    finally:
        redis.stop()
        postgres.stop()
    text = json.dumps(result, indent=2)
    if args.output:
        args.output.write_text(text)
    print(text)
    print(markdown(result))


if __name__ == "__main__":
    main()
