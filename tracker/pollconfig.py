"""What a poll needs from feeds.yaml, as plain data, remembered in the database between runs.

Validating feeds.yaml takes pydantic, and importing pydantic and building the config models costs
~0.1 s of CPU: a fifth of a cron-driven ``tracker poll --once`` whose feeds all answer 304.  What
validation makes of a given file never changes, so the result (the feed list, fetch and schedule
settings, taxonomy overrides) is kept in the ``meta`` table, keyed by a hash of the file's bytes and
tracker's version; while the file is unchanged, a poll reads it back instead of validating again.
A missing, stale or unreadable copy just means validating; the daemon and every other command
always validate.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracker import __version__
from tracker.errors import ConfigError
from tracker.schedule import ScheduleSettings
from tracker.store.dbapi import Database
from tracker.store.ingest import FeedSpec

if TYPE_CHECKING:
    from tracker.config import Config
    from tracker.fetch import FetchSettings

META_KEY = "poll_config"


@dataclass(frozen=True)
class PollConfig:
    feeds: tuple[FeedSpec, ...]
    fetch: FetchSettings
    schedule: ScheduleSettings
    taxonomy: dict[str, Any]  # feeds.yaml's overrides of the packaged taxonomy (validated)

    @classmethod
    def of(cls, config: Config) -> PollConfig:
        return cls(
            feeds=feed_specs(config),
            fetch=config.fetch_settings(),
            schedule=config.schedule_settings(),
            taxonomy=config.taxonomy,
        )

    def to_data(self) -> dict[str, Any]:
        """Plain JSON-able data (``from_data`` reads it back)."""
        schedule = {
            k: v.total_seconds() if isinstance(v, timedelta) else v
            for k, v in dataclasses.asdict(self.schedule).items()
        }
        return {
            "feeds": [dataclasses.astuple(f) for f in self.feeds],
            "fetch": dataclasses.asdict(self.fetch),
            "schedule": schedule,
            "taxonomy": self.taxonomy,
        }

    @classmethod
    def from_data(cls, d: dict[str, Any]) -> PollConfig:
        from tracker.fetch import FetchSettings  # asyncio and the transport: not for `tracker check`, `tracker feeds`

        return cls(
            feeds=tuple(FeedSpec(*f) for f in d["feeds"]),
            fetch=FetchSettings(**d["fetch"]),
            schedule=ScheduleSettings(**d["schedule"]),
            taxonomy=d["taxonomy"],
        )


def feed_specs(config: Config) -> tuple[FeedSpec, ...]:
    """The feeds as the database's feed table needs them."""
    return tuple(
        FeedSpec(
            url=str(f.url),
            name=f.name,
            language=f.language,
            interval_seconds=int(f.interval) if f.interval else None,
            enabled=f.enabled,
        )
        for f in config.feeds
    )


@dataclass(frozen=True)
class Loaded:
    config: PollConfig
    key: str  # identifies the file's bytes (and this tracker's version)
    remembered: bool  # read back from the database, not validated now


def load(path: Path, db: Database, validate: Callable[[], Config]) -> Loaded:
    """The file's PollConfig: the database's copy when it was made from the same bytes, else
    ``validate()`` (which raises ConfigError on a bad file)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (set --config or TRACKER_CONFIG)") from None
    key = hashlib.sha256(__version__.encode() + b"\0" + data).hexdigest()
    try:
        with db.transaction(write=False) as conn:
            cur = conn.cursor()
            cur.execute(f"SELECT value FROM meta WHERE key = {'%s' if db.pg else '?'}", (META_KEY,))
            row = cur.fetchone()
        if row is not None:
            stored = json.loads(row[0])
            if stored["key"] == key:
                return Loaded(PollConfig.from_data(stored["config"]), key, remembered=True)
    except Exception:  # no meta table yet (a new database), or a copy this version cannot read
        pass
    return Loaded(PollConfig.of(validate()), key, remembered=False)


def remember(db: Database, loaded: Loaded) -> None:
    """Keep ``loaded`` for the next poll (call once the schema exists)."""
    if loaded.remembered:
        return
    value = json.dumps({"key": loaded.key, "config": loaded.config.to_data()}, ensure_ascii=False)
    with db.transaction() as conn:
        cur = conn.cursor()
        q = "%s" if db.pg else "?"
        cur.execute(
            f"INSERT INTO meta (key, value) VALUES ({q}, {q}) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (META_KEY, value),
        )
