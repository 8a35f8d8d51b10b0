"""Runtime configuration: one typed ``Settings``, read from ``CHORUS_*`` variables.

Nothing reads the environment at import time; callers build settings with ``get_settings()``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHORUS_", env_file=None, extra="ignore")

    database_url: str = "sqlite:///./var/chorus.db"
    storage_url: str = "file://./var/blobs"
    key_store_url: str = Field(
        default="tmpfs:///dev/shm",
        description="where bucket keys live, never on disk: tmpfs://PATH, redis://… or memory://",
    )
    policy: str = Field(
        default="demo", description="built-in policy name (default, demo) or a TOML file path"
    )
    consent_public_key: str | None = Field(
        default=None, description="Ed25519 public key as PEM text or a path to a PEM file"
    )
    release_interval: str | None = Field(
        default=None, description="overrides the policy's release_interval when set"
    )
    scheduler_enabled: bool = True
    sweep_interval_s: int = Field(default=3600, ge=10)
    decoder_workers: int = Field(default=4, ge=1, le=64)
    model_poll_s: float = Field(
        default=2.0,
        ge=0,
        le=3600,
        description="seconds a replica serves the review model it knows before it asks the "
        "database which version is promoted",
    )
    retrain_interval: str = Field(
        default="hourly", description="how often the review model retrains (name or seconds)"
    )
    forwarded_allow_ips: str | None = Field(
        default=None,
        description="addresses of the proxies whose X-Forwarded-Proto/-For to trust, comma "
        "separated, or * (only when nothing but the proxy can reach the service); unset: "
        "trust none",
    )
    storage_min_free_mb: int = Field(
        default=100, ge=0, description="/readyz is not ready when the file store has less free"
    )
    idempotency_ttl_s: int = Field(
        default=3600, ge=60, le=86400, description="how long an upload's Idempotency-Key holds"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="close a connection whose request headers "
        "are not complete this long after it opened or after their first byte",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)

    @field_validator("database_url", "storage_url", "key_store_url")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()


@lru_cache(maxsize=1)
def _cached_settings() -> Settings:
    return Settings()


def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return _cached_settings()


def reset_settings_cache() -> None:
    _cached_settings.cache_clear()
