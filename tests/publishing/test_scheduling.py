"""Scheduling: local wall-clock times across daylight saving, posting slots under concurrent
requests, UpdateBusinessPost and CancelBusinessPost while nothing was sent, and a due post
picked up within a second of its time.

DST dates used (2027, so they are in the future): Europe/Paris springs forward on Sunday
2027-03-28 at 02:00 (to 03:00) and falls back on 2027-10-31 at 03:00 (to 02:00);
America/New_York springs forward on 2027-03-14 at 02:00 and falls back on 2027-11-07 at 02:00.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import psycopg
import pytest
from google.protobuf import field_mask_pb2
from socialhub.v1 import publishing_pb2
from socialhub.v1.publishing_pb2_grpc import PublishingServiceStub

from server.publishing import scheduling
from tests.fakes import Fakes
from tests.harness import Backing
from tests.helpers import error_info, field_violations
from tests.publishing.support import (
    Target,
    connect,
    in_future,
    new_business,
    post_request,
    states,
    watch_until_final,
)

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
Slot = publishing_pb2.PostingSlot


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def _failure(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def _when(stamp: object) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)  # type: ignore[attr-defined, no-any-return]


# --- the time arithmetic, on real DST dates ---


@pytest.mark.parametrize(
    ("zone", "local"),
    [(PARIS, datetime(2027, 3, 28, 2, 30)), (NEW_YORK, datetime(2027, 3, 14, 2, 30))],
)
def test_a_local_time_in_a_spring_forward_gap_does_not_exist(
    zone: ZoneInfo, local: datetime
) -> None:
    with pytest.raises(scheduling.NonexistentTime):
        scheduling.resolve(local, zone)
    # The minutes on either side of the gap do exist.
    assert scheduling.resolve(local - timedelta(minutes=31), zone) < scheduling.resolve(
        local + timedelta(minutes=30), zone
    )


def test_an_ambiguous_fall_back_time_is_its_first_occurrence() -> None:
    # 02:30 happens twice in Paris on 2027-10-31: at 00:30 UTC (CEST) and 01:30 UTC (CET).
    assert scheduling.resolve(datetime(2027, 10, 31, 2, 30), PARIS) == _utc(2027, 10, 31, 0, 30)
    # 01:30 happens twice in New York on 2027-11-07: 05:30 UTC (EDT) and 06:30 UTC (EST).
    assert scheduling.resolve(datetime(2027, 11, 7, 1, 30), NEW_YORK) == _utc(2027, 11, 7, 5, 30)


def test_the_same_wall_clock_time_moves_in_utc_across_a_change() -> None:
    before, after = (scheduling.resolve(datetime(2027, 3, day, 9, 0), PARIS) for day in (27, 29))
    assert (before, after) == (_utc(2027, 3, 27, 8), _utc(2027, 3, 29, 7))
    autumn = [scheduling.resolve(datetime(2027, 11, day, 9, 0), NEW_YORK) for day in (6, 8)]
    assert autumn == [_utc(2027, 11, 6, 13), _utc(2027, 11, 8, 14)]


def test_slots_keep_their_wall_clock_time_and_a_slot_in_the_gap_is_skipped() -> None:
    slots = [scheduling.Slot(7, 2, 30), scheduling.Slot(1, 9, 0)]  # Sunday 02:30, Monday 09:00
    instants = scheduling.slot_instants(slots, PARIS, _utc(2027, 3, 20))
    first = [next(instants) for _ in range(5)]
    assert first == [
        _utc(2027, 3, 21, 1, 30),  # Sunday 21st 02:30 CET
        _utc(2027, 3, 22, 8, 0),  # Monday 22nd 09:00 CET
        # Sunday 28th 02:30 does not exist: skipped.
        _utc(2027, 3, 29, 7, 0),  # Monday 29th 09:00 CEST
        _utc(2027, 4, 4, 0, 30),  # Sunday 4 April 02:30 CEST
        _utc(2027, 4, 5, 7, 0),
    ]
    assert scheduling.next_free_slot(slots, PARIS, _utc(2027, 3, 20), set(first[:2])) == first[2]
    assert scheduling.next_free_slot([], PARIS, _utc(2027, 3, 20), set()) is None


# --- CreateBusinessPost with a local time ---


def _local(
    business: str, account: str, local: str, zone: str = "", text: str = "Local"
) -> publishing_pb2.CreateBusinessPostRequest:
    return post_request(business, [account], text, schedule_local_time=local, time_zone=zone)


def test_a_local_time_is_stored_as_given_and_resolved_in_its_zone(
    publishing: PublishingServiceStub, fakes: Fakes
) -> None:
    business = new_business(publishing)  # Europe/Paris
    account = connect(publishing, fakes, business, "x")

    paris = publishing.CreateBusinessPost(_local(business, account.name, "2027-10-31T02:30:00"))
    york = publishing.CreateBusinessPost(
        _local(business, account.name, "2027-11-07T01:30", "America/New_York", "NY")
    )

    assert (paris.schedule_local_time, paris.time_zone) == ("2027-10-31T02:30:00", "Europe/Paris")
    assert _when(paris.schedule_time) == _utc(2027, 10, 31, 0, 30)  # the first 02:30
    assert states(paris) == ["STATE_SCHEDULED"]
    assert _when(paris.targets[0].next_attempt_time) == _utc(2027, 10, 31, 0, 30)
    assert (york.schedule_local_time, york.time_zone) == ("2027-11-07T01:30:00", "America/New_York")
    assert _when(york.schedule_time) == _utc(2027, 11, 7, 5, 30)
    got = publishing.GetBusinessPost(publishing_pb2.GetBusinessPostRequest(name=paris.name))
    assert got == paris


def test_a_local_time_the_clocks_skip_is_invalid(
    publishing: PublishingServiceStub, fakes: Fakes
) -> None:
    business = new_business(publishing)
    account = connect(publishing, fakes, business, "linkedin")

    error = _failure(
        lambda: publishing.CreateBusinessPost(
            _local(business, account.name, "2027-03-14T02:30:00", "America/New_York")
        )
    )

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        "does not exist in America/New_York"
        in field_violations(error)["business_post.schedule_local_time"]
    )
    listed = publishing.ListBusinessPosts(publishing_pb2.ListBusinessPostsRequest(parent=business))
    assert not listed.business_posts


@pytest.mark.parametrize(
    ("fields", "next_free_slot", "field"),
    [
        (
            {"schedule_local_time": "2027-01-01T09:00:00", "schedule_time": in_future(60)},
            False,
            "business_post.schedule_local_time",
        ),
        ({"schedule_time": in_future(60)}, True, "next_free_slot"),
        ({"time_zone": "Europe/Paris"}, False, "business_post.time_zone"),
        (
            {"schedule_local_time": "2027-01-01T09:00:00", "time_zone": "Mars/Olympus"},
            False,
            "business_post.time_zone",
        ),
        (
            {"schedule_local_time": "2027-01-01 09:00+01:00"},
            False,
            "business_post.schedule_local_time",
        ),
        (
            {"schedule_local_time": "2027-02-30T09:00:00"},
            False,
            "business_post.schedule_local_time",
        ),
    ],
)
def test_schedule_fields_are_exclusive_and_well_formed(
    publishing: PublishingServiceStub,
    fakes: Fakes,
    fields: dict[str, Any],
    next_free_slot: bool,
    field: str,
) -> None:
    business = new_business(publishing)
    account = connect(publishing, fakes, business, "x")
    request = post_request(business, [account.name], **fields)
    request.next_free_slot = next_free_slot

    error = _failure(lambda: publishing.CreateBusinessPost(request))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in field_violations(error), field_violations(error)


# --- UpdateBusinessPost and CancelBusinessPost ---


def _update(
    publishing: PublishingServiceStub, post: publishing_pb2.BusinessPost, *paths: str
) -> publishing_pb2.BusinessPost:
    return publishing.UpdateBusinessPost(
        publishing_pb2.UpdateBusinessPostRequest(
            business_post=post, update_mask=field_mask_pb2.FieldMask(paths=list(paths))
        )
    )


def test_an_unsent_post_is_edited_rescheduled_and_retargeted(
    publishing: PublishingServiceStub, fakes: Fakes
) -> None:
    business = new_business(publishing)
    x = connect(publishing, fakes, business, "x")
    linkedin = connect(publishing, fakes, business, "linkedin")
    created = publishing.CreateBusinessPost(
        _local(business, x.name, "2027-03-27T09:00:00", text="Croissants")
    )

    edited = _update(
        publishing,
        publishing_pb2.BusinessPost(
            name=created.name,
            text="Croissants & coffee",
            targets=[Target(account=linkedin.name)],
            schedule_local_time="2027-03-29T09:00:00",
        ),
        "text",
        "targets",
        "schedule_local_time",
    )

    assert edited.text == "Croissants & coffee"
    assert [t.account for t in edited.targets] == [linkedin.name]
    # Same wall-clock time, the zone kept, two days later: across the change, an hour less UTC.
    assert (edited.schedule_local_time, edited.time_zone) == ("2027-03-29T09:00:00", "Europe/Paris")
    assert _when(edited.schedule_time) == _utc(2027, 3, 29, 7)
    assert _when(edited.targets[0].next_attempt_time) == _utc(2027, 3, 29, 7)
    assert states(edited) == ["STATE_SCHEDULED"]

    moved = _update(
        publishing,
        publishing_pb2.BusinessPost(name=created.name, time_zone="America/New_York"),
        "time_zone",
    )
    assert _when(moved.schedule_time) == _utc(2027, 3, 29, 13)  # 09:00 EDT

    now = _update(publishing, publishing_pb2.BusinessPost(name=created.name), "schedule_time")
    final = watch_until_final(publishing, now.name)[-1]
    assert states(final) == ["STATE_PUBLISHED"]
    published = fakes.linkedin.posts(linkedin.platform_account_id)
    assert [post.id for post in published] == [final.targets[0].platform_post_id]
    assert not fakes.x.posts(x.platform_account_id)

    error = _failure(
        lambda: _update(
            publishing, publishing_pb2.BusinessPost(name=created.name, text="Too late"), "text"
        )
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(error).reason == "BUSINESS_POST_ALREADY_SENT"


def test_an_update_is_checked_against_each_targets_platform(
    publishing: PublishingServiceStub, fakes: Fakes
) -> None:
    business = new_business(publishing)
    x = connect(publishing, fakes, business, "x")
    created = publishing.CreateBusinessPost(
        post_request(business, [x.name], "Short", schedule_time=in_future(3600))
    )

    error = _failure(
        lambda: _update(
            publishing, publishing_pb2.BusinessPost(name=created.name, text="a" * 281), "text"
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "targets[0] (X)" in field_violations(error)["business_post.text"]

    error = _failure(
        lambda: _update(publishing, publishing_pb2.BusinessPost(name=created.name), "create_time")
    )
    assert "update_mask" in field_violations(error)
    got = publishing.GetBusinessPost(publishing_pb2.GetBusinessPostRequest(name=created.name))
    assert got.text == "Short"


def test_a_cancelled_post_is_never_sent_and_its_watch_ends(
    publishing: PublishingServiceStub, fakes: Fakes
) -> None:
    business = new_business(publishing)
    account = connect(publishing, fakes, business, "facebook")
    created = publishing.CreateBusinessPost(
        post_request(business, [account.name], schedule_time=in_future(3))
    )
    stream = publishing.WatchBusinessPost(
        publishing_pb2.WatchBusinessPostRequest(name=created.name), timeout=10
    )

    cancelled = publishing.CancelBusinessPost(
        publishing_pb2.CancelBusinessPostRequest(name=created.name)
    ).business_post

    assert states(cancelled) == ["STATE_CANCELLED"]
    seen = [message.business_post for message in stream]  # ends by itself
    assert states(seen[-1]) == ["STATE_CANCELLED"]
    # Past its time (and a worker's poll): no worker takes it.
    time.sleep(max(0.0, (_when(created.schedule_time) - datetime.now(UTC)).total_seconds()) + 1)
    got = publishing.GetBusinessPost(publishing_pb2.GetBusinessPostRequest(name=created.name))
    assert states(got) == ["STATE_CANCELLED"]
    assert not fakes.meta.posts(account.platform_account_id)
    error = _failure(
        lambda: publishing.CancelBusinessPost(
            publishing_pb2.CancelBusinessPostRequest(name=created.name)
        )
    )
    assert error_info(error).reason == "BUSINESS_POST_ALREADY_SENT"
    listed = publishing.ListBusinessPosts(
        publishing_pb2.ListBusinessPostsRequest(parent=business, filter='state = "CANCELLED"')
    )
    assert [post.name for post in listed.business_posts] == [created.name]
    publishing.DeleteBusinessPost(publishing_pb2.DeleteBusinessPostRequest(name=created.name))


def test_a_sent_post_cannot_be_cancelled(publishing: PublishingServiceStub, fakes: Fakes) -> None:
    business = new_business(publishing)
    account = connect(publishing, fakes, business, "x")
    sent = publishing.CreateBusinessPost(post_request(business, [account.name]))
    watch_until_final(publishing, sent.name)

    error = _failure(
        lambda: publishing.CancelBusinessPost(
            publishing_pb2.CancelBusinessPostRequest(name=sent.name)
        )
    )

    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(error).reason == "BUSINESS_POST_ALREADY_SENT"
    assert len(fakes.x.posts(account.platform_account_id)) == 1


# --- posting slots ---


def _set_schedule(
    publishing: PublishingServiceStub, account: str, slots: list[Slot]
) -> publishing_pb2.Account:
    return publishing.UpdateAccount(
        publishing_pb2.UpdateAccountRequest(
            account=publishing_pb2.Account(name=account, posting_schedule=slots),
            update_mask=field_mask_pb2.FieldMask(paths=["posting_schedule"]),
        )
    )


def test_a_posting_schedule_is_validated_deduplicated_and_sorted(
    publishing: PublishingServiceStub, fakes: Fakes
) -> None:
    business = new_business(publishing)
    account = connect(publishing, fakes, business, "x")

    error = _failure(
        lambda: _set_schedule(
            publishing,
            account.name,
            [Slot(day_of_week=8, local_time="09:00"), Slot(day_of_week=1, local_time="9:00")],
        )
    )
    assert set(field_violations(error)) == {
        "account.posting_schedule[0].day_of_week",
        "account.posting_schedule[1].local_time",
    }

    updated = _set_schedule(
        publishing,
        account.name,
        [Slot(day_of_week=5, local_time="18:00"), Slot(day_of_week=1, local_time="09:00")] * 2,
    )
    expected = [(1, "09:00"), (5, "18:00")]
    assert [(s.day_of_week, s.local_time) for s in updated.posting_schedule] == expected
    got = publishing.GetAccount(publishing_pb2.GetAccountRequest(name=account.name))
    assert [(s.day_of_week, s.local_time) for s in got.posting_schedule] == expected


def test_an_account_without_a_schedule_has_no_free_slot(
    publishing: PublishingServiceStub, fakes: Fakes
) -> None:
    business = new_business(publishing)
    account = connect(publishing, fakes, business, "linkedin")
    request = post_request(business, [account.name])
    request.next_free_slot = True

    error = _failure(lambda: publishing.CreateBusinessPost(request))

    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(error).reason == "POSTING_SCHEDULE_EMPTY"


def test_concurrent_requests_take_distinct_consecutive_slots(
    publishing: PublishingServiceStub, fakes: Fakes, backing: Backing
) -> None:
    business = new_business(publishing)  # Europe/Paris
    account = connect(publishing, fakes, business, "x")
    every_day = [Slot(day_of_week=d, local_time=t) for d in range(1, 8) for t in ("09:00", "18:00")]
    _set_schedule(publishing, account.name, every_day)
    start = datetime.now(UTC)

    def create(index: int) -> publishing_pb2.BusinessPost:
        request = post_request(business, [account.name], f"Slot post {index}")
        request.next_free_slot = True
        return publishing.CreateBusinessPost(request)

    with ThreadPoolExecutor(max_workers=20) as pool:
        posts = list(pool.map(create, range(20)))

    slots = sorted(_when(post.targets[0].slot_time) for post in posts)
    assert len(set(slots)) == 20
    local = [slot.astimezone(PARIS) for slot in slots]
    assert all(f"{t:%H:%M}" in ("09:00", "18:00") for t in local), local
    # Consecutive: the first 20 slot instants after the requests began, none skipped.
    expected = scheduling.slot_instants(
        [scheduling.Slot(d, h, 0) for d in range(1, 8) for h in (9, 18)], PARIS, start
    )
    assert slots == [next(expected) for _ in range(20)]
    for post in posts:
        target = post.targets[0]
        assert states(post) == ["STATE_SCHEDULED"]
        assert target.next_attempt_time == target.slot_time
        assert not post.HasField("schedule_time")

    # A cancelled post frees its slot: the next request takes it.
    first = min(posts, key=lambda post: _when(post.targets[0].slot_time))
    publishing.CancelBusinessPost(publishing_pb2.CancelBusinessPostRequest(name=first.name))
    again = create(20)
    assert _when(again.targets[0].slot_time) == slots[0]

    # The partial unique index refuses a second live holder of one slot.
    second = next(p for p in posts if p.name not in (first.name, again.name))
    with (
        pytest.raises(psycopg.errors.UniqueViolation),
        psycopg.connect(backing.database_url) as conn,
    ):
        conn.execute(
            "UPDATE publishing_targets SET slot_time = %s WHERE post_id = %s",
            (slots[0], int(second.name.rsplit("/", 1)[1])),
        )


# --- due on time ---


def test_a_scheduled_post_is_published_within_a_second_of_its_time(
    publishing: PublishingServiceStub, fakes: Fakes
) -> None:
    business = new_business(publishing)
    account = connect(publishing, fakes, business, "x")
    created = publishing.CreateBusinessPost(
        post_request(business, [account.name], schedule_time=in_future(2))
    )
    assert states(created) == ["STATE_SCHEDULED"]

    final = watch_until_final(publishing, created.name)[-1]

    assert states(final) == ["STATE_PUBLISHED"]
    lateness = _when(final.targets[0].publish_time) - _when(created.schedule_time)
    assert timedelta(0) <= lateness < timedelta(seconds=1), lateness
