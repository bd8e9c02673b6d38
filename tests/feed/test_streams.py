from __future__ import annotations

import time
from datetime import timedelta

import grpc
import psutil
import pytest
from socialhub.v1 import feed_pb2
from socialhub.v1.feed_pb2_grpc import FeedServiceStub
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from tests.feed.support import (
    T0,
    by_author,
    copy_posts,
    copy_profiles,
    home_timeline_of,
    id_of,
    invalid,
    make_profiles,
    not_found,
    post,
)
from tests.harness import Backing, ServerThread


def _bulk_posts(backing: Backing, author_id: int, count: int, start: int = 0) -> None:
    body = "Streaming keeps memory flat whatever the number of posts. " * 2
    copy_posts(
        backing,
        (
            (author_id, body, ["bulk"], T0 + timedelta(milliseconds=index))
            for index in range(start, start + count)
        ),
    )


def _stream_count(feed: FeedServiceStub, author: str, sample: list[int]) -> tuple[int, int]:
    """Posts streamed and messages received; samples this process's RSS on every message."""
    process = psutil.Process()
    posts = messages = 0
    last = None
    for message in feed.StreamProfilePosts(feed_pb2.StreamProfilePostsRequest(author=author)):
        posts += len(message.posts)
        messages += 1
        assert len(message.posts) <= 500
        assert message.resume_cursor
        first = message.posts[0].create_time.ToDatetime()
        assert last is None or first < last  # newest first across messages
        last = message.posts[-1].create_time.ToDatetime()
        if messages % 20 == 0:
            sample.append(process.memory_info().rss)
    return posts, messages


def test_streaming_200k_posts_keeps_server_memory_flat(
    feed: FeedServiceStub, backing: Backing
) -> None:
    small_id, big_id = copy_profiles(backing, 2)
    _bulk_posts(backing, small_id, 20_000)
    _bulk_posts(backing, big_id, 200_000, start=20_000)
    small, big = f"profiles/{small_id}", f"profiles/{big_id}"

    warm: list[int] = []
    assert _stream_count(feed, small, warm) == (20_000, 40)  # warm-up: pools, caches, codecs
    baseline: list[int] = []
    assert _stream_count(feed, small, baseline)[0] == 20_000
    during: list[int] = []
    started = time.perf_counter()
    assert _stream_count(feed, big, during) == (200_000, 400)
    elapsed = time.perf_counter() - started

    # The server runs in this process, so RSS covers it and the client. Holding the 200k
    # rows or messages would add hundreds of MB; one 500-post batch is well under 1 MB.
    growth = max(during) - max(baseline)
    assert growth < 48 * 1024 * 1024, f"RSS grew {growth / 2**20:.1f} MiB streaming 200k posts"
    print(f"streamed 200k posts in {elapsed:.1f}s; RSS growth {growth / 2**20:.1f} MiB")


def _idle_stream_sessions(backing: Backing) -> int:
    with backing.sql() as conn:
        row = conn.execute(
            # Health checks also run short transactions; only a posts query is the stream's.
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'socialhub'"
            " AND state <> 'idle' AND query LIKE '%%FROM posts%%'"
        ).fetchone()
    return int(row[0]) if row else 0


def test_cancel_stops_the_query_and_frees_the_connection(
    feed: FeedServiceStub, backing: Backing, server: ServerThread
) -> None:
    (author_id,) = copy_profiles(backing, 1)
    _bulk_posts(backing, author_id, 30_000)
    call = feed.StreamProfilePosts(
        feed_pb2.StreamProfilePostsRequest(author=f"profiles/{author_id}", batch_size=100)
    )
    received = 0
    for message in call:
        received += len(message.posts)
        if received >= 300:
            break
    assert _idle_stream_sessions(backing) == 1  # the cursor's transaction is open mid-stream
    call.cancel()
    assert call.code() == grpc.StatusCode.CANCELLED

    assert server.app is not None
    assert server.app.engine is not None
    pool = server.app.engine.pool
    # Released: at some moment no stream query runs and the pool has nothing checked out. Not
    # a second look afterwards: the server's background work (the insights worker recording
    # engagement, the jobs) checks a connection out now and then, for milliseconds, while a
    # connection the stream kept would stay checked out for good.
    released = False
    deadline = time.monotonic() + 5
    while not released and time.monotonic() < deadline:
        released = _idle_stream_sessions(backing) == 0 and pool.checkedout() == 0  # type: ignore[attr-defined]
        time.sleep(0 if released else 0.05)
    assert released
    # The server is healthy afterwards.
    page = feed.ListPosts(
        feed_pb2.ListPostsRequest(filter=by_author(f"profiles/{author_id}"), page_size=5)
    )
    assert len(page.posts) == 5


