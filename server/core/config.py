"""One typed settings object, read from environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_PAGE_TOKEN_SECRET = "socialhub-dev-page-token-secret"


class ClientPrincipal(BaseModel):
    """What a verified client certificate may do (TLS_CLIENT_PRINCIPALS)."""

    scopes: list[str] = Field(min_length=1)
    tenants: list[str] = Field(default_factory=list)


class Settings(BaseSettings):
    """Every knob of the service. Each field is read from the upper-case env var of its name."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    # Where to serve. Port 0 picks a free port (tests).
    host: str = "127.0.0.1"
    port: int = 50051
    # Server processes sharing the port (SO_REUSEPORT): one process uses one core at most.
    workers: int = Field(default=1, ge=1)

    # External servers. When unset, embedded ones are started under STATE_DIR.
    database_url: str | None = None
    redis_url: str | None = None
    state_dir: Path = Path(".state")

    @field_validator("redis_url")
    @classmethod
    def _one_redis_server(cls, url: str | None) -> str | None:
        # The cache's read client (server/core/resp.py) connects like redis-py's URL clients
        # only: refusing Sentinel or Cluster here beats a slow path nobody benchmarked.
        if url and url.split("://", 1)[0].lower() not in ("redis", "rediss", "unix"):
            raise ValueError(
                "REDIS_URL must be redis://, rediss:// (TLS) or unix://; "
                "Redis Sentinel and Cluster are not supported"
            )
        return url

    # "auto": load demo data on first start of an embedded database only.
    seed_demo: str = Field(default="auto", pattern="^(auto|always|never)$")
    demo_profiles: int = 3000

    db_pool_size: int = 10
    db_max_overflow: int = 10
    db_pool_timeout_s: float = 5.0
    db_pool_recycle_s: int = 1800
    # Testing each pooled connection before use costs a round trip per call. Without it, a
    # database restart fails the calls holding stale connections with UNAVAILABLE (retryable)
    # and SQLAlchemy then recycles the whole pool (docs/BENCHMARKS.md).
    db_pool_pre_ping: bool = False
    db_statement_timeout_ms: int = 10_000

    redis_timeout_s: float = 0.25
    # A write waits this long for each try of its cache invalidation (server/core/cache.py).
    redis_invalidate_timeout_s: float = 1.0
    # After a Redis error, skip Redis for this long instead of paying a timeout per call.
    redis_retry_after_s: float = 1.0

    # Off: every read goes to PostgreSQL (benchmarks compare both).
    cache_enabled: bool = True

    # Log every thread's stack when the event loop has not turned for this long (0: off;
    # server/core/loopwatch.py).
    loop_stall_warn_s: float = 0.5

    # Request ids (idempotency keys) are kept a day; expired ones are purged this often.
    request_id_purge_interval_s: float = 3600.0

    # Signs page tokens. Set a secret of your own in production so tokens cannot be forged:
    # `serve` refuses the development value outside the embedded default.
    page_token_secret: str = DEV_PAGE_TOKEN_SECRET

    # Authentication (server/core/auth.py): API keys and client certificates. `false` serves
    # every call as an anonymous admin, and must be asked for explicitly.
    auth_enabled: bool = True
    # Verified (and unknown) API keys are remembered this long: calls cost no database round
    # trip, and a revoked key stops working on every replica within this bound.
    api_key_cache_ttl_s: float = Field(default=10.0, gt=0)
    # Server reflection lets grpcurl work without proto files; it only describes the API.
    reflection_enabled: bool = True
    # Server TLS (server/core/tls.py): PEM certificate chain and private key, both or neither.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # mTLS: client certificates are verified against this CA. grpc Python verifies only the
    # certificates it requires, so this needs TLS_REQUIRE_CLIENT_CERT=true: every client of
    # the port must then present one (a bearer key still decides who the caller is).
    tls_client_ca_file: Path | None = None
    tls_require_client_cert: bool = False
    # Verified client certificate subject, in RFC 4514 form as grpc reports it
    # (`CN=billing,OU=backend,O=Example`), -> {"scopes": [...], "tenants": [...]}; JSON.
    tls_client_principals: dict[str, ClientPrincipal] = Field(default_factory=dict)

    # Every replica tries for the periodic jobs' lock this often; when the leader goes,
    # another takes over within about this long.
    job_leader_poll_s: float = 5.0

    health_check_interval_s: float = 2.0
    # On SIGTERM, health says NOT_SERVING and calls are still served for this long, so load
    # balancers stop sending here first (Kubernetes probes every few seconds); then new calls
    # get UNAVAILABLE and in-flight ones have SHUTDOWN_GRACE_S to finish.
    shutdown_drain_s: float = 0.0
    shutdown_grace_s: float = 10.0
    # A stop still running this long after SIGTERM logs the stack of everything it waits
    # for and exits 1 (server/core/stopping.py). Unset: drain + grace + 10 s (the background
    # workers' grace runs beside the calls'). Keep it under the orchestrator's kill timeout.
    shutdown_timeout_s: float | None = None
    max_concurrent_rpcs: int = 1000

    log_level: str = "INFO"

    # Prometheus metrics at http://METRICS_HOST:METRICS_PORT/metrics (server/core/metrics.py);
    # the host defaults to HOST, port 0 picks a free one.
    metrics_enabled: bool = True
    metrics_host: str | None = None
    metrics_port: int = 9464
    # OpenTelemetry tracing of every RPC (server/core/tracing.py), on when an OTLP/gRPC
    # collector is set; the exporter reads the other standard OTEL_* variables itself.
    otel_exporter_otlp_endpoint: str | None = None
    otel_service_name: str = "socialhub"

    @property
    def stop_deadline_s(self) -> float:
        if self.shutdown_timeout_s is not None:
            return self.shutdown_timeout_s
        return self.shutdown_drain_s + self.shutdown_grace_s + 10.0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"
