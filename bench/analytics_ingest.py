"""Analytics ingestion throughput: metric snapshots through ImportMetricSnapshots.

    .venv/bin/python -m bench.analytics_ingest                  # 200,000 snapshots, 4 streams
    .venv/bin/python -m bench.analytics_ingest --snapshots 20000 --streams 1   # a quick look

On embedded PostgreSQL and Redis (a fresh database each run), one `socialhub serve` process
(authentication on, as production runs it) gets `--profiles` profiles through CreateProfile,
then `--streams` concurrent ImportMetricSnapshots streams of `--batch`-snapshot messages. The
data is a feed's: posts appear over time and are observed again with growing metrics (about
`--observations` times each), a few observations arrive late (older than one already sent)
and a few are sent twice. Every message is generated and serialized before the clock starts
(the client sends bytes), so the client costs little of the shared CPU.

Figures:

- streaming: snapshots/s from the first message written to the last stream's response, and
  per stream the time per message (stream time / messages);
- per-message latency: the same kind of messages (fresh data, same mix and concurrency) sent
  as unary BatchCreateMetricSnapshots calls, which run the same ingestion per message:
  p50 / p99 of those calls (a client-streaming call has no per-message answer to time);
- CPU per snapshot of the server, PostgreSQL and Redis processes (psutil, from /proc) over
  the streaming phase: where the time goes;
- correctness, after both phases: the rollups (each post's latest metrics, analytics_daily,
  analytics_posting_slots, analytics_creators) equal a recomputation from the recorded
  snapshots, the snapshots recorded equal the distinct (post, observe_time) pairs sent, and
  Redis got one XADD per recorded snapshot (live events). A run whose checks fail exits non-zero.

The machine is shared: the load average is recorded before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import psycopg
import redis
from google.protobuf.timestamp_pb2 import Timestamp
from socialhub.v1 import analytics_pb2, profile_pb2
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from bench import credentials
from bench.processes import REPO, Process, start_socialhub
from server.core.embedded import EmbeddedPostgres, EmbeddedRedis

RESULTS = REPO / "bench" / "results"
IMPORT_METHOD = "/socialhub.v1.AnalyticsService/ImportMetricSnapshots"
BATCH_METHOD = "/socialhub.v1.AnalyticsService/BatchCreateMetricSnapshots"
PLATFORMS = (profile_pb2.PLATFORM_INSTAGRAM, profile_pb2.PLATFORM_X, profile_pb2.PLATFORM_YOUTUBE)
METRICS = ("likes", "comments", "shares", "saves", "views", "reach")


def say(message: str) -> None:
    print(f"{datetime.now(UTC):%H:%M:%S} {message}", file=sys.stderr, flush=True)


def fresh_database(server_url: str, name: str) -> str:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return server_url.replace("/postgres?", f"/{name}?")


def _stamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


@dataclass
class Feed:
    """One stream's messages, serialized, and what was sent (for the checks)."""

    messages: list[bytes]
    snapshots: int
    distinct: set[tuple[str, int, str, int, int]]


