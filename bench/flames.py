"""Flame graphs of the server under load, for the hot paths docs/BENCHMARKS.md discusses.

    .venv/bin/python -m bench.flames      # after `make bench` has seeded .state/bench

py-spy samples the server process (Python frames plus native ones with --native) while a
load generator in its own process drives one scenario; the SVGs go to docs/bench/.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from pathlib import Path

from socialhub.v1 import profile_pb2, profile_pb2_grpc

from bench import feed_bench, loadgen
from bench.processes import Process, start_socialhub
from bench.suite import REPO, EmptyRpc, Unary, warm_profile_cache
from server.core.embedded import EmbeddedPostgres, EmbeddedRedis

PY_SPY = Path(sys.executable).with_name("py-spy")


def record(
    process: Process, name: str, factory: loadgen.CallFactory, args: argparse.Namespace
) -> None:
    output = args.docs_dir / "bench" / f"flame-{name}.svg"
    spy = subprocess.Popen(
        [
            str(PY_SPY),
            "record",
            "--pid",
            str(process.pid),
            "--duration",
            str(int(args.duration)),
            "--rate",
            "250",
            "--format",
            "flamegraph",
            "--output",
            str(output),
            *(["--native"] if args.native else []),
        ],
        stdout=subprocess.DEVNULL,
    )
    result = loadgen.run_in_subprocess(
        process.address,
        name,
        factory,
        concurrency=32,
        duration_s=args.duration,
        warmup_s=0.5,
        server_pid=process.pid,
    )
    spy.wait()
    print(
        f"{name}: {result.calls_per_s:.0f}/s, {result.server_cpu_us_per_call} µs/call -> {output}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state-dir", type=Path, default=REPO / ".state" / "bench")
    parser.add_argument("--docs-dir", type=Path, default=REPO / "docs")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--native", action="store_true")
    args = parser.parse_args()
    (args.docs_dir / "bench").mkdir(parents=True, exist_ok=True)
    postgres = EmbeddedPostgres(args.state_dir / "postgres", durable=False)
    redis = EmbeddedRedis(args.state_dir / "redis")
    database_url, redis_url = postgres.start(), redis.start()
    servers: list[Process] = []
    try:
        feed = asyncio.run(feed_bench.pick_inputs(database_url))
        cached = start_socialhub(database_url, redis_url, module="bench.server")
        uncached = start_socialhub(database_url, redis_url, module="server", cache=False)
        servers += [cached, uncached]
        ids = list(range(feed["largest_author"], feed["largest_author"] + 1_000))
        requests = [profile_pb2.GetProfileRequest(name=f"profiles/{i}") for i in ids]
        get_profile = Unary(profile_pb2_grpc.ProfileServiceStub, "GetProfile", list(requests))
        first_page = Unary(
            profile_pb2_grpc.ProfileServiceStub,
            "ListProfiles",
            [profile_pb2.ListProfilesRequest(page_size=50)],
        )
        warm_profile_cache(cached.address, redis_url, ids)
        record(cached, "empty-rpc", EmptyRpc(), args)
        record(cached, "getprofile-cache-hit", get_profile, args)
        record(uncached, "getprofile-cache-off", get_profile, args)
        record(uncached, "listprofiles-cache-off", first_page, args)
        record(uncached, "timeline-cache-off", feed_bench.timeline_first(feed["readers"]), args)
    finally:
        for server in servers:
            server.stop()
        redis.stop()
        postgres.stop()


if __name__ == "__main__":
    main()
