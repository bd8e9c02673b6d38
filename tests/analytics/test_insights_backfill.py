"""`socialhub insights backfill`, run as the command it is against the session's servers while
the session server (another replica, for the command) serves and runs its own worker."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from socialhub.v1.analytics_pb2_grpc import AnalyticsServiceStub
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from server.analytics.insight_models import model_version
from tests.analytics.insights_support import insights_of
from tests.analytics.support import profile
from tests.harness import Backing

BODIES = [
    "Our trip to the mountains was amazing, beautiful views everywhere",
    "Je déteste les lundis, tout va mal aujourd'hui",
    "The match last night was incredible, what a comeback by the team",
    "Nueva receta de paella, deliciosa y fácil de preparar",
    "Stock markets fell sharply today after the announcement",
]
TOTALS = re.compile(r"walked (\d+) posts: queued (\d+), analysed (\d+)")


def _backfill(backing: Backing) -> tuple[int, int, int]:
    result = subprocess.run(
        [sys.executable, "-m", "server", "insights", "backfill", "--batch-size", "2"],
        env=os.environ | backing.serve_env() | {"LOG_LEVEL": "WARNING"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found = TOTALS.search(result.stdout)
    assert found, result.stdout + result.stderr
    walked, queued, analysed = (int(group) for group in found.groups())
    return walked, queued, analysed


def test_backfill_analyses_posts_written_beside_the_feed_and_resumes(
    backing: Backing, profiles: ProfileServiceStub, analytics: AnalyticsServiceStub
) -> None:
    author = profile(profiles)
    author_id = int(author.rsplit("/", 1)[1])
    # A bulk load (COPY, the seed) calls no hook: nothing queues these posts.
    with backing.sql() as conn:
        ids = [
            row[0]
            for row in conn.execute(
                "INSERT INTO posts (author_id, body) SELECT %s, unnest(%s::text[]) RETURNING id",
                (author_id, BODIES),
            ).fetchall()
        ]
        # One more with insights of an older model: stale, so analysed again.
        conn.execute(
            "INSERT INTO analytics_post_insights (post_id, profile_id, sentiment,"
            " sentiment_score, sentiment_confidence, category, category_confidence, language,"
            " language_confidence, model_version, text_hash, post_create_time,"
            " post_update_time) SELECT %s, %s, 'neutral', 0, 0, 'Other', 0, 'und', 0,"
            " 'insights-old', 'x', now(), now()",
            (ids[0], author_id),
        )

    walked, queued, analysed = _backfill(backing)
    assert walked == len(BODIES)
    assert queued == len(BODIES)
    # The session server's worker may have handled some of what the command queued.
    assert 0 < analysed <= len(BODIES)
    languages = [insights_of(analytics, f"posts/{post_id}").language_code for post_id in ids]
    assert languages == ["en", "fr", "en", "es", "en"]
    assert insights_of(analytics, f"posts/{ids[0]}").model_version == model_version()

    # Run again: every post is current, nothing is queued or analysed.
    assert _backfill(backing) == (len(BODIES), 0, 0)
