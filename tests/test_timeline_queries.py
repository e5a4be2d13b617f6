"""The database-side status log: filters, full-text search, keyset pagination and per-key status.

Everything runs against a real SQLite file filled through the store's write path
(``ingest.apply_feed_result``), so the tag index and the FTS5 triggers are the real ones.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import random
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from tracker.models import Entry, Evidence, Tags, TimelineEntry
from tracker.store import baseline as baseline_store
from tracker.store import ingest, schema, tables
from tracker.store import timeline_queries as tq
from tracker.store.db import make_engine
from tracker.store.dbapi import Database
from tracker.store.ingest import FeedSpec, FeedUpdate
from tracker.store.timeline_queries import Cursor, TaxonomyKey, TimelineFilter

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

KEYS = [
    TaxonomyKey("turkey", "Turkey", "mediator"),
    TaxonomyKey("china", "China", "mediator"),
    TaxonomyKey("vatican", "Vatican", "mediator"),
    TaxonomyKey("territory", "Territory", "obstacle"),
    TaxonomyKey("security", "Security guarantees", "obstacle"),
    TaxonomyKey("accountability", "Accountability", "obstacle"),
]
PHRASES = {
    "turkey": "Istanbul",
    "china": "Beijing",
    "vatican": "Pope Francis",
    "territory": "occupied regions",
    "security": "security guarantees",
    "accountability": "war crimes",
}
FEEDS = [("Kyiv Independent", "en"), ("Meduza", "ru"), ("Ukrainska Pravda", "uk"), ("Deutsche Welle", "de")]
WORDS = [
    "ceasefire",
    "talks",
    "delegation",
    "summit",
    "grain",
    "corridor",
    "prisoners",
    "exchange",
    "envoy",
    "memorandum",
]


@dataclass(frozen=True)
class Seeded:
    engine: Engine
    feed_ids: dict[str, int]
    items: list[tuple[Entry, Tags, str]]  # entry, tags, feed name


def baseline_events() -> tuple[TimelineEntry, ...]:
    def ev(slug: str, day: datetime, title: str, med: Sequence[str], obs: Sequence[str]) -> TimelineEntry:
        return TimelineEntry(
            kind="baseline",
            id=f"b:{slug}",
            date=day,
            date_precision="month",
            date_label=day.strftime("%B %Y"),
            title=title,
            summary=f"{title} (from the seed).",
            sources=("seed",),
            mediators=tuple(med),
            obstacles=tuple(obs),
        )

    return (
        ev("istanbul-talks", datetime(2022, 3, 1, tzinfo=UTC), "Talks in Istanbul", ["turkey"], ["security"]),
        ev("grain-deal", datetime(2022, 7, 1, tzinfo=UTC), "Black Sea Grain Initiative", ["turkey"], []),
        ev("china-plan", datetime(2023, 2, 1, tzinfo=UTC), "China's 12-point peace plan", ["china"], []),
        ev("icc-warrant", datetime(2023, 3, 1, tzinfo=UTC), "ICC warrant for Putin", [], ["accountability"]),
    )


def make_entry(
    i: int,
    *,
    title: str,
    summary: str,
    published: datetime,
    language: str,
    link: str | None = None,
    content_html: str | None = None,
) -> Entry:
    digest = hashlib.sha256(f"{i}\n{title}\n{summary}".encode()).hexdigest()[:32]
    return Entry(
        dedup_key=f"guid:urn:test:{i}",
        guid=f"urn:test:{i}",
        link=link if link is not None else f"https://news.example/{i}",
        title=title,
        summary=summary,
        content_html=content_html if content_html is not None else f"<p>{summary}</p>",
        text=f"{title}\n{summary}",
        published=published,
        updated=None,
        date_fallback=None,
        author="Desk",
        language=language,
        content_hash=digest,
    )


def tags_for(entry: Entry, mediators: Sequence[str], obstacles: Sequence[str], relevant: bool = True) -> Tags:
    evidence = []
    for key, kind in [(m, "mediator") for m in mediators] + [(o, "obstacle") for o in obstacles]:
        phrase = PHRASES[key]
        start = entry.text.find(phrase)
        if start >= 0:
            evidence.append(Evidence(key, kind, phrase, start, start + len(phrase)))  # type: ignore[arg-type]
    return Tags(
        relevant=relevant,
        score=0.8 if relevant else 0.1,
        mediators=tuple(mediators),
        obstacles=tuple(obstacles),
        evidence=tuple(evidence),
    )


def fresh_engine(path: Path | Engine, feeds: Sequence[tuple[str, str]] = FEEDS) -> tuple[Engine, dict[str, int]]:
    """The real schema, four feeds and the test baseline in a SQLite file (or an empty database)."""
    engine = path if isinstance(path, Engine) else make_engine(f"sqlite:///{path}")
    schema.upgrade(engine)
    ingest.sync_feeds(
        Database.of(engine), [FeedSpec(f"http://127.0.0.1:1/{n.replace(' ', '-')}.xml", n, lang) for n, lang in feeds]
    )
    baseline_store.load(engine, now=NOW, events=baseline_events())
    with engine.connect() as conn:
        ids = {r.name: r.id for r in conn.execute(tables.FEED.select())}
    return engine, ids


def store(
    engine: Engine,
    feed_id: int,
    pairs: Sequence[tuple[Entry, Tags]],
    *,
    outcome: str = "ok",
    error: str | None = None,
    now: datetime = NOW,
) -> None:
    upd = FeedUpdate(
        feed_id=feed_id,
        outcome=outcome,
        status=200 if outcome == "ok" else 500,
        error=error,
        fetched_at=now - timedelta(minutes=5),
        next_due_at=now + timedelta(minutes=25),
        consecutive_failures=0 if outcome == "ok" else 2,
        elapsed=0.05,
    )
    ingest.apply_feed_result(Database.of(engine), upd, [p[0] for p in pairs], [p[1] for p in pairs], now=now)


def seed(path: Path | Engine, n: int = 120, *, rng_seed: int = 7, now: datetime = NOW) -> Seeded:
    """n items over 60 days before ``now`` across four feeds; some share a link (one article, two sources)."""
    engine, feed_ids = fresh_engine(path)
    rng = random.Random(rng_seed)
    per_feed: dict[str, list[tuple[Entry, Tags]]] = {name: [] for name, _ in FEEDS}
    items: list[tuple[Entry, Tags, str]] = []
    for i in range(n):
        name, lang = FEEDS[i % len(FEEDS)]
        meds = rng.sample(["turkey", "china", "vatican"], k=rng.choice([0, 1, 1, 2]))
        obs = rng.sample(["territory", "security", "accountability"], k=rng.choice([0, 1, 1]))
        words = " ".join(rng.sample(WORDS, 3))
        phrases = " and ".join(PHRASES[k] for k in meds + obs) or "Kyiv"
        title = f"Item {i}: {words} near {phrases}"
        summary = f"Report {i} about {words}; mentions {phrases}."
        published = now - timedelta(hours=i * 12 + rng.randint(0, 5))
        if i % 10 == 3:
            published = now - timedelta(hours=(i - 1) * 12)  # ties on the timestamp
        entry = make_entry(i, title=title, summary=summary, published=published, language=lang)
        relevant = i % 13 != 5
        if not relevant:  # the store keeps tag rows for relevant items only
            meds, obs = [], []
        tags = tags_for(entry, meds, obs, relevant=relevant)
        per_feed[name].append((entry, tags))
        items.append((entry, tags, name))
        if i % 17 == 0:  # the same article carried by the next feed too
            other = FEEDS[(i + 1) % len(FEEDS)][0]
            dup = make_entry(10_000 + i, title=title, summary=summary, published=published, language=lang)
            dup = Entry(**{**_fields(dup), "link": entry.link})
            per_feed[other].append((dup, tags))
    for name, pairs in per_feed.items():
        store(engine, feed_ids[name], pairs, now=now)
    return Seeded(engine, feed_ids, items)


def _fields(e: Entry) -> dict[str, object]:
    return {f: getattr(e, f) for f in e.__slots__}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    return seed(tmp_path_factory.mktemp("tq") / "tracker.db")


def walk(engine: Engine, flt: TimelineFilter, *, order: tq.Order = "desc", limit: int = 7) -> list[str]:
    """Follow ``next`` cursors to the end; returns entry ids in display order."""
    seen: list[str] = []
    cursor: Cursor | None = None
    with engine.connect() as conn:
        for _ in range(1000):
            page = tq.timeline_page(conn, flt, order=order, after=cursor, limit=limit)
            assert len(page.entries) <= limit
            seen += [e.id for e in page.entries]
            if page.next is None:
                return seen
            cursor = page.next
    raise AssertionError("pagination never ended")


def expected(seeded: Seeded, pred: object = None) -> list[str]:
    """The log computed in Python from what was stored (relevant items + baseline), newest first."""
    with seeded.engine.connect() as conn:
        rows = list(conn.execute(tables.ITEM.select().where(tables.ITEM.c.relevant.is_(True))))
    keyed: list[tuple[Cursor, str, object]] = []
    for r in rows:
        keyed.append((Cursor(r.published_at, 1, r.id), f"i:{r.id}", r))
    for ev in baseline_events():
        keyed.append((Cursor(ev.date, 0, 0, ev.id[2:]), ev.id, ev))
    if pred is not None:
        keyed = [k for k in keyed if pred(k[2])]  # type: ignore[operator]
    keyed.sort(key=lambda k: k[0], reverse=True)
    return [k[1] for k in keyed]


def test_pages_cover_the_log_exactly_once_in_both_orders(seeded: Seeded) -> None:
    want = expected(seeded)
    assert len(want) > 100
    got = walk(seeded.engine, TimelineFilter())
    assert got == want
    assert walk(seeded.engine, TimelineFilter(), order="asc", limit=11) == list(reversed(want))


def test_newer_cursor_walks_back_to_the_first_page(seeded: Seeded) -> None:
    with seeded.engine.connect() as conn:
        pages = [tq.timeline_page(conn, limit=9)]
        for _ in range(4):
            pages.append(tq.timeline_page(conn, after=pages[-1].next, limit=9))
        assert pages[0].newer is None and pages[0].older is not None
        back = pages[-1]
        for expected_page in reversed(pages[:-1]):
            assert back.prev is not None
            back = tq.timeline_page(conn, before=back.prev, limit=9)
            assert [e.id for e in back.entries] == [e.id for e in expected_page.entries]
        assert back.prev is None  # back at the newest page


def test_cursor_round_trips_and_rejects_garbage() -> None:
    c = Cursor(NOW, 1, 42)
    assert Cursor.decode(c.encode()) == c
    b = Cursor(NOW, 0, 0, "istanbul-talks")
    assert Cursor.decode(b.encode()) == b
    for bad in ("", "zzz", "aGVsbG8", Cursor(NOW, 1, 1).encode()[:-3] + "!!"):
        with pytest.raises(ValueError):
            Cursor.decode(bad)


def test_tag_filters_match_stored_tags(seeded: Seeded) -> None:
    got = walk(seeded.engine, TimelineFilter(mediator="turkey"))
    want = expected(seeded, lambda r: "turkey" in r.mediators)
    assert got == want and len(want) > 10
    got = walk(seeded.engine, TimelineFilter(mediator="china", obstacle="territory"), limit=3)
    want = expected(seeded, lambda r: "china" in r.mediators and "territory" in r.obstacles)
    assert got == want and want


def test_source_language_and_date_filters(seeded: Seeded) -> None:
    since, until = NOW - timedelta(days=20), NOW - timedelta(days=5)
    with seeded.engine.connect() as conn:
        carried = {
            r.item_id
            for r in conn.execute(tables.SOURCE.select().where(tables.SOURCE.c.feed_id == seeded.feed_ids["Meduza"]))
        }
    got = walk(seeded.engine, TimelineFilter(source="Meduza"))
    assert got == [i for i in expected(seeded) if i.startswith("i:") and int(i[2:]) in carried]
    assert len(got) > 10
    got = walk(seeded.engine, TimelineFilter(language="uk"))
    assert got == expected(seeded, lambda r: getattr(r, "language", None) == "uk")
    got = walk(seeded.engine, TimelineFilter(since=since, until=until), limit=4)
    want = expected(seeded, lambda r: since <= getattr(r, "published_at", getattr(r, "date", NOW)) < until)
    assert got == want and want
    assert walk(seeded.engine, TimelineFilter(source="seed")) == [e.id for e in reversed(baseline_events())]


def test_full_text_search_rare_and_common_terms(seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    def has(*words: str) -> object:
        def pred(r: object) -> bool:
            hay = set(re.findall(r"\w+", f"{getattr(r, 'title', '')} {getattr(r, 'summary', '')}".lower()))
            return all(w in hay for w in words)

        return pred

    rare = walk(seeded.engine, TimelineFilter(q="Item 42"))
    assert rare == ["i:" + str(_id_of(seeded, 42))]
    want = expected(seeded, has("ceasefire"))
    assert walk(seeded.engine, TimelineFilter(q="ceasefire")) == want and len(want) > 10
    # The same answer when the term counts as "common" (walk the date index, check FTS by rowid).
    monkeypatch.setattr(tq, "FTS_SMALL", 3)
    assert walk(seeded.engine, TimelineFilter(q="ceasefire"), limit=5) == want
    monkeypatch.setattr(tq, "WALK_MIN_CHUNK", 3)  # many small chunks
    assert walk(seeded.engine, TimelineFilter(q="ceasefire"), limit=4, order="asc") == list(reversed(want))
    monkeypatch.setattr(tq, "FTS_RANGE_SPREAD", 0)  # check chunks by id list instead of id range
    assert walk(seeded.engine, TimelineFilter(q="ceasefire"), limit=6) == want
    want_turkey = expected(seeded, lambda r: has("ceasefire")(r) and "turkey" in r.mediators)
    assert walk(seeded.engine, TimelineFilter(q="ceasefire", mediator="turkey"), limit=2) == want_turkey
    # Operators and quotes in user input are words, never FTS syntax.
    assert walk(seeded.engine, TimelineFilter(q='"ceasefire" OR NEAR(')) == []  # no item has the word "or"
    want = expected(seeded, has("ceasefire", "near"))
    assert walk(seeded.engine, TimelineFilter(q='ceasefire" NEAR(')) == want and want
    assert walk(seeded.engine, TimelineFilter(q="*** ---")) == []
    assert walk(seeded.engine, TimelineFilter(q="grain")) == expected(seeded, has("grain"))


def _id_of(seeded: Seeded, i: int) -> int:
    with seeded.engine.connect() as conn:
        return int(
            conn.execute(
                tables.ITEM.select()
                .with_only_columns(tables.ITEM.c.id)
                .where(tables.ITEM.c.link == f"https://news.example/{i}")
            ).scalar_one()
        )


def test_overview_has_every_key_and_counts_from_the_tag_index(seeded: Seeded) -> None:
    with seeded.engine.connect() as conn:
        ov = tq.overview(conn, KEYS, now=NOW)
    assert [s.key for s in ov.mediators] == ["turkey", "china", "vatican"]
    assert [s.key for s in ov.obstacles] == ["territory", "security", "accountability"]
    start = (NOW - timedelta(days=29)).replace(hour=0, minute=0, second=0, microsecond=0)
    for s in ov.mediators + ov.obstacles:
        assert len(s.daily) == 30 and s.days[-1] == NOW.date().isoformat()
        want = [
            e for e, t, _ in seeded.items if t.relevant and s.key in t.mediators + t.obstacles and e.published >= start
        ]
        assert s.total_30d == len(want)
        assert s.new_24h == sum(1 for e in want if e.published >= NOW - timedelta(days=1))
        items = [e for e in s.latest if e.kind == "item"]
        assert items, s.key
        newest = max(
            (e for e, t, _ in seeded.items if t.relevant and s.key in t.mediators + t.obstacles),
            key=lambda e: e.published,
        )
        assert items[0].title == newest.title and items[0].date == newest.published
    assert ov.feeds.total == 4 and ov.feeds.failing == 0
    assert ov.changes and all(e.date >= NOW - timedelta(days=1) for e in ov.changes)


def test_key_without_news_still_has_a_status(tmp_path: Path) -> None:
    engine, _ = fresh_engine(tmp_path / "empty.db")
    with engine.connect() as conn:
        ov = tq.overview(conn, KEYS, now=NOW)
    by_key = {s.key: s for s in ov.mediators + ov.obstacles}
    assert set(by_key) == {k.key for k in KEYS}
    assert by_key["vatican"].latest == [] and by_key["vatican"].state == "baseline"
    assert [e.id for e in by_key["turkey"].latest] == ["b:grain-deal", "b:istanbul-talks"]
    assert by_key["turkey"].total_30d == 0 and by_key["turkey"].last_date == datetime(2022, 7, 1, tzinfo=UTC)
    d = tq.overview_dict(ov)
    assert set(d["mediators"]) == {"turkey", "china", "vatican"}
    assert d["obstacles"]["accountability"]["latest"][0]["kind"] == "baseline"


def test_item_detail_lists_every_source(seeded: Seeded) -> None:
    shared = seeded.items[17][0]  # i % 17 == 0: carried by two feeds
    with seeded.engine.connect() as conn:
        item_id = _id_of(seeded, 17)
        detail = tq.item_detail(conn, item_id)
        assert tq.item_detail(conn, 10**9) is None
    assert detail is not None
    assert detail.entry.title == shared.title
    assert [s.name for s in detail.sources] == [FEEDS[1][0], FEEDS[2][0]]
    assert detail.content_html == shared.content_html


# --- PostgreSQL: the same queries, GIN full-text index instead of FTS5 --------------------------------


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (initdb + pg_ctl), removed afterwards."""
    initdb = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))), None)
    if initdb is None:
        pytest.skip("PostgreSQL (initdb) is not installed")
    bindir = Path(initdb).resolve().parent
    data = Path(tempfile.mkdtemp(prefix="tracker-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        pw = pwd.getpwnam("postgres")
        os.chown(data, pw.pw_uid, pw.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    subprocess.run(
        [*run_as, str(bindir / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    opts = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -F"
    subprocess.run(
        [*run_as, str(bindir / "pg_ctl"), "-D", str(data / "db"), "-o", opts, "-w", "-l", str(data / "log"), "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*run_as, str(bindir / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(data, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.postgres
def test_postgres_gives_the_same_log_and_status(pg_url: str, seeded: Seeded) -> None:
    pg = seed_into(make_engine(pg_url))
    for flt in (
        TimelineFilter(),
        TimelineFilter(mediator="turkey", obstacle="territory"),
        TimelineFilter(q="ceasefire grain"),
        TimelineFilter(q="Item 42"),
        TimelineFilter(source="Meduza", language="ru"),
        TimelineFilter(source="Meduza"),
        TimelineFilter(language="uk"),
        TimelineFilter(since=NOW - timedelta(days=9), until=NOW - timedelta(days=2)),
    ):
        want = _titles(seeded.engine, flt)
        assert _titles(pg, flt) == want and want, flt
    with pg.connect() as conn:
        plan = " ".join(
            r[0]
            for r in conn.exec_driver_sql(
                "EXPLAIN SELECT id FROM item WHERE to_tsvector('simple', coalesce(item.title, '') || ' ' || "
                "coalesce(item.summary, '')) @@ plainto_tsquery('simple', 'ceasefire')"
            )
        )
    assert "ix_item_fts" in plan or "Seq Scan" in plan  # the expression is the index's (tiny tables may scan)
    with seeded.engine.connect() as a, pg.connect() as b:
        sa, sb = tq.overview_dict(tq.overview(a, KEYS, now=NOW)), tq.overview_dict(tq.overview(b, KEYS, now=NOW))
    for group in ("mediators", "obstacles"):
        for key in sa[group]:
            for field in ("total_30d", "new_24h", "daily", "state"):
                assert sa[group][key][field] == sb[group][key][field], (key, field)
            assert [e["title"] for e in sa[group][key]["latest"]] == [e["title"] for e in sb[group][key]["latest"]]


def seed_into(engine: Engine) -> Engine:
    """The ``seed`` data set written to another (empty) database; ids may differ, so compare titles."""
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    return seed(engine).engine


def _titles(engine: Engine, flt: TimelineFilter) -> list[str]:
    out: list[str] = []
    with engine.connect() as conn:
        cursor = None
        while True:
            page = tq.timeline_page(conn, flt, after=cursor, limit=9)
            out += [e.title for e in page.entries]
            if page.next is None:
                return out
            cursor = page.next
