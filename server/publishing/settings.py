"""PublishingService's settings, read from environment variables like the core ones.

Every platform's base URLs are settings, so a test, a demo (`make run`) or a staging
deployment points the adapters at a local fake of the platform instead.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class PublishingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    # AES-256-GCM keys for the platforms' tokens at rest, base64 (32 bytes each), JSON list:
    # the first encrypts, every one decrypts (`socialhub tokens rotate` re-encrypts with the
    # first). Empty: the embedded default derives a development key; `serve` elsewhere refuses.
    token_encryption_keys: list[str] = Field(default_factory=list)

    # Every outbound HTTP call has these timeouts (seconds).
    platform_connect_timeout_s: float = 5.0
    platform_timeout_s: float = 20.0
    # Access tokens that expire within this long are refreshed before they are used.
    token_refresh_margin_s: float = 300.0
    # Where the platforms send the user back after OAuth consent (registered with each app).
    oauth_redirect_uri: str = "http://127.0.0.1:8080/oauth/callback"
    # How long a StartAccountConnection state (and its PKCE verifier) stays usable.
    oauth_state_ttl_s: float = 900.0

    # X API v2 (OAuth 2.0 with PKCE; refresh tokens are single-use).
    x_api_base_url: str = "https://api.x.com"
    x_authorize_url: str = "https://x.com/i/oauth2/authorize"
    x_client_id: str = ""
    x_client_secret: str = ""
    x_scopes: list[str] = Field(
        default_factory=lambda: ["tweet.read", "tweet.write", "users.read", "offline.access"]
    )
    x_web_base_url: str = "https://x.com"

    # LinkedIn Posts API (versioned REST) and its OAuth 2.0 endpoints.
    linkedin_api_base_url: str = "https://api.linkedin.com"
    linkedin_oauth_base_url: str = "https://www.linkedin.com/oauth/v2"
    linkedin_version: str = "202511"
    linkedin_client_id: str = ""
    linkedin_client_secret: str = ""
    linkedin_scopes: list[str] = Field(
        default_factory=lambda: ["openid", "profile", "w_member_social"]
    )
    linkedin_web_base_url: str = "https://www.linkedin.com"

    # Meta Graph API (Facebook Pages and Instagram professional accounts).
    meta_graph_base_url: str = "https://graph.facebook.com/v23.0"
    meta_authorize_url: str = "https://www.facebook.com/v23.0/dialog/oauth"
    meta_app_id: str = ""
    meta_app_secret: str = ""
    meta_scopes: list[str] = Field(
        default_factory=lambda: [
            "pages_show_list",
            "pages_manage_posts",
            "instagram_basic",
            "instagram_content_publish",
        ]
    )
    meta_web_base_url: str = "https://www.facebook.com"
    instagram_web_base_url: str = "https://www.instagram.com"
    # Instagram media containers are polled this often, at most this many times.
    instagram_container_poll_s: float = 1.0
    instagram_container_polls: int = 30

    # The workers every replica runs (server/publishing/publisher.py). A claimed target is
    # leased this long (each step renews it); a worker that dies leaves it to be reconciled
    # by another once the lease runs out.
    publish_lease_s: float = 120.0
    # Idle workers wake on NOTIFY, or after this long at most.
    publish_poll_s: float = 1.0
    # Targets one replica sends at once.
    publish_concurrency: int = 16
    # Transient failures: attempts in all, and the backoff between them (doubling, jittered).
    publish_max_attempts: int = 5
    # Sends in all, those cut off by a crash or a lost lease included (not failures of the
    # platform's, so not counted above): a target that keeps stopping its worker ends FAILED.
    publish_max_sends: int = 25
    publish_retry_base_s: float = 2.0
    publish_retry_max_s: float = 300.0

    # Rate limits (server/publishing/ratelimits.py), shared by every replica. Meta: at or
    # above this usage (x-app-usage for the app, x-business-use-case-usage for a Page), back
    # off for META_USAGE_BACKOFF_S before the next post.
    meta_usage_threshold_percent: float = 90.0
    meta_usage_backoff_s: float = 300.0
    # X's per-user limit on POST /2/tweets over 24 hours (each post of a thread counts):
    # 100 on the Basic tier ("100 requests / 24 hours per user",
    # https://developer.x.com/en/docs/twitter-api/rate-limits). 0: not counted here (X's
    # own 429 still defers).
    x_daily_post_cap: int = 100
    # X's per-app limit on POST /2/tweets over 24 hours, shared by every account connected
    # through the app: 1,667 on the Basic tier ("1667 requests / 24 hours per app"). 0: not
    # counted here (X's 429 with x-app-limit-24hour-remaining 0 still defers every account).
    x_app_daily_post_cap: int = 1667
