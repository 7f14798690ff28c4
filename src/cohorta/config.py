"""Configuration from environment variables (prefix ``COHORTA_``); see docs/operations.md."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cohorta.money import currency_exponent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COHORTA_", env_file=None, extra="ignore")

    database_url: str = Field(
        default="sqlite:///cohorta.db",
        description="SQLAlchemy URL. Default: a SQLite file in the working directory. "
        "PostgreSQL: postgresql+psycopg://user@host:5432/db",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: str = "info"
    currency: str = Field(default="EUR", description="ISO 4217 code of the project's currency")
    timezone: str = Field(default="UTC", description="IANA time zone for relative dates and calendar periods")
    admin_token: str | None = Field(default=None, description="Bearer token with admin rights, for automation")

    # Browser sessions and logins; see docs/access.md.
    session_ttl_seconds: int = Field(default=12 * 3600, ge=60, description="Idle time after which a session ends")
    token_cache_seconds: float = Field(
        default=5.0, ge=0, description="How long a process keeps an API token it looked up (0: look up every time)"
    )
    secure_cookies: bool = Field(default=False, description="Mark the session cookie Secure (serve over HTTPS)")
    login_window_seconds: int = Field(default=900, ge=1, description="Window over which failed logins count")
    login_max_failures_per_account: int = Field(default=5, ge=1)
    login_max_failures_per_address: int = Field(default=20, ge=1)

    # Distribution campaigns: files are written under this folder; webhooks get this timeout per request.
    export_dir: str = Field(default="exports", description="Folder for distribution files and exports")
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_max_attempts: int = Field(default=3, ge=1, le=10)
    webhook_backoff_seconds: float = Field(default=1.0, ge=0, description="First retry delay; doubles each time")
    # Webhook subscriptions (membership notifications): retried from the outbox, with backoff up to an hour.
    webhook_retry_base_seconds: float = Field(default=10.0, ge=0, description="First outbox retry after this")
    webhook_max_retries: int = Field(default=12, ge=1, le=50, description="Attempts before an event is given up")

    scheduler: bool = Field(default=True, description="Run recompute jobs in a thread of the server process")
    stats_period_seconds: int = Field(
        default=600, ge=10, description="How often the segment list's figures are recounted from the members"
    )
    # Predicted CLV (docs/analytics.md#predicted-clv).
    clv_engine: Literal["scipy", "pymc-marketing"] = Field(
        default="scipy", description="How `cohorta clv fit` fits: built-in maximum likelihood, or the [clv] extra"
    )
    clv_horizon_days: int = Field(default=365, ge=1, le=3650, description="Predicted CLV is the spend over this")
    clv_score_period_seconds: int = Field(
        default=86_400, ge=60, description="How often the scheduler re-scores every customer with the model in force"
    )
    clv_fit_max_customers: int = Field(
        default=100_000, ge=100, description="Fit on a random sample of at most this many buyers"
    )
    clv_batch_size: int = Field(default=50_000, ge=100, le=1_000_000, description="Customers scored per transaction")
    read_ahead_threads: int = Field(
        default=8,
        ge=0,
        le=64,
        description="Connections that read a bulk write's rows in parallel before its transaction does, so that a "
        "database larger than memory is read from disk several pages at a time (0: off); docs/operations.md",
    )
    default_sync_period_seconds: int = Field(default=86_400, ge=60, description="Safety-net recompute period")

    # External segment sources; see docs/sources.md.
    secret_key: str | None = Field(
        default=None,
        repr=False,
        description="Fernet key(s) that encrypt source credentials at rest, comma-separated: the first encrypts, "
        "every one decrypts (rotation). Without it, sources cannot store credentials",
    )
    source_sync_period_seconds: int = Field(default=86_400, ge=300, description="Default period between syncs")
    source_timeout_seconds: float = Field(default=30.0, gt=0, description="Timeout of one request to a source")
    source_max_sync_seconds: int = Field(default=1800, ge=10, description="A sync taking longer fails")
    source_max_keys: int = Field(default=5_000_000, ge=1, description="Keys one sync may receive at most")
    source_retry_base_seconds: int = Field(default=60, ge=1, description="First retry after a failed sync; doubles")

    # Limits on input; documented in docs/api.md.
    max_request_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    bulk_max_items: int = Field(default=10_000, ge=1)

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        value = value.upper()
        currency_exponent(value)  # raises ValueError for an unknown code
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("secret_key")
    @classmethod
    def _fernet_keys(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        from cryptography.fernet import Fernet

        for key in value.split(","):
            try:
                Fernet(key.strip())
            except ValueError:
                raise ValueError("COHORTA_SECRET_KEY must be Fernet keys (32 url-safe base64-encoded bytes)") from None
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def currency_exponent(self) -> int:
        return currency_exponent(self.currency)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
