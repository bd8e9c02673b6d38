from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from socialhub.v1 import feed_pb2, profile_pb2
from socialhub.v1.feed_pb2_grpc import FeedServiceStub
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from tests.feed.support import (
    follow_name,
    followee_is,
    follower_of,
    id_of,
    invalid,
    make_profiles,
    not_found,
    profile,
    relationship_name,
)
from tests.harness import Backing
from tests.helpers import error_info, field_violations


def _follow(feed: FeedServiceStub, follower: str, followee: str) -> feed_pb2.Follow:
    return feed.CreateFollow(
        feed_pb2.CreateFollowRequest(parent=follower, follow=feed_pb2.Follow(followee=followee))
    )


def _unfollow(feed: FeedServiceStub, follower: str, followee: str) -> None:
    feed.DeleteFollow(
        feed_pb2.DeleteFollowRequest(name=follow_name(follower, followee), allow_missing=True)
    )


def test_follow_is_idempotent_and_counts_once(
    feed: FeedServiceStub, profiles: ProfileServiceStub
) -> None:
    ada, bob = make_profiles(profiles, 2)
    profile(profiles, bob)  # cached now; the follow must invalidate it
    first = _follow(feed, ada, bob)
    again = _follow(feed, ada, bob)
    assert again == first
    assert (follower_of(first), first.followee) == (ada, bob)
    assert first.name == follow_name(ada, bob)
    assert profile(profiles, ada).following_count == 1
    assert profile(profiles, ada).followers_count == 0
    assert profile(profiles, bob).followers_count == 1

    relationship = feed.GetRelationship(
        feed_pb2.GetRelationshipRequest(name=relationship_name(ada, bob))
    )
    assert (relationship.following, relationship.followed_by) == (True, False)
    reverse = feed.GetRelationship(
        feed_pb2.GetRelationshipRequest(name=relationship_name(bob, ada))
    )
    assert (reverse.following, reverse.followed_by) == (False, True)

    _unfollow(feed, ada, bob)
    _unfollow(feed, ada, bob)
    assert profile(profiles, ada).following_count == 0
    assert profile(profiles, bob).followers_count == 0
    relationship = feed.GetRelationship(
        feed_pb2.GetRelationshipRequest(name=relationship_name(ada, bob))
    )
    assert not relationship.following
    assert not relationship.followed_by


def test_follow_errors(
    feed: FeedServiceStub, profiles: ProfileServiceStub, backing: Backing
) -> None:
    (ada,) = make_profiles(profiles, 1)
    with pytest.raises(grpc.RpcError) as caught:
        _follow(feed, ada, ada)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == "FOLLOW_SELF"
    assert "follow.followee" in field_violations(caught.value)
    _unfollow(feed, ada, ada)  # allow_missing: nothing to remove, not an error
    invalid(lambda: _follow(feed, "", "nope"), "parent")
    invalid(lambda: _follow(feed, ada, "nope"), "follow.followee")
    invalid(lambda: feed.CreateFollow(feed_pb2.CreateFollowRequest(parent=ada)), "follow")
    not_found(lambda: _follow(feed, ada, "profiles/999999"), "PROFILE_NOT_FOUND")
    not_found(lambda: _follow(feed, "profiles/999999", ada), "PROFILE_NOT_FOUND")
    not_found(lambda: _unfollow(feed, ada, "profiles/999999"), "PROFILE_NOT_FOUND")
    not_found(
        lambda: feed.GetRelationship(
            feed_pb2.GetRelationshipRequest(name=relationship_name(ada, "profiles/999999"))
        ),
        "PROFILE_NOT_FOUND",
    )
    invalid(lambda: feed.GetRelationship(feed_pb2.GetRelationshipRequest(name=ada)), "name")
    for parent, filter_ in (("profiles/-", ""), (ada, 'follower = "profiles/1"'), (ada, "x")):
        invalid(
            lambda parent=parent, filter_=filter_: feed.ListFollows(
                feed_pb2.ListFollowsRequest(parent=parent, filter=filter_)
            ),
            "filter",
        )
    with backing.sql() as conn:
        assert conn.execute("SELECT count(*) FROM follows").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM activity").fetchone() == (0,)
    assert profile(profiles, ada).following_count == 0


