"""Cache hit ratio of ListProfiles/SearchProfiles under a mixed load with 5% follows and posts.

    .venv/bin/python -m bench.cache_mix                     # this checkout
    .venv/bin/python -m bench.cache_mix --before dae3d7b    # also a git revision, side by side

Each variant gets a fresh database on one embedded PostgreSQL and Redis, the same demo data
(`socialhub seed`, from the variant's own code), then serves in-process (its own
`Application`) while one client sends the mix. The ratio is the server's own cache counters
(hits / (hits + misses)) over the run; the load has no other cached reads.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CALLS = 6000
CONCURRENCY = 8
WRITE_SHARE = 0.05


def _variant_source(revision: str | None, scratch: Path) -> Path:
    if revision is None:
        return REPO
    target = scratch / f"src-{revision}"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(target), revision],
        check=True,
        capture_output=True,
    )
    return target


async def _drive(database_url: str, redis_url: str) -> dict[str, Any]:
    """Runs with the variant's `server` package first on sys.path."""
    import grpc
    from socialhub.v1 import feed_pb2, feed_pb2_grpc, profile_pb2, profile_pb2_grpc

    from server.core.config import Settings

    settings = Settings(port=0, log_level="WARNING", auth_enabled=False, metrics_enabled=False)
    try:
        from server.app import application

        app = application(settings, database_url, redis_url)
    except ImportError:  # the code before the composition root
        from server.core.app import Application

        app = Application(settings, database_url, redis_url)
    port = await app.start()
    rng = random.Random(7)
    reads = [
        profile_pb2.ListProfilesRequest(page_size=50),
        profile_pb2.ListProfilesRequest(
            page_size=20,
            order=profile_pb2.ProfileOrder(
                field=profile_pb2.PROFILE_SORT_FIELD_FOLLOWERS, descending=True
            ),
        ),
        profile_pb2.ListProfilesRequest(
            page_size=20, filter=profile_pb2.ProfileFilter(zone="North")
        ),
        profile_pb2.ListProfilesRequest(
            page_size=20, filter=profile_pb2.ProfileFilter(zone="South")
        ),
    ]
    searches = [
        profile_pb2.SearchProfilesRequest(query=q, page_size=20)
        for q in ("health", "education", "mayor", "council")
    ]
    counts = {"reads": 0, "writes": 0}
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        profiles = profile_pb2_grpc.ProfileServiceStub(channel)
        feed = feed_pb2_grpc.FeedServiceStub(channel)
        # Warm the pages once, so both variants start from a full cache.
        for request in reads:
            await profiles.ListProfiles(request)
        for search in searches:
            await profiles.SearchProfiles(search)
        assert app.cache is not None
        hits, misses = app.cache.stats.hits, app.cache.stats.misses
        started = time.perf_counter()

        async def one_call() -> None:
            if rng.random() < WRITE_SHARE:
                counts["writes"] += 1
                a, b = rng.sample(range(1, 3001), 2)
                if rng.random() < 0.5:
                    await feed.CreateFollow(
                        feed_pb2.CreateFollowRequest(
                            parent=f"profiles/{a}", follow=feed_pb2.Follow(followee=f"profiles/{b}")
                        )
                    )
                else:
                    await feed.CreatePost(
                        feed_pb2.CreatePostRequest(
                            post=feed_pb2.Post(author=f"profiles/{a}", body="mixed load")
                        )
                    )
                return
            counts["reads"] += 1
            if rng.random() < 0.5:
                await profiles.ListProfiles(rng.choice(reads))
            else:
                await profiles.SearchProfiles(rng.choice(searches))

        async def caller(share: int) -> None:
            for _ in range(share):
                await one_call()

        await asyncio.gather(*(caller(CALLS // CONCURRENCY) for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
        hits, misses = app.cache.stats.hits - hits, app.cache.stats.misses - misses
    await app.stop()
    return {
        "hit_ratio": hits / max(1, hits + misses),
        "hits": hits,
        "misses": misses,
        **counts,
        "calls_per_s": CALLS / elapsed,
    }


def _run_variant(source: Path, database_url: str, redis_url: str) -> dict[str, Any]:
    env = os.environ | {
        "PYTHONPATH": str(source),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "PAGE_TOKEN_SECRET": "bench-cache-mix-secret",
        "LOG_LEVEL": "WARNING",
    }
    subprocess.run([sys.executable, "-m", "server", "migrate"], env=env, cwd=source, check=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "server",
            "seed",
            "--profiles",
            "3000",
            "--posts",
            "6000",
            "--follows",
            "6000",
        ],
        env=env,
        cwd=source,
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--drive", database_url, redis_url],
        env=env,
        cwd=source,
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise SystemExit(f"the load failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="a git revision to measure beside this checkout")
    parser.add_argument(
        "--drive", nargs=2, metavar=("DATABASE_URL", "REDIS_URL"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.drive:
        import uvloop

        # Run as a file, this folder comes first on sys.path and its server.py would shadow
        # the variant's `server` package.
        here = str(Path(__file__).resolve().parent)
        sys.path[:] = [entry for entry in sys.path if entry != here]

        print(json.dumps(uvloop.run(_drive(*args.drive))))
        return

    from server.core.embedded import EmbeddedPostgres, EmbeddedRedis

    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        postgres = EmbeddedPostgres(scratch / "postgres", durable=False)
        redis = EmbeddedRedis(scratch / "redis")
        base_url, redis_url = postgres.start(), redis.start()
        try:
            import psycopg

            variants = [("this checkout", None)] + (
                [(args.before, args.before)] if args.before else []
            )
            for index, (label, revision) in enumerate(variants):
                name = f"mix{index}"
                with psycopg.connect(base_url, autocommit=True) as conn:
                    conn.execute(f"CREATE DATABASE {name}")
                database_url = base_url.replace("/postgres?", f"/{name}?")
                source = _variant_source(revision, scratch)
                result = _run_variant(
                    source, database_url, redis_url.rsplit("/", 1)[0] + f"/{index + 1}"
                )
                print(json.dumps({"variant": label, **result}), flush=True)
                if revision is not None:
                    subprocess.run(
                        ["git", "-C", str(REPO), "worktree", "remove", "--force", str(source)],
                        check=True,
                    )
        finally:
            redis.stop()
            postgres.stop()


if __name__ == "__main__":
    main()
