from __future__ import annotations

import uuid

import grpc
import pytest
from google.protobuf import field_mask_pb2, struct_pb2
from socialhub.v1 import feed_pb2
from socialhub.v1.feed_pb2_grpc import FeedServiceStub
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from tests.feed.support import invalid, make_profiles, metadata, not_found, post, profile, tags_of
from tests.harness import Backing


def test_create_then_get_returns_every_field(
    feed: FeedServiceStub, profiles: ProfileServiceStub
) -> None:
    (author,) = make_profiles(profiles, 1)
    created = post(
        feed,
        author,
        "First post",
        tags=["climate", "housing"],
        location={"city": "Lagos", "lat": 6.5},
        media=[{"kind": "image", "url": "https://example.org/a.png"}],
        mood="hopeful",
    )
    assert created.name.startswith("posts/")
    assert created.author == author
    assert created.body == "First post"
    assert tags_of(created.metadata) == ["climate", "housing"]
    assert created.metadata.fields["location"].struct_value["city"] == "Lagos"
    assert created.like_count == created.comment_count == 0
    assert created.create_time.seconds > 0
    assert feed.GetPost(feed_pb2.GetPostRequest(name=created.name)) == created
    assert profile(profiles, author).posts_count == 1


def test_create_with_same_request_id_creates_one_post(
    feed: FeedServiceStub, profiles: ProfileServiceStub
) -> None:
    (author,) = make_profiles(profiles, 1)
    request = feed_pb2.CreatePostRequest(
        post=feed_pb2.Post(author=author, body="once"), request_id=str(uuid.uuid4())
    )
    first = feed.CreatePost(request)
    assert feed.CreatePost(request) == first
    assert profile(profiles, author).posts_count == 1
    listed = feed.ListProfilePosts(feed_pb2.ListProfilePostsRequest(parent=author))
    assert [p.name for p in listed.posts] == [first.name]

    other = feed_pb2.CreatePostRequest(
        post=feed_pb2.Post(author=author, body="different"), request_id=request.request_id
    )
    invalid(lambda: feed.CreatePost(other), "request_id")


def test_batch_get_returns_request_order_and_fails_on_missing(
    feed: FeedServiceStub, profiles: ProfileServiceStub
) -> None:
    (author,) = make_profiles(profiles, 1)
    names = [post(feed, author, f"post {i}").name for i in range(4)]
    wanted = [names[2], names[0], names[3], names[0]]
    response = feed.BatchGetPosts(feed_pb2.BatchGetPostsRequest(names=wanted))
    assert [p.name for p in response.posts] == wanted
    not_found(
        lambda: feed.BatchGetPosts(feed_pb2.BatchGetPostsRequest(names=[names[1], "posts/999999"]))
    )
    invalid(lambda: feed.BatchGetPosts(feed_pb2.BatchGetPostsRequest(names=[])), "names")
    too_many = [names[0]] * 101
    invalid(lambda: feed.BatchGetPosts(feed_pb2.BatchGetPostsRequest(names=too_many)), "names")
    invalid(
        lambda: feed.BatchGetPosts(feed_pb2.BatchGetPostsRequest(names=[names[0], "post/1"])),
        "names[1]",
    )


