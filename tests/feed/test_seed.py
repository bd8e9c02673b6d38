from __future__ import annotations

from socialhub.v1 import feed_pb2
from socialhub.v1.feed_pb2_grpc import FeedServiceStub

from server.app import DOMAINS
from server.feed.seeding import FeedVolumes, seed_feed
from server.seed import first_start_volumes, seed_demo_if_empty
from tests.feed.support import home_timeline_of
from tests.harness import Backing, ServerThread

PROFILE_COUNTERS = (
    "SELECT count(*) FROM profiles p LEFT JOIN profile_counters c ON c.profile_id = p.id"
)
COUNTER_CHECKS = {
    "posts_count": f"{PROFILE_COUNTERS} WHERE coalesce(c.posts_count, 0) <>"
    " (SELECT count(*) FROM posts WHERE author_id = p.id)",
    "followers_count": f"{PROFILE_COUNTERS} WHERE coalesce(c.followers_count, 0) <>"
    " (SELECT count(*) FROM follows WHERE followee_id = p.id)",
    "following_count": f"{PROFILE_COUNTERS} WHERE coalesce(c.following_count, 0) <>"
    " (SELECT count(*) FROM follows WHERE follower_id = p.id)",
    "like_count": "SELECT count(*) FROM posts p WHERE like_count <>"
    " (SELECT count(*) FROM likes WHERE post_id = p.id)",
    "comment_count": "SELECT count(*) FROM posts p WHERE comment_count <>"
    " (SELECT count(*) FROM comments WHERE post_id = p.id)",
}


def test_demo_data_feeds_every_rpc_with_exact_counters(
    server: ServerThread, backing: Backing, feed: FeedServiceStub
) -> None:
    assert server.app is not None
    engine = server.app.engine
    assert engine is not None
    assert server.run(seed_demo_if_empty(engine, DOMAINS, first_start_volumes(60)))
    # Seeding again on top must stay valid: follows that exist already are skipped.
    server.run(seed_feed(engine, FeedVolumes.for_posts(200, 300), progress=False))

    with backing.sql() as conn:
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM posts), (SELECT count(*) FROM follows),"
            " (SELECT count(*) FROM comments), (SELECT count(*) FROM likes)"
        ).fetchone()
        for counter, check in COUNTER_CHECKS.items():
            assert conn.execute(check).fetchone() == (0,), counter
        (viewer,) = conn.execute(
            "SELECT follower_id FROM follows GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
        ).fetchone() or (0,)
        (tagged,) = conn.execute("SELECT tags[1] FROM posts ORDER BY id LIMIT 1").fetchone() or (
            "",
        )
    assert counts is not None
    assert counts[0] == 60 * 8 + 200
    assert all(count > 0 for count in counts)

    timeline = feed.ListPosts(
        feed_pb2.ListPostsRequest(filter=home_timeline_of(f"profiles/{viewer}"))
    )
    assert timeline.posts
    assert timeline.posts[0].tags
    assert timeline.posts[0].location.district
    assert timeline.posts[0].language_code == "en"
    tag_search = feed.SearchPostsByTag(feed_pb2.SearchPostsByTagRequest(tags=[tagged]))
    assert tag_search.posts
    following = feed.ListFollows(feed_pb2.ListFollowsRequest(parent=f"profiles/{viewer}"))
    assert following.follows
