"""What authentication costs a GetProfile cache hit (issue 8: under 5% of its server CPU).

    .venv/bin/python -m bench.auth_cost                 # about 3 minutes; JSON and Markdown
    .venv/bin/python -m bench.auth_cost --instructions  # about 15 minutes; the same, counted
    .venv/bin/python -m bench.auth_cost --quick         # a smoke run that measures nothing

Two `socialhub serve` processes on the same data and Redis, one with authentication on (as
production runs) and one with AUTH_ENABLED=false, answer GetProfile for profiles whose
answers are cached. The load generator (bench.loadgen) runs in its own process; server CPU
per call comes from /proc. Runs alternate between the two servers, so drift in the shared
machine's load hits both alike, and the figures are medians of the repeats. The step alone
is also timed in this process: the per-method guard on a key already verified and cached,
which is all that authentication adds to a call after a key's first use.

Server CPU time per call moves with the machine's load and with how many calls share one
event-loop wake-up, so on a shared machine on/off differences drown in noise.
`--instructions` counts instead: each server runs under valgrind's callgrind, which counts
the instructions the server executes (every thread), the same whatever else the machine
does. After a warm-up, `callgrind_control --zero` starts a window, a fixed number of calls
is made, and `callgrind_control --dump` closes it, so start-up and warm-up are not counted.
Several servers of each kind run, one after another, and each is measured in several
windows: the spread between servers of the same kind (on against on, off against off) is
what a difference is worth. A third kind, authentication off but clients sending the key,
separates what the `authorization` header costs grpc from what the guard costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import grpc
from google.protobuf import message
from socialhub.v1 import profile_pb2, profile_pb2_grpc

from bench import credentials, floorload, loadgen
from bench.processes import REPO, Process, start_socialhub
from bench.suite import Unary, warm_profile_cache
from server.core.auth import Authenticator, Guard
from server.core.config import Settings
from server.core.db import create_engine
from server.core.embedded import EmbeddedPostgres, EmbeddedRedis

PROFILE_SERVICE = "socialhub.v1.ProfileService"
# Where `--guard-child`, under callgrind, finds its own dumps.
GUARD_DUMPS = "SOCIALHUB_BENCH_GUARD_DUMPS"


# What one run of the guard is worth: µs (timed) or instructions (counted under callgrind).
GuardMeasure = Callable[[Guard, grpc.aio.ServicerContext[Any, Any], int], Awaitable[float]]


async def _best_time(
    guard: Guard, context: grpc.aio.ServicerContext[Any, Any], calls: int
) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(calls):
            await guard(context)
        best = min(best, (time.perf_counter() - started) / calls * 1e6)
    return best


async def _instructions(
    guard: Guard, context: grpc.aio.ServicerContext[Any, Any], calls: int
) -> float:
    """Instructions per guard call: this process runs under callgrind (`--guard-child`)."""
    callgrind_control(os.getpid(), "--zero")
    for _ in range(calls):
        await guard(context)
    callgrind_control(os.getpid(), "--dump")
    return instructions_of(newest_dump(Path(os.environ[GUARD_DUMPS]), os.getpid())) / calls


async def measure_guard(
    database_url: str, key: str, calls: int, measure: GuardMeasure = _best_time
) -> dict[str, float]:
    """What the guard GetProfile runs costs per call, on and off, for a key already cached.

    Run inside a grpc.aio handler, on the real ServicerContext of a call that carries the
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

    async def measured(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        guard = guards[request.decode()]
        await guard(context)  # the one lookup; every later call is a cache hit
        return str(await measure(guard, context, calls)).encode()

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "bench.Guard", {"Measure": grpc.unary_unary_rpc_method_handler(measured)}
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            method: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                "/bench.Guard/Measure"
            )
            metadata = (("authorization", f"Bearer {key}"),)
            return {
                label: round(float(await method(label.encode(), metadata=metadata)), 2)
                for label in guards
            }
    finally:
        await server.stop(None)
        await engine.dispose()