def make_feeds(
    profiles: Sequence[str],
    streams: int,
    snapshots: int,
    batch: int,
    observations: int,
    late_share: float,
    duplicate_share: float,
    seed: int,
    tag: str,
) -> list[Feed]:
    """`snapshots` snapshots over `streams` feeds; each feed owns the profiles i % streams
    (as importers shard by account), posts appear in order and are observed again later."""
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(hours=36)
    per_stream = snapshots // streams
    feeds = []
    for stream in range(streams):
        owned = [p for i, p in enumerate(profiles) if i % streams == stream] or list(profiles)
        items: list[analytics_pb2.MetricSnapshot] = []
        sent: list[analytics_pb2.MetricSnapshot] = []
        live: list[list[Any]] = []  # [profile, platform, post_id, publish, observe, metrics]
        step = timedelta(hours=30) / max(1, per_stream)
        clock = start
        post_number = 0
        while len(items) < per_stream:
            clock += step
            roll = rng.random()
            if sent and roll < duplicate_share:
                items.append(rng.choice(sent))  # the very same snapshot again
                continue
            if sent and roll < duplicate_share + late_share:
                # Late: an observation older than the post's latest one sent.
                post = rng.choice(live)
                observed = post[4] - timedelta(seconds=rng.randrange(1, 600))
                if observed <= post[3]:
                    continue
                metrics = [max(0, v - rng.randrange(0, 5)) for v in post[5]]
            elif not live or rng.random() < 1 / observations:
                post_number += 1
                profile = rng.choice(owned)
                post = [
                    profile,
                    rng.choice(PLATFORMS),
                    f"{tag}-s{stream}-p{post_number}",
                    clock - timedelta(minutes=rng.randrange(1, 120)),
                    clock,
                    [0] * len(METRICS),
                ]
                live.append(post)
                if len(live) > 5000:
                    live.pop(rng.randrange(len(live)))
                observed = clock
                metrics = [rng.randrange(0, 50) for _ in METRICS]
            else:
                post = rng.choice(live)
                observed = max(clock, post[4] + timedelta(seconds=1))
                # Mostly growing; now and then a post loses a few likes (an unlike).
                metrics = [max(0, v + rng.randrange(-3, 40)) for v in post[5]]
                post[4] = observed
            post[5] = metrics
            snapshot = analytics_pb2.MetricSnapshot(
                profile=post[0],
                platform=post[1],
                post_id=post[2],
                publish_time=_stamp(post[3]),
                observe_time=_stamp(observed),
                **dict(zip(METRICS, metrics, strict=True)),
            )
            items.append(snapshot)
            sent.append(snapshot)
        messages = [
            analytics_pb2.ImportMetricSnapshotsRequest(
                metric_snapshots=items[i : i + batch]
            ).SerializeToString()
            for i in range(0, len(items), batch)
        ]
        distinct = {
            (s.profile, int(s.platform), s.post_id, s.observe_time.seconds, s.observe_time.nanos)
            for s in items
        }
        feeds.append(Feed(messages, len(items), distinct))
    return feeds


def _identity(value: bytes) -> bytes:
    return value


async def stream_feeds(address: str, feeds: list[Feed]) -> dict[str, Any]:
    async def one(feed: Feed) -> tuple[float, Any]:
        # A channel (a connection) per stream, as separate importers would have: with
        # `serve --workers N` the kernel spreads the connections over the workers.
        async with credentials.aio_channel(address) as channel:
            call = channel.stream_unary(
                IMPORT_METHOD,
                request_serializer=_identity,
                response_deserializer=analytics_pb2.ImportMetricSnapshotsResponse.FromString,
            )
            await channel.channel_ready()
            started = time.perf_counter()

            async def messages() -> Any:
                for message in feed.messages:
                    yield message

            response = await call(messages(), timeout=3600)
            return time.perf_counter() - started, response

    started = time.perf_counter()
    done = await asyncio.gather(*(one(feed) for feed in feeds))
    seconds = time.perf_counter() - started
    sent = sum(feed.snapshots for feed in feeds)
    return {
        "seconds": round(seconds, 3),
        "snapshots": sent,
        "snapshots_per_s": round(sent / seconds),
        "created": sum(r.created_count for _, r in done),
        "unchanged": sum(r.unchanged_count for _, r in done),
        "messages": sum(r.message_count for _, r in done),
        "ms_per_message_per_stream": [
            round(1000 * s / max(1, len(f.messages)), 1)
            for (s, _), f in zip(done, feeds, strict=True)
        ],
    }


