"""The write path against a real SQLite file: dedup, cross-feed identity, updates in place, leases."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Column, MetaData, Table, func, insert, select, update
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg as pg_dialect
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
from sqlalchemy.engine import Engine

from tracker.models import Entry, Evidence, ItemRecord, Tags
from tracker.store import ingest, queries, schema, tables
from tracker.store.db import make_engine
from tracker.store.dbapi import Database, pg_utc, sqlite_utc_text
from tracker.store.ingest import FeedSpec, FeedUpdate
from tracker.store.types import UTCDateTime

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    eng = make_engine(f"sqlite:///{tmp_path / 'tracker.db'}")
    schema.upgrade(eng)
    ingest.sync_feeds(
        Database.of(eng),
        [FeedSpec("http://127.0.0.1:1/a.xml", "Feed A"), FeedSpec("http://127.0.0.1:1/b.xml", "Feed B")],
    )
    return eng


def feed_ids(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {r.name: r.id for r in conn.execute(select(tables.FEED.c.name, tables.FEED.c.id))}


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
        Database.of(engine),
        update_for(ids["Feed A"]),
        [entry("guid:a-1", link="https://ex.org/story")],
        [TAGS],
        now=NOW,
    )
    b = ingest.apply_feed_result(
        Database.of(engine),
        update_for(ids["Feed B"]),
        [entry("guid:b-77", link="https://ex.org/story")],
        [TAGS],
        now=NOW,
    )
    assert (a.new, a.linked) == (1, 0)
    assert (b.new, b.linked) == (0, 1)
    assert count(engine, tables.ITEM) == 1
    assert count(engine, tables.SOURCE) == 2
    with engine.connect() as conn:
        item_id = conn.execute(select(tables.ITEM.c.id)).scalar_one()
        assert queries.sources_of(conn, [item_id])[item_id] == ["Feed A", "Feed B"]
        assert conn.execute(select(tables.ITEM.c.source_count)).scalar_one() == 2


def test_repolling_never_duplicates(engine: Engine) -> None:
    fid = feed_ids(engine)["Feed A"]
    entries = [entry(f"guid:{i}", link=f"https://ex.org/{i}", title=f"Story {i}") for i in range(5)]
    first = ingest.apply_feed_result(Database.of(engine), update_for(fid), entries, [TAGS] * 5, now=NOW)
    again = ingest.apply_feed_result(Database.of(engine), update_for(fid), entries, [TAGS] * 5, now=NOW)
    assert first.new == 5
    assert (again.new, again.updated, again.linked) == (0, 0, 0)
    assert count(engine, tables.ITEM) == 5
    assert count(engine, tables.TAG) == 10  # one mediator + one obstacle each


def test_changed_content_updates_in_place(engine: Engine) -> None:
    fid = feed_ids(engine)["Feed A"]
    ingest.apply_feed_result(
        Database.of(engine), update_for(fid), [entry("guid:x", link="https://ex.org/x")], [TAGS], now=NOW
    )
    changed = entry("guid:x", link="https://ex.org/x", title="Talks in Istanbul resume", body="Updated text")
    plain = Tags(relevant=True, score=0.5, obstacles=("security_guarantees",))
    res = ingest.apply_feed_result(
        Database.of(engine), update_for(fid), [changed], [plain], now=NOW + timedelta(hours=1)
    )
    assert (res.new, res.updated) == (0, 1)
    with engine.connect() as conn:
        row = conn.execute(select(tables.ITEM)).one()
        tags = {r.tag for r in conn.execute(select(tables.TAG.c.tag))}
    assert row.title == "Talks in Istanbul resume"
    assert row.updated_at == NOW + timedelta(hours=1)
    assert tags == {"security_guarantees"}
    assert count(engine, tables.ITEM) == 1


def test_entries_without_link_are_keyed_per_feed(engine: Engine) -> None:
    ids = feed_ids(engine)
    e = entry("hash:abc", link=None)
    ingest.apply_feed_result(Database.of(engine), update_for(ids["Feed A"]), [e], [TAGS], now=NOW)
    ingest.apply_feed_result(Database.of(engine), update_for(ids["Feed A"]), [e], [TAGS], now=NOW)
    assert count(engine, tables.ITEM) == 1


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
    ingest.apply_feed_result(Database.of(engine), failed, now=NOW)
    health = {r["name"]: r for r in queries.feed_health(engine)}["Feed A"]
    assert health["last_error"] == "HTTP 500"
    assert health["consecutive_failures"] == 3
    assert health["last_success_at"] is None
    assert health["next_due_at"] == NOW + timedelta(minutes=10)
    gone = dataclasses.replace(failed, outcome="gone", disable_reason="HTTP 410 Gone")
    ingest.apply_feed_result(Database.of(engine), gone, now=NOW)
    health = {r["name"]: r for r in queries.feed_health(engine)}["Feed A"]
    assert health["enabled"] is False
    assert health["disabled_reason"] == "HTTP 410 Gone"


def test_claims_are_leased_and_exclusive(engine: Engine) -> None:
    first = ingest.claim_due(Database.of(engine), now=NOW, worker="w1", lease=timedelta(minutes=5))
    second = ingest.claim_due(Database.of(engine), now=NOW, worker="w2", lease=timedelta(minutes=5))
    assert {c.request.url for c in first} == {"http://127.0.0.1:1/a.xml", "http://127.0.0.1:1/b.xml"}
    assert second == []
    later = ingest.claim_due(
        Database.of(engine), now=NOW + timedelta(minutes=6), worker="w2", lease=timedelta(minutes=5)
    )
    assert len(later) == 2  # an expired lease (a crashed worker) is taken over


def test_sync_feeds_disables_removed_and_keeps_items(engine: Engine) -> None:
    added, changed, disabled = ingest.sync_feeds(Database.of(engine), [FeedSpec("http://127.0.0.1:1/a.xml", "Feed A2")])
    assert (added, changed, disabled) == (0, 1, 1)
    names = {r["name"]: r["enabled"] for r in queries.feed_health(engine)}
    assert names == {"Feed A2": True, "Feed B": False}


def test_schema_upgrade_is_idempotent(tmp_path: Path) -> None:
    eng = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    assert schema.upgrade(eng) == (None, schema.HEAD)
    assert schema.upgrade(eng)[0] == schema.HEAD
    with eng.connect() as conn:
        mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
    assert mode == "wal"


def test_head_constant_matches_the_newest_migration() -> None:
    assert schema.migrations_head() == schema.HEAD


# --- the hand-written write path (tracker.store.ingest._Cursor) --------------------------------


def feed_update(feed_id: int, at: datetime = NOW, outcome: str = "ok") -> FeedUpdate:
    return dataclasses.replace(update_for(feed_id, outcome), fetched_at=at, next_due_at=at + timedelta(minutes=30))


def fed(upd: FeedUpdate, entries: Sequence[Entry], tags: Sequence[Tags]) -> tuple[FeedUpdate, tuple[ItemRecord, ...]]:
    """One feed's result as ``apply_feed_results`` takes it."""
    return upd, ingest.item_records(entries, tags)


