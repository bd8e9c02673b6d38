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
        new = validation.new_post(request.post)
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
        post_id = validation.post_id(request.post.name, "post.name")
        changes = validation.post_changes(request.post, list(request.update_mask.paths))
        return await self._service.update_post(post_id, changes)

    async def DeletePost(
        self, request: feed_pb2.DeletePostRequest, context: Context
    ) -> empty_pb2.Empty:
        await self._service.delete_post(validation.post_id(request.name, "name"))
        return empty_pb2.Empty()

    async def ListProfilePosts(
        self, request: feed_pb2.ListProfilePostsRequest, context: Context
    ) -> feed_pb2.ListProfilePostsResponse:
        author_id = validation.profile_id(request.parent, "parent")
        page = _page(
            POST_PAGE, request.page_size, request.page_token, "ListProfilePosts", request.parent
        )
        posts, token = await self._service.list_profile_posts(author_id, page)
        return feed_pb2.ListProfilePostsResponse(posts=posts, next_page_token=token)

    async def SearchPostsByTag(
        self, request: feed_pb2.SearchPostsByTagRequest, context: Context
    ) -> feed_pb2.SearchPostsByTagResponse:
        tags = validation.search_tags(list(request.tags))
        page = _page(POST_PAGE, request.page_size, request.page_token, "SearchPostsByTag", *tags)
        posts, token = await self._service.search_by_tag(tags, page)
        return feed_pb2.SearchPostsByTagResponse(posts=posts, next_page_token=token)

    # --- timelines ---

    async def GetHomeTimeline(
        self, request: feed_pb2.GetHomeTimelineRequest, context: Context
    ) -> feed_pb2.GetHomeTimelineResponse:
        viewer_id = validation.profile_id(request.profile, "profile")
        page = _page(
            POST_PAGE, request.page_size, request.page_token, "GetHomeTimeline", request.profile
        )
        posts, token = await self._service.home_timeline(viewer_id, page)
        return feed_pb2.GetHomeTimelineResponse(posts=posts, next_page_token=token)

    async def StreamProfilePosts(
        self, request: feed_pb2.StreamProfilePostsRequest, context: Context
    ) -> AsyncIterator[feed_pb2.StreamProfilePostsResponse]:
        author_id = validation.profile_id(request.parent, "parent")
        stream = StreamRequest(
            STREAM_BATCH.resolve(request.batch_size, "batch_size"),
            request.resume_cursor,
            fingerprint("StreamProfilePosts", request.parent),
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

    async def FollowProfile(
        self, request: feed_pb2.FollowProfileRequest, context: Context
    ) -> feed_pb2.Follow:
        follower, followee = validation.two_profiles(
            request.follower, "follower", request.followee, "followee"
        )
        return await self._service.follow(follower, followee)

    async def UnfollowProfile(
        self, request: feed_pb2.UnfollowProfileRequest, context: Context
    ) -> empty_pb2.Empty:
        follower, followee = validation.two_profiles(
            request.follower, "follower", request.followee, "followee"
        )
        await self._service.unfollow(follower, followee)
        return empty_pb2.Empty()

    async def ListFollowers(
        self, request: feed_pb2.ListFollowersRequest, context: Context
    ) -> feed_pb2.ListFollowersResponse:
        profile_id = validation.profile_id(request.parent, "parent")
        page = _page(
            LIST_PAGE, request.page_size, request.page_token, "ListFollowers", request.parent
        )
        follows, token = await self._service.list_followers(profile_id, page)
        return feed_pb2.ListFollowersResponse(follows=follows, next_page_token=token)

    async def ListFollowing(
        self, request: feed_pb2.ListFollowingRequest, context: Context
    ) -> feed_pb2.ListFollowingResponse:
        profile_id = validation.profile_id(request.parent, "parent")
        page = _page(
            LIST_PAGE, request.page_size, request.page_token, "ListFollowing", request.parent
        )
        follows, token = await self._service.list_following(profile_id, page)
        return feed_pb2.ListFollowingResponse(follows=follows, next_page_token=token)

    async def GetRelationship(
        self, request: feed_pb2.GetRelationshipRequest, context: Context
    ) -> feed_pb2.Relationship:
        profile_id, other_id = validation.two_profiles(
            request.profile, "profile", request.other, "other"
        )
        return await self._service.relationship(profile_id, other_id)

    # --- comments ---

    async def CreateComment(
        self, request: feed_pb2.CreateCommentRequest, context: Context
    ) -> feed_pb2.Comment:
        post_id = validation.post_id(request.parent, "parent")
        author_id = validation.profile_id(request.comment.author, "comment.author")
        body = validation.comment_body(request.comment)
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

    async def LikePost(self, request: feed_pb2.LikePostRequest, context: Context) -> feed_pb2.Like:
        post_id = validation.post_id(request.post, "post")
        profile_id = validation.profile_id(request.profile, "profile")
        return await self._service.like(post_id, profile_id)

    async def UnlikePost(
        self, request: feed_pb2.UnlikePostRequest, context: Context
    ) -> empty_pb2.Empty:
        post_id = validation.post_id(request.post, "post")
        profile_id = validation.profile_id(request.profile, "profile")
        await self._service.unlike(post_id, profile_id)
        return empty_pb2.Empty()

    # --- activity ---

    async def ListActivity(
        self, request: feed_pb2.ListActivityRequest, context: Context
    ) -> feed_pb2.ListActivityResponse:
        actor_id = validation.profile_id(request.parent, "parent")
        page = _page(
            LIST_PAGE, request.page_size, request.page_token, "ListActivity", request.parent
        )
        events, token = await self._service.list_activity(actor_id, page)
        return feed_pb2.ListActivityResponse(events=events, next_page_token=token)
