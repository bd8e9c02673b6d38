"""The publishing scheduler under a burst: posts due in the same minute over many accounts,
published by three replicas on the platform fakes (docs/PUBLISHING.md, "Performance").

    .venv/bin/python -m bench.publishing            # 10,000 posts, 1,000 accounts; ~10 min
    .venv/bin/python -m bench.publishing --posts 300 --accounts 30 --window-s 5 \\
        --idle-seconds 3                            # the smoke run `make test` does

On embedded PostgreSQL and Redis (a fresh database each run), with the fakes in a process of
their own (tests/fakes/remote.py: their CPU is not the replicas'), three `socialhub serve`
processes are started, the accounts connected through ConnectAccount (a quarter on each of
X, LinkedIn, Facebook and Instagram), and the posts created through CreateBusinessPost (one
target each, round robin over the accounts, unique texts) with `schedule_time` spread evenly
over `--window-s` seconds, starting once every post is created. Then it waits until every
target is final and measures:

- exactly once: each post counted on its fake by (account, text): published once, none twice,
  none missing;
- lateness: `publish_time - schedule_time` of each target, from PostgreSQL (p50, p99, max);
- throughput: publishes per second from the first publish to the last (the due rate, posts /
  window, is its ceiling when the replicas keep up);
- server CPU per publish: the replicas' user + system CPU time (psutil, from /proc) from the
  first due time to the last final target, divided by the publishes;
- idle: one replica alone on the same database with nothing due, its CPU over
  `--idle-seconds` (the whole process: scheduler, LISTEN connection, health checks, jobs).

The machine is shared: the load average is recorded before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import psutil
import psycopg
from google.protobuf.timestamp_pb2 import Timestamp
from socialhub.v1 import profile_pb2, publishing_pb2
from socialhub.v1.publishing_pb2_grpc import PublishingServiceStub

from bench import credentials
from bench.processes import REPO
from server.core import apikeys, migrate
from server.core.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from server.publishing.tokens import new_key
from tests.fakes.remote import RemoteFakes, remote_fakes

PLATFORMS = ("x", "linkedin", "facebook", "instagram")
PLATFORM_ENUM = {
    "x": profile_pb2.PLATFORM_X,
    "linkedin": profile_pb2.PLATFORM_LINKEDIN,
    "facebook": profile_pb2.PLATFORM_FACEBOOK,
    "instagram": profile_pb2.PLATFORM_INSTAGRAM,
}
FAKE_OF = {"x": "x", "linkedin": "linkedin", "facebook": "meta", "instagram": "meta"}
IMAGE = "https://cdn.example.org/bench.jpg"
FINAL = ("published", "failed", "needs_review")
CLIENT_THREADS = 8


def say(message: str) -> None:
    print(f"{datetime.now(UTC):%H:%M:%S} {message}", file=sys.stderr, flush=True)


def fresh_database(server_url: str, name: str) -> str:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return server_url.replace("/postgres?", f"/{name}?")


class Replica:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        with log.open("wb") as output:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "server", "serve"],
                env=os.environ | env | {"PORT": str(self.port)},
                stdout=subprocess.PIPE,
                stderr=output,
                cwd=REPO,
            )
        assert self.popen.stdout is not None
        line = self.popen.stdout.readline()
        if b"ready on" not in line:
            self.popen.kill()
            raise RuntimeError(f"a replica did not start: {log.read_text()[-3000:]}")

    def cpu_s(self) -> float:
        times = psutil.Process(self.popen.pid).cpu_times()
        return float(times.user + times.system)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)


def round_robin(replicas: list[Replica], key: str) -> grpc.Channel:
    targets = ",".join(f"127.0.0.1:{replica.port}" for replica in replicas)
    config: dict[str, Any] = {"loadBalancingConfig": [{"round_robin": {}}]}
    plain = grpc.insecure_channel(
        f"ipv4:{targets}", options=[("grpc.service_config", json.dumps(config))]
    )
    return credentials.authorized(plain, key)


def connect_accounts(
    stub: PublishingServiceStub, fakes: RemoteFakes, business: str, count: int
) -> list[tuple[str, str, str]]:
    """(account name, platform, the id the fake publishes under) for `count` accounts."""
    plans = []
    for index in range(count):
        platform = PLATFORMS[index % len(PLATFORMS)]
        fake = fakes.call(FAKE_OF[platform], "add_account", f"Bench {index}")
        if platform in ("facebook", "instagram"):
            token, refresh = fake.user_access_token, ""
            publishes_as = fake.instagram_id if platform == "instagram" else fake.account_id
        else:
            token, refresh = fake.access_token, fake.refresh_token or ""
            publishes_as = fake.account_id
        plans.append((platform, token, refresh, publishes_as))

    def connect(plan: tuple[str, str, str, str]) -> tuple[str, str, str]:
        platform, token, refresh, publishes_as = plan
        request = publishing_pb2.ConnectAccountRequest(
            parent=business,
            platform=PLATFORM_ENUM[platform],
            access_token=token,
            refresh_token=refresh,
        )
        request.token_expire_time.FromDatetime(datetime.now(UTC) + timedelta(hours=2))
        return stub.ConnectAccount(request).account.name, platform, publishes_as

    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        return list(pool.map(connect, plans))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(args: argparse.Namespace) -> dict[str, Any]:
    load_before = os.getloadavg()
    postgres = EmbeddedPostgres(args.state_dir / "postgres", durable=False)
    redis = EmbeddedRedis(args.state_dir / "redis")
    server_url = postgres.start()
    redis_url = redis.start()
    replicas: list[Replica] = []
    logs = args.state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    try:
        database_url = fresh_database(server_url, "publishing_bench")
        migrate.upgrade(database_url)
        key = apikeys.issue(database_url, name="bench", scopes=["admin"]).key
        with remote_fakes() as fakes:
            # Quotas are plentiful in this run: every post's account has quota.
            fakes.set("x", "window_limit", 10**9)
            fakes.set("meta", "usage_limit", 10**9)
            env = {
                **fakes.env,
                "DATABASE_URL": database_url,
                "REDIS_URL": redis_url,
                "PAGE_TOKEN_SECRET": credentials.PAGE_TOKEN_SECRET,
                "TOKEN_ENCRYPTION_KEYS": json.dumps([new_key()]),
                "SEED_DEMO": "never",
                "LOG_LEVEL": "WARNING",
                "METRICS_PORT": "0",
                "INSTAGRAM_CONTAINER_POLL_S": "0.05",
                # X's real per-app cap (1,667 a day) is below this run's X posts; the fake's
                # app has none.
                "X_APP_DAILY_POST_CAP": "0",
            }
            replicas = [Replica(env, logs / f"replica-{i}.log") for i in range(args.replicas)]
            channel = round_robin(replicas, key)
            stub = PublishingServiceStub(channel)
            business = stub.CreateBusiness(
                publishing_pb2.CreateBusinessRequest(
                    business=publishing_pb2.Business(display_name="Bench", time_zone="UTC")
                )
            ).name
            started = time.monotonic()
            accounts = connect_accounts(stub, fakes, business, args.accounts)
            connect_rate = len(accounts) / (time.monotonic() - started)
            # Every post is created before the first is due (the replicas' CPU is measured
            # from then on): a lead from the rate ConnectAccount went at, which
            # CreateBusinessPost beats about twice (it calls no platform).
            lead_s = 15.0 + 0.8 * args.posts / connect_rate
            first_due = datetime.now(UTC) + timedelta(seconds=lead_s)
            step = args.window_s / max(1, args.posts - 1)
            texts = [f"Bench post {i}: the oven is warm" for i in range(args.posts)]

            def create(index: int) -> None:
                name, platform, _ = accounts[index % len(accounts)]
                stamp = Timestamp()
                stamp.FromDatetime(first_due + timedelta(seconds=index * step))
                stub.CreateBusinessPost(
                    publishing_pb2.CreateBusinessPostRequest(
                        parent=business,
                        business_post=publishing_pb2.BusinessPost(
                            text=texts[index],
                            targets=[publishing_pb2.PublishTarget(account=name)],
                            media_uris=[IMAGE] if platform == "instagram" else [],
                            schedule_time=stamp,
                        ),
                    )
                )

            say(f"{len(accounts)} accounts connected ({connect_rate:.1f}/s); creating posts")
            with ThreadPoolExecutor(CLIENT_THREADS) as pool:
                list(pool.map(create, range(args.posts)))
            say("posts created")
            channel.close()
            with psycopg.connect(database_url, autocommit=True) as conn:
                last = conn.execute("SELECT max(create_time) FROM publishing_posts").fetchone()
            if last is None or last[0] >= first_due:
                raise RuntimeError(
                    "posts were still being created when the first was due: the CPU figures "
                    "would include creating them; run again"
                )

            time.sleep(max(0.0, (first_due - datetime.now(UTC)).total_seconds()))
            cpu_start = [replica.cpu_s() for replica in replicas]
            fakes_cpu_start = fakes.cpu_s()
            deadline = time.monotonic() + args.window_s + args.drain_timeout_s
            with psycopg.connect(database_url, autocommit=True) as conn:
                while True:
                    row = conn.execute(
                        "SELECT count(*) FROM publishing_targets WHERE state <> ALL(%s)",
                        (list(FINAL),),
                    ).fetchone()
                    assert row is not None
                    if row[0] == 0:
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{row[0]} targets not final in time")
                    if int(time.monotonic()) % 15 == 0:
                        say(f"{row[0]} targets not final yet")
                    time.sleep(1.0)
                cpu_end = [replica.cpu_s() for replica in replicas]
                fakes_cpu = fakes.cpu_s() - fakes_cpu_start
                rows = conn.execute(
                    "SELECT t.state, extract(epoch FROM t.publish_time - p.schedule_time),"
                    " extract(epoch FROM t.publish_time)"
                    " FROM publishing_targets t JOIN publishing_posts p ON p.id = t.post_id"
                ).fetchall()
                outcomes: dict[str, int] = dict(
                    conn.execute(
                        "SELECT outcome, count(*) FROM publish_attempts GROUP BY 1"
                    ).fetchall()
                )

            # Exactly once, counted on the fakes.
            expected = {(accounts[i % len(accounts)][2], texts[i]) for i in range(args.posts)}
            seen: Counter[tuple[str, str]] = Counter()
            for fake in ("x", "linkedin", "meta"):
                seen.update((post.account_id, post.text) for post in fakes.call(fake, "posts"))

            for replica in replicas:
                replica.stop()
            replicas = []
            idle = measure_idle(env, logs, args.idle_seconds)
    finally:
        for replica in replicas:
            replica.stop()
        redis.stop()
        postgres.stop()

    published = [r for r in rows if r[0] == "published"]
    lateness = [float(r[1]) for r in published]
    times = [float(r[2]) for r in published]
    span = max(times) - min(times) if len(times) > 1 else 0.0
    cpu_s = sum(cpu_end) - sum(cpu_start)
    states: dict[str, int] = {}
    for row in rows:
        states[row[0]] = states.get(row[0], 0) + 1
    return {
        "posts": args.posts,
        "accounts": args.accounts,
        "replicas": args.replicas,
        "window_s": args.window_s,
        "states": states,
        "attempts": {str(k): int(v) for k, v in outcomes.items()},
        "exactly_once": {
            "published_once": sum(1 for k in expected if seen.get(k) == 1),
            "twice_or_more": sum(1 for k in expected if seen.get(k, 0) > 1),
            "missing": sum(1 for k in expected if k not in seen),
            "stray": sum(1 for k in seen if k not in expected),
        },
        "lateness_s": {
            "p50": round(statistics.median(lateness), 3) if lateness else None,
            "p99": round(percentile(lateness, 0.99), 3) if lateness else None,
            "max": round(max(lateness), 3) if lateness else None,
        },
        "throughput_per_s": round(len(published) / span, 1) if span else None,
        "due_rate_per_s": round(args.posts / args.window_s, 1),
        "publish_span_s": round(span, 1),
        "server_cpu_s": round(cpu_s, 2),
        "server_cpu_ms_per_publish": round(1000 * cpu_s / max(1, len(published)), 2),
        "fakes_cpu_s": round(fakes_cpu, 2),
        "idle": idle,
        "connect_rate_per_s": round(connect_rate, 1),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }


def measure_idle(env: dict[str, str], logs: Path, seconds: float) -> dict[str, float]:
    """One replica alone, nothing due: its CPU over `seconds`, after a short settling."""
    replica = Replica(env, logs / "idle.log")
    try:
        time.sleep(min(5.0, seconds))
        before = replica.cpu_s()
        time.sleep(seconds)
        used = replica.cpu_s() - before
    finally:
        replica.stop()
    return {
        "seconds": seconds,
        "cpu_s": round(used, 3),
        "cpu_percent": round(100 * used / seconds, 3),
    }


def markdown(result: dict[str, Any]) -> str:
    once = result["exactly_once"]
    late = result["lateness_s"]
    idle = result["idle"]
    return "\n".join(
        [
            f"| posts / accounts / replicas | {result['posts']} / {result['accounts']} / "
            f"{result['replicas']} (due over {result['window_s']} s) |",
            "|---|---|",
            f"| published exactly once | {once['published_once']} "
            f"(twice: {once['twice_or_more']}, missing: {once['missing']}, "
            f"stray: {once['stray']}) |",
            f"| lateness p50 / p99 / max | {late['p50']} s / {late['p99']} s / {late['max']} s |",
            f"| throughput | {result['throughput_per_s']} publishes/s over "
            f"{result['publish_span_s']} s (due rate {result['due_rate_per_s']}/s) |",
            f"| server CPU per publish | {result['server_cpu_ms_per_publish']} ms "
            f"({result['server_cpu_s']} s over 3 replicas; fakes {result['fakes_cpu_s']} s) |",
            f"| idle replica | {idle['cpu_s']} s CPU over {idle['seconds']} s "
            f"({idle['cpu_percent']} %) |",
            f"| load average before / after | {result['load_average_before']} / "
            f"{result['load_average_after']} ({result['cpus']} CPUs) |",
        ]
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--posts", type=int, default=10_000)
    parser.add_argument("--accounts", type=int, default=1_000)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--window-s", type=float, default=60.0, help="due times spread")
    parser.add_argument("--drain-timeout-s", type=float, default=600.0)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--state-dir", type=Path, default=REPO / ".state" / "bench-publishing")
    parser.add_argument("--output", type=Path, help="Also write the JSON here.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = run(args)
    text = json.dumps(result, indent=2)
    if args.output:
        args.output.write_text(text)
    print(text)
    print(markdown(result))


if __name__ == "__main__":
    main()