def raw_rows(engine: Engine, sql: str) -> list[tuple[object, ...]]:
    """Rows exactly as stored (no column type processing)."""
    with engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(sql)]


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 11, 20, 12, 0, tzinfo=UTC),
        datetime(2026, 11, 20, 12, 0, 0, 123456, tzinfo=UTC),
        datetime(2026, 11, 20, 14, 30, tzinfo=timezone(timedelta(hours=2, minutes=30))),
        datetime(2026, 3, 1, 0, 0, tzinfo=timezone(timedelta(hours=-5))),  # another day in UTC
        datetime(2026, 11, 20, 12, 0, 7),  # naive means UTC
        datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC),  # the year keeps 4 digits
        None,
    ],
)
def test_datetimes_are_written_as_the_column_type_writes_them(value: datetime | None) -> None:
    sqlite_bind = UTCDateTime().dialect_impl(sqlite_dialect()).bind_processor(sqlite_dialect())
    pg_bind = UTCDateTime().dialect_impl(pg_dialect()).bind_processor(pg_dialect())
    assert sqlite_bind is not None
    assert sqlite_utc_text(value) == sqlite_bind(value)
    expected_pg = pg_bind(value) if pg_bind else UTCDateTime().process_bind_param(value, pg_dialect())
    assert pg_utc(value) == expected_pg
    if value is not None:
        assert pg_utc(value).tzinfo is not None  # type: ignore[union-attr]  # never left to the session time zone


