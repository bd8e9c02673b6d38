"""The tables of the core machinery itself (idempotency keys), beside the domains' tables."""

from __future__ import annotations

from sqlalchemy import Table


def core_tables() -> list[Table]:
    # Registers api_keys on the shared MetaData (migrations compare against it). Not listed:
    # the list is also the tests' per-test cleanup, which must keep the session's keys.
    from server.core import apikeys  # noqa: F401
    from server.core.idempotency import request_ids

    return [request_ids]
