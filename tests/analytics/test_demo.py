"""The demo analytics a first start loads (`make run`): reports to look at, rollups exact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from socialhub.v1 import analytics_pb2
from socialhub.v1.analytics_pb2_grpc import AnalyticsServiceStub

from server.app import DOMAINS
from server.seed import first_start_volumes, seed_demo_if_empty
from tests.analytics.insights_support import post_insights, wait_for
from tests.analytics.support import ts
from tests.harness import Backing, ServerThread

# The daily rollups against a recomputation from the raw snapshots (each post's latest,
# summed per profile, UTC day of publication and platform): the rows that differ.
ROLLUP_DIFFERENCES = """
WITH latest AS (
  SELECT DISTINCT ON (post_id) post_id, likes, comments, shares, saves, views, reach
  FROM analytics_metric_snapshots ORDER BY post_id, observe_time DESC
), expected AS (
  SELECT p.profile_id, (p.publish_time AT TIME ZONE 'UTC')::date AS day, p.platform,
         count(*) AS posts, sum(l.likes) AS likes, sum(l.comments) AS comments,
         sum(l.shares) AS shares, sum(l.saves) AS saves, sum(l.views) AS views,
         sum(l.reach) AS reach
  FROM analytics_posts p JOIN latest l ON l.post_id = p.id
  WHERE p.platform <> 'socialhub' GROUP BY 1, 2, 3
), stored AS (
  SELECT profile_id, day, platform, posts, likes, comments, shares, saves, views, reach
  FROM analytics_daily WHERE platform <> 'socialhub'
)
SELECT count(*) FROM expected e FULL JOIN stored s USING (profile_id, day, platform)
WHERE (e.posts, e.likes, e.comments, e.shares, e.saves, e.views, e.reach)
  IS DISTINCT FROM (s.posts, s.likes, s.comments, s.shares, s.saves, s.views, s.reach)
"""


def test_a_first_start_has_analytics_to_show_and_insights_coming(
    server: ServerThread, backing: Backing, analytics: AnalyticsServiceStub
) -> None:
    assert server.app is not None
    assert server.app.engine is not None
    engine = server.app.engine
    assert server.run(seed_demo_if_empty(engine, DOMAINS, first_start_volumes(20)))
    assert not server.run(seed_demo_if_empty(engine, DOMAINS, first_start_volumes(20)))

    with backing.sql() as conn:
        (differences,) = conn.execute(ROLLUP_DIFFERENCES).fetchone() or (None,)
        (profile_id, posts) = conn.execute(
            "SELECT profile_id, count(*) FROM analytics_posts WHERE platform <> 'socialhub'"
            " GROUP BY 1 ORDER BY 1 LIMIT 1"
        ).fetchone() or (0, 0)
        (profiles_with_metrics,) = conn.execute(
            "SELECT count(DISTINCT profile_id) FROM analytics_posts WHERE platform <> 'socialhub'"
        ).fetchone() or (0,)
        (feed_post,) = conn.execute("SELECT min(id) FROM posts").fetchone() or (0,)
    assert differences == 0
    assert profiles_with_metrics == 20
    assert posts >= 12

    now = datetime.now(UTC)
    report = analytics.GetProfileAnalytics(
        analytics_pb2.GetProfileAnalyticsRequest(
            profile=f"profiles/{profile_id}",
            start_time=ts(now - timedelta(days=100)),
            end_time=ts(now + timedelta(hours=1)),
            granularity=analytics_pb2.GRANULARITY_WEEK,
        )
    )
    assert report.post_count == posts
    assert report.engagement > 0
    assert report.top_posts
    assert report.followers
    assert all(f.start_followers > 0 for f in report.followers)
    audience = analytics.GetAudienceDemographics(
        analytics_pb2.GetAudienceDemographicsRequest(profile=f"profiles/{profile_id}")
    )
    assert audience.audiences
    assert all(0.95 <= sum(s.share for s in a.age_shares) <= 1.0 for a in audience.audiences)

    # The demo feed's posts were queued: the insights worker analyses them.
    insights = wait_for(
        lambda: post_insights(analytics, f"posts/{feed_post}"), what="the demo post's insights"
    )
    assert insights.language_code
