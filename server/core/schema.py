"""The complete schema the code expects: every domain's tables on one MetaData."""

from __future__ import annotations

from sqlalchemy import MetaData


def target_metadata() -> MetaData:
    # Importing the table modules registers their tables on the shared MetaData.
    from server.core import db, idempotency
    from server.feed import tables as feed_tables
    from server.profiles import tables

    del idempotency, tables, feed_tables
    return db.metadata
