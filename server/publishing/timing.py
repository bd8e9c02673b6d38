"""A post's schedule as rows: the post's schedule columns and each target's state, due time
and posting slot (CreateBusinessPost, UpdateBusinessPost). The time arithmetic is
scheduling.py's; this module adds the business's zone and the slots other posts hold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncConnection

from server.core.errors import FailedPrecondition, InvalidArgument
from server.publishing import repository, scheduling
from server.publishing.businesses import business_not_found
from server.publishing.mapping import account_name
from server.publishing.model import Schedule


async def business_zone(conn: AsyncConnection, business_id: int) -> str:
    """The business's time zone; NOT_FOUND if there is no such business."""
    business = await repository.get_business(conn, business_id)
    if business is None:
        raise business_not_found(business_id)
    return str(business.time_zone)


def resolve_schedule(
    schedule: Schedule, business_zone: str
) -> tuple[dict[str, Any], datetime | None]:
    """The post's schedule columns, and the instant its targets are due (None: now, or each
    target's posting slot). INVALID_ARGUMENT for a local time the zone's clocks skip."""
    if schedule.local_time is not None:
        zone_name = schedule.time_zone or business_zone
        try:
            instant = scheduling.resolve(schedule.local_time, ZoneInfo(zone_name))
        except scheduling.NonexistentTime:
            raise InvalidArgument.single(
                "business_post.schedule_local_time",
                f"{schedule.local_time.isoformat()} does not exist in {zone_name}: the clocks "
                "skip it (daylight saving time begins); choose another time",
            ) from None
        return {
            "schedule_time": instant,
            "schedule_local_time": schedule.local_time.isoformat(timespec="seconds"),
            "schedule_time_zone": zone_name,
        }, instant
    return {
        "schedule_time": schedule.instant,
        "schedule_local_time": None,
        "schedule_time_zone": None,
    }, schedule.instant


def target_timing(instant: datetime | None, slot: datetime | None) -> dict[str, Any]:
    """A target's state, due time and slot: waiting (SCHEDULED) for a future instant or its
    slot, else due now."""
    when = slot or instant
    if when is not None and when > datetime.now(UTC):
        return {"state": "scheduled", "due_time": when, "slot_time": slot}
    # Due now: the database's clock, not this replica's.
    return {"state": "pending", "due_time": func.now(), "slot_time": None}


async def take_slots(
    conn: AsyncConnection, business_id: int, zone: str, account_ids: Sequence[int]
) -> Mapping[int, datetime]:
    """Each account's next posting slot after now that no live target of it holds. The
    accounts' rows stay locked until the transaction ends, so concurrent requests take
    slots one after the other; the partial unique index on (account_id, slot_time) would
    refuse a second holder. FAILED_PRECONDITION (POSTING_SCHEDULE_EMPTY) for an account
    without a schedule."""
    now = datetime.now(UTC)
    chosen: dict[int, datetime] = {}
    for row in await repository.lock_slot_accounts(conn, business_id, account_ids):
        slots = scheduling.slots_from_json(row.posting_schedule)
        slot = scheduling.next_free_slot(
            slots, ZoneInfo(zone), now, await repository.taken_slots(conn, row.id, now)
        )
        if slot is None:
            raise FailedPrecondition(
                f"{account_name(business_id, row.id)} has no posting schedule: set one with "
                "UpdateAccount (posting_schedule), or schedule the post another way",
                reason="POSTING_SCHEDULE_EMPTY",
            )
        chosen[row.id] = slot
    return chosen
