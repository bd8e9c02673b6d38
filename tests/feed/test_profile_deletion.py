"""Deleting a profile keeps every other profile's and post's counters exact."""

from __future__ import annotations

from socialhub.v1 import feed_pb2, profile_pb2
from socialhub.v1.feed_pb2_grpc import FeedServiceStub
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from tests.feed.support import make_profiles, post, profile
from tests.harness import Backing


def _true_counts(backing: Backing) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """(stored, true) counters of every profile and post, straight from the tables."""
    with backing.sql() as conn:
        wrong_profiles = conn.execute(
            """
            SELECT id, followers_count, following_count, posts_count
            FROM profiles p JOIN profile_counters c ON c.profile_id = p.id
            WHERE followers_count <> (SELECT count(*) FROM follows WHERE followee_id = p.id)
               OR following_count <> (SELECT count(*) FROM follows WHERE follower_id = p.id)
               OR posts_count <> (SELECT count(*) FROM posts WHERE author_id = p.id)
            """
        ).fetchall()
        wrong_posts = conn.execute(
            """
            SELECT id, like_count, comment_count FROM posts p
            WHERE like_count <> (SELECT count(*) FROM likes WHERE post_id = p.id)
               OR comment_count <> (SELECT count(*) FROM comments WHERE post_id = p.id)
            """
        ).fetchall()
    return wrong_profiles, wrong_posts


def test_deleting_a_profile_settles_its_follows_likes_and_comments(
    backing: Backing, profiles: ProfileServiceStub, feed: FeedServiceStub
) -> None:
    alice, bob, carol, dave = make_profiles(profiles, 4)
    for follower, followee in [(alice, bob), (alice, carol), (bob, alice), (dave, alice)]:
        feed.CreateFollow(
            feed_pb2.CreateFollowRequest(parent=follower, follow=feed_pb2.Follow(followee=followee))
        )
    bobs_post = post(feed, bob)
    carols_post = post(feed, carol)
    post(feed, alice)
    for target in (bobs_post, carols_post):
        feed.CreateLike(
            feed_pb2.CreateLikeRequest(parent=target.name, like=feed_pb2.Like(profile=alice))
        )
        feed.CreateComment(
            feed_pb2.CreateCommentRequest(
                parent=target.name, comment=feed_pb2.Comment(author=alice, body="nice")
            )
        )
    feed.CreateLike(
        feed_pb2.CreateLikeRequest(parent=bobs_post.name, like=feed_pb2.Like(profile=dave))
    )
    assert profile(profiles, bob).followers_count == 1  # cached now, must not go stale

    profiles.DeleteProfile(profile_pb2.DeleteProfileRequest(name=alice))

    assert _true_counts(backing) == ([], [])
    assert profile(profiles, bob).followers_count == 0
    assert profile(profiles, bob).following_count == 0
    assert profile(profiles, dave).following_count == 0
    assert profile(profiles, carol).followers_count == 0
    bobs = feed.GetPost(feed_pb2.GetPostRequest(name=bobs_post.name))
    assert bobs.like_count == 1
    assert bobs.comment_count == 0


def test_batch_delete_of_profiles_that_follow_each_other(
    backing: Backing, profiles: ProfileServiceStub, feed: FeedServiceStub
) -> None:
    names = make_profiles(profiles, 5)
    for follower in names:
        for followee in names:
            if follower != followee:
                feed.CreateFollow(
                    feed_pb2.CreateFollowRequest(
                        parent=follower, follow=feed_pb2.Follow(followee=followee)
                    )
                )
    profiles.BatchDeleteProfiles(profile_pb2.BatchDeleteProfilesRequest(names=names[:3]))
    assert _true_counts(backing) == ([], [])
    assert profile(profiles, names[3]).followers_count == 1
    assert profile(profiles, names[4]).following_count == 1