async def unary_feeds(address: str, feeds: list[Feed]) -> dict[str, Any]:
    latencies: list[float] = []

    async def one(feed: Feed) -> int:
        async with credentials.aio_channel(address) as channel:
            call = channel.unary_unary(
                BATCH_METHOD,
                request_serializer=_identity,  # the same bytes: field 1 is the snapshots in both
                response_deserializer=analytics_pb2.BatchCreateMetricSnapshotsResponse.FromString,
            )
            created = 0
            for message in feed.messages:
                started = time.perf_counter()
                response = await call(message, timeout=600)
                latencies.append((time.perf_counter() - started) * 1000)
                created += response.created_count
            return created

    started = time.perf_counter()
    created = await asyncio.gather(*(one(feed) for feed in feeds))
    seconds = time.perf_counter() - started
    sent = sum(feed.snapshots for feed in feeds)
    ordered = sorted(latencies)
    return {
        "seconds": round(seconds, 3),
        "snapshots": sent,
        "snapshots_per_s": round(sent / seconds),
        "created": sum(created),
        "calls": len(latencies),
        "p50_ms": round(statistics.median(ordered), 1),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1),
        "max_ms": round(ordered[-1], 1),
    }


CHECKS = {
    # Each post's row holds its latest snapshot (the one with the greatest observe_time).
    "posts_latest_mismatches": """
        WITH latest AS (
            SELECT DISTINCT ON (post_id) * FROM analytics_metric_snapshots
            ORDER BY post_id, observe_time DESC
        )
        SELECT count(*) FROM analytics_posts p FULL JOIN latest l ON l.post_id = p.id
        WHERE (p.observe_time, p.likes, p.comments, p.shares, p.saves, p.views, p.reach)
              IS DISTINCT FROM
              (l.observe_time, l.likes, l.comments, l.shares, l.saves, l.views, l.reach)
    """,
    "daily_mismatches": """
        WITH expected AS (
            SELECT p.profile_id, (p.publish_time AT TIME ZONE 'UTC')::date AS day, p.platform,
                   count(*) AS posts, sum(l.likes) AS likes, sum(l.comments) AS comments,
                   sum(l.shares) AS shares, sum(l.saves) AS saves, sum(l.views) AS views,
                   sum(l.reach) AS reach
            FROM analytics_posts p
            JOIN (SELECT DISTINCT ON (post_id) * FROM analytics_metric_snapshots
                  ORDER BY post_id, observe_time DESC) l ON l.post_id = p.id
            GROUP BY 1, 2, 3
        ), kept AS (
            SELECT * FROM analytics_daily
            WHERE (posts, likes, comments, shares, saves, views, reach) <> (0, 0, 0, 0, 0, 0, 0)
        )
        SELECT count(*) FROM expected e FULL JOIN kept d USING (profile_id, day, platform)
        WHERE (e.posts, e.likes, e.comments, e.shares, e.saves, e.views, e.reach)
              IS DISTINCT FROM (d.posts, d.likes, d.comments, d.shares, d.saves, d.views, d.reach)
    """,
    "creators_mismatches": """
        WITH expected AS (
            SELECT p.profile_id, p.platform, count(*) AS posts,
                   sum(l.likes + l.comments + l.shares) AS engagement
            FROM analytics_posts p
            JOIN (SELECT DISTINCT ON (post_id) * FROM analytics_metric_snapshots
                  ORDER BY post_id, observe_time DESC) l ON l.post_id = p.id
            GROUP BY 1, 2
        ), kept AS (
            SELECT * FROM analytics_creators WHERE (posts, engagement) <> (0, 0)
        )
        SELECT count(*) FROM expected e FULL JOIN kept c USING (profile_id, platform)
        WHERE (e.posts, e.engagement) IS DISTINCT FROM (c.posts, c.engagement)
    """,
    "slots_mismatches": """
        WITH expected AS (
            SELECT p.profile_id, p.platform,
                   date_part('isodow', p.publish_time AT TIME ZONE 'UTC') AS weekday,
                   date_part('hour', p.publish_time AT TIME ZONE 'UTC') AS hour,
                   count(*) AS posts, sum(l.likes + l.comments + l.shares) AS engagement
            FROM analytics_posts p
            JOIN (SELECT DISTINCT ON (post_id) * FROM analytics_metric_snapshots
                  ORDER BY post_id, observe_time DESC) l ON l.post_id = p.id
            GROUP BY 1, 2, 3, 4
        ), kept AS (
            SELECT * FROM analytics_posting_slots WHERE (posts, engagement) <> (0, 0)
        )
        SELECT count(*) FROM expected e FULL JOIN kept s USING (profile_id, platform, weekday, hour)
        WHERE (e.posts, e.engagement) IS DISTINCT FROM (s.posts, s.engagement)
    """,
    # The top posts' day bounds: at least the engagement of each post of the day now.
    "day_bounds_below_a_post": """
        SELECT count(*) FROM analytics_posts p JOIN analytics_daily d
            ON (d.profile_id, d.day, d.platform)
             = (p.profile_id, (p.publish_time AT TIME ZONE 'UTC')::date, p.platform)
        WHERE d.max_engagement < p.engagement
    """,
    "snapshots": "SELECT count(*) FROM analytics_metric_snapshots",
    "posts": "SELECT count(*) FROM analytics_posts",
}


