"""`make bench`: Socialhub against its floors, the FastAPI stack it replaces, and a lean peer.

    .venv/bin/python -m bench.suite                 # full size, writes docs/BENCHMARKS.md
    .venv/bin/python -m bench.suite --quick --output /tmp/b   # small smoke run (the tests)

One run measures everything it compares, on the same data and machine, so every ratio
comes from a single run: the floors (an empty RPC on the same server configuration, a raw
asyncpg prepared query, a raw Redis GET of the cached payload), Socialhub's scenarios, and
two HTTP/JSON peers serving the same operations: the seed-000 FastAPI baseline
(bench/baselines/seed000.py, system "baseline") and the lean peer (bench/baselines/lean.py,
system "lean"), each scenario of one run right after the other's. Each load generator runs
in its own process; CPU per call is read from /proc for the server process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import psutil
from google.protobuf import message
from socialhub.v1 import feed_pb2, feed_pb2_grpc, profile_pb2, profile_pb2_grpc

from bench import credentials, feed_bench, floorload, httpload, loadgen, report
from bench.processes import Process, start_baseline, start_lean, start_socialhub
from bench.server import EMPTY_METHOD
from server.core.embedded import EmbeddedPostgres, EmbeddedRedis
from server.feed.mapping import post_from_row

REPO = Path(__file__).resolve().parents[1]
LIST_PAGE_SIZE = 50
DEEP_LIST_PAGE = 1_000
SEARCH_TERMS = ["Aarav", "Asha", "Ben", "Amara", "Arjun", "Aditi", "Amir", "Ana"]
PROFILE_SAMPLE = 1_000
DEEP_READERS = 16


# ---------------------------------------------------------------- call factories
# Module level so the spawned load-generator processes can unpickle them.


class Unary:
    """Calls one unary method of a generated stub, cycling through prepared requests."""

    def __init__(self, stub: type, method: str, requests: list[message.Message]) -> None:
        self.stub = stub
        self.method = method
        self.requests = requests

    def __call__(self, channel: grpc.aio.Channel) -> Callable[[int], Any]:
        rpc: Callable[[message.Message], Any] = getattr(self.stub(channel), self.method)
        requests = self.requests

        async def call(i: int) -> Any:
            return await rpc(requests[i % len(requests)])

        return call


class EmptyRpc:
    def __call__(self, channel: grpc.aio.Channel) -> Callable[[int], Any]:
        rpc: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(EMPTY_METHOD)

        async def call(i: int) -> Any:
            return await rpc(b"")

        return call


class CreateProfiles:
    """A new, unique profile per call."""

    def __init__(self, run: str) -> None:
        self.run = run

    def __call__(self, channel: grpc.aio.Channel) -> Callable[[int], Any]:
        stub = profile_pb2_grpc.ProfileServiceStub(channel)
        run = self.run

        async def call(i: int) -> Any:
            profile = profile_pb2.Profile(
                display_name=f"Bench Person {i}",
                username=f"g{run}{i}",
                zone="North",
                x=profile_pb2.PlatformPresence(handle=f"g{run}{i}", followers=i % 1000),
            )
            return await stub.CreateProfile(profile_pb2.CreateProfileRequest(profile=profile))

        return call


class HttpCreateProfiles:
    """A new, unique profile per call; `prefix` keeps each peer's usernames apart."""

    def __init__(self, run: str, prefix: str = "h") -> None:
        self.run = run
        self.prefix = prefix

    def __call__(self, i: int) -> httpload.HttpRequest:
        body = {
            "display_name": f"Bench Person {i}",
            "username": f"{self.prefix}{self.run}{i}",
            "zone": "North",
            "x_handle": f"{self.prefix}{self.run}{i}",
            "x_followers": i % 1000,
        }
        return httpload.HttpRequest("POST", "/api/profiles", json.dumps(body).encode())


def _get(paths: list[str]) -> httpload.RequestCycle:
    return httpload.RequestCycle([httpload.HttpRequest("GET", path) for path in paths])


def _deep_timelines(cursors: dict[int, str]) -> httpload.RequestCycle:
    return _get(
        [
            f"/api/profiles/{reader}/timeline?limit=20&cursor={urllib.parse.quote(cursor)}"
            for reader, cursor in cursors.items()
        ]
    )


# ---------------------------------------------------------------- inputs


