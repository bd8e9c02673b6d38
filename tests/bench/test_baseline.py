"""The FastAPI peer baseline answers like Socialhub, and the load generators count right.

The baseline runs as `python -m bench.baselines.seed000` in a subprocess against the
test PostgreSQL and Redis; its answers are compared with Socialhub's gRPC answers for the
same data. Load generators run in spawned processes, as the benchmark runs them.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from socialhub.v1 import feed_pb2, profile_pb2
from socialhub.v1.feed_pb2_grpc import FeedServiceStub
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from bench import feed_bench, floorload, httpload, loadgen
from bench.httpload import HttpRequest, RequestCycle
from server.core.embedded import free_port
from server.profiles.tables import PROFILE_COLUMNS
from tests.feed.support import T0, copy_follows, copy_posts, copy_profiles
from tests.harness import Backing, ServerThread
from tests.helpers import new_profile

pytest.importorskip("fastapi", reason="the baseline needs the bench extra")
pytest.importorskip("uvicorn", reason="the baseline needs the bench extra")

REPO = Path(__file__).resolve().parents[2]
# Long enough for hundreds of calls, short enough to keep the file well under 20 s.
RUN: dict[str, Any] = {"concurrency": 4, "duration_s": 1.0, "warmup_s": 0.2}
FAILING_RUN: dict[str, Any] = {**RUN, "duration_s": 0.5}
# The proxy-free opener: a proxy from the environment must not sit between test and server.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Baseline:
    url: str
    pid: int

    def call(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """Status and decoded JSON of GET `path`, or of POST `body` to it."""
        request = urllib.request.Request(
            self.url + path,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="GET" if body is None else "POST",
        )
        try:
            with _OPENER.open(request, timeout=10) as response:
                return int(response.status), json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    def get(self, path: str) -> Any:
        status, body = self.call(path)
        assert status == 200, (path, status, body)
        return body


def _wait_until_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "the baseline exited during start-up"
        try:
            with _OPENER.open(url + "/healthz", timeout=1) as response:
                if json.load(response) == {"status": "ok"}:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the baseline did not answer /healthz within 30 s")


@pytest.fixture(scope="module")
def baseline(backing: Backing) -> Iterator[Baseline]:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": backing.database_url, "REDIS_URL": backing.redis_url}
    command = [sys.executable, "-m", "bench.baselines.seed000", "--port", str(port)]
    process = subprocess.Popen([*command, "--host", "127.0.0.1"], env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_ready(url, process)
        yield Baseline(url, process.pid)
    finally:
        process.terminate()
        process.wait(15)


def _id(name: str) -> int:
    return int(name.rsplit("/", 1)[1])


def _create(profiles: ProfileServiceStub, display_name: str, **fields: Any) -> int:
    request = profile_pb2.CreateProfileRequest(profile=new_profile(display_name, **fields))
    return _id(profiles.CreateProfile(request).name)


def _presence(handle: str, followers: int, **flags: bool) -> profile_pb2.PlatformPresence:
    return profile_pb2.PlatformPresence(handle=handle, followers=followers, **flags)


# --- profiles -----------------------------------------------------------------------------


def test_get_profile_carries_every_column_as_socialhub_does(
    baseline: Baseline, profiles: ProfileServiceStub
) -> None:
    profile_id = _create(
        profiles,
        "Ada Lovelace",
        username="ada",
        zone="North",
        designation="MP",
        email="ada@example.org",
        date_of_birth="1990-01-02",
        bio="analytical engines",
        x=_presence("ada", 10, active=True),
        youtube=_presence("adatube", 5, verified=True),
    )
    expected = profiles.GetProfile(profile_pb2.GetProfileRequest(name=f"profiles/{profile_id}"))

    body = baseline.get(f"/api/profiles/{profile_id}")

    assert set(body) == {column.name for column in PROFILE_COLUMNS}
    assert body["id"] == profile_id
    for field in ("display_name", "username", "zone", "designation", "email", "bio"):
        assert body[field] == getattr(expected, field)
    assert body["date_of_birth"] == expected.date_of_birth == "1990-01-02"
    assert (body["x_handle"], body["x_followers"], body["x_active"]) == ("ada", 10, True)
    assert (body["youtube_handle"], body["youtube_verified"]) == ("adatube", True)
    assert body["facebook_handle"] is None
    assert body["total_followers"] == expected.total_followers == 15
    created_at = datetime.fromisoformat(body["created_at"].replace("Z", "+00:00"))
    assert created_at == expected.create_time.ToDatetime(tzinfo=UTC)
    assert baseline.call("/api/profiles/999999")[0] == 404


def test_list_pages_by_id_with_the_total_of_the_filter(
    baseline: Baseline, profiles: ProfileServiceStub
) -> None:
    ids = [_create(profiles, f"Person {i}", zone="North" if i % 2 else "South") for i in range(5)]

    first = baseline.get("/api/profiles?limit=2")
    assert [p["id"] for p in first["items"]] == ids[:2]
    assert (first["next_cursor"], first["total"]) == (ids[1], 5)
    walked, cursor = [], 0
    while cursor is not None:
        page = baseline.get(f"/api/profiles?limit=2&cursor={cursor}")
        walked += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
    assert walked == ids

    north = baseline.get("/api/profiles?zone=North&limit=50")
    expected = profiles.ListProfiles(
        profile_pb2.ListProfilesRequest(filter=profile_pb2.ProfileFilter(zone="North"))
    )
    assert [p["id"] for p in north["items"]] == sorted(_id(p.name) for p in expected.profiles)
    assert north["total"] == expected.total_size == 2
    assert north["next_cursor"] is None


def test_search_and_top_return_socialhubs_profiles_in_its_order(
    baseline: Baseline, profiles: ProfileServiceStub
) -> None:
    _create(profiles, "Water Minister", bio="water water water", x=_presence("w1", 50))
    _create(profiles, "Housing", bio="housing and water", x=_presence("w2", 500))
    _create(profiles, "Roads", bio="roads only", youtube=_presence("r", 7))
    _create(profiles, "Also Water", bio="water", x=_presence("w3", 50), youtube=_presence("y", 9))

    search = profiles.SearchProfiles(profile_pb2.SearchProfilesRequest(query="water"))
    body = baseline.get("/api/profiles/search?q=water&limit=20")
    assert [p["id"] for p in body["items"]] == [_id(p.name) for p in search.profiles]
    assert len(body["items"]) == 3

    for platform, enum in (("x", profile_pb2.PLATFORM_X), (None, profile_pb2.PLATFORM_UNSPECIFIED)):
        top = profiles.ListTopProfiles(profile_pb2.ListTopProfilesRequest(platform=enum, limit=3))
        query = f"platform={platform}&limit=3" if platform else "limit=3"
        body = baseline.get(f"/api/profiles/top?{query}")
        assert [p["id"] for p in body["items"]] == [_id(p.name) for p in top.profiles]
    assert baseline.call("/api/profiles/top?platform=myspace")[0] == 422


def _option_sets(body: dict[str, Any]) -> dict[str, set[tuple[str, int]]]:
    return {field: {(v["value"], v["count"]) for v in values} for field, values in body.items()}


def test_filter_options_are_cached_until_a_write(
    baseline: Baseline, profiles: ProfileServiceStub, backing: Backing
) -> None:
    for zone, designation in (("North", "MP"), ("North", "Mayor"), ("South", "MP")):
        _create(profiles, f"{zone} {designation}", zone=zone, designation=designation)
    expected = profiles.GetFilterOptions(profile_pb2.GetFilterOptionsRequest())

    options = baseline.get("/api/filter-options")
    assert _option_sets(options) == {
        field: {(v.value, v.count) for v in getattr(expected, field)}
        for field in ("zones", "party_districts", "constituencies", "designations")
    }
    assert options["zones"][0] == {"value": "North", "count": 2}

    # A row added behind the baseline's back stays invisible while the entry lives...
    with backing.sql() as conn:
        conn.execute(
            "INSERT INTO profiles (display_name, x_handle, zone) VALUES ('e', 'e', 'East')"
        )
    assert baseline.get("/api/filter-options") == options
    with redis.Redis.from_url(backing.redis_url) as client:
        assert client.keys("cache:filter-options*")
    # ...and a write through the API drops it.
    status, created = baseline.call(
        "/api/profiles", {"display_name": "W", "x_handle": "w", "zone": "West"}
    )
    assert (status, created["zone"]) == (201, "West")
    zones = _option_sets(baseline.get("/api/filter-options"))["zones"]
    assert zones == {("North", 2), ("South", 1), ("East", 1), ("West", 1)}


def test_create_validates_and_returns_the_stored_profile(baseline: Baseline) -> None:
    good = {"display_name": "Grace", "username": "grace", "x_handle": "g", "x_followers": 3}
    for bad in (
        {"x_handle": "g"},
        {**good, "display_name": "  "},
        {"display_name": "No handles"},
        {**good, "x_followers": -1},
        {**good, "email": "not an address"},
    ):
        assert baseline.call("/api/profiles", bad)[0] == 422, bad

    status, created = baseline.call("/api/profiles", good)
    assert status == 201
    assert created["id"] > 0
    assert (created["display_name"], created["total_followers"]) == ("Grace", 3)
    assert created["created_at"]
    assert created["followers_count"] == 0
    assert baseline.get(f"/api/profiles/{created['id']}") == created
    assert baseline.call("/api/profiles", good)[0] == 409


# --- posts and timelines ------------------------------------------------------------------


def _socialhub_pages(read: Callable[[str], Any]) -> list[list[int]]:
    """Every page of a Socialhub listing, as post ids; `read` takes the page token."""
    pages, token = [], ""
    while True:
        response = read(token)
        pages.append([_id(p.name) for p in response.posts])
        token = response.next_page_token
        if not token:
            return pages


def _baseline_pages(baseline: Baseline, path: str, page_size: int) -> list[list[int]]:
    pages: list[list[int]] = []
    cursor = ""
    while True:
        body = baseline.get(f"{path}?limit={page_size}" + (f"&cursor={cursor}" if cursor else ""))
        pages.append([p["id"] for p in body["items"]])
        cursor = body["next_cursor"]
        if not cursor:
            return pages


def _flat(pages: list[list[int]]) -> list[int]:
    return [post_id for page in pages for post_id in page]


def test_author_posts_and_timeline_hold_socialhubs_posts_in_its_order(
    baseline: Baseline, feed: FeedServiceStub, backing: Backing
) -> None:
    reader, followed, other_followed, stranger, idle = copy_profiles(backing, 5)
    copy_follows(backing, [(reader, followed), (reader, other_followed)])
    # Ties on created_at across authors and within one: the id must break them the same way.
    rows = [
        (author, f"post {n}", {"tags": ["t", str(n)], "n": n}, T0 + timedelta(minutes=n // 2))
        for n, author in enumerate([followed, other_followed, reader, stranger] * 4)
    ]
    copy_posts(backing, rows)

    timeline = _socialhub_pages(
        lambda token: feed.GetHomeTimeline(
            feed_pb2.GetHomeTimelineRequest(
                profile=f"profiles/{reader}", page_size=5, page_token=token
            )
        )
    )
    assert _flat(_baseline_pages(baseline, f"/api/profiles/{reader}/timeline", 5)) == _flat(
        timeline
    )
    assert len(_flat(timeline)) == 12  # the followed authors' and the reader's own

    authored = _socialhub_pages(
        lambda token: feed.ListProfilePosts(
            feed_pb2.ListProfilePostsRequest(
                parent=f"profiles/{followed}", page_size=3, page_token=token
            )
        )
    )
    assert _flat(_baseline_pages(baseline, f"/api/profiles/{followed}/posts", 3)) == _flat(authored)

    newest = baseline.get(f"/api/profiles/{followed}/posts?limit=1")["items"][0]
    expected = feed.GetPost(feed_pb2.GetPostRequest(name=f"posts/{newest['id']}"))
    assert newest["author_id"] == followed
    assert newest["body"] == expected.body
    n = int(newest["body"].removeprefix("post "))
    assert newest["metadata"] == {"tags": ["t", str(n)], "n": n}
    assert (
        newest["created_at"].replace("Z", "+00:00") == (T0 + timedelta(minutes=n // 2)).isoformat()
    )
    assert newest["like_count"] == expected.like_count

    assert baseline.get(f"/api/profiles/{idle}/timeline") == {"items": [], "next_cursor": None}
    assert baseline.call("/api/profiles/999999/timeline")[0] == 404
    assert baseline.call("/api/profiles/999999/posts")[0] == 404
    assert baseline.call(f"/api/profiles/{reader}/posts?cursor=nonsense")[0] == 400


# --- load generators ----------------------------------------------------------------------


def _both(
    good: Callable[[], loadgen.Result], bad: Callable[[], loadgen.Result]
) -> tuple[loadgen.Result, loadgen.Result]:
    """Run a passing and a failing load at once: each spends most of its time starting."""
    with ThreadPoolExecutor(2) as pool:
        passing, failing = pool.submit(good), pool.submit(bad)
        return passing.result(), failing.result()


def _assert_clean(result: loadgen.Result) -> None:
    assert result.calls > 0, result
    assert result.errors == 0, result
    assert result.p50_ms > 0, result
    assert result.client_cpu_us_per_call is not None
    assert result.client_cpu_us_per_call > 0, result


def _assert_all_failed(result: loadgen.Result) -> None:
    assert result.errors > 0, result
    assert result.calls == 0, result
    assert result.server_cpu_us_per_call is None, result


def test_http_load_counts_successes_and_failing_statuses(
    baseline: Baseline, backing: Backing
) -> None:
    (profile_id,) = copy_profiles(backing, 1)

    def load(path: str, duration: dict[str, Any]) -> loadgen.Result:
        factory = RequestCycle([HttpRequest("GET", path)])
        return httpload.run_in_subprocess(
            baseline.url, path, factory, **duration, server_pid=baseline.pid
        )

    good, bad = _both(
        lambda: load(f"/api/profiles/{profile_id}", RUN),
        lambda: load("/api/profiles/999999", FAILING_RUN),
    )
    _assert_clean(good)
    assert good.server_cpu_us_per_call is not None
    assert good.server_cpu_us_per_call > 0
    _assert_all_failed(bad)


def test_http_load_posts_json_bodies(baseline: Baseline, backing: Backing) -> None:
    body = json.dumps({"display_name": "Loaded", "x_handle": "loaded"}).encode()
    factory = RequestCycle([HttpRequest("POST", "/api/profiles", body)])

    result = httpload.run_in_subprocess(
        baseline.url, "create", factory, **FAILING_RUN, server_pid=None
    )

    _assert_clean(result)
    with backing.sql() as conn:
        row = conn.execute("SELECT count(*) FROM profiles WHERE display_name = 'Loaded'").fetchone()
    assert row is not None
    assert row[0] >= result.calls  # warm-up calls created profiles too


def test_asyncpg_floor_counts_rows_and_missing_rows(backing: Backing) -> None:
    (profile_id,) = copy_profiles(backing, 1)
    postmaster = asyncio.run(floorload.postgres_server_pid(backing.database_url))
    sql = "SELECT id, display_name FROM profiles WHERE id = $1"

    def load(args: tuple[Any, ...], duration: dict[str, Any]) -> loadgen.Result:
        return floorload.run_asyncpg_in_subprocess(
            backing.database_url,
            "by id",
            sql,
            floorload.ArgsCycle([args]),
            **duration,
            server_pid=postmaster,
        )

    good, bad = _both(lambda: load((profile_id,), RUN), lambda: load((-1,), FAILING_RUN))
    _assert_clean(good)
    # The backends doing the work are the postmaster's children: their CPU is counted.
    assert good.server_cpu_us_per_call is not None
    assert good.server_cpu_us_per_call > 0
    _assert_all_failed(bad)


def test_redis_floor_counts_hits_and_misses(backing: Backing) -> None:
    with redis.Redis.from_url(backing.redis_url) as client:
        client.set("floor:a", b"x" * 100)
        client.set("floor:b", b"y" * 100)
    server = asyncio.run(floorload.redis_server_pid(backing.redis_url))

    def load(keys: list[str], duration: dict[str, Any]) -> loadgen.Result:
        return floorload.run_redis_in_subprocess(
            backing.redis_url, "get", floorload.KeyCycle(keys), **duration, server_pid=server
        )

    good, bad = _both(
        lambda: load(["floor:a", "floor:b"], RUN), lambda: load(["floor:none"], FAILING_RUN)
    )
    _assert_clean(good)
    assert good.server_cpu_us_per_call is not None
    _assert_all_failed(bad)


def test_grpc_load_still_counts_calls_and_errors(
    server: ServerThread, profiles: ProfileServiceStub
) -> None:
    author = _create(profiles, "Author")

    def load(author_id: int, duration: dict[str, Any]) -> loadgen.Result:
        # feed_bench's own factory: the benchmark's use of the gRPC generator still works.
        factory = feed_bench.author_feed([author_id])
        return loadgen.run_in_subprocess(
            server.address, "author feed", factory, **duration, server_pid=None
        )

    good, bad = _both(lambda: load(author, RUN), lambda: load(999999, FAILING_RUN))
    _assert_clean(good)
    _assert_all_failed(bad)  # NOT_FOUND


def test_a_crashing_load_generator_raises_instead_of_hanging() -> None:
    with pytest.raises(RuntimeError, match="ValueError"):
        httpload.run_in_subprocess(
            "ftp://nowhere", "bad url", RequestCycle([]), **FAILING_RUN, server_pid=None
        )


async def _exchange(
    responses: list[bytes], requests: list[HttpRequest]
) -> tuple[list[tuple[int, bytes]], list[bytes]]:
    """Send `requests` over one Connection to a server answering each with the next of
    `responses`; return the answers and the raw requests the server saw."""
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while responses:
            head = await reader.readuntil(b"\r\n\r\n")
            length = head.lower().partition(b"content-length: ")[2].split(b"\r\n")[0]
            seen.append(head + await reader.readexactly(int(length or 0)))
            writer.write(responses.pop(0))
        writer.close()  # after the last response: its body runs to the end of the connection

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    connection = httpload.Connection(httpload.Target.parse(f"http://127.0.0.1:{port}/v1"))
    try:
        return [await connection.request(request) for request in requests], seen
    finally:
        connection.close()
        server.close()


def test_http_client_reads_lengths_chunks_and_close_delimited_bodies() -> None:
    chunked = b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n"
    responses = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\nno",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked,
        b"HTTP/1.1 201 Created\r\nConnection: close\r\n\r\nuntil the end",
    ]
    requests = [HttpRequest("GET", "/a")] * 3 + [HttpRequest("POST", "/p", b"{}")]

    answers, seen = asyncio.run(_exchange(responses, requests))

    assert answers == [(200, b"hello"), (404, b"no"), (200, b"abcde"), (201, b"until the end")]
    assert seen[0].startswith(b"GET /v1/a HTTP/1.1\r\nHost: 127.0.0.1:")
    assert seen[3].startswith(b"POST /v1/p HTTP/1.1\r\n")
    assert seen[3].endswith(b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
