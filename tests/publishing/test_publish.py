"""Publish now, end to end: CreateBusinessPost -> the worker -> each platform's fake."""

from __future__ import annotations

import uuid

import grpc
import pytest
from socialhub.v1 import publishing_pb2
from socialhub.v1.publishing_pb2_grpc import PublishingServiceStub

from tests.fakes import Fakes
from tests.helpers import error_info, field_violations
from tests.publishing.support import (
    IMAGE,
    Target,
    attempts,
    connect,
    new_business,
    post_request,
    states,
    violations_of,
    watch_until_final,
)

Attempt = publishing_pb2.PublishAttempt


@pytest.mark.parametrize(
    ("platform", "media"),
    [("x", []), ("linkedin", []), ("facebook", []), ("facebook", [IMAGE]), ("instagram", [IMAGE])],
)
def test_a_post_goes_out_once_on_each_platform(
    publishing: PublishingServiceStub, fakes: Fakes, platform: str, media: list[str]
) -> None:
    business = new_business(publishing)
    account = connect(publishing, fakes, business, platform)
    created = publishing.CreateBusinessPost(
        post_request(business, [account.name], media_uris=media)
    )
    assert states(created) == ["STATE_PUBLISHING"]

    final = watch_until_final(publishing, created.name)[-1]

    assert states(final) == ["STATE_PUBLISHED"], final
    target = final.targets[0]
    fake = fakes.meta if platform in ("facebook", "instagram") else getattr(fakes, platform)
    published = fake.posts(account.platform_account_id, kind=None)
    assert [post.id for post in published if post.kind != "comment"] == [target.platform_post_id]
    assert target.uri.startswith("https://"), target
    assert target.HasField("publish_time")
    assert target.attempt_count == 1
    outcomes = [Attempt.Outcome.Name(a.outcome) for a in attempts(publishing, created.name)]
    assert outcomes == ["OUTCOME_PUBLISHED"]
    assert (
        publishing.GetBusinessPost(publishing_pb2.GetBusinessPostRequest(name=created.name))
        == final
    )


def test_one_post_goes_to_several_accounts_at_once(
    publishing: PublishingServiceStub, fakes: Fakes
) -> None:
    business = new_business(publishing)
    accounts = [connect(publishing, fakes, business, p) for p in ("x", "linkedin", "facebook")]
    created = publishing.CreateBusinessPost(post_request(business, [a.name for a in accounts]))

    final = watch_until_final(publishing, created.name)[-1]

    assert states(final) == ["STATE_PUBLISHED"] * 3
    assert [t.account for t in final.targets] == [a.name for a in accounts]


def test_watch_sends_each_change_and_ends_when_every_target_is_final(
    publishing: PublishingServiceStub, fakes: Fakes
) -> None:
    business = new_business(publishing)
    account = connect(publishing, fakes, business, "x")
    fakes.x.stall("POST /2/tweets", 0.5)
    created = publishing.CreateBusinessPost(post_request(business, [account.name]))

    seen = watch_until_final(publishing, created.name)

    assert states(seen[0]) in (["STATE_PUBLISHING"], ["STATE_PUBLISHED"])
    assert states(seen[-1]) == ["STATE_PUBLISHED"]
    assert len({message.SerializeToString() for message in seen}) == len(seen), "repeats"


def test_a_retried_create_returns_the_first_post_and_publishes_once(
    publishing: PublishingServiceStub, fakes: Fakes
) -> None:
    business = new_business(publishing)
    account = connect(publishing, fakes, business, "linkedin")
    request = post_request(business, [account.name])
    request.request_id = str(uuid.uuid4())

    first = publishing.CreateBusinessPost(request)
    again = publishing.CreateBusinessPost(request)
    watch_until_final(publishing, first.name)

    assert again.name == first.name
    assert len(fakes.linkedin.posts(account.platform_account_id)) == 1


def test_duplicate_content_fails_with_the_platforms_message(
    publishing: PublishingServiceStub, fakes: Fakes
) -> None:
    business = new_business(publishing)
    account = connect(publishing, fakes, business, "x")
    first = publishing.CreateBusinessPost(post_request(business, [account.name], "Same words"))
    watch_until_final(publishing, first.name)
    second = publishing.CreateBusinessPost(post_request(business, [account.name], "Same words"))

    final = watch_until_final(publishing, second.name)[-1]

    assert states(final) == ["STATE_FAILED"]
    assert "duplicate" in final.targets[0].error.lower()
    assert [Attempt.Outcome.Name(a.outcome) for a in attempts(publishing, second.name)] == [
        "OUTCOME_REJECTED"
    ]
    assert len(fakes.x.posts(account.platform_account_id)) == 1