def test_random_datetimes_are_written_as_the_column_type_writes_them() -> None:
    rng = random.Random(11)
    sqlite_bind = UTCDateTime().dialect_impl(sqlite_dialect()).bind_processor(sqlite_dialect())
    assert sqlite_bind is not None
    for _ in range(2000):
        value = datetime(
            rng.randint(1, 9998),
            rng.randint(1, 12),
            rng.randint(1, 28),
            rng.randint(0, 23),
            rng.randint(0, 59),
            rng.randint(0, 59),
            rng.choice([0, rng.randint(0, 999_999)]),
        )
        zone = rng.choice([None, UTC, timezone(timedelta(minutes=rng.randint(-14 * 60, 14 * 60)))])
        value = value.replace(tzinfo=zone)
        assert sqlite_utc_text(value) == sqlite_bind(value), value


def test_stored_values_match_what_sqlalchemy_core_writes(engine: Engine) -> None:
    """Datetimes, booleans, floats and JSON written by the fast path are byte for byte what Core writes."""
    fid = feed_ids(engine)["Feed A"]
    at = datetime(2026, 11, 20, 12, 0, 0, 250000, tzinfo=UTC)
    e = dataclasses.replace(
        entry("guid:t", link="https://ex.org/t"),
        published=datetime(2026, 11, 20, 13, 15, tzinfo=timezone(timedelta(hours=2))),
        updated=datetime(2026, 11, 20, 11, 30, 0, 5),  # naive
    )
    ingest.apply_feed_result(Database.of(engine), feed_update(fid, at), [e], [TAGS], now=at)
    stored = raw_rows(
        engine, "SELECT published_at, updated_at, ingested_at, relevant, score, evidence, mediators FROM item"
    )
    with engine.begin() as conn:  # the same values through Core, into a scratch copy of the row
        conn.exec_driver_sql("CREATE TEMP TABLE core_item AS SELECT * FROM item WHERE 0")
        scratch = Table("core_item", MetaData(), *(Column(c.name, c.type) for c in tables.ITEM.columns))
        conn.execute(
            insert(scratch).values(
                id=1,
                link="x",
                title="t",
                published_at=e.published,
                updated_at=e.updated,
                ingested_at=at,
                content_hash="h",
                relevant=True,
                score=0.9,
                mediators="turkey",
                obstacles="territory",
                evidence=json.dumps([["turkey", "mediator", "Istanbul", 9, 17]], ensure_ascii=False),
                source_count=1,
                feed_id=fid,
            )
        )
        core = [
            tuple(r)
            for r in conn.exec_driver_sql(
                "SELECT published_at, updated_at, ingested_at, relevant, score, evidence, mediators FROM core_item"
            )
        ]
    assert stored == core
    assert stored[0][:3] == ("2026-11-20 11:15:00.000000", "2026-11-20 11:30:00.000005", "2026-11-20 12:00:00.250000")
    (seen_at,) = raw_rows(engine, "SELECT seen_at FROM item_source")[0]
    tag_dates = {r[0] for r in raw_rows(engine, "SELECT published_at FROM item_tag")}
    log_at = raw_rows(engine, "SELECT at FROM fetch_log")[0][0]
    fetched = raw_rows(engine, f"SELECT last_fetched_at, next_due_at FROM feed WHERE id = {fid}")[0]
    assert seen_at == log_at == fetched[0] == "2026-11-20 12:00:00.250000"
    assert fetched[1] == "2026-11-20 12:30:00.250000"
    assert tag_dates == {"2026-11-20 11:15:00.000000"}
    with engine.connect() as conn:  # and they read back as the same instants
        row = conn.execute(select(tables.ITEM)).one()
    assert row.published_at == e.published and row.updated_at == datetime(2026, 11, 20, 11, 30, 0, 5, tzinfo=UTC)
    assert row.ingested_at == at and row.relevant is True


