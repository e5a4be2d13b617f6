"""Benchmark the write path (``tracker.store.ingest.apply_feed_results``) alone, in CPU µs per item.

    python bench/store.py [--feeds 320] [--items 30] [--batch 32] [--repeat 3] [--pg] [--dir DIR]
                          [--profile CASE] [--ingest-file OLD_INGEST.py]

The feeds come from the feed farm's model (tests/feedfarm.py), parsed and tagged once up front with
``tracker.update.process_document`` exactly as a poll cycle does, so only storing is timed.  Each run
starts from a fresh SQLite database made by ``tracker.store.schema.upgrade`` (what ``tracker init``
does) and stores the feeds in transactions of ``--batch`` feeds, as the poller's group commit does:

- new:        every item is new (the cold cycle)
- unchanged:  the same documents again, every item known
- churn:      the next poll of a live farm: every feed has published 1 to 6 new items (the oldest
              drop out of its 30), so each batch stores a different number; µs per *new* item
- edited10:   those documents again with 10 % of the items edited (updated in place)
- not_mod:    a 304 for every feed (no entries: only the feed state and the fetch log), µs per feed

The figures are process CPU time (``time.process_time``: SQLite's work, WAL writes and checkpoints
included, as they run in this process), the best of ``--repeat`` runs; on a shared machine they
still move by 10-30 % from run to run, so compare versions run back to back.  Before each case the
WAL is checkpointed, so that each case pays for its own checkpoints only.  ``--dir /dev/shm`` leaves
the disk out.  ``--pg`` runs the same cases on a throwaway PostgreSQL server (tests/pgserver.py) when
its binaries are installed; the server's own CPU is not counted.  ``--ingest-file`` loads another
copy of ingest.py instead, e.g. the previous version (``git show HEAD:tracker/store/ingest.py``).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import importlib.util
import platform
import pstats
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from feedfarm import FarmModel  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

from tracker.models import ItemRecord  # noqa: E402
from tracker.store import ingest, schema  # noqa: E402
from tracker.store.db import make_engine  # noqa: E402
from tracker.store.dbapi import Database  # noqa: E402
from tracker.update import process_document  # noqa: E402

BASE = "http://farm.invalid"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
Feed = tuple[ItemRecord, ...]
Batch = list[tuple[Any, Feed]]


def build_feeds(n: int, items: int) -> tuple[list[Feed], list[Feed], int]:
    """Parse and tag ``n`` farm feeds, then the same feeds after 1-6 new items each (not timed).

    Returns (first documents, next documents, number of new items in the next ones).
    """
    model = FarmModel(n, items, epoch=NOW.timestamp(), max_items=items)
    rng = random.Random(7)
    first = [_process(model, i, NOW) for i in range(n)]
    later = NOW + timedelta(hours=4)
    news = [rng.randint(1, 6) for _ in range(n)]
    model.apply([(i, k, later.timestamp() - 60) for i, k in enumerate(news)])
    return first, [_process(model, i, later) for i in range(n)], sum(news)


def _process(model: FarmModel, i: int, now: datetime) -> Feed:
    done = process_document(model.render(i, BASE), {}, f"{BASE}/feed/{i}.xml", now, None, "")
    return done.items


def edited(feeds: list[Feed], fraction: float) -> list[Feed]:
    """The same feeds with every ``1/fraction``-th item's text changed (so its content hash too)."""
    step = round(1 / fraction)
    out: list[Feed] = []
    for items in feeds:
        changed = []
        for k, r in enumerate(items):
            if k % step == 0:
                summary = r.summary + " (updated)"
                digest = hashlib.sha256(f"{r.title}\n{summary}".encode()).hexdigest()[:32]
                r = r._replace(summary=summary, text=r.text + " (updated)", content_hash=digest)
            changed.append(r)
        out.append(tuple(changed))
    return out


def feed_update(feed_id: int, outcome: str, at: datetime) -> ingest.FeedUpdate:
    return ingest.FeedUpdate(
        feed_id=feed_id,
        outcome=outcome,
        status=200 if outcome == "ok" else 304,
        error=None,
        fetched_at=at,
        next_due_at=at + timedelta(minutes=30),
        consecutive_failures=0,
        elapsed=0.05,
        etag=f'"v-{feed_id}"' if outcome == "ok" else None,
        last_modified="Fri, 20 Nov 2026 11:00:00 GMT" if outcome == "ok" else None,
        title=f"Farm News {feed_id}" if outcome == "ok" else None,
        new_items_rate=1.5,
    )


def batches(ids: list[int], feeds: list[Feed] | None, size: int, at: datetime) -> list[Batch]:
    out: list[Batch] = []
    for start in range(0, len(ids), size):
        chunk: Batch = []
        for j in range(start, min(start + size, len(ids))):
            if feeds is None:
                chunk.append((feed_update(ids[j], "not_modified", at), ()))
            else:
                chunk.append((feed_update(ids[j], "ok", at), feeds[j]))
        out.append(chunk)
    return out