def test_a_server_error_is_retried_and_the_attempts_show_it(
    publishing: PublishingServiceStub, fakes: Fakes
) -> None:
    business = new_business(publishing)
    account = connect(publishing, fakes, business, "facebook")
    fakes.meta.fail("POST /{page_id}/feed", 503, times=2)
    created = publishing.CreateBusinessPost(post_request(business, [account.name]))

    final = watch_until_final(publishing, created.name)[-1]

    assert states(final) == ["STATE_PUBLISHED"]
    outcomes = [Attempt.Outcome.Name(a.outcome) for a in attempts(publishing, created.name)]
    # A 5xx may have been received: each retry asked the platform first (not found: resent).
    assert outcomes == ["OUTCOME_TRANSIENT_FAILURE"] * 2 + ["OUTCOME_PUBLISHED"]
    assert len(fakes.meta.posts(account.platform_account_id)) == 1


def test_a_lost_response_is_reconciled_not_published_twice(
    publishing: PublishingServiceStub, fakes: Fakes
) -> None:
    business = new_business(publishing)
    account = connect(publishing, fakes, business, "x")
    fakes.x.drop("POST /2/tweets")
    created = publishing.CreateBusinessPost(post_request(business, [account.name]))

    final = watch_until_final(publishing, created.name)[-1]

    assert states(final) == ["STATE_PUBLISHED"]
    published = fakes.x.posts(account.platform_account_id)
    assert [post.id for post in published] == [final.targets[0].platform_post_id]
    outcomes = [Attempt.Outcome.Name(a.outcome) for a in attempts(publishing, created.name)]
    assert outcomes == ["OUTCOME_TRANSIENT_FAILURE", "OUTCOME_RECONCILED"]


def test_content_a_platform_would_refuse_is_invalid_before_anything_is_made(
    publishing: PublishingServiceStub, fakes: Fakes
) -> None:
    business = new_business(publishing)
    x = connect(publishing, fakes, business, "x")
    instagram = connect(publishing, fakes, business, "instagram")

    with pytest.raises(grpc.RpcError) as caught:
        publishing.CreateBusinessPost(post_request(business, [x.name, instagram.name], "a" * 281))

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = violations_of(caught.value)
    assert any(
        field == "business_post.text" and "targets[0] (X)" in description
        for field, description in violations
    ), violations
    assert any(
        field == "business_post.media_uris" and "targets[1] (Instagram)" in description
        for field, description in violations
    ), violations
    listed = publishing.ListBusinessPosts(publishing_pb2.ListBusinessPostsRequest(parent=business))
    assert not listed.business_posts


def test_an_account_of_another_business_or_missing_is_refused(
    publishing: PublishingServiceStub, fakes: Fakes
) -> None:
    business = new_business(publishing)
    other = new_business(publishing, "Other")
    foreign = connect(publishing, fakes, other, "x")

    with pytest.raises(grpc.RpcError) as caught:
        publishing.CreateBusinessPost(post_request(business, [foreign.name]))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "business_post.targets[0].account" in field_violations(caught.value)

    with pytest.raises(grpc.RpcError) as caught:
        publishing.CreateBusinessPost(post_request(business, [f"{business}/accounts/999"]))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(caught.value).reason == "ACCOUNT_NOT_FOUND"


def test_a_disconnected_account_takes_no_post(
    publishing: PublishingServiceStub, fakes: Fakes
) -> None:
    business = new_business(publishing)
    account = connect(publishing, fakes, business, "linkedin")
    publishing.DisconnectAccount(publishing_pb2.DisconnectAccountRequest(name=account.name))

    with pytest.raises(grpc.RpcError) as caught:
        publishing.CreateBusinessPost(post_request(business, [account.name]))

    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(caught.value).reason == "ACCOUNT_NOT_CONNECTED"


def test_a_scheduled_post_can_be_deleted_until_it_is_sent(
    publishing: PublishingServiceStub, fakes: Fakes
) -> None:
    business = new_business(publishing)
    account = connect(publishing, fakes, business, "x")
    later = post_request(business, [account.name], "Later")
    later.business_post.schedule_time.GetCurrentTime()
    later.business_post.schedule_time.seconds += 3600
    scheduled = publishing.CreateBusinessPost(later)
    assert states(scheduled) == ["STATE_SCHEDULED"]
    assert scheduled.targets[0].next_attempt_time == later.business_post.schedule_time

    publishing.DeleteBusinessPost(publishing_pb2.DeleteBusinessPostRequest(name=scheduled.name))

    with pytest.raises(grpc.RpcError) as caught:
        publishing.GetBusinessPost(publishing_pb2.GetBusinessPostRequest(name=scheduled.name))
    assert error_info(caught.value).reason == "BUSINESS_POST_NOT_FOUND"
    sent = publishing.CreateBusinessPost(post_request(business, [account.name], "Now"))
    watch_until_final(publishing, sent.name)
    with pytest.raises(grpc.RpcError) as caught:
        publishing.DeleteBusinessPost(publishing_pb2.DeleteBusinessPostRequest(name=sent.name))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(caught.value).reason == "BUSINESS_POST_ALREADY_SENT"
    assert (
        Target.State.Name(
            publishing.GetBusinessPost(publishing_pb2.GetBusinessPostRequest(name=sent.name))
            .targets[0]
            .state
        )
        == "STATE_PUBLISHED"
    )