@dataclass
class Inputs:
    deep_list_page: int
    profile_ids: list[int]
    readers: list[int]
    authors: list[int]
    largest_author: int
    largest_author_posts: int
    baseline_deep_cursor: int
    counts: dict[str, int]
    deep_list_token: str = ""
    timeline_tokens: dict[int, str] = field(default_factory=dict)
    baseline_timeline_cursors: dict[int, str] = field(default_factory=dict)
    lean_timeline_cursors: dict[int, str] = field(default_factory=dict)
    cached_profile_keys: list[str] = field(default_factory=list)


async def pick_inputs(database_url: str, deep_list_page: int) -> Inputs:
    feed = await feed_bench.pick_inputs(database_url)
    conn = await asyncpg.connect(floorload.asyncpg_dsn(database_url))
    try:
        ids = [
            row["id"]
            for row in await conn.fetch(
                "SELECT id FROM profiles TABLESAMPLE BERNOULLI (5) REPEATABLE (7) LIMIT $1",
                PROFILE_SAMPLE,
            )
        ]
        deep_cursor = await conn.fetchval(
            "SELECT id FROM profiles ORDER BY id OFFSET $1 LIMIT 1",
            (deep_list_page - 1) * LIST_PAGE_SIZE - 1,
        )
    finally:
        await conn.close()
    return Inputs(
        deep_list_page=deep_list_page,
        profile_ids=ids,
        readers=feed["readers"][:DEEP_READERS],
        authors=feed["authors"],
        largest_author=feed["largest_author"],
        largest_author_posts=feed["largest_author_posts"],
        baseline_deep_cursor=int(deep_cursor or 0),
        counts={k: int(feed[k]) for k in ("profiles", "posts", "follows")},
    )


def walk_deep_pages(address: str, base_url: str, lean_url: str, inputs: Inputs) -> None:
    """Page tokens and cursors for the deep scenarios, reached by paging as a client would."""
    with credentials.channel(address) as channel:
        stub = profile_pb2_grpc.ProfileServiceStub(channel)
        token = ""
        for _ in range(inputs.deep_list_page - 1):
            token = stub.ListProfiles(
                profile_pb2.ListProfilesRequest(page_size=LIST_PAGE_SIZE, page_token=token)
            ).next_page_token
            if not token:
                raise RuntimeError(f"fewer than {inputs.deep_list_page} pages of profiles")
        inputs.deep_list_token = token
    inputs.timeline_tokens = feed_bench.deep_tokens(address, inputs.readers)
    inputs.baseline_timeline_cursors = _timeline_cursors(base_url, inputs.readers)
    # Each peer's own cursors: the lean peer's cursor format is not seed 000's.
    inputs.lean_timeline_cursors = _timeline_cursors(lean_url, inputs.readers)


def _timeline_cursors(base_url: str, readers: list[int]) -> dict[int, str]:
    """The cursor of timeline page DEEP_PAGE on a peer, for each reader that has one."""
    cursors = {}
    for reader in readers:
        cursor = ""
        for _ in range(feed_bench.DEEP_PAGE - 1):
            page = _http_json(base_url, f"/api/profiles/{reader}/timeline", cursor=cursor)
            cursor = page["next_cursor"] or ""
            if not cursor:
                break
        if cursor:
            cursors[reader] = cursor
    return cursors


def _http_json(base_url: str, path: str, **query: str) -> Any:
    url = f"{base_url}{path}?{urllib.parse.urlencode({k: v for k, v in query.items() if v})}"
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def warm_profile_cache(address: str, redis_url: str, profile_ids: list[int]) -> list[str]:
    """Read every sampled profile once, then find the Redis keys its payloads live under."""
    with credentials.channel(address) as channel:
        stub = profile_pb2_grpc.ProfileServiceStub(channel)
        for profile_id in profile_ids:
            stub.GetProfile(profile_pb2.GetProfileRequest(name=f"profiles/{profile_id}"))

    async def keys() -> list[str]:
        from redis.asyncio import Redis

        redis = Redis.from_url(redis_url)
        try:
            found = [key.decode() async for key in redis.scan_iter("sh:profile:*@*", count=1000)]
        finally:
            await redis.aclose()
        return found

    return asyncio.run(keys())


# ---------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Scenario:
    name: str
    system: str  # "floor", "socialhub", "baseline" (the seed-000 peer) or "lean"
    run: Callable[[], loadgen.Result]
    compared_with: str | None = None  # the peers' scenario it is measured against


