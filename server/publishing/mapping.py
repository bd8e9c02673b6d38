"""Resource names and database rows <-> protobuf messages of the publishing domain."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from socialhub.v1 import profile_pb2, publishing_pb2

from server.core.timestamps import timestamp
from server.publishing.adapters.base import Platform

PLATFORMS = {
    profile_pb2.PLATFORM_X: Platform.X,
    profile_pb2.PLATFORM_LINKEDIN: Platform.LINKEDIN,
    profile_pb2.PLATFORM_FACEBOOK: Platform.FACEBOOK,
    profile_pb2.PLATFORM_INSTAGRAM: Platform.INSTAGRAM,
}
PLATFORM_ENUMS = {platform: value for value, platform in PLATFORMS.items()}

ACCOUNT_STATES = {
    "connected": publishing_pb2.Account.STATE_CONNECTED,
    "needs_reconnect": publishing_pb2.Account.STATE_NEEDS_RECONNECT,
    "disconnected": publishing_pb2.Account.STATE_DISCONNECTED,
}

Target = publishing_pb2.PublishTarget
# The worker's finer states, as clients see them (docs/PUBLISHING.md).
TARGET_STATES = {
    "scheduled": Target.STATE_SCHEDULED,
    "pending": Target.STATE_PUBLISHING,
    "claimed": Target.STATE_PUBLISHING,
    "sending": Target.STATE_PUBLISHING,
    "deferred": Target.STATE_DEFERRED,
    "published": Target.STATE_PUBLISHED,
    "failed": Target.STATE_FAILED,
    "needs_review": Target.STATE_NEEDS_REVIEW,
    "cancelled": Target.STATE_CANCELLED,
}
# ListBusinessPosts' `state = "..."` filter -> the worker states it covers.
STATE_FILTERS = {
    Target.State.Name(value).removeprefix("STATE_"): tuple(
        state for state, api in TARGET_STATES.items() if api == value
    )
    for value in set(TARGET_STATES.values())
}

Attempt = publishing_pb2.PublishAttempt
OUTCOMES = {
    "published": Attempt.OUTCOME_PUBLISHED,
    "rejected": Attempt.OUTCOME_REJECTED,
    "unauthorized": Attempt.OUTCOME_UNAUTHORIZED,
    "throttled": Attempt.OUTCOME_THROTTLED,
    "transient": Attempt.OUTCOME_TRANSIENT_FAILURE,
    "reconciled": Attempt.OUTCOME_RECONCILED,
    "unknown": Attempt.OUTCOME_UNKNOWN,
}


def business_name(business_id: int) -> str:
    return f"businesses/{business_id}"


def account_name(business_id: int, account_id: int) -> str:
    return f"businesses/{business_id}/accounts/{account_id}"


def post_name(business_id: int, post_id: int) -> str:
    return f"businesses/{business_id}/posts/{post_id}"


def business_from_row(row: Any) -> publishing_pb2.Business:
    return publishing_pb2.Business(
        name=business_name(row.id),
        display_name=row.display_name,
        time_zone=row.time_zone,
        create_time=timestamp(row.create_time),
        update_time=timestamp(row.update_time),
    )


def account_from_row(row: Any) -> publishing_pb2.Account:
    account = publishing_pb2.Account(
        name=account_name(row.business_id, row.id),
        platform=PLATFORM_ENUMS[Platform(row.platform)],
        platform_account_id=row.platform_account_id,
        display_name=row.display_name,
        handle=row.handle,
        avatar_uri=row.avatar_uri,
        state=ACCOUNT_STATES[row.state],
        state_reason=row.state_reason,
        scopes=list(row.scopes),
        create_time=timestamp(row.create_time),
        update_time=timestamp(row.update_time),
        posting_schedule=[
            publishing_pb2.PostingSlot(
                day_of_week=int(slot["day_of_week"]), local_time=str(slot["local_time"])
            )
            for slot in row.posting_schedule
        ],
    )
    if row.token_expire_time is not None:
        account.token_expire_time.CopyFrom(timestamp(row.token_expire_time))
    return account


def target_from_row(row: Any, business_id: int) -> publishing_pb2.PublishTarget:
    target = publishing_pb2.PublishTarget(
        account=account_name(business_id, row.account_id),
        platform=PLATFORM_ENUMS[Platform(row.platform)],
        state=TARGET_STATES[row.state],
        platform_post_id=row.platform_post_id,
        uri=row.uri,
        error=row.error,
        attempt_count=row.attempt_count,
    )
    if row.state in ("scheduled", "pending", "deferred"):
        target.next_attempt_time.CopyFrom(timestamp(row.due_time))
    if row.publish_time is not None:
        target.publish_time.CopyFrom(timestamp(row.publish_time))
    if row.slot_time is not None:
        target.slot_time.CopyFrom(timestamp(row.slot_time))
    return target


def post_from_rows(post: Any, target_rows: Sequence[Any]) -> publishing_pb2.BusinessPost:
    message = publishing_pb2.BusinessPost(
        name=post_name(post.business_id, post.id),
        text=post.text,
        media_uris=list(post.media_uris),
        first_comment=post.first_comment,
        thread=list(post.thread),
        schedule_local_time=post.schedule_local_time or "",
        time_zone=post.schedule_time_zone or "",
        targets=[target_from_row(row, post.business_id) for row in target_rows],
        create_time=timestamp(post.create_time),
        update_time=timestamp(max([post.update_time, *(row.update_time for row in target_rows)])),
    )
    if post.schedule_time is not None:
        message.schedule_time.CopyFrom(timestamp(post.schedule_time))
    return message


def attempt_from_row(row: Any, business_id: int) -> publishing_pb2.PublishAttempt:
    return publishing_pb2.PublishAttempt(
        name=f"{post_name(business_id, row.post_id)}/publishAttempts/{row.id}",
        account=account_name(business_id, row.account_id),
        outcome=OUTCOMES[row.outcome],
        response_code=row.response_code,
        message=row.message,
        start_time=timestamp(row.start_time),
        duration_ms=row.duration_ms,
    )
