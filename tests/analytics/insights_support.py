"""Helpers of the content-insight tests: feed writes through the API, and waiting (with a
deadline, never a fixed sleep) for the insights worker."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
import psycopg
from google.protobuf import field_mask_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from socialhub.v1 import analytics_pb2, feed_pb2
from socialhub.v1.analytics_pb2_grpc import AnalyticsServiceStub
from socialhub.v1.feed_pb2_grpc import FeedServiceStub

T = TypeVar("T")
DEADLINE_S = 20.0


def wait_for(probe: Callable[[], T | None], what: str, deadline_s: float = DEADLINE_S) -> T:
    """probe() until it answers something other than None (or raises NOT_FOUND: not yet)."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            value = probe()
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND:
                raise
            value = None
        if value is not None:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def wait_until(
    read: Callable[[], T], ready: Callable[[T], bool], what: str, deadline_s: float = DEADLINE_S
) -> T:
    """read() until ready(value); NOT_FOUND counts as not ready yet."""

    def probe() -> T | None:
        value = read()
        return value if ready(value) else None

    return wait_for(probe, what, deadline_s)


def seconds(stamp: Timestamp) -> float:
    return stamp.seconds + stamp.nanos / 1e9


def queue_length(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM analytics_feed_queue").fetchone()
    assert row is not None
    return int(row[0])


def post(feed: FeedServiceStub, author: str, body: str) -> feed_pb2.Post:
    return feed.CreatePost(feed_pb2.CreatePostRequest(post=feed_pb2.Post(author=author, body=body)))


def edit(feed: FeedServiceStub, name: str, body: str) -> feed_pb2.Post:
    return feed.UpdatePost(
        feed_pb2.UpdatePostRequest(
            post=feed_pb2.Post(name=name, body=body),
            update_mask=field_mask_pb2.FieldMask(paths=["body"]),
        )
    )


def post_insights(analytics: AnalyticsServiceStub, post_name: str) -> analytics_pb2.PostInsights:
    return analytics.GetPostInsights(
        analytics_pb2.GetPostInsightsRequest(name=f"{post_name}/insights")
    )


def profile_insights(
    analytics: AnalyticsServiceStub, profile_name: str
) -> analytics_pb2.ProfileInsights:
    return analytics.GetProfileInsights(
        analytics_pb2.GetProfileInsightsRequest(name=f"{profile_name}/insights")
    )


def insights_of(
    analytics: AnalyticsServiceStub, post_name: str, after: float = 0.0
) -> analytics_pb2.PostInsights:
    """The post's insights once there are some analysed after `after` (a post's update_time in
    seconds, so an edit's are told from the text's before)."""

    return wait_until(
        lambda: post_insights(analytics, post_name),
        lambda found: seconds(found.post_update_time) >= after,
        f"insights of {post_name}",
    )