@dataclass
class Setup:
    args: argparse.Namespace
    database_url: str
    redis_url: str
    postgres_pid: int
    redis_pid: int
    socialhub: Process
    uncached: Process
    baseline: Process
    lean: Process
    inputs: Inputs
    run_id: str

    @property
    def window(self) -> dict[str, Any]:
        return {
            "concurrency": self.args.concurrency,
            "duration_s": self.args.duration,
            "warmup_s": self.args.warmup,
        }

    def grpc(self, process: Process, factory: loadgen.CallFactory) -> Callable[[], Any]:
        backing = [self.postgres_pid, self.redis_pid]
        return lambda: loadgen.run_in_subprocess(
            process.address,
            "",
            factory,
            server_pid=process.pid,
            backing_pids=backing,
            **self.window,
        )

    def http(
        self, factory: httpload.RequestFactory, peer: Process | None = None
    ) -> Callable[[], loadgen.Result]:
        server = peer or self.baseline
        backing = [self.postgres_pid, self.redis_pid]
        return lambda: httpload.run_in_subprocess(
            server.address,
            "",
            factory,
            server_pid=server.pid,
            backing_pids=backing,
            **self.window,
        )

    def peers(
        self,
        name: str,
        factory: httpload.RequestFactory,
        lean_factory: httpload.RequestFactory | None = None,
    ) -> list[Scenario]:
        """One HTTP scenario on each peer, back to back: the same requests unless the lean
        peer needs its own (its cursors)."""
        return [
            Scenario(name, "baseline", self.http(factory)),
            Scenario(name, "lean", self.http(lean_factory or factory, self.lean)),
        ]


