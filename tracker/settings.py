"""Deployment settings and secrets: TRACKER_* environment variables, never feeds.yaml.

A module of its own so that what never reads them (a `tracker poll` given its config and database
by option or environment variable) does not import pydantic-settings.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from tracker.store.dbapi import DEFAULT_DATABASE_URL


class Settings(BaseSettings):
    """Deployment settings and secrets, from TRACKER_* environment variables (never from feeds.yaml)."""

    model_config = SettingsConfigDict(env_prefix="TRACKER_", extra="ignore")

    config: Path = Path("feeds.yaml")
    database_url: str = DEFAULT_DATABASE_URL
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    smtp_timeout: float = 30.0
    mail_from: str = "tracker@localhost"
    base_url: str = "http://127.0.0.1:8080"
    web_host: str = "127.0.0.1"
    web_port: int = 8080
    admin_token: SecretStr | None = None
    log_format: str = Field(default="text", pattern="^(text|json)$")
    log_level: str = "INFO"
