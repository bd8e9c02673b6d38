"""datetime -> google.protobuf.Timestamp without Timestamp.FromDatetime's slow path."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp(value: datetime) -> Timestamp:
    """An aware datetime (as PostgreSQL timestamptz gives) as a Timestamp, exactly.

    Integer arithmetic on the timedelta; FromDatetime goes through utctimetuple and
    calendar.timegm, which made it the largest cost of converting a row.
    """
    delta = value - _EPOCH
    return Timestamp(seconds=delta.days * 86_400 + delta.seconds, nanos=delta.microseconds * 1000)
