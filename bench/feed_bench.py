"""FeedService benchmark: timelines, author feeds and streams on a large seeded data set.

    .venv/bin/python -m bench.feed_bench           # full size; see docs/FEED_BENCHMARKS.md
    .venv/bin/python -m bench.feed_bench --profiles 2000 --posts 40000 --duration 3  # smoke

The data set is generated once with `socialhub seed` into an embedded PostgreSQL
under --state-dir and reused by later runs. The server runs as `socialhub serve`
in its own process, the load generator in another (bench/loadgen.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import psutil
from socialhub.v1 import feed_pb2, feed_pb2_grpc

from bench import credentials, loadgen
from bench.processes import Process, start_socialhub
from server.core.embedded import EmbeddedPostgres, EmbeddedRedis

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
PAGE_SIZE = 20
DEEP_PAGE = 50
MEGA_AUTHOR_POSTS = 500_000


def _asyncpg_url(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def seed_if_needed(database_url: str, args: argparse.Namespace) -> None:
    async def count() -> int:
        conn = await asyncpg.connect(_asyncpg_url(database_url))
        try:
            return int(await conn.fetchval("SELECT count(*) FROM posts"))
        finally:
            await conn.close()

    env = {**os.environ, "DATABASE_URL": database_url}
    subprocess.run([sys.executable, "-m", "server", "migrate"], env=env, check=True)
    if asyncio.run(count()) >= args.posts:
        print(f"reusing the seeded data set in {args.state_dir}")
        return
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "server",
            "seed",
            "--profiles",
            str(args.profiles),
            "--posts",
            str(args.posts),
            "--follows",
            str(args.profiles * args.follows_per_profile),
        ],
        env=env,
        check=True,
    )
    asyncio.run(_add_mega_author(database_url, args.mega_author_posts))
    print(f"seeded in {time.perf_counter() - started:.0f} s")


async def _add_mega_author(database_url: str, posts: int) -> None:
    """One author with far more posts than anyone, the stream benchmark's worst case,
    posting every 20 s over the ~120 days the generated posts span."""
    conn = await asyncpg.connect(_asyncpg_url(database_url))
    try:
        author = await conn.fetchval("SELECT min(id) FROM profiles")
        await conn.execute(
            """
            INSERT INTO posts (author_id, body, tags, created_at)
            SELECT $1, 'mega post ' || g, ARRAY['mega'],
                   now() - make_interval(secs => g * 20)
            FROM generate_series(1, $2::int) AS g
            """,
            author,
            posts,
        )
        # Counters live in profile_counters (migration 0003); a missing row means zeros.
        await conn.execute(
            "INSERT INTO profile_counters (profile_id, posts_count)"
            " VALUES ($1, (SELECT count(*) FROM posts WHERE author_id = $1))"
            " ON CONFLICT (profile_id) DO UPDATE SET posts_count = excluded.posts_count",
            author,
        )
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


async def ensure_rare_tag_posts(database_url: str) -> None:
    """100 posts with a tag nobody else uses, spread over the time range: the worst case
    for a newest-first walk, the best for the GIN index."""
    conn = await asyncpg.connect(_asyncpg_url(database_url))
    try:
        if await conn.fetchval("SELECT count(*) FROM posts WHERE tags @> ARRAY['rare-bench-tag']"):
            return
        author = await conn.fetchval("SELECT max(id) FROM profiles")
        await conn.execute(
            """
            INSERT INTO posts (author_id, body, tags, created_at)
            SELECT $1, 'rare post ' || g,
                   ARRAY['rare-bench-tag'],
                   now() - make_interval(days => g)
            FROM generate_series(1, 100) AS g
            """,
            author,
        )
        await conn.execute(
            "INSERT INTO profile_counters (profile_id, posts_count) VALUES ($1, 100)"
            " ON CONFLICT (profile_id)"
            " DO UPDATE SET posts_count = profile_counters.posts_count + 100",
            author,
        )
        await conn.execute("ANALYZE posts")
    finally:
        await conn.close()


_COUNTED = "profiles p LEFT JOIN profile_counters c ON c.profile_id = p.id"


async def pick_inputs(database_url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(_asyncpg_url(database_url))
    try:
        readers = [
            r["id"]
            for r in await conn.fetch(
                f"SELECT p.id FROM {_COUNTED}"
                " ORDER BY coalesce(c.following_count, 0) DESC, p.id LIMIT 64"
            )
        ]
        authors = [
            r["id"]
            for r in await conn.fetch(
                f"SELECT p.id FROM {_COUNTED}"
                " ORDER BY coalesce(c.posts_count, 0) DESC, p.id LIMIT 65"
            )
        ]
        following = await conn.fetchval(
            f"SELECT avg(coalesce(c.following_count, 0))::float FROM {_COUNTED}"
            " WHERE p.id = ANY($1)",
            readers,
        )
        return {
            "readers": readers,
            "largest_author": authors[0],
            "authors": authors[1:],
            "avg_following_of_readers": following,
            "largest_author_posts": await conn.fetchval(
                f"SELECT coalesce(c.posts_count, 0) FROM {_COUNTED} WHERE p.id = $1", authors[0]
            ),
            "profiles": await conn.fetchval("SELECT count(*) FROM profiles"),
            "posts": await conn.fetchval("SELECT count(*) FROM posts"),
            "follows": await conn.fetchval("SELECT count(*) FROM follows"),
        }
    finally:
        await conn.close()


def deep_tokens(address: str, readers: list[int]) -> dict[int, str]:
    """The page token of page DEEP_PAGE for each reader, by walking there."""
    tokens: dict[int, str] = {}
    with credentials.channel(address) as channel:
        stub = feed_pb2_grpc.FeedServiceStub(channel)
        for reader in readers:
            token = ""
            for _ in range(DEEP_PAGE - 1):
                page = stub.ListPosts(
                    feed_pb2.ListPostsRequest(
                        filter=f'home_timeline = "profiles/{reader}"',
                        page_size=PAGE_SIZE,
                        page_token=token,
                    )
                )
                token = page.next_page_token
                if not token:
                    break
            if token:
                tokens[reader] = token
    return tokens


# Call factories (module level so the spawned load-generator process can import them).
def timeline_first(readers: list[int]) -> loadgen.CallFactory:
    return _timeline(readers, {})


def timeline_deep(tokens: dict[int, str]) -> loadgen.CallFactory:
    return _timeline(list(tokens), tokens)


class _timeline:  # noqa: N801 - used like a function
    def __init__(self, readers: list[int], tokens: dict[int, str]) -> None:
        self.readers = readers
        self.tokens = tokens

    def __call__(self, channel: grpc.aio.Channel) -> Callable[[int], Awaitable[Any]]:
        stub = feed_pb2_grpc.FeedServiceStub(channel)
        requests = [
            feed_pb2.ListPostsRequest(
                filter=f'home_timeline = "profiles/{r}"',
                page_size=PAGE_SIZE,
                page_token=self.tokens.get(r, ""),
            )
            for r in self.readers
        ]

        async def call(i: int) -> Any:
            return await stub.ListPosts(requests[i % len(requests)])

        return call


class author_feed:  # noqa: N801 - used like a function
    def __init__(self, authors: list[int], tokens: dict[int, str] | None = None) -> None:
        self.authors = authors
        self.tokens = tokens or {}

    def __call__(self, channel: grpc.aio.Channel) -> Callable[[int], Awaitable[Any]]:
        stub = feed_pb2_grpc.FeedServiceStub(channel)
        requests = [
            feed_pb2.ListPostsRequest(
                filter=f'author = "profiles/{a}"',
                page_size=PAGE_SIZE,
                page_token=self.tokens.get(a, ""),
            )
            for a in self.authors
        ]

        async def call(i: int) -> Any:
            return await stub.ListPosts(requests[i % len(requests)])

        return call


class tag_search:  # noqa: N801 - used like a function
    def __init__(self, tags: list[str]) -> None:
        self.tags = tags

    def __call__(self, channel: grpc.aio.Channel) -> Callable[[int], Awaitable[Any]]:
        stub = feed_pb2_grpc.FeedServiceStub(channel)
        request = feed_pb2.SearchPostsByTagRequest(tags=self.tags, page_size=PAGE_SIZE)

        async def call(i: int) -> Any:
            return await stub.SearchPostsByTag(request)

        return call


def second_page_tokens(address: str, authors: list[int]) -> dict[int, str]:
    with credentials.channel(address) as channel:
        stub = feed_pb2_grpc.FeedServiceStub(channel)
        pages = {
            a: stub.ListPosts(
                feed_pb2.ListPostsRequest(filter=f'author = "profiles/{a}"', page_size=PAGE_SIZE)
            ).next_page_token
            for a in authors
        }
    return {a: token for a, token in pages.items() if token}


def stream_figures(address: str, author: int, repeats: int = 3) -> dict[str, Any]:
    first_message_ms: list[float] = []
    rates: list[float] = []
    total = 0
    with credentials.channel(address) as channel:
        stub = feed_pb2_grpc.FeedServiceStub(channel)
        for _ in range(repeats):
            started = time.perf_counter()
            total = 0
            for index, message in enumerate(
                stub.StreamProfilePosts(
                    feed_pb2.StreamProfilePostsRequest(author=f"profiles/{author}")
                )
            ):
                if index == 0:
                    first_message_ms.append((time.perf_counter() - started) * 1000)
                total += len(message.posts)
            rates.append(total / (time.perf_counter() - started))
    return {
        "posts": total,
        "first_message_ms": loadgen.summary(first_message_ms),
        "posts_per_s": loadgen.summary(rates),
    }


async def raw_cursor_rate(database_url: str, author: int, repeats: int = 3) -> dict[str, Any]:
    """The floor: asyncpg reading the same rows with a server-side cursor, no gRPC."""
    conn = await asyncpg.connect(_asyncpg_url(database_url))
    rates: list[float] = []
    try:
        for _ in range(repeats):
            started = time.perf_counter()
            count = 0
            async with conn.transaction():
                async for _row in conn.cursor(
                    "SELECT id, author_id, body, tags, location_district, language_code, media,"
                    " attributes, created_at, like_count, comment_count,"
                    " share_count, view_count FROM posts WHERE author_id = $1"
                    " ORDER BY created_at DESC, id DESC",
                    author,
                    prefetch=500,
                ):
                    count += 1
            rates.append(count / (time.perf_counter() - started))
    finally:
        await conn.close()
    return {"posts_per_s": loadgen.summary(rates)}


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "| scenario | calls/s | p50 ms | p90 ms | p99 ms | server CPU µs/call | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["scenarios"]:
        lines.append(
            f"| {r['scenario']} | {r['calls_per_s']:.0f} | {r['p50_ms']:.1f} | {r['p90_ms']:.1f}"
            f" | {r['p99_ms']:.1f} | {r['server_cpu_us_per_call']:.0f} | {r['errors']} |"
        )
    streaming = report["streaming"]
    lines += [
        "",
        f"StreamProfilePosts of the largest author ({streaming['posts']:,} posts), median of 3:"
        f" first message {streaming['first_message_ms']['median']:.1f} ms,"
        f" {streaming['posts_per_s']['median']:,.0f} posts/s through gRPC;"
        f" raw asyncpg cursor over the same rows"
        f" {streaming['raw_asyncpg_cursor']['posts_per_s']['median']:,.0f} rows/s;"
        f" server RSS after streaming {streaming['server_rss_mib']} MiB.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--posts", type=int, default=2_000_000)
    parser.add_argument("--follows-per-profile", type=int, default=100)
    parser.add_argument("--mega-author-posts", type=int, default=MEGA_AUTHOR_POSTS)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--state-dir", type=Path, default=REPO / ".state" / "bench-feed")
    parser.add_argument("--seed-only", action="store_true", help="Generate the data and stop.")
    args = parser.parse_args()

    postgres = EmbeddedPostgres(args.state_dir / "postgres", durable=False)
    redis = EmbeddedRedis(args.state_dir / "redis")
    database_url = postgres.start()
    redis_url = redis.start()
    server: Process | None = None
    try:
        seed_if_needed(database_url, args)
        asyncio.run(ensure_rare_tag_posts(database_url))
        if args.seed_only:
            return
        inputs = asyncio.run(pick_inputs(database_url))
        server = start_socialhub(database_url, redis_url, module="server")
        address = server.address
        tokens = deep_tokens(address, inputs["readers"])
        author_tokens = second_page_tokens(address, inputs["authors"])
        common = {
            "concurrency": args.concurrency,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "server_pid": server.pid,
        }
        scenarios = {
            "timeline first page": timeline_first(inputs["readers"]),
            f"timeline page {DEEP_PAGE}": timeline_deep(tokens),
            "author feed first page": author_feed(inputs["authors"]),
            "author feed second page": author_feed(list(author_tokens), author_tokens),
        }
        results = [
            loadgen.run_in_subprocess(address, name, factory, **common).as_dict()
            for name, factory in scenarios.items()
        ]
        streaming = stream_figures(address, inputs["largest_author"])
        streaming["raw_asyncpg_cursor"] = asyncio.run(
            raw_cursor_rate(database_url, inputs["largest_author"])
        )
        streaming["server_rss_mib"] = round(psutil.Process(server.pid).memory_info().rss / 2**20, 1)
        server.stop()
        # The same pages with the cache off: what PostgreSQL alone costs per page.
        server = start_socialhub(database_url, redis_url, module="server", cache=False)
        address = server.address
        common["server_pid"] = server.pid
        uncached = {
            "timeline first page, cache off": timeline_first(inputs["readers"]),
            f"timeline page {DEEP_PAGE}, cache off": timeline_deep(tokens),
            "tag search (common tag), cache off": tag_search(["education"]),
            "tag search (rare tag), cache off": tag_search(["rare-bench-tag"]),
        }
        results += [
            loadgen.run_in_subprocess(address, name, factory, **common).as_dict()
            for name, factory in uncached.items()
        ]
    finally:
        if server is not None:
            server.stop()
        redis.stop()
        postgres.stop()

    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "arguments": {k: str(v) for k, v in vars(args).items()},
        "data": {k: v for k, v in inputs.items() if k not in ("readers", "authors")},
        "deep_tokens": len(tokens),
        "scenarios": results,
        "streaming": streaming,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"feed-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(markdown(report))
    print(json.dumps(report, indent=2))
    print(markdown(report))
    print(f"written to {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