class Timeline:
    """Once a second during a phase: the database's commits (one per ingested message) and the
    tables autovacuum is working on, to see whether a long run slows down, and when."""

    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._stop = threading.Event()
        self.samples: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Timeline:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        started = time.perf_counter()
        with psycopg.connect(self._url, autocommit=True) as conn:
            while not self._stop.wait(1.0):
                commits = conn.execute(
                    "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
                ).fetchone()
                vacuums = conn.execute(
                    "SELECT coalesce(array_agg(relid::regclass::text), '{}')"
                    " FROM pg_stat_progress_vacuum"
                ).fetchone()
                assert commits is not None
                assert vacuums is not None
                self.samples.append(
                    {
                        "s": round(time.perf_counter() - started, 1),
                        "commits": commits[0],
                        "vacuuming": vacuums[0],
                    }
                )


def wal_counters(database_url: str) -> dict[str, float]:
    """The cluster's WAL and checkpoint counters, whose deltas say what a phase wrote: a
    checkpoint during it makes every page's next change log a full-page image."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        wal = conn.execute("SELECT wal_records, wal_fpi, wal_bytes FROM pg_stat_wal").fetchone()
        checkpoints = conn.execute(
            "SELECT num_timed, num_requested FROM pg_stat_checkpointer"
        ).fetchone()
    assert wal is not None
    assert checkpoints is not None
    return {
        "wal_records": float(wal[0]),
        "wal_full_page_images": float(wal[1]),
        "wal_bytes": float(wal[2]),
        "checkpoints_timed": float(checkpoints[0]),
        "checkpoints_requested": float(checkpoints[1]),
    }


def check(database_url: str, expected_snapshots: int) -> dict[str, Any]:
    with psycopg.connect(database_url) as conn:
        found: dict[str, Any] = {}
        for name, sql in CHECKS.items():
            row = conn.execute(sql).fetchone()
            assert row is not None
            found[name] = row[0]
    found["expected_snapshots"] = expected_snapshots
    found["ok"] = (
        found["posts_latest_mismatches"] == 0
        and found["daily_mismatches"] == 0
        and found["creators_mismatches"] == 0
        and found["slots_mismatches"] == 0
        and found["day_bounds_below_a_post"] == 0
        and found["snapshots"] == expected_snapshots
    )
    return found


def _post_updates(database_url: str) -> dict[str, int]:
    """Updates of analytics_posts over the whole run, and how many were HOT (no index entry);
    read once the server's backends have exited and so sent their statistics."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
            " WHERE relname = 'analytics_posts'"
        ).fetchone()
    assert row is not None
    return {"updates": row[0], "hot_updates": row[1]}


