"""A poll remembers what it needs from feeds.yaml in the database while the file is unchanged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tracker import app as tracker_app
from tracker import pollconfig
from tracker.config import ConfigError, load_config
from tracker.pollconfig import PollConfig

CONFIG = """\
settings:
  user_agent: test-agent/1.0
  concurrency: 7
  per_host_concurrency: 3
  read_timeout: 9s
  default_interval: 20m
  max_interval: 3h
feeds:
  - name: One
    url: http://127.0.0.1:9/one.xml
    language: uk
    interval: 15m
  - name: Two
    url: http://127.0.0.1:9/two.xml
    enabled: false
taxonomy:
  mediators:
    un:
      strong: [Zorbanian envoy]
"""


@pytest.fixture
def ready(tmp_path: Path) -> tracker_app.App:
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(CONFIG, encoding="utf-8")
    a = tracker_app.build(config_path=cfg, database_url=f"sqlite:///{tmp_path / 'tracker.db'}", validate=False)
    tracker_app.ensure_ready(a)  # creates the schema, syncs the feeds, remembers the config
    assert a.poll_config.remembered is False
    return a


def fresh(a: tracker_app.App) -> tracker_app.App:
    return tracker_app.build(config_path=a.config_path, database_url=a.db.url, validate=False)


def test_an_unchanged_file_is_read_back_equal_to_validating_it(ready: tracker_app.App) -> None:
    again = fresh(ready).poll_config
    assert again.remembered is True
    validated = PollConfig.of(load_config(ready.config_path))
    assert again.config == validated
    assert again.config.fetch.user_agent == "test-agent/1.0" and again.config.fetch.per_host_concurrency == 3
    assert again.config.schedule.default_interval.total_seconds() == 1200
    assert [f.interval_seconds for f in again.config.feeds] == [900, None]
    assert again.config.taxonomy == {"mediators": {"un": {"strong": ["Zorbanian envoy"]}}}


def test_any_change_to_the_file_validates_it_again(ready: tracker_app.App) -> None:
    ready.config_path.write_text(CONFIG.replace("concurrency: 7", "concurrency: 8"), encoding="utf-8")
    b = fresh(ready)
    assert b.poll_config.remembered is False and b.poll_config.config.fetch.concurrency == 8
    tracker_app.ensure_ready(b)
    assert fresh(ready).poll_config.config.fetch.concurrency == 8


def test_a_broken_file_is_an_error_whatever_was_remembered(ready: tracker_app.App) -> None:
    ready.config_path.write_text(CONFIG.replace("concurrency: 7", "concurrency: many"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"feeds\.yaml:3: settings\.concurrency"):
        fresh(ready).poll_config  # noqa: B018


def test_an_unreadable_copy_means_validating(ready: tracker_app.App) -> None:
    def store(value: str) -> None:
        with ready.db.transaction() as conn:
            conn.execute("UPDATE meta SET value = ? WHERE key = ?", (value, pollconfig.META_KEY))

    with ready.db.transaction() as conn:
        key = json.loads(conn.execute("SELECT value FROM meta WHERE key = ?", (pollconfig.META_KEY,)).fetchone()[0])[
            "key"
        ]
    for broken in ('{"key": 1', json.dumps({"key": key, "config": '{"feeds": "?"}'})):
        store(broken)
        b = fresh(ready)
        assert b.poll_config.remembered is False and b.poll_config.config == ready.poll_config.config


def test_a_remembering_poll_never_imports_pydantic(ready: tracker_app.App) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from tracker import app\n"
        f"a = app.build(config_path=Path({str(ready.config_path)!r}), database_url={ready.db.url!r}, validate=False)\n"
        "app.ensure_ready(a)\n"
        "print(a.poll_config.remembered, a.poll_config.config.fetch.concurrency, 'pydantic' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "7", "False"]
