from __future__ import annotations

from datetime import datetime, timedelta

import redis
from google.protobuf import field_mask_pb2
from socialhub.v1 import feed_pb2
from socialhub.v1.feed_pb2_grpc import FeedServiceStub
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from tests.feed.support import (
    T0,
    copy_posts,
    follow_name,
    home_timeline_of,
    id_of,
    invalid,
    make_profiles,
    not_found,
    post,
)
from tests.harness import Backing


def _timeline(
    feed: FeedServiceStub, viewer: str, size: int = 0, token: str = ""
) -> feed_pb2.ListPostsResponse:
    return feed.ListPosts(
        feed_pb2.ListPostsRequest(filter=home_timeline_of(viewer), page_size=size, page_token=token)
    )


def _names(response: feed_pb2.ListPostsResponse) -> list[str]:
    return [p.name for p in response.posts]


def _follow(feed: FeedServiceStub, follower: str, followee: str) -> None:
    feed.CreateFollow(
        feed_pb2.CreateFollowRequest(parent=follower, follow=feed_pb2.Follow(followee=followee))
    )


def test_timeline_holds_followed_and_own_posts_newest_first(
    feed: FeedServiceStub, profiles: ProfileServiceStub
) -> None:
    viewer, ada, bob, stranger = make_profiles(profiles, 4)
    _follow(feed, viewer, ada)
    _follow(feed, viewer, bob)
    expected = []
    for author in (ada, stranger, bob, viewer, ada, stranger):
        created = post(feed, author, f"by {author}")
        if author != stranger:
            expected.append(created.name)
    assert _names(_timeline(feed, viewer)) == list(reversed(expected))
    not_found(lambda: _timeline(feed, "profiles/999999"))
    invalid(lambda: _timeline(feed, viewer, token="nonsense"), "page_token")
    invalid(lambda: _timeline(feed, viewer, size=-5), "page_size")


def test_paging_never_repeats_or_skips_while_posts_are_created(
    feed: FeedServiceStub, profiles: ProfileServiceStub, backing: Backing
) -> None:
    viewer, *authors = make_profiles(profiles, 6)
    for author in authors[:4]:
        _follow(feed, viewer, author)
    # Timestamps collide in pairs so the id tiebreaker matters.
    rows: list[tuple[int, str, list[str], datetime]] = [
        (id_of(authors[i % 5]), f"bulk {i}", [], T0 + timedelta(seconds=i // 2)) for i in range(300)
    ]
    copy_posts(backing, rows)
    with backing.sql() as conn:
        expected = {
            row[0]
            for row in conn.execute(
                "SELECT id FROM posts WHERE author_id = ANY(%s)",
                ([id_of(a) for a in authors[:4]],),
            )
        }

    seen: list[int] = []
    token = ""
    while True:
        page = _timeline(feed, viewer, size=17, token=token)
        seen.extend(id_of(name) for name in _names(page))
        # New posts land above the reader's position and must not disturb the pages below.
        post(feed, authors[0], "breaking news")
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen))
    assert set(seen) == expected
    with backing.sql() as conn:
        ordered = [
            row[0]
            for row in conn.execute(
                "SELECT id FROM posts WHERE id = ANY(%s) ORDER BY created_at DESC, id DESC",
                (seen,),
            )
        ]
    assert seen == ordered


def test_cached_first_page_is_never_stale_after_writes(
    feed: FeedServiceStub, profiles: ProfileServiceStub, backing: Backing
) -> None:
    viewer, ada, bob = make_profiles(profiles, 3)
    _follow(feed, viewer, ada)
    older = post(feed, bob, "bob was here first")
    first = post(feed, ada, "one")
    assert _names(_timeline(feed, viewer)) == [first.name]
    with redis.Redis.from_url(backing.redis_url) as client:
        assert client.keys(f"sh:timeline:{id_of(viewer)}:*"), "the first page should be cached"
    assert _names(_timeline(feed, viewer)) == [first.name]

    second = post(feed, ada, "two")  # a followed author posts
    assert _names(_timeline(feed, viewer)) == [second.name, first.name]

    own = post(feed, viewer, "mine")  # the viewer posts
    assert _names(_timeline(feed, viewer)) == [own.name, second.name, first.name]

    _follow(feed, viewer, bob)  # the follow set grows
    assert _names(_timeline(feed, viewer)) == [own.name, second.name, first.name, older.name]

    feed.UpdatePost(
        feed_pb2.UpdatePostRequest(
            post=feed_pb2.Post(name=first.name, body="edited"),
            update_mask=field_mask_pb2.FieldMask(paths=["body"]),
        )
    )
    feed.CreateLike(
        feed_pb2.CreateLikeRequest(parent=first.name, like=feed_pb2.Like(profile=viewer))
    )
    edited = next(p for p in _timeline(feed, viewer).posts if p.name == first.name)
    assert (edited.body, edited.like_count) == ("edited", 1)

    feed.DeletePost(feed_pb2.DeletePostRequest(name=second.name))  # a followed author deletes
    assert _names(_timeline(feed, viewer)) == [own.name, first.name, older.name]

    feed.DeleteFollow(
        feed_pb2.DeleteFollowRequest(name=follow_name(viewer, ada), allow_missing=True)
    )
    assert _names(_timeline(feed, viewer)) == [own.name, older.name]


def test_first_page_token_continues_from_the_cached_page(
    feed: FeedServiceStub, profiles: ProfileServiceStub
) -> None:
    viewer, ada = make_profiles(profiles, 2)
    _follow(feed, viewer, ada)
    created = [post(feed, ada, f"p{i}").name for i in range(5)]
    first = _timeline(feed, viewer, size=2)
    cached = _timeline(feed, viewer, size=2)
    assert cached == first
    rest = _timeline(feed, viewer, size=10, token=first.next_page_token)
    assert _names(first) + _names(rest) == list(reversed(created))
    assert not rest.next_page_token
