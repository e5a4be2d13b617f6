"""Every file of the feedparser test corpus through the same parse (and store) path as fetched feeds."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tracker.models import Tags
from tracker.parse import parse_feed
from tracker.store import ingest, schema
from tracker.store.db import make_engine
from tracker.store.dbapi import Database
from tracker.store.ingest import FeedSpec, FeedUpdate

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "feedparser-tests"
NOW = datetime(2026, 11, 20, tzinfo=UTC)
SCRIPT = re.compile(r"<\s*script", re.IGNORECASE)
ON_ATTR = re.compile(r"<[^>]*\son[a-z]+\s*=", re.IGNORECASE)
JS_URL = re.compile(r"(href|src|action|formaction|data)\s*=\s*[\"']?\s*(javascript|vbscript|data):", re.IGNORECASE)


def corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        pytest.skip(f"feedparser corpus not found at {CORPUS} (expected ../shared beside the repo)")
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name != "LICENSE")


def hostile(fragment: str) -> list[str]:
    found = []
    for text in (fragment, html.unescape(fragment)):
        for name, rx in (("script", SCRIPT), ("on* attribute", ON_ATTR), ("script URL", JS_URL)):
            if rx.search(text):
                found.append(name)
    return found


def test_every_corpus_file_parses_and_stores_safely(tmp_path: Path) -> None:
    files = corpus_files()
    assert len(files) > 2000
    engine = make_engine(f"sqlite:///{tmp_path / 'corpus.db'}")
    schema.upgrade(engine)
    ingest.sync_feeds(Database.of(engine), [FeedSpec("http://127.0.0.1/corpus", "corpus")])
    crashes: list[str] = []
    unsafe: list[str] = []
    outcomes = {"entries": 0, "error": 0, "warning": 0}
    stored = 0
    for path in files:
        url = "http://127.0.0.1/" + path.relative_to(CORPUS).as_posix()
        try:
            parsed = parse_feed(path.read_bytes(), url=url, headers={}, now=NOW)
        except Exception as exc:  # the promise: 0 crashes
            crashes.append(f"{path}: {exc!r}")
            continue
        if parsed.entries:
            outcomes["entries"] += 1
        elif parsed.error:
            outcomes["error"] += 1
        else:
            assert parsed.warning, path  # no items: the reason is recorded (e.g. "the feed has no entries")
            outcomes["warning"] += 1
        for e in parsed.entries:
            for field in (e.content_html, e.title, e.summary):
                problems = hostile(field) if field is e.content_html else []
                if problems:
                    unsafe.append(f"{path.name}: {problems}: {field[:120]!r}")
        upd = FeedUpdate(
            feed_id=1, outcome="ok", status=200, error=None, fetched_at=NOW, next_due_at=NOW,
            consecutive_failures=0, elapsed=0.0,
        )  # fmt: skip
        tags = [Tags(relevant=False, score=0.0)] * len(parsed.entries)
        counts = ingest.apply_feed_result(Database.of(engine), upd, parsed.entries, tags, now=NOW)
        stored += counts.new + counts.updated + counts.linked
    assert crashes == []
    assert unsafe == []
    assert outcomes["entries"] > 1100
    assert stored > 100  # corpus files reuse guids and links, which dedup folds into few items
    with engine.connect() as conn:
        for (content,) in conn.exec_driver_sql("SELECT content_html FROM item"):
            assert not hostile(content), content[:200]


def test_sanitizer_cases_are_all_neutralised() -> None:
    files = [p for p in corpus_files() if "sanitize" in p.parts]
    assert len(files) > 100
    for path in files:
        parsed = parse_feed(path.read_bytes(), url="http://127.0.0.1/x", headers={}, now=NOW)
        for e in parsed.entries:
            assert not hostile(e.content_html), (path.name, e.content_html[:200])
