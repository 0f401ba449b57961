"""Typed settings, read once from the environment.

Every process (the four services, the gateway, the local stack runner, the tests) reads the
same variables, so an operator configures the suite in one place (`deploy/.env.example`).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Publicly known, so only good for development and tests; production refuses it.
DEVELOPMENT_PII_SECRET = "gridlink-development-only-secret"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

    environment: Literal["development", "test", "production"] = Field("development", alias="GRIDLINK_ENV")
    mongo_url: str = Field("mongodb://127.0.0.1:27017/", alias="MONGO_URL")
    amqp_uri: str = Field("pyamqp://guest:guest@127.0.0.1:5672/", alias="AMQP_URI")
    # Each service owns one database named "<prefix>_<service>"; tests use their own prefix.
    db_prefix: str = Field("gridlink", alias="GRIDLINK_DB_PREFIX")
    mongo_timeout_ms: int = Field(3000, alias="GRIDLINK_MONGO_TIMEOUT_MS")
    # Connections per process. 1 suits FerretDB/SQLite (see shared/mongo.py); raise it for MongoDB.
    mongo_pool_size: int = Field(1, alias="GRIDLINK_MONGO_POOL_SIZE", ge=1, le=200)
    # Connections per process that only read (journals, read-model lookups); reads need not take turns.
    mongo_read_pool_size: int = Field(4, alias="GRIDLINK_MONGO_READ_POOL_SIZE", ge=1, le=200)

    # Gateway
    rpc_timeout_seconds: float = Field(5.0, alias="GRIDLINK_RPC_TIMEOUT")
    demo_api_key: str | None = Field(None, alias="GRIDLINK_DEMO_API_KEY")
    max_body_bytes: int = Field(1_048_576, alias="GRIDLINK_MAX_BODY_BYTES")
    # Acts per batch request: at most shared.schemas.BATCH_MAX_ITEMS (500), the API's own limit.
    batch_max_items: int = Field(500, alias="GRIDLINK_BATCH_MAX_ITEMS", ge=1, le=500)
    # Requests per second an API key may make, and in one burst, unless the key sets its own
    # (`python -m gateway.keys create … --rate R --burst B`); 0 lifts the limit.
    rate_limit_per_second: float = Field(50.0, alias="GRIDLINK_RATE_LIMIT", ge=0)
    rate_limit_burst: int = Field(100, alias="GRIDLINK_RATE_BURST", ge=1)
    # How long a gateway process trusts what it read of an API key: a revoked key stops
    # working within this time; each key costs a database read once per period.
    api_key_cache_seconds: float = Field(30.0, alias="GRIDLINK_KEY_CACHE_SECONDS", ge=0)
    # Where the gateway appends its audit records, a JSON-lines file per day (gateway/audit.py).
    audit_dir: Path = Field(Path(".data/audit"), alias="GRIDLINK_AUDIT_DIR")

    # Staff sign-in to the portal (gateway/staff.py). The session cookie is Secure: browsers send
    # it over HTTPS, and to http://localhost; set false only for a plain-HTTP intranet.
    demo_password: str | None = Field(None, alias="GRIDLINK_DEMO_PASSWORD")
    session_idle_minutes: int = Field(60, alias="GRIDLINK_SESSION_IDLE_MINUTES", ge=1)
    session_max_hours: int = Field(12, alias="GRIDLINK_SESSION_MAX_HOURS", ge=1)
    session_cookie_secure: bool = Field(True, alias="GRIDLINK_SESSION_COOKIE_SECURE")
    login_max_failures: int = Field(5, alias="GRIDLINK_LOGIN_MAX_FAILURES", ge=1)
    login_lockout_minutes: int = Field(15, alias="GRIDLINK_LOGIN_LOCKOUT_MINUTES", ge=1)
    login_attempts_per_minute: int = Field(20, alias="GRIDLINK_LOGIN_ATTEMPTS_PER_MINUTE", ge=1)
    # Days a staff password lasts before the member must choose a new one (等保 2.0 asks for
    # periodic change); 0: for ever.
    password_max_age_days: int = Field(90, alias="GRIDLINK_PASSWORD_MAX_AGE_DAYS", ge=0)
    # Reverse proxies in front of the gateway that append to X-Forwarded-For (a TLS proxy: 1).
    # The client's address (sign-in limit, audit trail) is then taken from that header; with 0,
    # the header is ignored, as a client could forge it.
    proxy_hops: int = Field(0, alias="GRIDLINK_PROXY_HOPS", ge=0, le=5)
    # Password checks (argon2id, 64 MiB each while it runs) at once in one gateway process.
    password_hashes_at_once: int = Field(1, alias="GRIDLINK_PASSWORD_HASHES_AT_ONCE", ge=1)

    # Outbox relay
    publish_timeout_seconds: float = Field(5.0, alias="GRIDLINK_PUBLISH_TIMEOUT")
    relay_sweep_seconds: float = Field(2.0, alias="GRIDLINK_RELAY_SWEEP_SECONDS")
    relay_lease_seconds: float = Field(15.0, alias="GRIDLINK_RELAY_LEASE_SECONDS")
    relay_batch_size: int = Field(500, alias="GRIDLINK_RELAY_BATCH_SIZE")

    # Consumers: how often a failing event is retried in place before it is parked.
    consumer_attempts: int = Field(5, alias="GRIDLINK_CONSUMER_ATTEMPTS")
    consumer_backoff_seconds: float = Field(0.2, alias="GRIDLINK_CONSUMER_BACKOFF")
    # How long an event that needs another applied first (`shared.consumer.NotYet`) keeps
    # going back to its queue before it is parked.
    consumer_wait_seconds: float = Field(3600.0, alias="GRIDLINK_CONSUMER_WAIT_SECONDS", gt=0)

    # Seconds between the points bank's checks for calls that died midway (an approval before
    # its credit, an order before it was recorded), and how long a call may be under way before
    # it counts as dead (well beyond the time a call takes) and is finished by the check.
    recovery_seconds: float = Field(60.0, alias="GRIDLINK_RECOVERY_SECONDS", gt=0)
    recovery_grace_seconds: float = Field(120.0, alias="GRIDLINK_RECOVERY_GRACE_SECONDS", gt=0)

    # Points per hour of a volunteer act where no community rule of the points bank applies.
    points_per_hour: Decimal = Field(Decimal(10), alias="GRIDLINK_POINTS_PER_HOUR")

    # Registry: phone and ID numbers are encrypted and indexed with keys derived from this.
    pii_secret: SecretStr = Field(SecretStr(DEVELOPMENT_PII_SECRET), alias="GRIDLINK_PII_SECRET")
    # Rows an import or export handles; bigger files are refused with a clear error.
    ledger_max_rows: int = Field(20_000, alias="GRIDLINK_LEDGER_MAX_ROWS")
    ledger_max_bytes: int = Field(10_485_760, alias="GRIDLINK_LEDGER_MAX_BYTES")

    # The time zone that decides what "today" is for dates people enter.
    local_timezone: str = Field("Asia/Shanghai", alias="GRIDLINK_TIMEZONE")

    @model_validator(mode="after")
    def production_has_its_own_secret(self) -> Settings:
        secret = self.pii_secret.get_secret_value()
        weak = secret == DEVELOPMENT_PII_SECRET or len(secret) < 32 or secret.lower().startswith("change")
        if self.environment == "production" and weak:
            raise ValueError(
                "GRIDLINK_PII_SECRET must be a random secret of at least 32 characters in production"
            )
        return self

    def database_name(self, service: str) -> str:
        return f"{self.db_prefix}_{service}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def local_zone() -> ZoneInfo:
    """Where the suite's users are (GRIDLINK_TIMEZONE): their days and months."""
    return ZoneInfo(get_settings().local_timezone)


def local_today() -> date:
    """Today where the suite's users are, whatever the server's clock zone."""
    return datetime.now(local_zone()).date()