def test_update_changes_only_masked_fields(
    feed: FeedServiceStub, profiles: ProfileServiceStub
) -> None:
    (author,) = make_profiles(profiles, 1)
    created = post(feed, author, "old", tags=["a"])
    updated = feed.UpdatePost(
        feed_pb2.UpdatePostRequest(
            post=feed_pb2.Post(name=created.name, body="new", metadata=metadata(tags=["b"])),
            update_mask=field_mask_pb2.FieldMask(paths=["body"]),
        )
    )
    assert updated.body == "new"
    assert tags_of(updated.metadata) == ["a"]
    assert updated.update_time.ToDatetime() >= created.update_time.ToDatetime()
    updated = feed.UpdatePost(
        feed_pb2.UpdatePostRequest(
            post=feed_pb2.Post(name=created.name, metadata=metadata(tags=["b"])),
            update_mask=field_mask_pb2.FieldMask(paths=["metadata"]),
        )
    )
    assert updated.body == "new"
    assert tags_of(updated.metadata) == ["b"]
    for paths, field in (
        (["like_count"], "update_mask"),
        ([], "update_mask"),
        (["bogus"], "update_mask"),
    ):
        invalid(
            lambda paths=paths: feed.UpdatePost(
                feed_pb2.UpdatePostRequest(
                    post=feed_pb2.Post(name=created.name),
                    update_mask=field_mask_pb2.FieldMask(paths=paths),
                )
            ),
            field,
        )
    invalid(
        lambda: feed.UpdatePost(
            feed_pb2.UpdatePostRequest(
                post=feed_pb2.Post(name=created.name, body=""),
                update_mask=field_mask_pb2.FieldMask(paths=["body"]),
            )
        ),
        "post.body",
    )
    not_found(
        lambda: feed.UpdatePost(
            feed_pb2.UpdatePostRequest(
                post=feed_pb2.Post(name="posts/999999", body="x"),
                update_mask=field_mask_pb2.FieldMask(paths=["body"]),
            )
        )
    )


def test_delete_removes_comments_likes_and_counts(
    feed: FeedServiceStub, profiles: ProfileServiceStub, backing: Backing
) -> None:
    author, reader = make_profiles(profiles, 2)
    created = post(feed, author)
    kept = post(feed, author, "kept")
    feed.CreateComment(
        feed_pb2.CreateCommentRequest(
            parent=created.name, comment=feed_pb2.Comment(author=reader, body="nice")
        )
    )
    feed.LikePost(feed_pb2.LikePostRequest(post=created.name, profile=reader))
    assert profile(profiles, author).posts_count == 2

    feed.DeletePost(feed_pb2.DeletePostRequest(name=created.name))

    not_found(lambda: feed.GetPost(feed_pb2.GetPostRequest(name=created.name)))
    not_found(lambda: feed.DeletePost(feed_pb2.DeletePostRequest(name=created.name)))
    not_found(lambda: feed.ListComments(feed_pb2.ListCommentsRequest(parent=created.name)))
    assert profile(profiles, author).posts_count == 1
    with backing.sql() as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM comments), (SELECT count(*) FROM likes)"
        ).fetchone()
    assert row == (0, 0)
    assert feed.GetPost(feed_pb2.GetPostRequest(name=kept.name)).body == "kept"


def test_unknown_author_is_not_found_and_writes_nothing(
    feed: FeedServiceStub, backing: Backing
) -> None:
    request = feed_pb2.CreatePostRequest(
        post=feed_pb2.Post(author="profiles/424242", body="x"), request_id=str(uuid.uuid4())
    )
    not_found(lambda: feed.CreatePost(request))
    with backing.sql() as conn:
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM posts), (SELECT count(*) FROM activity),"
            " (SELECT count(*) FROM request_ids)"
        ).fetchone()
    assert counts == (0, 0, 0)


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ("", "post.body", "required"),
        ("   ", "post.body", "required"),
        ("x" * 5001, "post.body", "at most 5000"),
        ("nul\x00byte", "post.body", "NUL"),
    ],
)
def test_bad_body_is_invalid_argument(
    feed: FeedServiceStub, profiles: ProfileServiceStub, body: str, field: str, reason: str
) -> None:
    (author,) = make_profiles(profiles, 1)
    description = invalid(
        lambda: feed.CreatePost(
            feed_pb2.CreatePostRequest(post=feed_pb2.Post(author=author, body=body))
        ),
        field,
    )
    assert reason in description


def _deep(levels: int) -> dict[str, object]:
    value: dict[str, object] = {"leaf": 1}
    for _ in range(levels):
        value = {"nested": value}
    return value