def xadd_calls(redis_url: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        stats: dict[str, Any] = client.info("commandstats")
        return int(stats.get("cmdstat_xadd", {}).get("calls", 0))
    finally:
        client.close()


def create_profiles(address: str, count: int) -> list[str]:
    with credentials.channel(address) as channel:
        stub = ProfileServiceStub(channel)
        return [
            stub.CreateProfile(
                profile_pb2.CreateProfileRequest(
                    profile=profile_pb2.Profile(
                        display_name=f"Ingest bench {n}",
                        instagram=profile_pb2.PlatformPresence(handle=f"ib{n}", followers=1000),
                    )
                )
            ).name
            for n in range(count)
        ]


class CpuMeter:
    """User + system CPU seconds of the server, PostgreSQL (postmaster and backends), Redis
    and this client process, and of the whole machine (busy, all processes): a PostgreSQL
    backend that exits during the phase takes its CPU with it, the machine's figure does not."""

    def __init__(self, server: Process, postgres_dir: Path, redis_url: str) -> None:
        postmaster = int((postgres_dir / "postmaster.pid").read_text().split()[0])
        port = redis_url.rsplit(":", 1)[1].split("/")[0]
        self.groups: dict[str, Callable[[], list[psutil.Process]]] = {
            "server": lambda: [psutil.Process(server.pid), *psutil.Process(server.pid).children()],
            "postgres": lambda: [
                psutil.Process(postmaster),
                *psutil.Process(postmaster).children(),
            ],
            "redis": lambda: [
                p
                for p in psutil.process_iter(["name", "cmdline"])
                if "redis-server" in (p.info["name"] or "")
                and port in " ".join(p.info["cmdline"] or ())
            ],
            "client": lambda: [psutil.Process(os.getpid())],
        }

    def sample(self) -> dict[str, float]:
        result: dict[str, float] = {}
        for name, processes in self.groups.items():
            total = 0.0
            for process in processes():
                try:
                    times = process.cpu_times()
                    total += times.user + times.system
                except psutil.NoSuchProcess:
                    pass
            result[name] = total
        machine = psutil.cpu_times()
        result["machine"] = sum(
            getattr(machine, field, 0.0)
            # Not "nice": niced processes are other work sharing the machine, not this run's.
            for field in ("user", "system", "irq", "softirq", "steal")
        )
        return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    load_before = os.getloadavg()
    postgres = EmbeddedPostgres(args.state_dir / "postgres", durable=not args.not_durable)
    redis_server = EmbeddedRedis(args.state_dir / "redis")
    server_url = postgres.start()
    redis_url = redis_server.start()
    server: Process | None = None
    database_url = ""
    try:
        database_url = fresh_database(server_url, "analytics_ingest_bench")
        redis.Redis.from_url(redis_url).flushall()
        env = {**os.environ, "DATABASE_URL": database_url}
        subprocess.run([sys.executable, "-m", "server", "migrate"], env=env, check=True)
        server = start_socialhub(database_url, redis_url, module="server", workers=args.workers)
        say(f"server up on {server.address}; creating {args.profiles} profiles")
        profiles = create_profiles(server.address, args.profiles)
        say("generating the feeds")
        common = {
            "streams": args.streams,
            "snapshots": args.snapshots,
            "batch": args.batch,
            "observations": args.observations,
            "late_share": args.late_share,
            "duplicate_share": args.duplicate_share,
        }
        streamed = make_feeds(profiles, seed=1, tag="stream", **common)
        unary = make_feeds(profiles, seed=2, tag="unary", **common) if args.unary else []
        warm = make_feeds(
            profiles, **{**common, "snapshots": args.batch * 4 * args.streams}, seed=3, tag="warm"
        )
        say("warming up")
        asyncio.run(stream_feeds(server.address, warm))
        meter = CpuMeter(server, args.state_dir / "postgres", redis_url)
        xadds_before = xadd_calls(redis_url)
        cpu_before = meter.sample()
        wal_before = wal_counters(database_url)
        say(f"streaming {args.snapshots} snapshots over {args.streams} stream(s)")
        with Timeline(database_url) as timeline:
            streaming = asyncio.run(stream_feeds(server.address, streamed))
        streaming["timeline"] = timeline.samples
        cpu_after = meter.sample()
        wal_after = wal_counters(database_url)
        xadds = xadd_calls(redis_url) - xadds_before
        streaming["wal"] = {name: round(wal_after[name] - wal_before[name]) for name in wal_after}
        streaming["wal_bytes_per_snapshot"] = round(
            streaming["wal"]["wal_bytes"] / streaming["snapshots"]
        )
        streaming["cpu_us_per_snapshot"] = {
            name: round(1e6 * (cpu_after[name] - cpu_before[name]) / streaming["snapshots"], 1)
            for name in cpu_after
        }
        streaming["cpu_utilisation_cores"] = {
            name: round((cpu_after[name] - cpu_before[name]) / streaming["seconds"], 2)
            for name in cpu_after
        }
        streaming["live_events_published"] = xadds
        say(f"streaming: {streaming['snapshots_per_s']:,} snapshots/s")
        unary_result = None
        if unary:
            say("unary BatchCreateMetricSnapshots calls (per-message latency)")
            unary_result = asyncio.run(unary_feeds(server.address, unary))
            say(f"unary: p50 {unary_result['p50_ms']} ms, p99 {unary_result['p99_ms']} ms")
        distinct = set().union(*(f.distinct for f in streamed + unary + warm))
        checks = check(database_url, len(distinct))
        checks["live_events_match_created"] = xadds == streaming["created"]
        checks["ok"] = checks["ok"] and checks["live_events_match_created"]
    finally:
        try:
            if server is not None:
                server.stop()
            post_updates = _post_updates(database_url) if database_url else {}
        finally:
            # Whatever failed above, a run that dies leaves no server of its own running.
            redis_server.stop()
            postgres.stop()
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "arguments": {k: str(v) for k, v in vars(args).items()},
        "streaming": streaming,
        "unary": unary_result,
        "checks": checks,
        "post_updates": post_updates,
    }


