"""Wall-clock schedules: a local time in an IANA time zone as an instant, and weekly posting
slots as the instants they fall on. Pure functions, no I/O.

Daylight saving, as a user expects it:
- a local time skipped by a spring-forward change (02:30 on 2026-03-29 in Europe/Paris) does
  not exist: `resolve` raises `NonexistentTime` (the API answers INVALID_ARGUMENT), rather than
  silently moving the post an hour;
- a local time that occurs twice at a fall-back change (02:30 on 2026-10-25 in Europe/Paris)
  is its first occurrence (`fold=0`, the earlier instant, still on summer time);
- a posting slot stays at its wall-clock time across a change (09:00 is 08:00 UTC in March's
  last week in Paris, 07:00 UTC the week after); a slot inside a gap is skipped that week,
  and one inside a repeated hour is its first occurrence.
A gap is found by a round trip through UTC: the instant, shown in the zone again, is not the
wall-clock time asked for.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

# "2026-03-29T09:30" or "2026-03-29T09:30:00": ISO 8601 without an offset.
_LOCAL_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?")
_SLOT_TIME = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
# A schedule of every quarter-hour of the week would be 672; hourly is already plenty.
SLOTS_MAX = 168


class NonexistentTime(ValueError):
    """The wall-clock time is skipped in that zone (a spring-forward gap)."""


def parse_local(value: str) -> datetime | None:
    """The naive datetime of "YYYY-MM-DDTHH:MM[:SS]"; None if it is not one."""
    if not _LOCAL_DATE_TIME.fullmatch(value):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def resolve(local: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant of wall-clock `local` in `zone`: the first occurrence of a repeated
    time; NonexistentTime for a skipped one."""
    instant = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) != local.replace(tzinfo=None):
        raise NonexistentTime(f"{local.isoformat()} does not exist in {zone.key}")
    return instant


@dataclass(frozen=True, order=True, slots=True)
class Slot:
    """A weekly posting slot: ISO day of the week (1 Monday .. 7 Sunday) and a time."""

    day_of_week: int
    hour: int
    minute: int

    @property
    def local_time(self) -> str:
        return f"{self.hour:02d}:{self.minute:02d}"

    def as_json(self) -> dict[str, int | str]:
        return {"day_of_week": self.day_of_week, "local_time": self.local_time}


def parse_slot(day_of_week: int, local_time: str) -> Slot | None:
    """The slot, or None if the day is not 1..7 or the time not "HH:MM"."""
    match = _SLOT_TIME.fullmatch(local_time)
    if match is None or not 1 <= day_of_week <= 7:
        return None
    return Slot(day_of_week, int(match[1]), int(match[2]))


def slots_from_json(stored: Sequence[dict[str, object]]) -> list[Slot]:
    """The slots as stored (publishing_accounts.posting_schedule), already valid and sorted."""
    slots = []
    for item in stored:
        slot = parse_slot(int(str(item["day_of_week"])), str(item["local_time"]))
        assert slot is not None, item
        slots.append(slot)
    return slots


def slot_instants(slots: Collection[Slot], zone: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """Every instant a slot falls on strictly after `after`, earliest first, without end
    (nothing if there are no slots)."""
    by_day: dict[int, list[Slot]] = {}
    for slot in sorted(set(slots)):
        by_day.setdefault(slot.day_of_week, []).append(slot)
    if not by_day:
        return
    day = after.astimezone(zone).date()
    while True:
        for slot in by_day.get(day.isoweekday(), []):
            try:
                instant = resolve(datetime.combine(day, time(slot.hour, slot.minute)), zone)
            except NonexistentTime:
                continue  # this week, the clock skips the slot
            if instant > after:
                yield instant
        day += timedelta(days=1)


def next_free_slot(
    slots: Collection[Slot], zone: ZoneInfo, after: datetime, taken: Collection[datetime]
) -> datetime | None:
    """The first slot instant after `after` that is not `taken`; None without slots."""
    for instant in slot_instants(slots, zone, after):
        if instant not in taken:
            return instant
    return None
