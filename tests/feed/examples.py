"""Valid example requests of every FeedService RPC, for tests/core/test_field_behavior.py.

The walker clears each REQUIRED field and sets each OUTPUT_ONLY field of these requests.
UpdatePost's mask is "*" (a full replacement), so `post.author` and `post.body` are required in
it; the deletes name rows made here, and the creates are idempotent or make a new row each
time, so every case starts from a request that succeeds.
"""

from __future__ import annotations

from google.protobuf import field_mask_pb2
from socialhub.v1 import feed_pb2, profile_pb2
from socialhub.v1.feed_pb2_grpc import FeedServiceStub
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from tests.field_behavior_support import ExampleContext, Examples

SERVICE = "/socialhub.v1.FeedService/"


def _profile(profiles: ProfileServiceStub, display_name: str) -> str:
    created = profiles.CreateProfile(
        profile_pb2.CreateProfileRequest(
            profile=profile_pb2.Profile(
                display_name=display_name,
                x=profile_pb2.PlatformPresence(handle="example", followers=1),
            )
        )
    )
    return created.name


def _post(author: str, body: str) -> feed_pb2.Post:
    return feed_pb2.Post(
        author=author,
        body=body,
        tags=["example"],
        location=feed_pb2.Location(district="North"),
        media=[feed_pb2.Media(type=feed_pb2.Media.TYPE_IMAGE, uri="https://example.org/a.png")],
        language_code="en",
    )


def examples(context: ExampleContext) -> Examples:
    feed = FeedServiceStub(context.channel)
    profiles = ProfileServiceStub(context.channel)
    ada = _profile(profiles, "Ada Example")
    bob = _profile(profiles, "Bob Example")
    cy = _profile(profiles, "Cy Example")
    kept = feed.CreatePost(feed_pb2.CreatePostRequest(post=_post(ada, "kept")))
    doomed = feed.CreatePost(feed_pb2.CreatePostRequest(post=_post(ada, "doomed")))
    comment = feed.CreateComment(
        feed_pb2.CreateCommentRequest(
            parent=kept.name, comment=feed_pb2.Comment(author=bob, body="doomed comment")
        )
    )
    follow = feed.CreateFollow(
        feed_pb2.CreateFollowRequest(parent=bob, follow=feed_pb2.Follow(followee=ada))
    )
    like = feed.CreateLike(
        feed_pb2.CreateLikeRequest(parent=kept.name, like=feed_pb2.Like(profile=bob))
    )
    replacement = _post(ada, "replaced")
    replacement.name = kept.name
    return {
        SERVICE + "CreatePost": feed_pb2.CreatePostRequest(post=_post(ada, "new")),
        SERVICE + "GetPost": feed_pb2.GetPostRequest(name=kept.name),
        SERVICE + "BatchGetPosts": feed_pb2.BatchGetPostsRequest(names=[kept.name, doomed.name]),
        SERVICE + "UpdatePost": feed_pb2.UpdatePostRequest(
            post=replacement, update_mask=field_mask_pb2.FieldMask(paths=["*"])
        ),
        SERVICE + "DeletePost": feed_pb2.DeletePostRequest(name=doomed.name),
        SERVICE + "ListPosts": [
            feed_pb2.ListPostsRequest(filter=f'author = "{ada}"', page_size=5),
            feed_pb2.ListPostsRequest(filter=f'home_timeline = "{bob}"', page_size=5),
        ],
        SERVICE + "StreamProfilePosts": feed_pb2.StreamProfilePostsRequest(
            author=ada, batch_size=10
        ),
        SERVICE + "StreamTimeline": feed_pb2.StreamTimelineRequest(profile=bob, batch_size=10),
        SERVICE + "CreateFollow": feed_pb2.CreateFollowRequest(
            parent=cy, follow=feed_pb2.Follow(followee=ada)
        ),
        SERVICE + "GetFollow": feed_pb2.GetFollowRequest(name=follow.name),
        SERVICE + "DeleteFollow": feed_pb2.DeleteFollowRequest(name=follow.name),
        SERVICE + "ListFollows": [
            feed_pb2.ListFollowsRequest(parent=bob),
            feed_pb2.ListFollowsRequest(parent="profiles/-", filter=f'followee = "{ada}"'),
        ],
        SERVICE + "GetRelationship": feed_pb2.GetRelationshipRequest(
            name=f"{bob}/relationships/{ada.rpartition('/')[2]}"
        ),
        SERVICE + "CreateComment": feed_pb2.CreateCommentRequest(
            parent=kept.name, comment=feed_pb2.Comment(author=cy, body="nice")
        ),
        SERVICE + "ListComments": feed_pb2.ListCommentsRequest(parent=kept.name),
        SERVICE + "DeleteComment": feed_pb2.DeleteCommentRequest(name=comment.name),
        SERVICE + "CreateLike": feed_pb2.CreateLikeRequest(
            parent=kept.name, like=feed_pb2.Like(profile=cy)
        ),
        SERVICE + "GetLike": feed_pb2.GetLikeRequest(name=like.name),
        SERVICE + "DeleteLike": feed_pb2.DeleteLikeRequest(name=like.name),
        SERVICE + "SearchPostsByTag": feed_pb2.SearchPostsByTagRequest(tags=["example"]),
        SERVICE + "ListActivityEvents": feed_pb2.ListActivityEventsRequest(parent=ada),
    }
