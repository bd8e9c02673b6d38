"""Both HTTP peers answer like Socialhub, and the load generators count right.

The peers (`bench.baselines.seed000` and `bench.baselines.lean`) run in subprocesses
against the test PostgreSQL and Redis; the checks that hold for both run once per peer
(the `peer` fixture) and compare its answers with Socialhub's gRPC answers for the same
data. The lean peer's caching is checked in test_lean.py. Load generators run in spawned
processes, as the benchmark runs them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from socialhub.v1 import feed_pb2, profile_pb2
from socialhub.v1.feed_pb2_grpc import FeedServiceStub
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from bench import credentials, feed_bench, floorload, httpload, loadgen
from bench.httpload import HttpRequest, RequestCycle
from server.profiles.tables import PROFILE_COLUMNS
from tests.bench.peers import Peer, create, flat, id_of, peer_pages, socialhub_pages
from tests.feed.support import T0, copy_follows, copy_posts, copy_profiles
from tests.harness import Backing, ServerThread

pytest.importorskip("fastapi", reason="the peers need the bench extra")
pytest.importorskip("uvicorn", reason="the peers need the bench extra")

# Long enough for hundreds of calls, short enough to keep the file well under 20 s.
RUN: dict[str, Any] = {"concurrency": 4, "duration_s": 1.0, "warmup_s": 0.2}
FAILING_RUN: dict[str, Any] = {**RUN, "duration_s": 0.5}
COUNTERS = ("followers_count", "following_count", "posts_count")
# Where each peer keeps its cached filter options.
FILTER_OPTIONS_KEYS = {"seed000": "cache:filter-options*", "lean": "lean:profiles:filter-options@*"}


def _presence(handle: str, followers: int, **flags: bool) -> profile_pb2.PlatformPresence:
    return profile_pb2.PlatformPresence(handle=handle, followers=followers, **flags)


def _follow(feed: FeedServiceStub, follower: int, followee: int) -> None:
    feed.CreateFollow(
        feed_pb2.CreateFollowRequest(
            parent=f"profiles/{follower}", follow=feed_pb2.Follow(followee=f"profiles/{followee}")
        )
    )


def _counters_of(body: dict[str, Any]) -> tuple[int, ...]:
    return tuple(body[counter] for counter in COUNTERS)


def _expected_counters(profile: profile_pb2.Profile) -> tuple[int, ...]:
    return tuple(getattr(profile, counter) for counter in COUNTERS)


# --- profiles -----------------------------------------------------------------------------


def test_get_profile_carries_every_column_as_socialhub_does(
    peer: Peer, profiles: ProfileServiceStub, feed: FeedServiceStub
) -> None:
    profile_id = create(
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
    follower = create(profiles, "Follower")
    _follow(feed, follower, profile_id)
    expected = profiles.GetProfile(profile_pb2.GetProfileRequest(name=f"profiles/{profile_id}"))

    body = peer.get(f"/api/profiles/{profile_id}")

    assert set(body) == {column.name for column in PROFILE_COLUMNS} | set(COUNTERS)
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
    # The counters come from profile_counters, on both sides of the follow.
    assert _counters_of(body) == _expected_counters(expected) == (1, 0, 0)
    follower_expected = profiles.GetProfile(
        profile_pb2.GetProfileRequest(name=f"profiles/{follower}")
    )
    follower_body = peer.get(f"/api/profiles/{follower}")
    assert _counters_of(follower_body) == _expected_counters(follower_expected) == (0, 1, 0)
    assert peer.call("/api/profiles/999999")[0] == 404


def test_a_profile_without_counters_has_zeros(peer: Peer, backing: Backing) -> None:
    (profile_id,) = copy_profiles(backing, 1)
    with backing.sql() as conn:
        row = conn.execute(
            "SELECT count(*) FROM profile_counters WHERE profile_id = %s", (profile_id,)
        ).fetchone()
    assert row == (0,)

    assert _counters_of(peer.get(f"/api/profiles/{profile_id}")) == (0, 0, 0)


def test_list_pages_by_id_with_the_total_of_the_filter(
    peer: Peer, profiles: ProfileServiceStub, feed: FeedServiceStub
) -> None:
    ids = [create(profiles, f"Person {i}", zone="North" if i % 2 else "South") for i in range(5)]
    _follow(feed, ids[0], ids[1])

    first = peer.get("/api/profiles?limit=2")
    assert [p["id"] for p in first["items"]] == ids[:2]
    assert (first["next_cursor"], first["total"]) == (ids[1], 5)
    assert [_counters_of(p) for p in first["items"]] == [(0, 1, 0), (1, 0, 0)]
    walked, cursor = [], 0
    while cursor is not None:
        page = peer.get(f"/api/profiles?limit=2&cursor={cursor}")
        walked += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
    assert walked == ids

    north = peer.get("/api/profiles?zone=North&limit=50")
    expected = profiles.ListProfiles(
        profile_pb2.ListProfilesRequest(filter=profile_pb2.ProfileFilter(zone="North"))
    )
    assert [p["id"] for p in north["items"]] == sorted(id_of(p.name) for p in expected.profiles)
    assert [_counters_of(p) for p in north["items"]] == [
        _expected_counters(p) for p in sorted(expected.profiles, key=lambda p: id_of(p.name))
    ]
    assert north["total"] == expected.total_size == 2
    assert north["next_cursor"] is None
    both = peer.get("/api/profiles?zone=North&designation=MP")
    assert (both["items"], both["total"]) == ([], 0)
    assert peer.call("/api/profiles?limit=0")[0] == 422
    assert peer.call("/api/profiles?cursor=x")[0] == 422


def test_search_and_top_return_socialhubs_profiles_in_its_order(
    peer: Peer, profiles: ProfileServiceStub
) -> None:
    create(profiles, "Water Minister", bio="water water water", x=_presence("w1", 50))
    create(profiles, "Housing", bio="housing and water", x=_presence("w2", 500))
    create(profiles, "Roads", bio="roads only", youtube=_presence("r", 7))
    create(profiles, "Also Water", bio="water", x=_presence("w3", 50), youtube=_presence("y", 9))

    search = profiles.SearchProfiles(profile_pb2.SearchProfilesRequest(query="water"))
    body = peer.get("/api/profiles/search?q=water&limit=20")
    assert [p["id"] for p in body["items"]] == [id_of(p.name) for p in search.profiles]
    assert len(body["items"]) == 3

    for platform, enum in (("x", profile_pb2.PLATFORM_X), (None, profile_pb2.PLATFORM_UNSPECIFIED)):
        order = profile_pb2.ProfileOrder(
            field=profile_pb2.PROFILE_SORT_FIELD_FOLLOWERS, platform=enum, descending=True
        )
        top = profiles.ListProfiles(profile_pb2.ListProfilesRequest(page_size=3, order=order))
        query = f"platform={platform}&limit=3" if platform else "limit=3"
        body = peer.get(f"/api/profiles/top?{query}")
        assert [p["id"] for p in body["items"]] == [id_of(p.name) for p in top.profiles]
    assert peer.call("/api/profiles/top?platform=myspace")[0] == 422
    assert peer.call("/api/profiles/search?q=")[0] == 422


def _option_sets(body: dict[str, Any]) -> dict[str, set[tuple[str, int]]]:
    return {field: {(v["value"], v["count"]) for v in values} for field, values in body.items()}


def test_filter_options_are_cached_until_a_write(
    peer: Peer, profiles: ProfileServiceStub, backing: Backing
) -> None:
    for zone, designation in (("North", "MP"), ("North", "Mayor"), ("South", "MP")):
        create(profiles, f"{zone} {designation}", zone=zone, designation=designation)
    expected = profiles.SummarizeProfiles(profile_pb2.SummarizeProfilesRequest())

    options = peer.get("/api/filter-options")
    assert _option_sets(options) == {
        field: {(v.value, v.count) for v in getattr(expected, field)}
        for field in ("zones", "party_districts", "constituencies", "designations")
    }
    assert options["zones"][0] == {"value": "North", "count": 2}
    assert options["designations"] == [{"value": "MP", "count": 2}, {"value": "Mayor", "count": 1}]

    # A row added behind the peer's back stays invisible while the entry lives...
    with backing.sql() as conn:
        conn.execute(
            "INSERT INTO profiles (display_name, x_handle, zone) VALUES ('e', 'e', 'East')"
        )
    assert peer.get("/api/filter-options") == options
    with redis.Redis.from_url(backing.redis_url) as client:
        assert client.keys(FILTER_OPTIONS_KEYS[peer.name])
    # ...and a write through the API drops it.
    status, created = peer.call(
        "/api/profiles", {"display_name": "W", "x_handle": "w", "zone": "West"}
    )
    assert (status, created["zone"]) == (201, "West")
    zones = _option_sets(peer.get("/api/filter-options"))["zones"]
    assert zones == {("North", 2), ("South", 1), ("East", 1), ("West", 1)}


def test_create_validates_and_returns_the_stored_profile(peer: Peer) -> None:
    good = {"display_name": "Grace", "username": "grace", "x_handle": "g", "x_followers": 3}
    for bad in (
        {"x_handle": "g"},
        {**good, "display_name": "  "},
        {"display_name": "No handles"},
        {**good, "x_followers": -1},
        {**good, "email": "not an address"},
        {**good, "date_of_birth": "yesterday"},
        {**good, "bio": "b" * 2001},
    ):
        assert peer.call("/api/profiles", bad)[0] == 422, bad

    status, created = peer.call("/api/profiles", good)
    assert status == 201
    assert created["id"] > 0
    assert (created["display_name"], created["total_followers"]) == ("Grace", 3)
    assert created["created_at"]
    assert _counters_of(created) == (0, 0, 0)
    assert peer.get(f"/api/profiles/{created['id']}") == created
    assert peer.call("/api/profiles", good)[0] == 409


# --- posts and timelines ------------------------------------------------------------------


def test_author_posts_and_timeline_hold_socialhubs_posts_in_its_order(
    peer: Peer, feed: FeedServiceStub, backing: Backing
) -> None:
    reader, followed, other_followed, stranger, idle = copy_profiles(backing, 5)
    copy_follows(backing, [(reader, followed), (reader, other_followed)])
    # Ties on created_at across authors and within one: the id must break them the same way.
    rows = [
        (author, f"post {n}", ["t", str(n)], T0 + timedelta(minutes=n // 2))
        for n, author in enumerate([followed, other_followed, reader, stranger] * 4)
    ]
    copy_posts(backing, rows)

    timeline = socialhub_pages(
        lambda token: feed.ListPosts(
            feed_pb2.ListPostsRequest(
                filter=f'home_timeline = "profiles/{reader}"', page_size=5, page_token=token
            )
        )
    )
    assert flat(peer_pages(peer, f"/api/profiles/{reader}/timeline", 5)) == flat(timeline)
    assert len(flat(timeline)) == 12  # the followed authors' and the reader's own

    authored = socialhub_pages(
        lambda token: feed.ListPosts(
            feed_pb2.ListPostsRequest(
                filter=f'author = "profiles/{followed}"', page_size=3, page_token=token
            )
        )
    )
    assert flat(peer_pages(peer, f"/api/profiles/{followed}/posts", 3)) == flat(authored)

    newest = peer.get(f"/api/profiles/{followed}/posts?limit=1")["items"][0]
    expected = feed.GetPost(feed_pb2.GetPostRequest(name=f"posts/{newest['id']}"))
    assert newest["author_id"] == followed
    assert newest["body"] == expected.body
    n = int(newest["body"].removeprefix("post "))
    assert newest["tags"] == list(expected.tags) == ["t", str(n)]
    assert (
        newest["created_at"].replace("Z", "+00:00") == (T0 + timedelta(minutes=n // 2)).isoformat()
    )
    assert newest["like_count"] == expected.like_count

    assert peer.get(f"/api/profiles/{idle}/timeline") == {"items": [], "next_cursor": None}
    assert peer.call("/api/profiles/999999/timeline")[0] == 404
    assert peer.call("/api/profiles/999999/posts")[0] == 404
    assert peer.call(f"/api/profiles/{reader}/posts?cursor=nonsense")[0] == 400


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


def test_http_load_counts_successes_and_failing_statuses(baseline: Peer, backing: Backing) -> None:
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


def test_http_load_posts_json_bodies(baseline: Peer, backing: Backing) -> None:
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
    server: ServerThread,
    profiles: ProfileServiceStub,
    backing: Backing,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    author = create(profiles, "Author")
    # The spawned load generator sends the key it finds in its environment, as in a bench run.
    monkeypatch.setenv(credentials.KEY_VARIABLE, backing.admin_key)

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
