"""Comments, likes, tag search and the activity log."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from socialhub.v1 import feed_pb2
from socialhub.v1.feed_pb2_grpc import FeedServiceStub
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from tests.feed.support import (
    follow_name,
    id_of,
    invalid,
    like_name,
    make_profiles,
    not_found,
    post,
    struct,
    tags_of,
)
from tests.harness import Backing, ServerThread


def _comment(feed: FeedServiceStub, post_name: str, author: str, body: str) -> feed_pb2.Comment:
    return feed.CreateComment(
        feed_pb2.CreateCommentRequest(
            parent=post_name, comment=feed_pb2.Comment(author=author, body=body)
        )
    )


def _get(feed: FeedServiceStub, name: str) -> feed_pb2.Post:
    return feed.GetPost(feed_pb2.GetPostRequest(name=name))


def test_comments_page_oldest_first_and_count(
    feed: FeedServiceStub, profiles: ProfileServiceStub
) -> None:
    author, reader = make_profiles(profiles, 2)
    target = post(feed, author)
    created = [_comment(feed, target.name, reader, f"c{i}") for i in range(5)]
    assert created[0].name.startswith(f"{target.name}/comments/")
    assert _get(feed, target.name).comment_count == 5

    seen: list[str] = []
    token = ""
    while True:
        page = feed.ListComments(
            feed_pb2.ListCommentsRequest(parent=target.name, page_size=2, page_token=token)
        )
        seen.extend(c.name for c in page.comments)
        token = page.next_page_token
        if not token:
            break
    assert seen == [c.name for c in created]

    feed.DeleteComment(feed_pb2.DeleteCommentRequest(name=created[1].name))
    assert _get(feed, target.name).comment_count == 4
    not_found(lambda: feed.DeleteComment(feed_pb2.DeleteCommentRequest(name=created[1].name)))
    other = post(feed, author, "other")
    wrong_parent = f"{other.name}/comments/{id_of(created[2].name)}"
    not_found(lambda: feed.DeleteComment(feed_pb2.DeleteCommentRequest(name=wrong_parent)))
    assert _get(feed, target.name).comment_count == 4


def test_comment_errors_write_nothing(
    feed: FeedServiceStub, profiles: ProfileServiceStub, backing: Backing
) -> None:
    (author,) = make_profiles(profiles, 1)
    target = post(feed, author)
    invalid(lambda: _comment(feed, target.name, author, ""), "comment.body")
    invalid(lambda: _comment(feed, target.name, author, "x" * 2001), "comment.body")
    invalid(lambda: _comment(feed, target.name, author, "a\x00b"), "comment.body")
    invalid(lambda: _comment(feed, target.name, "nobody", "hi"), "comment.author")
    invalid(lambda: _comment(feed, "posts/x", author, "hi"), "parent")
    not_found(lambda: _comment(feed, "posts/999999", author, "hi"))
    not_found(lambda: _comment(feed, target.name, "profiles/999999", "hi"))
    with backing.sql() as conn:
        assert conn.execute("SELECT count(*) FROM comments").fetchone() == (0,)
    assert _get(feed, target.name).comment_count == 0


def test_likes_are_idempotent_and_exact_under_concurrency(
    feed: FeedServiceStub, profiles: ProfileServiceStub, backing: Backing
) -> None:
    author, *fans = make_profiles(profiles, 9)
    target = post(feed, author)
    first = feed.CreateLike(
        feed_pb2.CreateLikeRequest(parent=target.name, like=feed_pb2.Like(profile=fans[0]))
    )
    assert (
        feed.CreateLike(
            feed_pb2.CreateLikeRequest(parent=target.name, like=feed_pb2.Like(profile=fans[0]))
        )
        == first
    )
    assert _get(feed, target.name).like_count == 1
    feed.DeleteLike(
        feed_pb2.DeleteLikeRequest(name=like_name(target.name, fans[0]), allow_missing=True)
    )
    feed.DeleteLike(
        feed_pb2.DeleteLikeRequest(name=like_name(target.name, fans[0]), allow_missing=True)
    )
    assert _get(feed, target.name).like_count == 0

    def toggle(index: int) -> None:
        fan = fans[index % len(fans)]
        if index % 3 == 2:
            feed.DeleteLike(
                feed_pb2.DeleteLikeRequest(name=like_name(target.name, fan), allow_missing=True)
            )
        else:
            feed.CreateLike(
                feed_pb2.CreateLikeRequest(parent=target.name, like=feed_pb2.Like(profile=fan))
            )

    with ThreadPoolExecutor(max_workers=12) as pool:
        list(pool.map(toggle, range(240)))
    with backing.sql() as conn:
        (likes,) = conn.execute("SELECT count(*) FROM likes").fetchone() or (None,)
    assert _get(feed, target.name).like_count == likes

    not_found(
        lambda: feed.CreateLike(
            feed_pb2.CreateLikeRequest(parent="posts/999999", like=feed_pb2.Like(profile=author))
        ),
        "POST_NOT_FOUND",
    )
    not_found(
        lambda: feed.CreateLike(
            feed_pb2.CreateLikeRequest(
                parent=target.name, like=feed_pb2.Like(profile="profiles/999999")
            )
        ),
        "PROFILE_NOT_FOUND",
    )
    invalid(
        lambda: feed.CreateLike(
            feed_pb2.CreateLikeRequest(parent=target.name, like=feed_pb2.Like(profile=""))
        ),
        "like.profile",
    )
    invalid(lambda: feed.CreateLike(feed_pb2.CreateLikeRequest(parent=target.name)), "like")


def test_likes_are_resources_got_and_deleted_by_name(
    feed: FeedServiceStub, profiles: ProfileServiceStub
) -> None:
    author, fan = make_profiles(profiles, 2)
    target = post(feed, author)
    name = like_name(target.name, fan)
    not_found(lambda: feed.GetLike(feed_pb2.GetLikeRequest(name=name)), "LIKE_NOT_FOUND")
    created = feed.CreateLike(
        feed_pb2.CreateLikeRequest(parent=target.name, like=feed_pb2.Like(profile=fan))
    )
    assert created.name == name
    assert created.profile == fan
    assert feed.GetLike(feed_pb2.GetLikeRequest(name=name)) == created
    feed.DeleteLike(feed_pb2.DeleteLikeRequest(name=name))
    not_found(lambda: feed.DeleteLike(feed_pb2.DeleteLikeRequest(name=name)), "LIKE_NOT_FOUND")
    invalid(lambda: feed.GetLike(feed_pb2.GetLikeRequest(name=target.name)), "name")


def test_search_by_tag_matches_all_tags_newest_first(
    feed: FeedServiceStub, profiles: ProfileServiceStub
) -> None:
    (author,) = make_profiles(profiles, 1)
    both = [
        post(feed, author, f"b{i}", tags=["climate", "housing", f"x{i}"]).name for i in range(5)
    ]
    post(feed, author, "only climate", tags=["climate"])
    post(feed, author, "no tags")
    post(feed, author, "tag elsewhere", attributes=struct(topic=["climate", "housing"]))

    seen: list[str] = []
    token = ""
    while True:
        page = feed.SearchPostsByTag(
            feed_pb2.SearchPostsByTagRequest(
                tags=["housing", "climate"], page_size=2, page_token=token
            )
        )
        seen.extend(p.name for p in page.posts)
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(both))
    one = feed.SearchPostsByTag(feed_pb2.SearchPostsByTagRequest(tags=["climate"]))
    assert len(one.posts) == 6

    invalid(lambda: feed.SearchPostsByTag(feed_pb2.SearchPostsByTagRequest()), "tags")
    invalid(
        lambda: feed.SearchPostsByTag(
            feed_pb2.SearchPostsByTagRequest(tags=[f"t{i}" for i in range(11)])
        ),
        "tags",
    )
    invalid(
        lambda: feed.SearchPostsByTag(feed_pb2.SearchPostsByTagRequest(tags=["ok", ""])), "tags[1]"
    )
    invalid(
        lambda: feed.SearchPostsByTag(feed_pb2.SearchPostsByTagRequest(tags=["a\x00"])), "tags[0]"
    )
    first = feed.SearchPostsByTag(feed_pb2.SearchPostsByTagRequest(tags=["climate"], page_size=1))
    invalid(
        lambda: feed.SearchPostsByTag(
            feed_pb2.SearchPostsByTagRequest(tags=["housing"], page_token=first.next_page_token)
        ),
        "page_token",
    )


def test_every_mutation_is_in_the_activity_log(
    feed: FeedServiceStub, profiles: ProfileServiceStub
) -> None:
    ada, bob = make_profiles(profiles, 2)
    created = post(feed, ada, "hello", tags=["intro"])
    feed.CreateFollow(
        feed_pb2.CreateFollowRequest(parent=ada, follow=feed_pb2.Follow(followee=bob))
    )
    feed.CreateFollow(
        feed_pb2.CreateFollowRequest(parent=ada, follow=feed_pb2.Follow(followee=bob))
    )  # no change
    feed.CreateLike(
        feed_pb2.CreateLikeRequest(parent=created.name, like=feed_pb2.Like(profile=ada))
    )
    comment = _comment(feed, created.name, ada, "first!")
    feed.DeleteComment(feed_pb2.DeleteCommentRequest(name=comment.name))
    feed.DeleteLike(
        feed_pb2.DeleteLikeRequest(name=like_name(created.name, ada), allow_missing=True)
    )
    feed.DeleteFollow(feed_pb2.DeleteFollowRequest(name=follow_name(ada, bob), allow_missing=True))
    feed.DeletePost(feed_pb2.DeletePostRequest(name=created.name))

    events: list[feed_pb2.ActivityEvent] = []
    token = ""
    while True:
        page = feed.ListActivityEvents(
            feed_pb2.ListActivityEventsRequest(parent=ada, page_size=3, page_token=token)
        )
        events.extend(page.activity_events)
        token = page.next_page_token
        if not token:
            break
    assert [(e.verb, e.object) for e in events] == [
        (feed_pb2.ACTIVITY_VERB_POST_DELETED, created.name),
        (feed_pb2.ACTIVITY_VERB_UNFOLLOWED, bob),
        (feed_pb2.ACTIVITY_VERB_UNLIKED, created.name),
        (feed_pb2.ACTIVITY_VERB_COMMENT_DELETED, comment.name),
        (feed_pb2.ACTIVITY_VERB_COMMENTED, comment.name),
        (feed_pb2.ACTIVITY_VERB_LIKED, created.name),
        (feed_pb2.ACTIVITY_VERB_FOLLOWED, bob),
        (feed_pb2.ACTIVITY_VERB_POST_CREATED, created.name),
    ]
    assert all(e.actor == ada for e in events)
    assert tags_of(events[-1].payload) == ["intro"]
    assert not feed.ListActivityEvents(
        feed_pb2.ListActivityEventsRequest(parent=bob)
    ).activity_events
    invalid(
        lambda: feed.ListActivityEvents(feed_pb2.ListActivityEventsRequest(parent="bob")), "parent"
    )


def test_retention_job_deletes_only_expired_events_in_batches(
    server: ServerThread, backing: Backing
) -> None:
    now = datetime.now(UTC)
    with (
        backing.sql() as conn,
        conn.cursor().copy("COPY activity (actor_id, verb, object, created_at) FROM STDIN") as copy,
    ):
        for index in range(12_000):
            copy.write_row((1, "post.liked", "posts/1", now - timedelta(days=91, seconds=index)))
        for index in range(50):
            copy.write_row((1, "post.liked", "posts/1", now - timedelta(days=89, seconds=index)))
    assert server.app is not None
    purge = server.app.job("activity-retention").run_once

    async def purge_once() -> int:
        return await purge()

    deleted = server.run(purge_once())
    assert deleted == 12_000  # three batches of at most 5,000
    with backing.sql() as conn:
        assert conn.execute("SELECT count(*) FROM activity").fetchone() == (50,)
