"""AnalyticsService: post metrics, follower counts and audiences, and the reports on them."""