def time_guard(database_url: str, key: str, calls: int) -> dict[str, float]:
    """µs per guard call, best of 5 loops of `calls`."""
    return asyncio.run(measure_guard(database_url, key, calls))


def count_guard(database_url: str, key: str, calls: int, out_dir: Path) -> dict[str, float]:
    """Instructions per guard call: `--guard-child` run under callgrind."""
    out_dir.mkdir(parents=True, exist_ok=True)
    env = os.environ | {"DATABASE_URL": database_url, credentials.KEY_VARIABLE: key}
    env[GUARD_DUMPS] = str(out_dir)
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out_dir}/callgrind.%p",
            sys.executable,
            "-m",
            "bench.auth_cost",
            "--guard-child",
            "--guard-calls",
            str(calls),
        ],
        env=env,
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    counted: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return counted


def guard_child(calls: int) -> None:
    database_url, key = os.environ["DATABASE_URL"], os.environ[credentials.KEY_VARIABLE]
    print(json.dumps(asyncio.run(measure_guard(database_url, key, calls, _instructions))))


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
    guard = time_guard(database_url, key, args.guard_calls)
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


# ---------------------------------------------------------------- instructions (callgrind)


@dataclass(frozen=True)
class Variant:
    label: str
    auth: bool  # AUTH_ENABLED on the server
    send_key: bool  # whether its clients send `authorization: Bearer <key>`


# Interleaved, so nothing that drifts over the run (Redis's memory, PostgreSQL's caches)
# lines up with one kind. "#2" is a second server of the same kind: the A/A control.
VARIANTS = {
    v.label: v
    for v in (
        Variant("off", auth=False, send_key=False),
        Variant("on", auth=True, send_key=True),
        Variant("off #2", auth=False, send_key=False),
        Variant("on #2", auth=True, send_key=True),
        Variant("off, key sent", auth=False, send_key=True),
    )
}


async def make_calls(
    address: str,
    requests: list[profile_pb2.GetProfileRequest],
    calls: int,
    concurrency: int,
    key: str | None,
) -> None:
    """Exactly `calls` GetProfile calls, `concurrency` at a time; any failure raises."""
    channel = credentials.aio_channel(address, key) if key else grpc.aio.insecure_channel(address)
    async with channel:
        stub = profile_pb2_grpc.ProfileServiceStub(channel)
        numbers = iter(range(calls))

        async def caller() -> None:
            for i in numbers:
                await stub.GetProfile(requests[i % len(requests)])

        await asyncio.gather(*(caller() for _ in range(concurrency)))


def callgrind_control(pid: int, command: str) -> None:
    subprocess.run(
        ["callgrind_control", command, str(pid)],
        check=True,
        capture_output=True,
        timeout=300,
    )


def instructions_of(dump: Path) -> int:
    """The instructions a callgrind dump counted (its `summary:` line)."""
    for line in dump.read_text(errors="replace").splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise ValueError(f"{dump} has no summary line")


def count_window(
    process: Process,
    out_dir: Path,
    requests: list[profile_pb2.GetProfileRequest],
    calls: int,
    concurrency: int,
    key: str | None,
) -> tuple[int, Path]:
    """Instructions the server executed for `calls` calls, and the dump that holds them."""
    callgrind_control(process.pid, "--zero")
    asyncio.run(make_calls(process.address, requests, calls, concurrency, key))
    callgrind_control(process.pid, "--dump")
    dump = newest_dump(out_dir, process.pid)
    return instructions_of(dump), dump


def newest_dump(out_dir: Path, pid: int) -> Path:
    dumps = out_dir.glob(f"callgrind.{pid}.*")
    return max(dumps, key=lambda path: int(path.name.rsplit(".", 1)[1]))


