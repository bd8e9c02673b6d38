"""FeedService over gRPC: request validation and proto <-> domain mapping only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import empty_pb2
from socialhub.v1 import feed_pb2, feed_pb2_grpc

from server.core import idempotency
from server.core.pagination import PageSize, fingerprint
from server.feed import validation
from server.feed.model import Page, StreamRequest
from server.feed.service import FeedService

Context = grpc.aio.ServicerContext[Any, Any]
POST_PAGE = PageSize(default=20, maximum=100)
LIST_PAGE = PageSize(default=50, maximum=500)
STREAM_BATCH = PageSize(default=500, maximum=1000)
# ListPosts selects posts by one of these, always `<field> = "profiles/<id>"`.
POST_FILTERS = ("author", "home_timeline")


def _page(sizes: PageSize, page_size: int, page_token: str, *binding: str) -> Page:
    """The page a List request asks for; its token is bound to the method and `binding`."""
    return Page(sizes.resolve(page_size), page_token, fingerprint(*binding))


class FeedServicer(feed_pb2_grpc.FeedServiceServicer):
    def __init__(self, service: FeedService) -> None:
        self._service = service

    # --- posts ---

    async def CreatePost(
        self, request: feed_pb2.CreatePostRequest, context: Context
    ) -> feed_pb2.Post:
        request_id = idempotency.parse_request_id(request.request_id)
        new = validation.new_post(request)
        digest = idempotency.request_hash(request.post)
        return await self._service.create_post(new, request_id, digest)

    async def GetPost(self, request: feed_pb2.GetPostRequest, context: Context) -> feed_pb2.Post:
        return await self._service.get_post(validation.post_id(request.name, "name"))

    async def BatchGetPosts(
        self, request: feed_pb2.BatchGetPostsRequest, context: Context
    ) -> feed_pb2.BatchGetPostsResponse:
        post_ids = validation.batch_post_ids(list(request.names))
        return feed_pb2.BatchGetPostsResponse(posts=await self._service.batch_get_posts(post_ids))

    async def UpdatePost(
        self, request: feed_pb2.UpdatePostRequest, context: Context
    ) -> feed_pb2.Post:
        post_id, changes = validation.post_changes(request)
        return await self._service.update_post(post_id, changes)

    async def DeletePost(
        self, request: feed_pb2.DeletePostRequest, context: Context
    ) -> empty_pb2.Empty:
        await self._service.delete_post(validation.post_id(request.name, "name"))
        return empty_pb2.Empty()

    async def ListPosts(
        self, request: feed_pb2.ListPostsRequest, context: Context
    ) -> feed_pb2.ListPostsResponse:
        kind, profile_id = validation.profile_filter(request.filter, "filter", POST_FILTERS)
        # Bound to the normalised filter, so spacing differences share tokens.
        page = _page(
            POST_PAGE, request.page_size, request.page_token, "ListPosts", kind, str(profile_id)
        )
        if kind == "author":
            posts, token = await self._service.list_profile_posts(profile_id, page)
        else:
            posts, token = await self._service.home_timeline(profile_id, page)
        return feed_pb2.ListPostsResponse(posts=posts, next_page_token=token)

    async def SearchPostsByTag(
        self, request: feed_pb2.SearchPostsByTagRequest, context: Context
    ) -> feed_pb2.SearchPostsByTagResponse:
        tags = validation.search_tags(list(request.tags))
        page = _page(POST_PAGE, request.page_size, request.page_token, "SearchPostsByTag", *tags)
        posts, token = await self._service.search_by_tag(tags, page)
        return feed_pb2.SearchPostsByTagResponse(posts=posts, next_page_token=token)

    # --- streams ---

    async def StreamProfilePosts(
        self, request: feed_pb2.StreamProfilePostsRequest, context: Context
    ) -> AsyncIterator[feed_pb2.StreamProfilePostsResponse]:
        author_id = validation.profile_id(request.author, "author")
        stream = StreamRequest(
            STREAM_BATCH.resolve(request.batch_size, "batch_size"),
            request.resume_cursor,
            fingerprint("StreamProfilePosts", request.author),
        )
        async for posts, cursor in self._service.stream_author_posts(author_id, stream):
            yield feed_pb2.StreamProfilePostsResponse(posts=posts, resume_cursor=cursor)

    async def StreamTimeline(
        self, request: feed_pb2.StreamTimelineRequest, context: Context
    ) -> AsyncIterator[feed_pb2.StreamTimelineResponse]:
        viewer_id = validation.profile_id(request.profile, "profile")
        stream = StreamRequest(
            STREAM_BATCH.resolve(request.batch_size, "batch_size"),
            request.resume_cursor,
            fingerprint("StreamTimeline", request.profile),
        )
        async for posts, cursor in self._service.stream_timeline(viewer_id, stream):
            yield feed_pb2.StreamTimelineResponse(posts=posts, resume_cursor=cursor)

    # --- follows ---

    async def CreateFollow(
        self, request: feed_pb2.CreateFollowRequest, context: Context
    ) -> feed_pb2.Follow:
        follower, followee = validation.new_follow(request)
        return await self._service.follow(follower, followee)

    async def GetFollow(
        self, request: feed_pb2.GetFollowRequest, context: Context
    ) -> feed_pb2.Follow:
        follower, followee = validation.follow_ids(request.name, "name")
        return await self._service.get_follow(follower, followee)

    async def DeleteFollow(
        self, request: feed_pb2.DeleteFollowRequest, context: Context
    ) -> empty_pb2.Empty:
        follower, followee = validation.follow_ids(request.name, "name")
        await self._service.unfollow(follower, followee, allow_missing=request.allow_missing)
        return empty_pb2.Empty()

    async def ListFollows(
        self, request: feed_pb2.ListFollowsRequest, context: Context
    ) -> feed_pb2.ListFollowsResponse:
        follower, followee = validation.follows_parent(request)
        page = _page(
            LIST_PAGE,
            request.page_size,
            request.page_token,
            "ListFollows",
            str(follower),
            str(followee),
        )
        follows, token = await self._service.list_follows(follower, followee, page)
        return feed_pb2.ListFollowsResponse(follows=follows, next_page_token=token)

    async def GetRelationship(
        self, request: feed_pb2.GetRelationshipRequest, context: Context
    ) -> feed_pb2.Relationship:
        profile_id, other_id = validation.relationship_ids(request.name, "name")
        return await self._service.relationship(profile_id, other_id)

    # --- comments ---

    async def CreateComment(
        self, request: feed_pb2.CreateCommentRequest, context: Context
    ) -> feed_pb2.Comment:
        post_id, author_id, body = validation.new_comment(request)
        return await self._service.create_comment(post_id, author_id, body)

    async def ListComments(
        self, request: feed_pb2.ListCommentsRequest, context: Context
    ) -> feed_pb2.ListCommentsResponse:
        post_id = validation.post_id(request.parent, "parent")
        page = _page(
            LIST_PAGE, request.page_size, request.page_token, "ListComments", request.parent
        )
        comments, token = await self._service.list_comments(post_id, page)
        return feed_pb2.ListCommentsResponse(comments=comments, next_page_token=token)

    async def DeleteComment(
        self, request: feed_pb2.DeleteCommentRequest, context: Context
    ) -> empty_pb2.Empty:
        post_id, comment_id = validation.comment_ids(request.name, "name")
        await self._service.delete_comment(post_id, comment_id)
        return empty_pb2.Empty()

    # --- likes ---

    async def CreateLike(
        self, request: feed_pb2.CreateLikeRequest, context: Context
    ) -> feed_pb2.Like:
        post_id, profile_id = validation.new_like(request)
        return await self._service.like(post_id, profile_id)

    async def GetLike(self, request: feed_pb2.GetLikeRequest, context: Context) -> feed_pb2.Like:
        post_id, profile_id = validation.like_ids(request.name, "name")
        return await self._service.get_like(post_id, profile_id)

    async def DeleteLike(
        self, request: feed_pb2.DeleteLikeRequest, context: Context
    ) -> empty_pb2.Empty:
        post_id, profile_id = validation.like_ids(request.name, "name")
        await self._service.unlike(post_id, profile_id, allow_missing=request.allow_missing)
        return empty_pb2.Empty()

    # --- activity ---

    async def ListActivityEvents(
        self, request: feed_pb2.ListActivityEventsRequest, context: Context
    ) -> feed_pb2.ListActivityEventsResponse:
        actor_id = validation.profile_id(request.parent, "parent")
        page = _page(
            LIST_PAGE, request.page_size, request.page_token, "ListActivityEvents", request.parent
        )
        events, token = await self._service.list_activity(actor_id, page)
        return feed_pb2.ListActivityEventsResponse(activity_events=events, next_page_token=token)
