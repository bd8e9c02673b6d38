"""`socialhub insights dead-letters` and `socialhub insights requeue`, run as the commands they
are against the session's servers while the session server runs its own insights worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from tests.analytics.support import profile
from tests.harness import Backing

ERROR = "PoisonError: cannot tokenise the text"


def _socialhub(backing: Backing, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", "insights", *args],
        env=os.environ | backing.serve_env() | {"LOG_LEVEL": "WARNING"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _listed(backing: Backing, post_ids: set[int]) -> list[dict[str, object]]:
    result = _socialhub(backing, "dead-letters", "--json")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    return [row for row in rows if row["post_id"] in post_ids]


def _dead(backing: Backing, post_id: int) -> bool:
    with backing.sql() as conn:
        row = conn.execute(
            "SELECT dead_lettered_at IS NOT NULL FROM analytics_feed_queue WHERE post_id = %s",
            (post_id,),
        ).fetchone()
    # Requeued, the row is live until a worker handles the post and deletes it.
    return bool(row and row[0])


def test_dead_letters_are_listed_oldest_first_and_requeued_by_id_or_all(
    backing: Backing, profiles: ProfileServiceStub
) -> None:
    author_id = int(profile(profiles).rsplit("/", 1)[1])
    with backing.sql() as conn:
        older, newer = (
            row[0]
            for row in conn.execute(
                "INSERT INTO posts (author_id, body) SELECT %s, unnest(%s::text[]) RETURNING id",
                (author_id, ["A fine day at the beach", "Great match tonight"]),
            ).fetchall()
        )
        conn.execute(
            "INSERT INTO analytics_feed_queue (post_id, needs_insight, needs_metrics, failures,"
            " last_error, dead_lettered_at) VALUES"
            " (%s, true, true, 5, %s, now() - interval '1 hour'), (%s, true, false, 5, %s, now())",
            (older, ERROR, newer, ERROR),
        )
    ours = {older, newer}
    listed = _listed(backing, ours)
    assert [(row["post_id"], row["failures"], row["last_error"]) for row in listed] == [
        (older, 5, ERROR),
        (newer, 5, ERROR),
    ]
    table = _socialhub(backing, "dead-letters").stdout.splitlines()
    assert table[0].split() == ["POST_ID", "FAILURES", "DEAD_LETTERED_TIME", "LAST_ERROR"]
    assert any(line.split()[0] == str(older) and ERROR in line for line in table[1:])

    refused = _socialhub(backing, "requeue")
    assert refused.returncode == 2
    assert "give --post (repeatable) or --all" in refused.stderr
    assert _dead(backing, older)
    assert _dead(backing, newer)

    missing = 2**62
    named = _socialhub(backing, "requeue", "--post", str(older), "--post", str(missing))
    assert named.returncode == 0, named.stderr
    assert named.stdout.strip() == f"requeued 1 dead letters: {older}"
    assert f"not dead letters, left as they are: {missing}" in named.stderr
    assert not _dead(backing, older)
    assert _dead(backing, newer)
    assert [row["post_id"] for row in _listed(backing, ours)] == [newer]

    every = _socialhub(backing, "requeue", "--all")
    assert every.returncode == 0, every.stderr
    assert str(newer) in every.stdout.strip().split(": ", 1)[1].split(", ")
    assert not _dead(backing, newer)
    assert _listed(backing, ours) == []
