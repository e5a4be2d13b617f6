"""The CLI contract, run as a user would: real processes, a real feed server, a real SQLite file."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from feedfarm import FeedFarm


@pytest.fixture
def farm() -> Iterator[FeedFarm]:
    with FeedFarm(feeds=4, items=5) as f:
        yield f


def setup(tmp_path: Path, farm: FeedFarm) -> dict[str, str]:
    cfg = tmp_path / "feeds.yaml"
    lines = ["settings:", "  per_host_concurrency: 8", "feeds:"]
    for i, url in enumerate(farm.urls()):
        lines += [f"  - name: farm {i}", f"    url: {url}", "    language: en"]
    lines += ["  - name: broken", f"    url: {farm.url(0, '/status/503?retry_after=120')}"]
    cfg.write_text("\n".join(lines) + "\n")
    return os.environ | {"TRACKER_CONFIG": str(cfg), "TRACKER_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}"}


def tracker(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tracker", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_init_poll_feeds_export(tmp_path: Path, farm: FeedFarm) -> None:
    env = setup(tmp_path, farm)
    r = tracker(env, "init")
    assert r.returncode == 0, r.stderr
    assert "feeds: 5 added" in r.stdout and "baseline: 14 events" in r.stdout
    assert tracker(env, "init").returncode == 0  # idempotent

    r = tracker(env, "poll", "--once")
    assert r.returncode == 0, r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"feeds: 4 ok, 0 not modified, 1 failed; items: 20 new, 0 updated; [\d.]+ s", last), last
    assert "broken: HTTP 503" in r.stderr

    r = tracker(env, "poll", "--once", "--all")
    assert re.search(r"feeds: 0 ok, 4 not modified, 1 failed; items: 0 new", r.stdout), r.stdout  # all 304

    feeds = json.loads(tracker(env, "feeds", "--format", "json").stdout)
    by_name = {f["name"]: f for f in feeds}
    assert by_name["farm 0"]["item_count"] == 5 and by_name["farm 0"]["last_outcome"] == "not_modified"
    broken = by_name["broken"]
    assert broken["consecutive_failures"] == 2 and broken["last_error"] == "HTTP 503"
    due = datetime.fromisoformat(broken["next_due_at"]) - datetime.fromisoformat(broken["last_fetched_at"])
    assert due.total_seconds() == pytest.approx(120, abs=2)  # Retry-After honoured exactly

    lines = [json.loads(x) for x in tracker(env, "export", "--format", "jsonl").stdout.splitlines()]
    kinds = [x["kind"] for x in lines]
    assert kinds.count("baseline") == 14 and kinds.count("item") == 20
    item = next(x for x in lines if x["kind"] == "item")
    assert {"id", "date", "title", "summary", "link", "source", "sources", "mediators", "obstacles", "evidence"} <= set(
        item
    )
    assert item["source"].startswith("farm ")
    assert len({x["link"] for x in lines if x["kind"] == "item"}) == 20

    rows = list(csv.DictReader(io.StringIO(tracker(env, "export", "--format", "csv").stdout)))
    assert len(rows) == 34 and rows[0]["kind"] == "baseline"


def test_status_timeline_and_retag(tmp_path: Path, farm: FeedFarm) -> None:
    env = setup(tmp_path, farm)
    tracker(env, "init")
    tracker(env, "poll", "--once")
    status = json.loads(tracker(env, "status", "--format", "json").stdout)
    assert set(status) >= {"updated_at", "mediators", "obstacles"}
    assert {"turkey", "china", "africa", "un", "vatican", "latin_america"} <= set(status["mediators"])
    assert set(status["obstacles"]) == {"territory", "security_guarantees", "accountability", "international_pressure"}
    r = tracker(env, "timeline", "--mediator", "turkey", "--format", "json")
    assert r.returncode == 0, r.stderr
    r = tracker(env, "retag")
    assert r.returncode == 0 and r.stdout.startswith("retagged 20 items")


def test_usage_errors_exit_2(tmp_path: Path, farm: FeedFarm) -> None:
    env = setup(tmp_path, farm)
    assert tracker(env, "poll").returncode == 2  # needs --once
    assert tracker(env, "no-such-command").returncode == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("feeds: {oops: 1}\n")
    r = tracker(env | {"TRACKER_CONFIG": str(bad)}, "poll", "--once")
    assert r.returncode == 2 and f"{bad}:1: feeds" in r.stderr.replace("\n", "")


def test_help_lists_every_command() -> None:
    r = subprocess.run([sys.executable, "-m", "tracker", "--help"], capture_output=True, text=True)
    for cmd in ("init", "check", "feeds", "poll", "export", "retag", "tag", "eval", "status", "timeline", "digest",
                "serve", "run"):  # fmt: skip
        assert re.search(rf"│ {cmd}\s", r.stdout), cmd


def test_every_command_is_mapped_to_the_module_that_defines_it() -> None:
    import importlib

    from tracker import cli

    for name in cli.MODULES:
        importlib.import_module(f"tracker.cli.{name}")
    registered = {c.name or (c.callback.__name__ if c.callback else "") for c in cli.app.registered_commands}
    registered |= {g.name for g in cli.app.registered_groups if g.name}
    assert registered == set(cli.COMMANDS)
    assert cli._command_of(["--config", "x.yaml", "--db", "sqlite://", "poll", "--once"]) == "poll"
    assert cli._command_of(["--help"]) is None


def test_poll_start_up_imports_only_what_it_uses() -> None:
    """`tracker poll --once` is a cron job: its start-up must not pay for what it never runs."""
    code = (
        "import sys\n"
        "from tracker import cli\n"
        "cli._register(['check'])\n"
        "import tracker.app\n"
        "print(sorted(m for m in ('httpx', 'rich') if m in sys.modules))\n"
        "import tracker.update\n"
        "unused = ('rich', 'click', 'pygments', 'httpx', 'tracker.mailer', 'jinja2',  # plain URLs need no httpx\n"
        "          'multiprocessing',  # nor a process pool\n"
        "          'feedparser', 'ftfy', 'tracker.parse', 'tracker.tag',  # a cycle of 304s parses nothing\n"
        "          'sqlalchemy', 'sqlmodel', 'alembic',  # it writes through the driver (tracker.store.dbapi)\n"
        "          'pydantic_settings')  # and is given its config and database (TRACKER_CONFIG, --db)\n"
        "print(sorted(m for m in unused if m in sys.modules))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    config_only, poll = r.stdout.splitlines()
    assert config_only == "[]"  # `tracker check` and `tracker feeds` need no HTTP client and no table yet
    assert poll == "[]"


def test_a_poll_of_unchanged_feeds_loads_no_parser_orm_or_validation_library(tmp_path: Path, farm: FeedFarm) -> None:
    """End to end, as cron runs it: the second `tracker poll --once` (every feed answers 304, feeds.yaml
    unchanged) imports neither the parser, the tagger, SQLAlchemy, pydantic, rich nor httpx."""
    env = setup(tmp_path, farm) | {"PYTHONDONTWRITEBYTECODE": "1"}
    cfg = Path(env["TRACKER_CONFIG"])
    cfg.write_text(
        "\n".join(line for line in cfg.read_text().splitlines() if "/status/503" not in line and "broken" not in line)
    )
    assert tracker(env, "poll", "--once").returncode == 0
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "tracker", "poll", "--once", "--all"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "4 not modified" in r.stdout, r.stdout + r.stderr
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in r.stderr.splitlines() if "|" in line}
    assert "asyncio" in imported and "tracker" in imported  # the check sees what it should
    unused = {
        "feedparser",
        "ftfy",
        "nh3",
        "sqlalchemy",
        "sqlmodel",
        "pydantic",
        "rich",
        "click",
        "httpx",
        "multiprocessing",
    }
    assert imported & unused == set(), r.stderr


def test_startup_pauses_the_collector_and_freezes_what_it_built() -> None:
    import gc

    from tracker.cli.app import startup

    assert gc.isenabled()
    try:
        with startup():
            assert not gc.isenabled()
            with startup():
                pass
            assert not gc.isenabled()  # the outer one decides
        assert gc.isenabled() and gc.get_freeze_count() > 0
        with pytest.raises(RuntimeError), startup():
            raise RuntimeError
        assert gc.isenabled()
    finally:
        gc.unfreeze()


def test_collector_paused_restores_what_it_found() -> None:
    import gc

    from tracker.cli.app import collector_paused

    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # paused by someone else: left paused
    finally:
        gc.enable()
