from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, struct_pb2
from socialhub.v1 import feed_pb2
from socialhub.v1.feed_pb2_grpc import FeedServiceStub
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from tests.feed.support import (
    by_author,
    invalid,
    make_profiles,
    not_found,
    post,
    profile,
    struct,
)
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
        location=feed_pb2.Location(district="Lagos"),
        media=[feed_pb2.Media(type=feed_pb2.Media.TYPE_IMAGE, uri="https://example.org/a.png")],
        language_code="en",
        attributes=struct(mood="hopeful", lat=6.5),
    )
    assert created.name.startswith("posts/")
    assert created.author == author
    assert created.body == "First post"
    assert list(created.tags) == ["climate", "housing"]
    assert created.location.district == "Lagos"
    assert [(m.type, m.uri) for m in created.media] == [
        (feed_pb2.Media.TYPE_IMAGE, "https://example.org/a.png")
    ]
    assert created.language_code == "en"
    assert dict(created.attributes) == {"mood": "hopeful", "lat": 6.5}
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
    listed = feed.ListPosts(feed_pb2.ListPostsRequest(filter=by_author(author)))
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
            post=feed_pb2.Post(name=created.name, body="new", tags=["b"]),
            update_mask=field_mask_pb2.FieldMask(paths=["body"]),
        )
    )
    assert updated.body == "new"
    assert list(updated.tags) == ["a"]
    assert updated.update_time.ToDatetime() >= created.update_time.ToDatetime()
    updated = feed.UpdatePost(
        feed_pb2.UpdatePostRequest(
            post=feed_pb2.Post(
                name=created.name,
                tags=["b"],
                location=feed_pb2.Location(district="East"),
                author="profiles/999999",  # output only here: not updatable, and ignored
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["tags", "location"]),
        )
    )
    assert updated.body == "new"
    assert list(updated.tags) == ["b"]
    assert updated.location.district == "East"
    assert updated.author == author
    cleared = feed.UpdatePost(
        feed_pb2.UpdatePostRequest(
            post=feed_pb2.Post(name=created.name),
            update_mask=field_mask_pb2.FieldMask(paths=["tags", "location"]),
        )
    )
    assert list(cleared.tags) == []
    assert not cleared.HasField("location")
    for paths, field in (
        (["like_count"], "update_mask"),
        (["metadata"], "update_mask"),
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
    feed.CreateLike(
        feed_pb2.CreateLikeRequest(parent=created.name, like=feed_pb2.Like(profile=reader))
    )
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
    ("fields", "field", "reason"),
    [
        ({"tags": [f"t{i}" for i in range(21)]}, "post.tags", "at most 20"),
        ({"tags": [""]}, "post.tags[0]", "1 to 64"),
        ({"tags": ["ok", "x" * 65]}, "post.tags[1]", "at most 64"),
        ({"tags": ["nul\x00"]}, "post.tags[0]", "NUL"),
        ({"location": feed_pb2.Location(district="x" * 101)}, "post.location.district", "100"),
        ({"language_code": "english!"}, "post.language_code", "BCP-47"),
        ({"media": [feed_pb2.Media(uri="https://e.org/a.png")]}, "post.media[0].type", "required"),
        (
            {"media": [feed_pb2.Media(type=feed_pb2.Media.TYPE_VIDEO)]},
            "post.media[0].uri",
            "required",
        ),
        (
            {"media": [feed_pb2.Media(type=feed_pb2.Media.TYPE_VIDEO, uri="ftp://e.org/v")]},
            "post.media[0].uri",
            "http",
        ),
        (
            {"media": [feed_pb2.Media(type=feed_pb2.Media.TYPE_IMAGE, uri="https://e.org/a")] * 11},
            "post.media",
            "at most 10",
        ),
        ({"attributes": {"blob": "x" * 17_000}}, "post.attributes", "16384 bytes"),
        ({"attributes": _deep(10)}, "post.attributes", "levels deep"),
        ({"attributes": {"key": "nul\x00"}}, "post.attributes", "NUL"),
        ({"attributes": {"nul\x00key": 1}}, "post.attributes", "NUL"),
        ({"attributes": {"n": float("nan")}}, "post.attributes", "finite"),
        ({"attributes": {"n": float("inf")}}, "post.attributes", "finite"),
    ],
)
def test_bad_post_fields_are_invalid_argument(
    feed: FeedServiceStub,
    profiles: ProfileServiceStub,
    backing: Backing,
    fields: dict[str, Any],
    field: str,
    reason: str,
) -> None:
    (author,) = make_profiles(profiles, 1)
    if "attributes" in fields:
        fields = {"attributes": struct(**fields["attributes"])}
    description = invalid(
        lambda: feed.CreatePost(
            feed_pb2.CreatePostRequest(post=feed_pb2.Post(author=author, body="ok", **fields))
        ),
        field,
    )
    assert reason in description
    with backing.sql() as conn:
        assert conn.execute("SELECT count(*) FROM posts").fetchone() == (0,)


def test_attribute_value_without_kind_is_stored_as_null(
    feed: FeedServiceStub, profiles: ProfileServiceStub
) -> None:
    (author,) = make_profiles(profiles, 1)
    attributes = struct_pb2.Struct()
    attributes.fields["unset"].CopyFrom(struct_pb2.Value())
    created = feed.CreatePost(
        feed_pb2.CreatePostRequest(
            post=feed_pb2.Post(author=author, body="ok", attributes=attributes)
        )
    )
    assert created.attributes.fields["unset"].WhichOneof("kind") == "null_value"


def test_a_missing_post_is_invalid_argument_naming_it(feed: FeedServiceStub) -> None:
    invalid(lambda: feed.CreatePost(feed_pb2.CreatePostRequest()), "post")
    invalid(lambda: feed.UpdatePost(feed_pb2.UpdatePostRequest()), "post")


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
        page = feed.ListPosts(
            feed_pb2.ListPostsRequest(filter=by_author(author), page_size=3, page_token=token)
        )
        assert len(page.posts) <= 3
        seen.extend(p.name for p in page.posts)
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(created))
    not_found(
        lambda: feed.ListPosts(feed_pb2.ListPostsRequest(filter=by_author("profiles/999999")))
    )
    invalid(
        lambda: feed.ListPosts(feed_pb2.ListPostsRequest(filter=by_author(author), page_size=-1)),
        "page_size",
    )
    first = feed.ListPosts(feed_pb2.ListPostsRequest(filter=by_author(author), page_size=2))
    invalid(
        lambda: feed.ListPosts(
            feed_pb2.ListPostsRequest(filter=by_author(other), page_token=first.next_page_token)
        ),
        "page_token",
    )
    invalid(
        lambda: feed.ListPosts(
            feed_pb2.ListPostsRequest(filter=by_author(author), page_token="garbage")
        ),
        "page_token",
    )
    clamped = feed.ListPosts(feed_pb2.ListPostsRequest(filter=by_author(author), page_size=1000))
    assert len(clamped.posts) == 7