@pytest.mark.parametrize(
    "phrase", ['say "yes"', "back\\slash", "Zelensky–Putin “talks”", "tab\tnew\nline\x01", "emoji 🕊", ""]
)
def test_evidence_json_is_json_dumps(phrase: str) -> None:
    ev = (
        Evidence("turkey", "mediator", phrase, 3, 3 + len(phrase)),
        Evidence("context", "context", "peace", 0, 5),
        Evidence("territory", "obstacle", phrase, 40, 41),
        Evidence("territory", "obstacle", phrase, 2047, 2048),
        Evidence("territory", "obstacle", phrase, 123456, 123460),
    )
    tag = Tags(relevant=True, score=1.0, mediators=("turkey",), obstacles=("territory",), evidence=ev)
    expected = json.dumps(
        [[e.tag, e.kind, e.phrase, e.start, e.end] for e in ev if e.kind != "context"], ensure_ascii=False
    )
    assert ingest.evidence_json(tag) == ingest.evidence_json(tag) == expected
    assert ingest.evidence_json(Tags(relevant=False, score=0.0)) == "[]"


def test_one_batch_with_the_same_new_link_in_two_feeds(engine: Engine) -> None:
    """Within one transaction the first feed creates the item and the next one links to it, exactly as
    if the feeds had been stored one after the other."""
    ids = feed_ids(engine)
    a = [entry("guid:a-1", link="https://ex.org/shared"), entry("guid:a-2", link="https://ex.org/only-a", title="A")]
    b = [entry("guid:b-9", link="https://ex.org/shared"), entry("guid:b-8", link="https://ex.org/only-b", title="B")]
    counts = ingest.apply_feed_results(
        Database.of(engine),
        [fed(feed_update(ids["Feed A"]), a, [TAGS] * 2), fed(feed_update(ids["Feed B"]), b, [TAGS] * 2)],
        now=NOW,
    )
    assert [(c.new, c.updated, c.linked) for c in counts] == [(2, 0, 0), (1, 0, 1)]
    assert count(engine, tables.ITEM) == 3
    assert count(engine, tables.SOURCE) == 4
    with engine.connect() as conn:
        shared = conn.execute(select(tables.ITEM).where(tables.ITEM.c.link == "https://ex.org/shared")).one()
        assert shared.source_count == 2 and shared.feed_id == ids["Feed A"]
        assert queries.sources_of(conn, [shared.id])[shared.id] == ["Feed A", "Feed B"]
        log: dict[int, int] = dict(conn.execute(select(tables.FETCH_LOG.c.feed_id, tables.FETCH_LOG.c.new_items)).all())
        items: dict[int, int] = dict(conn.execute(select(tables.FEED.c.id, tables.FEED.c.item_count)).all())
    assert log == items == {ids["Feed A"]: 2, ids["Feed B"]: 2}


def test_two_guids_with_one_link_in_one_feed_are_one_item_with_two_sources(engine: Engine) -> None:
    fid = feed_ids(engine)["Feed A"]
    es = [
        entry("guid:1", link="https://ex.org/x"),
        entry("guid:2", link="https://ex.org/x"),
        entry("guid:1", link=None),
    ]
    res = ingest.apply_feed_result(Database.of(engine), feed_update(fid), es, [TAGS] * 3, now=NOW)
    assert (res.new, res.linked) == (1, 0)
    assert count(engine, tables.ITEM) == 1
    assert raw_rows(engine, "SELECT dedup_key FROM item_source ORDER BY id") == [("guid:1",), ("guid:2",)]