def scenarios(setup: Setup, repeat: int) -> list[Scenario]:
    inputs = setup.inputs
    ids = inputs.profile_ids
    get_requests: list[message.Message] = [
        profile_pb2.GetProfileRequest(name=f"profiles/{i}") for i in ids
    ]
    get_paths = [f"/api/profiles/{i}" for i in ids]
    profiles = profile_pb2_grpc.ProfileServiceStub
    readers = list(inputs.timeline_tokens)
    run = f"{setup.run_id}r{repeat}"
    dsn = floorload.asyncpg_dsn(setup.database_url)
    on = setup.socialhub
    first_page = Unary(
        profiles, "ListProfiles", [profile_pb2.ListProfilesRequest(page_size=LIST_PAGE_SIZE)]
    )
    deep_page = Unary(
        profiles,
        "ListProfiles",
        [
            profile_pb2.ListProfilesRequest(
                page_size=LIST_PAGE_SIZE, page_token=inputs.deep_list_token
            )
        ],
    )
    return [
        Scenario("empty RPC", "floor", setup.grpc(on, EmptyRpc())),
        Scenario(
            "asyncpg prepared PK lookup",
            "floor",
            lambda: floorload.run_asyncpg_in_subprocess(
                dsn,
                "",
                "SELECT * FROM profiles WHERE id = $1",
                floorload.ArgsCycle([(i,) for i in ids]),
                server_pid=setup.postgres_pid,
                **setup.window,
            ),
        ),
        Scenario(
            "Redis GET of the cached profile",
            "floor",
            lambda: floorload.run_redis_in_subprocess(
                setup.redis_url,
                "",
                floorload.KeyCycle(inputs.cached_profile_keys),
                server_pid=setup.redis_pid,
                **setup.window,
            ),
        ),
        Scenario(
            "GetProfile (cache hit)",
            "socialhub",
            setup.grpc(on, Unary(profiles, "GetProfile", get_requests)),
            "get profile",
        ),
        Scenario(
            "GetProfile (cache off)",
            "socialhub",
            setup.grpc(setup.uncached, Unary(profiles, "GetProfile", get_requests)),
            "get profile",
        ),
        *setup.peers("get profile", _get(get_paths)),
        Scenario(
            "ListProfiles first page",
            "socialhub",
            setup.grpc(on, first_page),
            "list first page",
        ),
        *setup.peers("list first page", _get([f"/api/profiles?limit={LIST_PAGE_SIZE}"])),
        Scenario(
            f"ListProfiles page {inputs.deep_list_page:,}",
            "socialhub",
            setup.grpc(on, deep_page),
            "list deep page",
        ),
        # Both peers page by id, so one cursor stands at the same depth on each.
        *setup.peers(
            "list deep page",
            _get([f"/api/profiles?cursor={inputs.baseline_deep_cursor}&limit={LIST_PAGE_SIZE}"]),
        ),
        Scenario(
            f"ListProfiles page {inputs.deep_list_page:,} (cache off)",
            "socialhub",
            setup.grpc(setup.uncached, deep_page),
        ),
        Scenario(
            "ListProfiles first page (cache off)",
            "socialhub",
            setup.grpc(setup.uncached, first_page),
        ),
        Scenario(
            "SearchProfiles",
            "socialhub",
            setup.grpc(
                on,
                Unary(
                    profiles,
                    "SearchProfiles",
                    [
                        profile_pb2.SearchProfilesRequest(query=term, page_size=20)
                        for term in SEARCH_TERMS
                    ],
                ),
            ),
            "search",
        ),
        *setup.peers(
            "search", _get([f"/api/profiles/search?q={term}&limit=20" for term in SEARCH_TERMS])
        ),
        # ListTopProfiles is gone from the API: its answer is ListProfiles by followers.
        Scenario(
            "ListProfiles most followed",
            "socialhub",
            setup.grpc(
                on,
                Unary(
                    profiles,
                    "ListProfiles",
                    [
                        profile_pb2.ListProfilesRequest(
                            page_size=15,
                            order=profile_pb2.ProfileOrder(
                                field=profile_pb2.PROFILE_SORT_FIELD_FOLLOWERS, descending=True
                            ),
                        )
                    ],
                ),
            ),
            "top profiles",
        ),
        *setup.peers("top profiles", _get(["/api/profiles/top?limit=15"])),
        Scenario(
            "SummarizeProfiles",
            "socialhub",
            setup.grpc(
                on,
                Unary(profiles, "SummarizeProfiles", [profile_pb2.SummarizeProfilesRequest()]),
            ),
            "filter options",
        ),
        *setup.peers("filter options", _get(["/api/filter-options"])),
        Scenario(
            "GetHomeTimeline first page",
            "socialhub",
            setup.grpc(on, feed_bench.timeline_first(readers)),
            "timeline first page",
        ),
        *setup.peers(
            "timeline first page", _get([f"/api/profiles/{r}/timeline?limit=20" for r in readers])
        ),
        Scenario(
            f"GetHomeTimeline page {feed_bench.DEEP_PAGE}",
            "socialhub",
            setup.grpc(on, feed_bench.timeline_deep(inputs.timeline_tokens)),
            "timeline deep page",
        ),
        *setup.peers(
            "timeline deep page",
            _deep_timelines(inputs.baseline_timeline_cursors),
            _deep_timelines(inputs.lean_timeline_cursors),
        ),
        Scenario(
            "ListProfilePosts first page",
            "socialhub",
            setup.grpc(on, feed_bench.author_feed(inputs.authors)),
            "author posts",
        ),
        *setup.peers(
            "author posts", _get([f"/api/profiles/{a}/posts?limit=20" for a in inputs.authors])
        ),
        # Writes last: they invalidate the listing caches the reads above rely on.
        Scenario(
            "CreateProfile", "socialhub", setup.grpc(on, CreateProfiles(run)), "create profile"
        ),
        *setup.peers(
            "create profile", HttpCreateProfiles(run), HttpCreateProfiles(run, prefix="l")
        ),
    ]


# ---------------------------------------------------------------- streaming