@pytest.mark.parametrize(
    ("meta", "field", "reason"),
    [
        ({"tags": [f"t{i}" for i in range(21)]}, "post.metadata.tags", "at most 20"),
        ({"tags": "not-a-list"}, "post.metadata.tags", "list of strings"),
        ({"tags": [""]}, "post.metadata.tags", "1 to 64"),
        ({"tags": ["x" * 65]}, "post.metadata.tags", "1 to 64"),
        ({"blob": "x" * 17_000}, "post.metadata", "16384 bytes"),
        (_deep(10), "post.metadata", "levels deep"),
        ({"key": "nul\x00"}, "post.metadata", "NUL"),
        ({"nul\x00key": 1}, "post.metadata", "NUL"),
        ({"n": float("nan")}, "post.metadata", "finite"),
        ({"n": float("inf")}, "post.metadata", "finite"),
    ],
)
def test_bad_metadata_is_invalid_argument(
    feed: FeedServiceStub,
    profiles: ProfileServiceStub,
    backing: Backing,
    meta: dict[str, object],
    field: str,
    reason: str,
) -> None:
    (author,) = make_profiles(profiles, 1)
    description = invalid(
        lambda: feed.CreatePost(
            feed_pb2.CreatePostRequest(
                post=feed_pb2.Post(author=author, body="ok", metadata=metadata(**meta))
            )
        ),
        field,
    )
    assert reason in description
    with backing.sql() as conn:
        assert conn.execute("SELECT count(*) FROM posts").fetchone() == (0,)


def test_metadata_value_without_kind_is_stored_as_null(
    feed: FeedServiceStub, profiles: ProfileServiceStub
) -> None:
    (author,) = make_profiles(profiles, 1)
    meta = struct_pb2.Struct()
    meta.fields["unset"].CopyFrom(struct_pb2.Value())
    created = feed.CreatePost(
        feed_pb2.CreatePostRequest(post=feed_pb2.Post(author=author, body="ok", metadata=meta))
    )
    assert created.metadata.fields["unset"].WhichOneof("kind") == "null_value"


def test_bad_names_are_invalid_argument(feed: FeedServiceStub) -> None:
    invalid(lambda: feed.GetPost(feed_pb2.GetPostRequest(name="")), "name")
    invalid(lambda: feed.GetPost(feed_pb2.GetPostRequest(name="profiles/1")), "name")
    invalid(lambda: feed.GetPost(feed_pb2.GetPostRequest(name="posts/-1")), "name")
    invalid(
        lambda: feed.CreatePost(
            feed_pb2.CreatePostRequest(post=feed_pb2.Post(author="posts/1", body="x"))
        ),
        "post.author",
    )
    invalid(lambda: feed.DeleteComment(feed_pb2.DeleteCommentRequest(name="posts/1/x/2")), "name")
    with pytest.raises(grpc.RpcError) as caught:
        feed.GetPost(feed_pb2.GetPostRequest(name="posts/99999"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_list_profile_posts_pages_newest_first(
    feed: FeedServiceStub, profiles: ProfileServiceStub
) -> None:
    author, other = make_profiles(profiles, 2)
    created = [post(feed, author, f"p{i}").name for i in range(7)]
    post(feed, other, "not mine")
    seen: list[str] = []
    token = ""
    while True:
        page = feed.ListProfilePosts(
            feed_pb2.ListProfilePostsRequest(parent=author, page_size=3, page_token=token)
        )
        assert len(page.posts) <= 3
        seen.extend(p.name for p in page.posts)
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(created))
    not_found(
        lambda: feed.ListProfilePosts(feed_pb2.ListProfilePostsRequest(parent="profiles/999999"))
    )
    invalid(
        lambda: feed.ListProfilePosts(
            feed_pb2.ListProfilePostsRequest(parent=author, page_size=-1)
        ),
        "page_size",
    )
    first = feed.ListProfilePosts(feed_pb2.ListProfilePostsRequest(parent=author, page_size=2))
    invalid(
        lambda: feed.ListProfilePosts(
            feed_pb2.ListProfilePostsRequest(parent=other, page_token=first.next_page_token)
        ),
        "page_token",
    )
    invalid(
        lambda: feed.ListProfilePosts(
            feed_pb2.ListProfilePostsRequest(parent=author, page_token="garbage")
        ),
        "page_token",
    )
    clamped = feed.ListProfilePosts(feed_pb2.ListProfilePostsRequest(parent=author, page_size=1000))
    assert len(clamped.posts) == 7