def test_a_feed_twice_in_one_batch_sees_its_first_result(engine: Engine) -> None:
    fid = feed_ids(engine)["Feed A"]
    first = [entry("guid:x", link="https://ex.org/x")]
    second = [entry("guid:x", link="https://ex.org/x", body="Edited"), entry("guid:y", link="https://ex.org/y")]
    counts = ingest.apply_feed_results(
        Database.of(engine), [fed(feed_update(fid), first, [TAGS]), fed(feed_update(fid), second, [TAGS] * 2)], now=NOW
    )
    assert [(c.new, c.updated, c.linked) for c in counts] == [(1, 0, 0), (1, 1, 0)]
    assert count(engine, tables.ITEM) == 2
    assert raw_rows(engine, "SELECT summary FROM item ORDER BY id")[0] == ("Edited",)


def test_many_entries_cross_every_statement_size(engine: Engine) -> None:
    """Lists longer than one statement's rows, and of every remainder size, store everything once."""
    ids = feed_ids(engine)
    n = ingest.MAX_ROWS * 2 + 77
    a = [entry(f"guid:{i}", link=f"https://ex.org/{i}", title=f"Story {i}") for i in range(n)]
    b = [entry(f"guid:b{i}", link=f"https://ex.org/{i}", title=f"Story {i}") for i in range(0, n, 3)]
    counts = ingest.apply_feed_results(
        Database.of(engine),
        [fed(feed_update(ids["Feed A"]), a, [TAGS] * n), fed(feed_update(ids["Feed B"]), b, [TAGS] * len(b))],
        now=NOW,
    )
    assert [(c.new, c.linked) for c in counts] == [(n, 0), (0, len(b))]
    assert count(engine, tables.ITEM) == n
    assert count(engine, tables.SOURCE) == n + len(b)
    assert count(engine, tables.TAG) == 2 * n
    edited = [dataclasses.replace(e, summary="changed", content_hash=f"c{i}") if i % 2 else e for i, e in enumerate(a)]
    again = ingest.apply_feed_result(Database.of(engine), feed_update(ids["Feed A"]), edited, [TAGS] * n, now=NOW)
    assert (again.new, again.updated, again.linked) == (0, n // 2, 0)
    assert raw_rows(engine, "SELECT count(*) FROM item WHERE summary = 'changed'") == [(n // 2,)]
    assert count(engine, tables.TAG) == 2 * n
    with engine.connect() as conn:  # the full-text index followed the inserts and the edits
        hits = conn.exec_driver_sql("SELECT count(*) FROM item_fts WHERE item_fts MATCH 'changed'").scalar()
        staged = [r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_temp_master WHERE type = 'table'")]
        left = [conn.exec_driver_sql(f"SELECT count(*) FROM temp.{t}").scalar() for t in staged]
    assert hits == n // 2
    assert left == [0] * len(staged)  # the connection's staging tables are emptied after each write


def test_a_link_taken_by_another_writer_meanwhile_is_linked_not_duplicated(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The insert's ON CONFLICT (link) DO NOTHING path: pretend the link lookup ran before another
    writer committed the same link (what happens between PostgreSQL workers)."""
    ids = feed_ids(engine)
    ingest.apply_feed_result(
        Database.of(engine), feed_update(ids["Feed B"]), [entry("guid:b", link="https://ex.org/race")], [TAGS], now=NOW
    )
    real_in_list = ingest._Cursor.in_list
    calls: list[int] = []

    def stale_first_lookup(
        self: ingest._Cursor, head: str, values: Sequence[object], pg_type: str
    ) -> list[tuple[object, ...]]:
        calls.append(len(values))
        if head == ingest.LINKS and len(calls) == 1:
            return []  # the other writer's row was not visible yet
        return real_in_list(self, head, values, pg_type)

    monkeypatch.setattr(ingest._Cursor, "in_list", stale_first_lookup)
    es = [entry("guid:a", link="https://ex.org/race"), entry("guid:a2", link="https://ex.org/mine", title="Mine")]
    res = ingest.apply_feed_result(Database.of(engine), feed_update(ids["Feed A"]), es, [TAGS] * 2, now=NOW)
    assert (res.new, res.linked) == (1, 1)
    assert count(engine, tables.ITEM) == 2
    with engine.connect() as conn:
        race = conn.execute(select(tables.ITEM).where(tables.ITEM.c.link == "https://ex.org/race")).one()
        assert race.source_count == 2
        assert queries.sources_of(conn, [race.id])[race.id] == ["Feed B", "Feed A"]


def test_a_failing_batch_stores_nothing_and_raises_the_drivers_error(engine: Engine) -> None:
    ids = feed_ids(engine)
    db = Database.of(engine)
    good = fed(feed_update(ids["Feed A"]), [entry("guid:ok", link="https://ex.org/ok")], [TAGS])
    bad = fed(feed_update(987654), [entry("guid:bad", link="https://ex.org/bad")], [TAGS])  # no such feed
    with pytest.raises(sqlite3.IntegrityError) as failed:
        ingest.apply_feed_results(db, [good, bad], now=NOW)
    assert any(note.startswith("while running: ") for note in failed.value.__notes__)
    assert count(engine, tables.ITEM) == count(engine, tables.SOURCE) == count(engine, tables.FETCH_LOG) == 0
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM item_fts WHERE item_fts MATCH 'Istanbul'").scalar() == 0
    again = ingest.apply_feed_results(db, [good], now=NOW)  # the pooled connection is fine afterwards
    assert again[0].new == 1


def test_not_modified_batch_updates_feeds_without_touching_items(engine: Engine) -> None:
    ids = feed_ids(engine)
    ingest.apply_feed_result(
        Database.of(engine), feed_update(ids["Feed A"]), [entry("guid:1", link="https://ex.org/1")], [TAGS], now=NOW
    )
    later = NOW + timedelta(hours=1)
    counts = ingest.apply_feed_results(
        Database.of(engine), [(feed_update(i, later, "not_modified"), ()) for i in ids.values()], now=later
    )
    assert counts == [ingest.WriteCounts()] * 2
    health = {r["name"]: r for r in queries.feed_health(engine)}
    assert health["Feed A"]["last_success_at"] == later
    assert health["Feed B"]["next_due_at"] == later + timedelta(minutes=30)
    with engine.connect() as conn:
        etags: dict[str, str | None] = dict(conn.execute(select(tables.FEED.c.name, tables.FEED.c.etag)).all())
        items_: dict[str, int] = dict(conn.execute(select(tables.FEED.c.name, tables.FEED.c.item_count)).all())
    assert etags == {"Feed A": '"v1"', "Feed B": None}  # a 304 keeps the validators
    assert items_ == {"Feed A": 1, "Feed B": 0}
    assert count(engine, tables.FETCH_LOG) == 3


# --- PostgreSQL: the same path, and a real insert race --------------------------------------


@pytest.fixture(scope="module")
def pg_engine() -> Iterator[Engine]:
    from pgserver import HOW_TO_INSTALL, PgServer, bin_dir

    if bin_dir() is None:
        pytest.skip(HOW_TO_INSTALL)
    with PgServer() as pg:
        eng = make_engine(pg.url)
        schema.upgrade(eng)
        yield eng
        eng.dispose()


@pytest.mark.postgres
def test_postgres_insert_race_links_to_the_winner(pg_engine: Engine) -> None:
    """A worker whose insert meets another worker's uncommitted row with the same link waits for it,
    inserts nothing (ON CONFLICT DO NOTHING) and links its source to the winner's item."""
    ingest.sync_feeds(
        Database.of(pg_engine),
        [FeedSpec("http://127.0.0.1:1/race-a.xml", "A"), FeedSpec("http://127.0.0.1:1/race-b.xml", "B")],
    )
    ids = feed_ids(pg_engine)
    link = "https://ex.org/race"
    winner = pg_engine.connect()
    tx = winner.begin()
    item_id = winner.execute(
        insert(tables.ITEM)
        .values(
            link=link,
            title="T",
            summary="",
            content_html="",
            text="T",
            evidence="[]",
            published_at=NOW,
            ingested_at=NOW,
            content_hash="h",
            feed_id=ids["A"],
            source_count=1,
        )
        .returning(tables.ITEM.c.id)
    ).scalar_one()
    es = [entry("guid:b", link=link), entry("guid:b2", link="https://ex.org/other", title="Other")]
    result: list[list[ingest.WriteCounts]] = []
    loser = threading.Thread(
        target=lambda: result.append(
            ingest.apply_feed_results(Database.of(pg_engine), [fed(feed_update(ids["B"]), es, [TAGS] * 2)], now=NOW)
        )
    )
    loser.start()
    deadline = time.monotonic() + 20
    with pg_engine.connect() as watcher:  # wait until the loser's insert is blocked on the winner's row
        while time.monotonic() < deadline:
            waiting = watcher.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND position('INSERT INTO item (id' in query) = 1"
            ).scalar()
            if waiting:
                break
            watcher.rollback()  # pg_stat_activity is read once per transaction
            time.sleep(0.05)
    assert waiting, "the second writer never blocked on the first one's row"
    tx.commit()
    winner.close()
    loser.join(30)
    assert result and (result[0][0].new, result[0][0].linked) == (1, 1)
    with pg_engine.connect() as conn:
        rows = conn.execute(
            select(tables.ITEM.c.id, tables.ITEM.c.source_count).where(tables.ITEM.c.link == link)
        ).all()
        sources = (
            conn.execute(select(tables.SOURCE.c.item_id).where(tables.SOURCE.c.dedup_key == "guid:b")).scalars().all()
        )
    assert rows == [(item_id, 2)]
    assert sources == [item_id]


@pytest.mark.postgres
def test_postgres_stores_what_sqlite_stores(pg_engine: Engine, engine: Engine) -> None:
    """Counts and rows (ids aside) agree between the two databases for a batch with shared links."""
    ingest.sync_feeds(
        Database.of(pg_engine),
        [FeedSpec("http://127.0.0.1:1/a.xml", "Feed A"), FeedSpec("http://127.0.0.1:1/b.xml", "Feed B")],
    )
    results = []
    for eng in (engine, pg_engine):
        ids = feed_ids(eng)
        a = [entry(f"guid:p{i}", link=f"https://ex.org/p{i}", title=f"P {i}") for i in range(20)]
        b = [entry(f"guid:q{i}", link=f"https://ex.org/p{i}", title=f"P {i}") for i in range(0, 20, 2)]
        b.append(entry("hash:nolink", link=None, title="No link"))
        first = ingest.apply_feed_results(
            Database.of(eng),
            [fed(feed_update(ids["Feed A"]), a, [TAGS] * 20), fed(feed_update(ids["Feed B"]), b, [TAGS] * 11)],
            now=NOW,
        )
        edited = [
            dataclasses.replace(e, summary="edited", content_hash=f"e{i}") if i < 5 else e for i, e in enumerate(a)
        ]
        second = ingest.apply_feed_result(
            Database.of(eng), feed_update(ids["Feed A"], NOW + timedelta(hours=1)), edited, [TAGS] * 20, now=NOW
        )
        with eng.connect() as conn:
            items = conn.execute(
                select(
                    tables.ITEM.c.link,
                    tables.ITEM.c.summary,
                    tables.ITEM.c.published_at,
                    tables.ITEM.c.updated_at,
                    tables.ITEM.c.ingested_at,
                    tables.ITEM.c.relevant,
                    tables.ITEM.c.evidence,
                    tables.ITEM.c.source_count,
                )
                .where(tables.ITEM.c.link.like("https://ex.org/p%") | tables.ITEM.c.link.is_(None))
                .order_by(tables.ITEM.c.link.nulls_first())
            ).all()
            ours = select(tables.ITEM.c.id).where(
                tables.ITEM.c.link.like("https://ex.org/p%") | tables.ITEM.c.link.is_(None)
            )
            tags = conn.execute(
                select(func.count()).select_from(tables.TAG).where(tables.TAG.c.item_id.in_(ours))
            ).scalar_one()
        results.append(([dataclasses.astuple(c) for c in [*first, second]], [tuple(r) for r in items], tags))
    assert results[0] == results[1]


@pytest.mark.postgres
def test_postgres_failed_batch_rolls_back_and_the_next_one_works(pg_engine: Engine) -> None:
    """The staging tables are created inside the transaction: a failed batch takes them along, and
    the next batch on the same pooled connection must create them again."""
    db = Database.of(pg_engine)
    ingest.sync_feeds(db, [FeedSpec("http://127.0.0.1:1/rollback.xml", "R")])
    fid = feed_ids(pg_engine)["R"]
    before = count(pg_engine, tables.ITEM)
    bad = [fed(feed_update(fid), [entry("guid:r1", link="https://ex.org/r1")], [TAGS]), (feed_update(987654), ())]
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        ingest.apply_feed_results(db, bad, now=NOW)
    assert len(db._idle) == 1  # rolled back and kept for the next batch
    assert count(pg_engine, tables.ITEM) == before
    for _ in range(2):  # a fresh transaction, then one where the tables exist already
        res = ingest.apply_feed_result(
            db, feed_update(fid), [entry("guid:r1", link="https://ex.org/r1")], [TAGS], now=NOW
        )
    assert res == ingest.WriteCounts()  # the second time the entry is known
    assert count(pg_engine, tables.ITEM) == before + 1


def test_nulls_and_flags_are_stored_as_sqlite_stores_them(engine: Engine) -> None:
    """The adapters registered for None and bool (tracker.store.db) store what sqlite3 always did."""
    fid = feed_ids(engine)["Feed A"]
    plain = Tags(relevant=False, score=0.0)
    ingest.apply_feed_result(Database.of(engine), feed_update(fid), [entry("guid:n", link=None)], [plain], now=NOW)
    row = raw_rows(
        engine, "SELECT typeof(author), typeof(updated_at), typeof(link), relevant, typeof(relevant) FROM item"
    )
    assert row == [("null", "null", "null", 0, "integer")]
    with engine.begin() as conn:  # and through SQLAlchemy, on the same connections
        conn.execute(update(tables.ITEM).values(relevant=True, author=None))
    assert raw_rows(engine, "SELECT relevant, typeof(author) FROM item") == [(1, "null")]


def test_a_process_with_the_engine_keeps_one_set_of_connections(tmp_path: Path) -> None:
    """Once the engine exists, the write path borrows its pooled connections instead of opening its own."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    engine = make_engine(url)
    schema.upgrade(engine)
    db = Database(url)
    with db.transaction():
        pass
    assert len(db._idle) == 1  # its own, kept for the next transaction
    db.share_pool(engine)
    assert db._idle == []
    with db.transaction() as conn:
        assert engine.pool.checkedout() == 1  # type: ignore[attr-defined]
        conn.execute("INSERT INTO meta (key, value) VALUES ('shared', 'yes')")
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    with engine.connect() as c:
        assert c.exec_driver_sql("SELECT value FROM meta WHERE key = 'shared'").scalar() == "yes"
    engine.dispose()