def markdown(result: dict[str, Any]) -> str:
    s = result["streaming"]
    cpu = s["cpu_us_per_snapshot"]
    lines = [
        "| figure | value |",
        "|---|---|",
        f"| ImportMetricSnapshots, {result['arguments']['streams']} stream(s) of"
        f" {result['arguments']['batch']}-snapshot messages | {s['snapshots_per_s']:,}"
        f" snapshots/s ({s['snapshots']:,} in {s['seconds']} s) |",
        f"| time per message per stream | {s['ms_per_message_per_stream']} ms |",
        f"| CPU µs per snapshot: server / PostgreSQL / Redis | {cpu['server']} /"
        f" {cpu['postgres']} / {cpu['redis']} |",
    ]
    u = result["unary"]
    if u:
        lines.append(
            f"| per-message latency (BatchCreateMetricSnapshots, same mix) | p50 {u['p50_ms']}"
            f" ms, p99 {u['p99_ms']} ms ({u['snapshots_per_s']:,} snapshots/s) |"
        )
    c = result["checks"]
    lines += [
        f"| rollups equal a recomputation, snapshots and live events counted | {c['ok']} |",
        f"| load average before / after | {result['load_average_before']} /"
        f" {result['load_average_after']} ({result['cpus']} CPUs) |",
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profiles", type=int, default=100)
    parser.add_argument("--snapshots", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000, help="snapshots per message")
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--observations", type=float, default=5.0, help="per post, about")
    parser.add_argument("--late-share", type=float, default=0.02)
    parser.add_argument("--duplicate-share", type=float, default=0.02)
    parser.add_argument("--workers", type=int, default=1, help="server processes (serve)")
    parser.add_argument("--no-unary", dest="unary", action="store_false")
    parser.add_argument("--not-durable", action="store_true", help="fsync off in PostgreSQL")
    parser.add_argument(
        "--state-dir", type=Path, default=REPO / ".state" / "bench-analytics-ingest"
    )
    parser.add_argument("--output", type=Path, help="Also write the JSON here.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = run(args)
    text = json.dumps(result, indent=2)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"analytics-ingest-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.write_text(text)
    if args.output:
        args.output.write_text(text)
    print(text)
    print(markdown(result))
    print(f"written to {out}", file=sys.stderr)
    if not result["checks"]["ok"]:
        raise SystemExit("the checks failed: the figure is not of correct ingestion")


if __name__ == "__main__":
    main()