def test_resume_from_a_cursor_yields_exactly_the_rest(
    feed: FeedServiceStub, profiles: ProfileServiceStub, backing: Backing
) -> None:
    (author,) = make_profiles(profiles, 1)
    _bulk_posts(backing, id_of(author), 1_050)
    request = feed_pb2.StreamProfilePostsRequest(author=author, batch_size=100)
    everything = [p.name for m in feed.StreamProfilePosts(request) for p in m.posts]
    assert len(everything) == len(set(everything)) == 1_050

    call = feed.StreamProfilePosts(request)
    taken: list[str] = []
    cursor = ""
    for message in call:
        taken.extend(p.name for p in message.posts)
        cursor = message.resume_cursor
        if len(taken) == 300:
            break
    call.cancel()
    post(feed, author, "newer than everything streamed; not part of the rest")

    resumed = feed_pb2.StreamProfilePostsRequest(
        author=author, batch_size=100, resume_cursor=cursor
    )
    rest = [p.name for m in feed.StreamProfilePosts(resumed) for p in m.posts]
    assert taken == everything[:300]
    assert rest == everything[300:]


def test_stream_errors(feed: FeedServiceStub, profiles: ProfileServiceStub) -> None:
    ada, bob = make_profiles(profiles, 2)
    for i in range(3):
        post(feed, ada, f"p{i}")
    messages = list(
        feed.StreamProfilePosts(feed_pb2.StreamProfilePostsRequest(author=ada, batch_size=1))
    )
    assert [len(m.posts) for m in messages] == [1, 1, 1]

    def stream(**fields: object) -> list[feed_pb2.StreamProfilePostsResponse]:
        return list(feed.StreamProfilePosts(feed_pb2.StreamProfilePostsRequest(**fields)))  # type: ignore[arg-type]

    invalid(lambda: stream(author=ada, resume_cursor="garbage"), "resume_cursor")
    invalid(lambda: stream(author=bob, resume_cursor=messages[0].resume_cursor), "resume_cursor")
    invalid(lambda: stream(author=ada, batch_size=-1), "batch_size")
    invalid(lambda: stream(author="ada"), "author")
    not_found(lambda: stream(author="profiles/999999"))
    with pytest.raises(grpc.RpcError) as caught:
        list(feed.StreamTimeline(feed_pb2.StreamTimelineRequest(profile="profiles/999999")))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_stream_timeline_matches_paged_timeline(
    feed: FeedServiceStub, profiles: ProfileServiceStub, backing: Backing
) -> None:
    viewer, ada, bob, stranger = make_profiles(profiles, 4)
    for followee in (ada, bob):
        feed.CreateFollow(
            feed_pb2.CreateFollowRequest(parent=viewer, follow=feed_pb2.Follow(followee=followee))
        )
    copy_posts(
        backing,
        (
            (
                id_of((viewer, ada, bob, stranger)[i % 4]),
                f"p{i}",
                [],
                T0 + timedelta(seconds=i // 3),
            )
            for i in range(800)
        ),
    )
    paged: list[str] = []
    token = ""
    while True:
        page = feed.ListPosts(
            feed_pb2.ListPostsRequest(
                filter=home_timeline_of(viewer), page_size=100, page_token=token
            )
        )
        paged.extend(p.name for p in page.posts)
        token = page.next_page_token
        if not token:
            break
    streamed = [
        p.name
        for m in feed.StreamTimeline(feed_pb2.StreamTimelineRequest(profile=viewer, batch_size=64))
        for p in m.posts
    ]
    assert len(paged) == 600
    assert streamed == paged