def test_list_followers_and_following_page_newest_first(
    feed: FeedServiceStub, profiles: ProfileServiceStub
) -> None:
    star, *fans = make_profiles(profiles, 8)
    for fan in fans:
        _follow(feed, fan, star)
    for fan in fans[:3]:
        _follow(feed, star, fan)

    followers: list[str] = []
    token = ""
    while True:
        page = feed.ListFollows(
            feed_pb2.ListFollowsRequest(
                parent="profiles/-", filter=followee_is(star), page_size=3, page_token=token
            )
        )
        assert len(page.follows) <= 3
        assert all(f.followee == star for f in page.follows)
        followers.extend(follower_of(f) for f in page.follows)
        token = page.next_page_token
        if not token:
            break
    assert followers == list(reversed(fans))

    following = feed.ListFollows(feed_pb2.ListFollowsRequest(parent=star))
    assert [f.followee for f in following.follows] == list(reversed(fans[:3]))
    assert not following.next_page_token
    not_found(
        lambda: feed.ListFollows(
            feed_pb2.ListFollowsRequest(parent="profiles/-", filter=followee_is("profiles/999999"))
        )
    )
    first = feed.ListFollows(
        feed_pb2.ListFollowsRequest(parent="profiles/-", filter=followee_is(star), page_size=2)
    )
    invalid(
        lambda: feed.ListFollows(
            feed_pb2.ListFollowsRequest(parent=star, page_token=first.next_page_token)
        ),
        "page_token",
    )


def test_concurrent_follows_and_unfollows_keep_counters_exact(
    feed: FeedServiceStub, profiles: ProfileServiceStub, backing: Backing
) -> None:
    names = make_profiles(profiles, 6)
    rng = random.Random(42)
    operations = []
    for _ in range(600):
        follower, followee = rng.sample(names, 2)
        operations.append((rng.random() < 0.6, follower, followee))

    def run(operation: tuple[bool, str, str]) -> None:
        follow, follower, followee = operation
        if follow:
            _follow(feed, follower, followee)
        else:
            _unfollow(feed, follower, followee)

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(run, operations))

    with backing.sql() as conn:
        pairs = conn.execute("SELECT follower_id, followee_id FROM follows").fetchall()
        events = conn.execute(
            "SELECT verb, count(*) FROM activity GROUP BY verb ORDER BY verb"
        ).fetchall()
    assert pairs, "the random operations should leave some follows"
    for name in names:
        expected_followers = sum(1 for _, followee in pairs if followee == id_of(name))
        expected_following = sum(1 for follower, _ in pairs if follower == id_of(name))
        fetched = profile(profiles, name)
        assert fetched.followers_count == expected_followers
        assert fetched.following_count == expected_following
    # Every effective follow and unfollow was logged once, so they net out to the rows left.
    by_verb = dict(events)
    assert by_verb.get("profile.followed", 0) - by_verb.get("profile.unfollowed", 0) == len(pairs)


def _listed(profiles: ProfileServiceStub, name: str) -> profile_pb2.Profile:
    page = profiles.ListProfiles(profile_pb2.ListProfilesRequest(page_size=500))
    [found] = [p for p in page.profiles if p.name == name]
    return found


def test_listed_and_searched_counters_are_fresh_after_follows_and_posts(
    feed: FeedServiceStub, profiles: ProfileServiceStub
) -> None:
    ada, bob = make_profiles(profiles, 2)
    bob_name = profile(profiles, bob).display_name
    search = profile_pb2.SearchProfilesRequest(query=bob_name)
    # Cache the list and search pages first: the writes below must invalidate them.
    assert _listed(profiles, bob).followers_count == 0
    profiles.SearchProfiles(search)

    _follow(feed, ada, bob)
    assert _listed(profiles, bob).followers_count == 1
    [found] = [p for p in profiles.SearchProfiles(search).profiles if p.name == bob]
    assert found.followers_count == 1

    feed.CreatePost(feed_pb2.CreatePostRequest(post=feed_pb2.Post(author=bob, body="hello")))
    assert _listed(profiles, bob).posts_count == 1

    _unfollow(feed, ada, bob)
    assert _listed(profiles, bob).followers_count == 0


def test_follows_are_resources_got_and_deleted_by_name(
    feed: FeedServiceStub, profiles: ProfileServiceStub
) -> None:
    ada, bob = make_profiles(profiles, 2)
    name = follow_name(ada, bob)
    not_found(lambda: feed.GetFollow(feed_pb2.GetFollowRequest(name=name)), "FOLLOW_NOT_FOUND")
    created = _follow(feed, ada, bob)
    assert feed.GetFollow(feed_pb2.GetFollowRequest(name=name)) == created
    # The one follow between two profiles, through the parent and a followee filter.
    both = feed.ListFollows(feed_pb2.ListFollowsRequest(parent=ada, filter=followee_is(bob)))
    assert list(both.follows) == [created]
    feed.DeleteFollow(feed_pb2.DeleteFollowRequest(name=name))
    not_found(
        lambda: feed.DeleteFollow(feed_pb2.DeleteFollowRequest(name=name)), "FOLLOW_NOT_FOUND"
    )
    feed.DeleteFollow(feed_pb2.DeleteFollowRequest(name=name, allow_missing=True))
    assert profile(profiles, bob).followers_count == 0
    invalid(lambda: feed.GetFollow(feed_pb2.GetFollowRequest(name=f"{ada}/likes/2")), "name")