@contextmanager
def sqlite_engine(where: str | None = None) -> Iterator[Engine]:
    with tempfile.TemporaryDirectory(prefix="tracker-store-bench-", dir=where) as tmp:
        engine = make_engine(f"sqlite:///{tmp}/tracker.db")
        try:
            yield engine
        finally:
            engine.dispose()


@contextmanager
def pg_engine(url: str) -> Iterator[Engine]:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    try:
        yield engine
    finally:
        engine.dispose()


def run(
    make: Callable[[], Any],
    mod: ModuleType,
    docs: tuple[list[Feed], list[Feed], int],
    size: int,
    profile: str | None,
) -> dict[str, tuple[float, int]]:
    """One fresh database through all the cases; returns case -> (CPU seconds, items or feeds)."""
    results: dict[str, tuple[float, int]] = {}
    feeds, churned, n_new = docs
    with make() as engine:
        schema.upgrade(engine)
        db = Database.of(engine)
        urls = [f"{BASE}/feed/{i}.xml" for i in range(len(feeds))]
        ingest.sync_feeds(db, [ingest.FeedSpec(u, f"farm {i}") for i, u in enumerate(urls)])
        with engine.connect() as conn:
            by_url = dict(conn.execute(text("SELECT url, id FROM feed")).all())
        ids = [by_url[u] for u in urls]
        n_items = sum(len(items) for items in feeds)
        cases: list[tuple[str, list[Feed] | None, int, int]] = [
            ("new", feeds, n_items, 0),
            ("unchanged", feeds, n_items, 1),
            ("churn", churned, n_new, 2),
            ("edited10", edited(churned, 0.1), n_items, 3),
            ("not_mod", None, len(feeds), 4),
        ]
        for name, case_docs, units, hours in cases:
            work = batches(ids, case_docs, size, NOW + timedelta(hours=hours))
            prof = cProfile.Profile() if profile == name else None
            if engine.dialect.name == "sqlite":  # each case pays for its own WAL checkpoints only
                checkpoint(engine)
            gc.collect()
            t0 = time.process_time()
            if prof:
                prof.enable()
            for b in work:
                mod.apply_feed_results(db, b, now=NOW + timedelta(hours=hours))
            if prof:
                prof.disable()
            results[name] = (time.process_time() - t0, units)
            if prof:
                pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        db.close()
    return results


def checkpoint(engine: Engine) -> None:
    """Empty the WAL into the database (outside any transaction, or SQLite refuses)."""
    raw = engine.raw_connection()
    try:
        busy, _, _ = raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()  # type: ignore[union-attr]
        assert busy == 0, "checkpoint blocked"
    finally:
        raw.close()


def load(path: str | None) -> ModuleType:
    if path is None:
        return ingest
    spec = importlib.util.spec_from_file_location("ingest_under_test", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def report(label: str, runs: list[dict[str, tuple[float, int]]]) -> None:
    print(f"| {label} | " + " | ".join(_cell(name, runs) for name in runs[0]) + " |", flush=True)


def _cell(name: str, runs: list[dict[str, tuple[float, int]]]) -> str:
    cpu, units = min(r[name] for r in runs)
    return f"{cpu / units * 1e6:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--feeds", type=int, default=320)
    ap.add_argument("--items", type=int, default=30)
    ap.add_argument("--batch", type=int, default=32, help="feeds per transaction")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pg", action="store_true", help="also on a throwaway PostgreSQL server")
    ap.add_argument("--no-sqlite", action="store_true")
    ap.add_argument("--profile", choices=("new", "unchanged", "edited10", "churn", "not_mod"), help="cProfile a case")
    ap.add_argument("--ingest-file", help="benchmark this copy of ingest.py instead")
    ap.add_argument(
        "--dir", help="where the SQLite database goes (default: the temp dir; /dev/shm leaves out disk I/O)"
    )
    args = ap.parse_args()

    mod = load(args.ingest_file)
    docs = build_feeds(args.feeds, args.items)
    n_items = sum(len(items) for items in docs[0])
    print(
        f"apply_feed_results: {args.feeds} feeds x {args.items} items ({n_items} items), {args.batch} feeds per "
        f"transaction, best of {args.repeat}; Python {platform.python_version()}, {mod.__name__}"
    )
    print("| database | new µs/item | unchanged µs/item | churn µs/new item | edited10 µs/item | 304 µs/feed |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    if not args.no_sqlite:
        runs = [
            run(lambda: sqlite_engine(args.dir), mod, docs, args.batch, args.profile if i == 0 else None)
            for i in range(args.repeat)
        ]
        report("SQLite", runs)
    if args.pg:
        from pgserver import PgServer, bin_dir

        if bin_dir() is None:
            print("| PostgreSQL | not installed | | | | |")
            return
        with PgServer() as pg:
            runs = [
                run(lambda: pg_engine(pg.url), mod, docs, args.batch, args.profile if i == 0 else None)
                for i in range(args.repeat)
            ]
            report("PostgreSQL", runs)


if __name__ == "__main__":
    main()
