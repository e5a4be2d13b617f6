"""The write path against a real SQLite file: dedup, cross-feed identity, updates in place, leases."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from tracker.models import Entry, Evidence, Tags
from tracker.store import ingest, queries, schema
from tracker.store.db import make_engine
from tracker.store.ingest import FeedSpec, FeedUpdate

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    eng = make_engine(f"sqlite:///{tmp_path / 'tracker.db'}")
    schema.upgrade(eng)
    ingest.sync_feeds(
        eng,
        [FeedSpec("http://127.0.0.1:1/a.xml", "Feed A"), FeedSpec("http://127.0.0.1:1/b.xml", "Feed B")],
    )
    return eng


def feed_ids(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {r.name: r.id for r in conn.execute(select(ingest.FEED.c.name, ingest.FEED.c.id))}


def entry(key: str, *, link: str | None, title: str = "Talks in Istanbul", body: str = "Ukraine and Russia") -> Entry:
    digest = hashlib.sha256(f"{title}\n{body}".encode()).hexdigest()[:32]
    return Entry(
        dedup_key=key,
        guid=key.removeprefix("guid:") if key.startswith("guid:") else None,
        link=link,
        title=title,
        summary=body,
        content_html=f"<p>{body}</p>",
        text=f"{title}\n{body}",
        published=NOW - timedelta(hours=1),
        updated=None,
        date_fallback=None,
        author=None,
        language="en",
        content_hash=digest,
    )


TAGS = Tags(
    relevant=True,
    score=0.9,
    mediators=("turkey",),
    obstacles=("territory",),
    evidence=(Evidence("turkey", "mediator", "Istanbul", 9, 17),),
)


def update_for(feed_id: int, outcome: str = "ok") -> FeedUpdate:
    return FeedUpdate(
        feed_id=feed_id,
        outcome=outcome,
        status=200,
        error=None,
        fetched_at=NOW,
        next_due_at=NOW + timedelta(minutes=30),
        consecutive_failures=0,
        elapsed=0.1,
        etag='"v1"',
    )


def count(engine: Engine, table: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_same_article_in_two_feeds_is_one_item_with_both_sources(engine: Engine) -> None:
    ids = feed_ids(engine)
    a = ingest.apply_feed_result(
        engine, update_for(ids["Feed A"]), [entry("guid:a-1", link="https://ex.org/story")], [TAGS], now=NOW
    )
    b = ingest.apply_feed_result(
        engine, update_for(ids["Feed B"]), [entry("guid:b-77", link="https://ex.org/story")], [TAGS], now=NOW
    )
    assert (a.new, a.linked) == (1, 0)
    assert (b.new, b.linked) == (0, 1)
    assert count(engine, ingest.ITEM) == 1
    assert count(engine, ingest.SOURCE) == 2
    with engine.connect() as conn:
        item_id = conn.execute(select(ingest.ITEM.c.id)).scalar_one()
        assert queries.sources_of(conn, [item_id])[item_id] == ["Feed A", "Feed B"]
        assert conn.execute(select(ingest.ITEM.c.source_count)).scalar_one() == 2


def test_repolling_never_duplicates(engine: Engine) -> None:
    fid = feed_ids(engine)["Feed A"]
    entries = [entry(f"guid:{i}", link=f"https://ex.org/{i}", title=f"Story {i}") for i in range(5)]
    first = ingest.apply_feed_result(engine, update_for(fid), entries, [TAGS] * 5, now=NOW)
    again = ingest.apply_feed_result(engine, update_for(fid), entries, [TAGS] * 5, now=NOW)
    assert first.new == 5
    assert (again.new, again.updated, again.linked) == (0, 0, 0)
    assert count(engine, ingest.ITEM) == 5
    assert count(engine, ingest.TAG) == 10  # one mediator + one obstacle each


def test_changed_content_updates_in_place(engine: Engine) -> None:
    fid = feed_ids(engine)["Feed A"]
    ingest.apply_feed_result(engine, update_for(fid), [entry("guid:x", link="https://ex.org/x")], [TAGS], now=NOW)
    changed = entry("guid:x", link="https://ex.org/x", title="Talks in Istanbul resume", body="Updated text")
    plain = Tags(relevant=True, score=0.5, obstacles=("security_guarantees",))
    res = ingest.apply_feed_result(engine, update_for(fid), [changed], [plain], now=NOW + timedelta(hours=1))
    assert (res.new, res.updated) == (0, 1)
    with engine.connect() as conn:
        row = conn.execute(select(ingest.ITEM)).one()
        tags = {r.tag for r in conn.execute(select(ingest.TAG.c.tag))}
    assert row.title == "Talks in Istanbul resume"
    assert row.updated_at == NOW + timedelta(hours=1)
    assert tags == {"security_guarantees"}
    assert count(engine, ingest.ITEM) == 1


def test_entries_without_link_are_keyed_per_feed(engine: Engine) -> None:
    ids = feed_ids(engine)
    e = entry("hash:abc", link=None)
    ingest.apply_feed_result(engine, update_for(ids["Feed A"]), [e], [TAGS], now=NOW)
    ingest.apply_feed_result(engine, update_for(ids["Feed A"]), [e], [TAGS], now=NOW)
    assert count(engine, ingest.ITEM) == 1


def test_outcome_is_recorded_on_the_feed(engine: Engine) -> None:
    fid = feed_ids(engine)["Feed A"]
    failed = FeedUpdate(
        feed_id=fid,
        outcome="error",
        status=500,
        error="HTTP 500",
        fetched_at=NOW,
        next_due_at=NOW + timedelta(minutes=10),
        consecutive_failures=3,
        elapsed=0.2,
    )
    ingest.apply_feed_result(engine, failed, now=NOW)
    health = {r["name"]: r for r in queries.feed_health(engine)}["Feed A"]
    assert health["last_error"] == "HTTP 500"
    assert health["consecutive_failures"] == 3
    assert health["last_success_at"] is None
    assert health["next_due_at"] == NOW + timedelta(minutes=10)
    gone = dataclasses.replace(failed, outcome="gone", disable_reason="HTTP 410 Gone")
    ingest.apply_feed_result(engine, gone, now=NOW)
    health = {r["name"]: r for r in queries.feed_health(engine)}["Feed A"]
    assert health["enabled"] is False
    assert health["disabled_reason"] == "HTTP 410 Gone"


def test_claims_are_leased_and_exclusive(engine: Engine) -> None:
    first = ingest.claim_due(engine, now=NOW, worker="w1", lease=timedelta(minutes=5))
    second = ingest.claim_due(engine, now=NOW, worker="w2", lease=timedelta(minutes=5))
    assert {c.request.url for c in first} == {"http://127.0.0.1:1/a.xml", "http://127.0.0.1:1/b.xml"}
    assert second == []
    later = ingest.claim_due(engine, now=NOW + timedelta(minutes=6), worker="w2", lease=timedelta(minutes=5))
    assert len(later) == 2  # an expired lease (a crashed worker) is taken over


def test_sync_feeds_disables_removed_and_keeps_items(engine: Engine) -> None:
    added, changed, disabled = ingest.sync_feeds(engine, [FeedSpec("http://127.0.0.1:1/a.xml", "Feed A2")])
    assert (added, changed, disabled) == (0, 1, 1)
    names = {r["name"]: r["enabled"] for r in queries.feed_health(engine)}
    assert names == {"Feed A2": True, "Feed B": False}


def test_schema_upgrade_is_idempotent(tmp_path: Path) -> None:
    eng = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    assert schema.upgrade(eng) == (None, schema.head_revision(eng))
    assert schema.upgrade(eng)[0] == schema.head_revision(eng)
    with eng.connect() as conn:
        mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
    assert mode == "wal"


def test_head_constant_matches_the_newest_migration() -> None:
    assert schema.migrations_head() == schema.HEAD
