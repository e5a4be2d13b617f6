"""The composition root: the one place where settings, config, database and stages are wired.

CLI commands, the daemon and the web app receive an ``App`` and never build engines or read the
environment themselves, so tests can build their own with a temp database and config.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from tracker.config import Config, ConfigError, load_config
from tracker.schedule import ScheduleSettings
from tracker.store import ingest, schema
from tracker.store.dbapi import Database
from tracker.store.ingest import FeedSpec

if TYPE_CHECKING:  # imported where used: `tracker check` and `tracker feeds` fetch nothing
    from sqlalchemy.engine import Engine

    from tracker.fetch import FetchSettings
    from tracker.settings import Settings

log = logging.getLogger("tracker")


@dataclass
class App:
    config: Config
    config_path: Path
    db: Database  # the poller's plain connections (no SQLAlchemy: see tracker.store.dbapi)

    @functools.cached_property
    def settings(self) -> Settings:
        """TRACKER_* environment settings, read when first needed (a poll given its config and
        database never needs them, nor pydantic-settings)."""
        from tracker.settings import Settings

        return Settings()

    @functools.cached_property
    def engine(self) -> Engine:
        """SQLAlchemy's engine on the same database, for queries, the web and migrations."""
        from tracker.store.db import make_engine

        return make_engine(self.db.url)

    @property
    def database_url(self) -> str:
        return self.db.url

    @property
    def fetch_settings(self) -> FetchSettings:
        return fetch_settings(self.config)

    @property
    def schedule_settings(self) -> ScheduleSettings:
        return schedule_settings(self.config)


def build(
    *,
    config_path: Path | str | None = None,
    database_url: str | None = None,
    settings: Settings | None = None,
) -> App:
    """Read feeds.yaml and open the database (raises ConfigError on a bad config); the paths not
    given come from ``settings`` (the environment's if None)."""
    if settings is None and (config_path is None or database_url is None):
        from tracker.settings import Settings

        settings = Settings()
    path = Path(config_path or settings.config)  # type: ignore[union-attr]
    config = load_config(path)
    try:
        db = Database(database_url or settings.database_url)  # type: ignore[union-attr]
    except ValueError as exc:
        raise ConfigError(f"database URL: {exc}") from exc
    app = App(config=config, config_path=path, db=db)
    if settings is not None:
        app.settings = settings
    return app


def fetch_settings(config: Config) -> FetchSettings:
    return config.fetch_settings()


def schedule_settings(config: Config) -> ScheduleSettings:
    return config.schedule_settings()


def feed_specs(config: Config) -> list[FeedSpec]:
    return [
        FeedSpec(
            url=str(f.url),
            name=f.name,
            language=f.language,
            interval_seconds=int(f.interval) if f.interval else None,
            enabled=f.enabled,
        )
        for f in config.feeds
    ]


@dataclass(frozen=True)
class InitReport:
    revision_before: str | None
    revision_after: str | None
    feeds_added: int
    feeds_changed: int
    feeds_disabled: int
    baseline_events: int


def init(app: App) -> InitReport:
    """Create or upgrade the schema, sync feeds from the config, load the baseline (idempotent)."""
    from tracker.store import baseline as baseline_store  # only init loads the baseline

    before, after = schema.upgrade(app.engine)
    added, changed, disabled = ingest.sync_feeds(app.db, feed_specs(app.config))
    events = baseline_store.load(app.engine, now=datetime.now(UTC))
    return InitReport(before, after, added, changed, disabled, events)


def ensure_ready(app: App) -> None:
    """Upgrade an out-of-date schema and sync feeds; commands that write call this first."""
    if schema.current_revision(app.db) != schema.HEAD:
        init(app)
    else:
        ingest.sync_feeds(app.db, feed_specs(app.config))