def measure_instructions(
    args: argparse.Namespace, database_url: str, redis_url: str
) -> dict[str, Any]:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("--instructions needs valgrind (Debian: apt-get install valgrind)")
    ids = asyncio.run(profile_ids(database_url, args.sample))
    requests = [profile_pb2.GetProfileRequest(name=f"profiles/{i}") for i in ids]
    key = credentials.bench_key(database_url)
    out_dir = args.state_dir / "callgrind"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    wrapper = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out_dir}/callgrind.%p",
        # Whole-process counts; ignore the start-up, counted before the first --zero.
        "--dump-line=no",
    ]
    variants = [VARIANTS[label.strip()] for label in args.variants.split(",") if label.strip()]
    # Under callgrind a call takes about 50 times as long. Timeouts sized for real time would
    # turn cache hits into Redis fallbacks, and work on a timer would grow with the wall time
    # of a window instead of with its calls: the health checks, job polling and the API key
    # cache's TTL (a 10 s TTL meant a key lookup every few dozen calls here, against one in
    # tens of thousands at production rates).
    slow = {
        "API_KEY_CACHE_TTL_S": "3600",
        "REDIS_TIMEOUT_S": "60",
        "DB_POOL_TIMEOUT_S": "60",
        "HEALTH_CHECK_INTERVAL_S": "3600",
        "JOB_LEADER_POLL_S": "3600",
    }
    results: list[dict[str, Any]] = []
    for variant in variants:
        started = time.perf_counter()
        server = start_socialhub(
            database_url,
            redis_url,
            module="server",
            auth=variant.auth,
            wrapper=wrapper,
            settings=slow,
        )
        client_key = key if variant.send_key else None
        try:
            # Warms this server (imports, pools, statements) and fills Redis: at least one
            # call per sampled profile, or the first window would count cache misses.
            warmup = max(args.warmup_calls, len(requests))
            asyncio.run(make_calls(server.address, requests, warmup, args.concurrency, client_key))
            windows = []
            for _ in range(args.windows):
                counted, dump = count_window(
                    server, out_dir, requests, args.calls, args.concurrency, client_key
                )
                windows.append(counted / args.calls)
            alone = 0
            if args.alone_calls:
                alone, _ = count_window(server, out_dir, requests, args.alone_calls, 1, client_key)
            idle, _ = count_window(server, out_dir, requests, 0, 1, client_key)
        finally:
            server.stop()
        row = {
            "variant": variant.label,
            "auth": variant.auth,
            "key_sent": variant.send_key,
            "instructions_per_call": [round(w) for w in windows],
            "median": round(statistics.median(windows)),
            "instructions_per_call_one_at_a_time": (
                round(alone / args.alone_calls) if args.alone_calls else None
            ),
            "instructions_idle_window": idle,
            "dump": str(dump),
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(json.dumps({k: v for k, v in row.items() if k != "dump"}), flush=True)
        results.append(row)

    def kind(auth: bool, send_key: bool) -> list[dict[str, Any]]:
        return [r for r in results if r["auth"] == auth and r["key_sent"] == send_key]

    def median_of(rows: list[dict[str, Any]]) -> float:
        return float(statistics.median(w for r in rows for w in r["instructions_per_call"]))

    on, off, keyed = kind(True, True), kind(False, False), kind(False, True)
    summary: dict[str, Any] = {
        "method": "callgrind",
        "calls_per_window": args.calls,
        "windows": args.windows,
        "concurrency": args.concurrency,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "servers": results,
    }
    if on and off:
        cost = median_of(on) - median_of(off)
        summary |= {
            "on": round(median_of(on)),
            "off": round(median_of(off)),
            "cost": round(cost),
            "cost_percent": round(cost / median_of(on) * 100, 2),
        }
    if keyed and off:
        summary["header"] = round(median_of(keyed) - median_of(off))
    for label, rows in (("on_vs_on", on), ("off_vs_off", off)):
        if len(rows) >= 2:
            a, b = (float(statistics.median(r["instructions_per_call"])) for r in rows[:2])
            summary[label] = round(b - a)
    summary["guard"] = count_guard(database_url, key, args.guard_count_calls, out_dir / "guard")
    summary["guard_cost"] = round(summary["guard"]["on"] - summary["guard"]["off"])
    every = [w for r in results for w in r["instructions_per_call"]]
    if not every:
        return summary
    call = summary.get("on") or statistics.median(every)
    summary["guard_cost_percent"] = round(summary["guard_cost"] / call * 100, 2)
    summary["window_spread_percent"] = max(
        round(
            (max(r["instructions_per_call"]) - min(r["instructions_per_call"])) / r["median"] * 100,
            2,
        )
        for r in results
    )
    summary["all_windows"] = [min(every), max(every)]
    return summary


def instructions_markdown(result: dict[str, Any]) -> str:
    lines = [
        "| server | instructions per call, each window | median | one call at a time |",
        "|---|---:|---:|---:|",
    ]
    for r in result["servers"]:
        windows = ", ".join(f"{w:,}" for w in r["instructions_per_call"])
        lines.append(
            f"| {r['variant']} | {windows} | {r['median']:,}"
            f" | {r['instructions_per_call_one_at_a_time'] or '-'} |"
        )
    if "cost" in result:
        lines.append("")
        lines.append(
            f"Authentication: {result['on']:,} against {result['off']:,} instructions per call,"
            f" {result['cost']:+,} ({result['cost_percent']}%)."
        )
    for label, text in (
        ("header", "the header alone (off, key sent, against off)"),
        ("on_vs_on", "A/A, on against on"),
        ("off_vs_off", "A/A, off against off"),
    ):
        if label in result:
            lines.append(f"{text}: {result[label]:+,} instructions per call.")
    guard = result["guard"]
    lines.append(
        f"The guard alone, cached key: {guard['on']:,.0f} instructions per call on,"
        f" {guard['off']:,.0f} off: {result['guard_cost']:+,}"
        + (
            f" ({result['guard_cost_percent']}% of the call)."
            if "guard_cost_percent" in result
            else "."
        )
    )
    return "\n".join(lines)


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
    counted = parser.add_argument_group("--instructions (callgrind)")
    counted.add_argument(
        "--instructions",
        action="store_true",
        help="Count the servers' instructions per call under callgrind instead of timing them.",
    )
    counted.add_argument("--calls", type=int, default=1_000, help="Calls per counted window.")
    counted.add_argument("--windows", type=int, default=3, help="Counted windows per server.")
    counted.add_argument("--warmup-calls", type=int, default=1_000)
    counted.add_argument(
        "--guard-count-calls", type=int, default=20_000, help="Guard calls counted, on and off."
    )
    counted.add_argument("--guard-child", action="store_true", help=argparse.SUPPRESS)
    counted.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"Servers to count, in this order; of: {', '.join(map(repr, VARIANTS))}.",
    )
    counted.add_argument(
        "--alone-calls",
        type=int,
        default=500,
        help="Calls counted one at a time after the windows, to show batching (0: none).",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.profiles, args.sample, args.concurrency = 300, 100, 4
        args.duration, args.warmup, args.repeats, args.guard_calls = 0.5, 0.2, 1, 1_000
        args.calls, args.windows, args.warmup_calls, args.variants = 20, 1, 20, "off,on"
        args.alone_calls = 10
        args.guard_count_calls = 100
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.guard_child:
        guard_child(args.guard_calls)
        return
    postgres = EmbeddedPostgres(args.state_dir / "postgres", durable=False)
    redis = EmbeddedRedis(args.state_dir / "redis")
    database_url = postgres.start()
    redis_url = redis.start()
    try:
        seed_if_empty(database_url, args.profiles)
        if args.instructions:
            result = measure_instructions(args, database_url, redis_url)
        else:
            result = measure(args, database_url, redis_url)
    finally:
        redis.stop()
        postgres.stop()
    text = json.dumps(result, indent=2)
    if args.output:
        args.output.write_text(text)
    print(text)
    print(instructions_markdown(result) if args.instructions else markdown(result))


if __name__ == "__main__":
    main()