@contextmanager
def rss_sampler(pid: int) -> Iterator[list[int]]:
    """Samples a process's RSS every 20 ms while the block runs."""
    samples: list[int] = []
    done = threading.Event()
    process = psutil.Process(pid)

    def sample() -> None:
        while not done.is_set():
            samples.append(process.memory_info().rss)
            done.wait(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        done.set()
        thread.join()


def stream_once(address: str, author: int) -> tuple[int, float, float]:
    """Posts streamed, seconds, and first-message latency of one StreamProfilePosts call."""
    with credentials.channel(address) as channel:
        stub = feed_pb2_grpc.FeedServiceStub(channel)
        started = time.perf_counter()
        first = 0.0
        total = 0
        for message_ in stub.StreamProfilePosts(
            feed_pb2.StreamProfilePostsRequest(author=f"profiles/{author}")
        ):
            if not total:
                first = time.perf_counter() - started
            total += len(message_.posts)
        return total, time.perf_counter() - started, first


async def raw_cursor(database_url: str, author: int, *, build_protobuf: bool) -> float:
    """Rows/s of asyncpg reading the same rows with a server-side cursor, with or without
    building a feed_pb2.Post per row: the floors StreamProfilePosts is compared with."""
    conn = await asyncpg.connect(floorload.asyncpg_dsn(database_url))
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    try:
        started = time.perf_counter()
        count = 0
        async with conn.transaction():
            async for row in conn.cursor(
                "SELECT id, author_id, body, tags, location_district, language_code, media,"
                " attributes, created_at, updated_at, like_count,"
                " comment_count, share_count, view_count FROM posts WHERE author_id = $1"
                " ORDER BY created_at DESC, id DESC",
                author,
                prefetch=500,
            ):
                if build_protobuf:
                    post_from_row(row)
                count += 1
        return count / (time.perf_counter() - started)
    finally:
        await conn.close()


def streaming(setup: Setup) -> dict[str, Any]:
    author = setup.inputs.largest_author
    server = setup.socialhub
    rss_before = psutil.Process(server.pid).memory_info().rss
    rates: list[float] = []
    firsts: list[float] = []
    peaks: list[int] = []
    posts = 0
    for _ in range(setup.args.repeats):
        with rss_sampler(server.pid) as samples:
            posts, seconds, first = stream_once(server.address, author)
        rates.append(posts / seconds)
        firsts.append(first * 1000)
        peaks.append(max(samples))
    raw = [asyncio.run(raw_cursor(setup.database_url, author, build_protobuf=False))]
    raw_pb = [
        asyncio.run(raw_cursor(setup.database_url, author, build_protobuf=True))
        for _ in range(setup.args.repeats)
    ]
    return {
        "posts": posts,
        "posts_per_s": rates,
        "first_message_ms": firsts,
        "raw_cursor_rows_per_s": raw,
        "raw_cursor_protobuf_rows_per_s": raw_pb,
        "server_rss_before_mib": round(rss_before / 2**20, 1),
        "server_rss_peak_mib": [round(peak / 2**20, 1) for peak in peaks],
    }


# ---------------------------------------------------------------- workers


def worker_scaling(setup: Setup) -> list[dict[str, Any]]:
    """GetProfile cache hits against 1 and then 2 worker processes, back to back."""
    requests: list[message.Message] = [
        profile_pb2.GetProfileRequest(name=f"profiles/{i}") for i in setup.inputs.profile_ids
    ]
    factory = Unary(profile_pb2_grpc.ProfileServiceStub, "GetProfile", requests)
    results = []
    for workers in (1, 2):
        server = start_socialhub(
            setup.database_url, setup.redis_url, module="server", workers=workers
        )
        try:
            for label, concurrency in (
                ("", setup.args.concurrency),
                (" x2 load", 2 * setup.args.concurrency),
            ):
                window = {**setup.window, "concurrency": concurrency}
                result = loadgen.run_in_subprocess(
                    server.address,
                    f"GetProfile (cache hit), {workers} worker(s){label}",
                    factory,
                    server_pid=server.pid,
                    **window,
                )
                results.append({"workers": workers, **result.as_dict()})
        finally:
            server.stop()
    return results


# ---------------------------------------------------------------- main


def measure(setup: Setup) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for repeat in range(setup.args.repeats):
        for scenario in scenarios(setup, repeat):
            result = scenario.run()
            row = {
                **result.as_dict(),
                "scenario": scenario.name,
                "system": scenario.system,
                "compared_with": scenario.compared_with,
                "repeat": repeat,
                # The 1-minute load average as the scenario ends: the machine is shared, and
                # its load explains calls/s and latency better than anything in the code.
                "load_average_1m": round(os.getloadavg()[0], 2),
            }
            print(
                f"[{repeat + 1}/{setup.args.repeats}] {scenario.system:9} {scenario.name:40}"
                f" {result.calls_per_s:9.0f}/s p50 {result.p50_ms:7.2f} ms p99 {result.p99_ms:7.2f}"
                f" ms cpu {result.server_cpu_us_per_call or 0:7.0f} µs errors {result.errors}"
                f" load {row['load_average_1m']:.1f}",
                flush=True,
            )
            rows.append(row)
    return rows


def load_summary(loads: list[float]) -> dict[str, float]:
    """Least, median and most of the 1-minute load averages seen while measuring."""
    ordered = sorted(loads) or [0.0]
    return {"min": ordered[0], "median": ordered[len(ordered) // 2], "max": ordered[-1]}


def seed(args: argparse.Namespace, database_url: str) -> float:
    started = time.perf_counter()
    feed_bench.seed_if_needed(
        database_url,
        argparse.Namespace(
            profiles=args.profiles,
            posts=args.posts,
            follows_per_profile=max(1, args.follows // max(1, args.profiles)),
            mega_author_posts=args.mega_author_posts,
            state_dir=args.state_dir,
        ),
    )
    return time.perf_counter() - started


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profiles", type=int, default=200_000)
    parser.add_argument("--posts", type=int, default=2_000_000)
    parser.add_argument("--follows", type=int, default=4_000_000)
    parser.add_argument("--mega-author-posts", type=int, default=500_000)
    parser.add_argument("--deep-list-page", type=int, default=DEEP_LIST_PAGE)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--state-dir", type=Path, default=REPO / ".state" / "bench")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results")
    parser.add_argument(
        "--write-docs", action="store_true", help="Rewrite DOCS_DIR/BENCHMARKS.md and its chart."
    )
    parser.add_argument("--docs-dir", type=Path, default=REPO / "docs")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="A small data set and 1-second windows: checks the suite works, measures nothing.",
    )
    args = parser.parse_args(argv)
    if args.quick and args.state_dir == REPO / ".state" / "bench":
        args.state_dir = REPO / ".state" / "bench-quick"
    if args.quick:
        args.profiles, args.posts, args.follows = 5_000, 20_000, 20_000
        args.mega_author_posts, args.duration, args.warmup, args.repeats = 5_000, 0.6, 0.2, 1
        args.deep_list_page = 50
        args.concurrency = 8
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    postgres = EmbeddedPostgres(args.state_dir / "postgres", durable=False)
    redis = EmbeddedRedis(args.state_dir / "redis")
    database_url = postgres.start()
    redis_url = redis.start()
    processes: list[Process] = []
    try:
        seconds_seeding = seed(args, database_url)
        asyncio.run(feed_bench.ensure_rare_tag_posts(database_url))
        inputs = asyncio.run(pick_inputs(database_url, args.deep_list_page))
        dsn = floorload.asyncpg_dsn(database_url)
        socialhub = start_socialhub(database_url, redis_url, module="bench.server")
        processes.append(socialhub)
        uncached = start_socialhub(database_url, redis_url, module="server", cache=False)
        processes.append(uncached)
        baseline = start_baseline(database_url, redis_url)
        processes.append(baseline)
        lean = start_lean(database_url, redis_url)
        processes.append(lean)
        walk_deep_pages(socialhub.address, baseline.address, lean.address, inputs)
        inputs.cached_profile_keys = warm_profile_cache(
            socialhub.address, redis_url, inputs.profile_ids
        )
        setup = Setup(
            args=args,
            database_url=database_url,
            redis_url=redis_url,
            postgres_pid=asyncio.run(floorload.postgres_server_pid(dsn)),
            redis_pid=asyncio.run(floorload.redis_server_pid(redis_url)),
            socialhub=socialhub,
            uncached=uncached,
            baseline=baseline,
            lean=lean,
            inputs=inputs,
            run_id=uuid.uuid4().hex[:8],
        )
        rows = measure(setup)
        stream = streaming(setup)
        for process in processes:
            process.stop()
        scaling = [] if args.skip_scaling else worker_scaling(setup)
    finally:
        for process in processes:
            process.stop()
        redis.stop()
        postgres.stop()
    run = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": feed_bench.machine(),
        "command": " ".join(
            [Path(sys.executable).name, "-m", "bench.suite", *(argv or sys.argv[1:])]
        ),
        "arguments": {k: str(v) for k, v in vars(args).items()},
        "data": {**inputs.counts, "largest_author_posts": inputs.largest_author_posts},
        "seconds_seeding": round(seconds_seeding, 1),
        "load_average_1m": load_summary([row["load_average_1m"] for row in rows]),
        "results": rows,
        "streaming": stream,
        "scaling": scaling,
    }
    args.output.mkdir(parents=True, exist_ok=True)
    out = args.output / f"bench-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.write_text(json.dumps(run, indent=2))
    summary = report.summarize(run)
    print(report.markdown_table(summary))
    print(f"written to {out}")
    if args.write_docs:
        report.write_docs(run, summary, args.docs_dir)


if __name__ == "__main__":
    main()
