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

from tracker import pollconfig
from tracker.errors import ConfigError
from tracker.schedule import ScheduleSettings
from tracker.store import ingest, schema
from tracker.store.dbapi import Database

if TYPE_CHECKING:  # imported where used: `tracker check` and `tracker feeds` fetch nothing
    from sqlalchemy.engine import Engine

    from tracker.config import Config
    from tracker.fetch import FetchSettings
    from tracker.settings import Settings

log = logging.getLogger("tracker")


@dataclass
class App:
    config_path: Path
    db: Database  # the poller's plain connections (no SQLAlchemy: see tracker.store.dbapi)

    @functools.cached_property
    def config(self) -> Config:
        """feeds.yaml, validated (``build`` does it at once unless asked not to)."""
        from tracker.config import load_config

        return load_config(self.config_path)

    @functools.cached_property
    def poll_config(self) -> pollconfig.Loaded:
        """What polling needs from feeds.yaml: remembered from an earlier run while the file is
        unchanged, so a poll need not import pydantic (tracker.pollconfig)."""
        return pollconfig.load(self.config_path, self.db, lambda: self.config)

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

        engine = make_engine(self.db.url)
        self.db.share_pool(engine)  # one set of connections per process
        return engine

    def replace_config(self, config: Config) -> None:
        """A reloaded feeds.yaml (the daemon's SIGHUP); what was derived from the old one goes."""
        self.config = config
        self.__dict__.pop("poll_config", None)

    @property
    def fetch_settings(self) -> FetchSettings:
        return self.config.fetch_settings()

    @property
    def schedule_settings(self) -> ScheduleSettings:
        return self.config.schedule_settings()


def build(
    *,
    config_path: Path | str | None = None,
    database_url: str | None = None,
    settings: Settings | None = None,
    validate: bool = True,
) -> App:
    """Read and validate feeds.yaml (raises ConfigError on a bad config; ``validate=False``: when
    first needed) and open the database; the paths not given come from ``settings`` (the
    environment's if None)."""
    if config_path is None or database_url is None:
        if settings is None:
            from tracker.settings import Settings

            settings = Settings()
        config_path = config_path or settings.config
        database_url = database_url or settings.database_url
    path = Path(config_path)
    try:
        db = Database(database_url)
    except ValueError as exc:
        raise ConfigError(f"database URL: {exc}") from exc
    app = App(config_path=path, db=db)
    if settings is not None:
        app.settings = settings
    if validate:
        from tracker.config import load_config

        app.config = load_config(path)
    return app


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
    added, changed, disabled = ingest.sync_feeds(app.db, app.poll_config.config.feeds)
    pollconfig.remember(app.db, app.poll_config)
    events = baseline_store.load(app.engine, now=datetime.now(UTC))
    return InitReport(before, after, added, changed, disabled, events)


def ensure_ready(app: App) -> None:
    """Upgrade an out-of-date schema and sync feeds; commands that write call this first."""
    if schema.current_revision(app.db) != schema.HEAD:
        init(app)
    else:
        ingest.sync_feeds(app.db, app.poll_config.config.feeds)
        pollconfig.remember(app.db, app.poll_config)
