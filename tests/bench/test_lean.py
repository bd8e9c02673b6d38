"""The lean peer caches where Socialhub caches, pages with row-value keysets, and survives
Redis being away. Its answers are compared with Socialhub's in test_baseline.py."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis
from socialhub.v1 import feed_pb2, profile_pb2
from socialhub.v1.feed_pb2_grpc import FeedServiceStub
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from bench.baselines import lean as lean_module
from server.core.embedded import free_port
from tests.bench.peers import Peer, create, peer_pages, serve, socialhub_pages
from tests.feed.support import T0, copy_follows, copy_posts, copy_profiles
from tests.harness import Backing

pytest.importorskip("starlette", reason="the lean peer needs the bench extra")


def _keys(backing: Backing, pattern: str) -> list[bytes]:
    with redis.Redis.from_url(backing.redis_url) as client:
        return list(client.scan_iter(pattern))


def test_profile_and_listing_entries_stay_until_a_create_bumps_the_listings(
    lean: Peer, profiles: ProfileServiceStub, backing: Backing
) -> None:
    profile_id = create(profiles, "Cached Person", bio="first")
    profile = lean.get(f"/api/profiles/{profile_id}")
    page = lean.get("/api/profiles?limit=10")
    assert _keys(backing, f"lean:profile:{profile_id}@*")
    assert _keys(backing, "lean:profiles:list:*@*")

    # Changed behind the peer's back: both cached answers hide it...
    with backing.sql() as conn:
        conn.execute("UPDATE profiles SET bio = 'second', display_name = 'Renamed'")
    assert lean.get(f"/api/profiles/{profile_id}") == profile
    assert lean.get("/api/profiles?limit=10") == page

    # ...until a create through the peer gives the listings tag a new version. The profile's
    # own entry has its own tag, which a create does not touch.
    status, created = lean.call("/api/profiles", {"display_name": "New", "x_handle": "new"})
    assert status == 201
    fresh = lean.get("/api/profiles?limit=10")
    assert [p["display_name"] for p in fresh["items"]] == ["Renamed", "New"]
    assert fresh["total"] == 2
    assert lean.get(f"/api/profiles/{profile_id}")["bio"] == "first"
    assert lean.get(f"/api/profiles/{created['id']}")["display_name"] == "New"


def test_listed_counters_are_read_fresh_while_the_page_stays_cached(
    lean: Peer, profiles: ProfileServiceStub, feed: FeedServiceStub, backing: Backing
) -> None:
    first, second = create(profiles, "First"), create(profiles, "Second")
    for path in ("/api/profiles?limit=10", "/api/profiles/search?q=first", "/api/profiles/top"):
        assert all(p["followers_count"] == 0 for p in lean.get(path)["items"]), path
    with backing.sql() as conn:
        conn.execute("UPDATE profiles SET display_name = 'Hidden'")

    feed.CreateFollow(
        feed_pb2.CreateFollowRequest(
            parent=f"profiles/{second}", follow=feed_pb2.Follow(followee=f"profiles/{first}")
        )
    )

    listed = {p["id"]: p for p in lean.get("/api/profiles?limit=10")["items"]}
    assert (listed[first]["followers_count"], listed[second]["following_count"]) == (1, 1)
    assert {p["display_name"] for p in listed.values()} == {"First", "Second"}  # still cached
    [found] = lean.get("/api/profiles/search?q=first")["items"]
    assert (found["id"], found["followers_count"]) == (first, 1)
    top = {p["id"]: p for p in lean.get("/api/profiles/top")["items"]}
    assert top[first]["followers_count"] == 1


def test_timeline_first_page_caches_post_ids_and_rereads_the_posts(
    lean: Peer, feed: FeedServiceStub, backing: Backing
) -> None:
    reader, author = copy_profiles(backing, 2)
    copy_follows(backing, [(reader, author)])
    copy_posts(
        backing, [(author, f"post {n}", [f"t{n}"], T0 + timedelta(minutes=n)) for n in range(3)]
    )
    page = lean.get(f"/api/profiles/{reader}/timeline?limit=2")
    assert [p["body"] for p in page["items"]] == ["post 2", "post 1"]
    assert _keys(backing, f"lean:timeline:{reader}:2@*")

    with backing.sql() as conn:
        conn.execute("UPDATE posts SET like_count = 7 WHERE body = 'post 2'")
        conn.execute("DELETE FROM posts WHERE body = 'post 1'")
    copy_posts(backing, [(author, "post 3", [], T0 + timedelta(minutes=3))])

    # Counters are fresh and a deleted post is left out; the page's membership is cached.
    cached = lean.get(f"/api/profiles/{reader}/timeline?limit=2")
    assert [(p["body"], p["like_count"]) for p in cached["items"]] == [("post 2", 7)]
    assert cached["next_cursor"] == page["next_cursor"]
    with redis.Redis.from_url(backing.redis_url) as client:
        client.delete(f"lean:tag:timeline:{reader}")
    fresh = lean.get(f"/api/profiles/{reader}/timeline?limit=2")
    assert [p["body"] for p in fresh["items"]] == ["post 3", "post 2"]


def test_pages_are_socialhubs_pages_with_no_empty_last_page(
    lean: Peer, feed: FeedServiceStub, backing: Backing
) -> None:
    reader, followed = copy_profiles(backing, 2)
    copy_follows(backing, [(reader, followed)])
    # Six posts at one instant: only the id orders them, through the row comparison.
    copy_posts(backing, [(a, f"p{n}", [], T0) for n, a in enumerate([reader, followed] * 3)])

    for path, read in (
        (
            f"/api/profiles/{reader}/timeline",
            lambda token: feed.ListPosts(
                feed_pb2.ListPostsRequest(
                    filter=f'home_timeline = "profiles/{reader}"', page_size=2, page_token=token
                )
            ),
        ),
        (
            f"/api/profiles/{followed}/posts",
            lambda token: feed.ListPosts(
                feed_pb2.ListPostsRequest(
                    filter=f'author = "profiles/{followed}"', page_size=2, page_token=token
                )
            ),
        ),
    ):
        expected = socialhub_pages(read)
        assert peer_pages(lean, path, 2) == expected, path
        assert all(expected), "Socialhub ends without an empty page, and so must the peer"


def test_cursor_round_trips_to_the_microsecond() -> None:
    moment = T0 + timedelta(days=400, microseconds=123_457)
    assert lean_module.decode_cursor(lean_module.encode_cursor(moment, 42)) == (moment, 42)
    for bad in ("", "12", "a_b", "1_2_3"):
        with pytest.raises(lean_module.HttpError):
            lean_module.decode_cursor(bad)


def test_serves_from_the_database_while_redis_is_away(
    backing: Backing, profiles: ProfileServiceStub
) -> None:
    profile_id = create(profiles, "Still Here", zone="North")
    # Nothing listens on that port: every cache call fails at once.
    with serve("lean", backing.database_url, f"redis://127.0.0.1:{free_port()}/0") as peer:
        assert peer.get(f"/api/profiles/{profile_id}")["display_name"] == "Still Here"
        assert peer.get("/api/profiles?zone=North")["total"] == 1
        assert peer.get("/api/filter-options")["zones"] == [{"value": "North", "count": 1}]
        status, _ = peer.call("/api/profiles", {"display_name": "During", "x_handle": "d"})
        assert status == 201
        assert peer.get("/api/profiles")["total"] == 2
        expected = profiles.GetProfile(profile_pb2.GetProfileRequest(name=f"profiles/{profile_id}"))
        assert (
            peer.get(f"/api/profiles/{profile_id}")["total_followers"] == expected.total_followers
        )
