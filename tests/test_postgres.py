"""tracker on a real PostgreSQL (psycopg 3): the ingest path, and three daemons sharing 500 feeds.

The server is a throwaway cluster (tests/pgserver.py).  Without the server binaries these tests skip
with a loud reason; the Makefile's system-deps installs them.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from feedfarm import FeedFarm
from localproc import TRACKER
from pgserver import HOW_TO_INSTALL, PgServer, bin_dir
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine

from tracker.fetch import FetchSettings
from tracker.schedule import ScheduleSettings
from tracker.store import ingest, schema, tables
from tracker.store.db import make_engine
from tracker.store.dbapi import Database
from tracker.store.ingest import FeedSpec
from tracker.update import Poller

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(bin_dir() is None, reason=HOW_TO_INSTALL),
]

ROOT = Path(__file__).resolve().parents[1]
JSON = ("--log-format", "json")
FAST = FetchSettings(concurrency=20, per_host_concurrency=20, read_timeout=5, total_timeout=10)


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    with PgServer() as server:
        yield server


@pytest.fixture
def engine(pg: PgServer) -> Iterator[Engine]:
    eng = make_engine(pg.url)
    with eng.begin() as conn:  # each test starts from an empty database
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    schema.upgrade(eng)
    yield eng
    eng.dispose()


def poll(engine: Engine) -> object:
    with Poller(Database.of(engine), fetch=FAST, schedule=ScheduleSettings(), processes=0) as p:
        return asyncio.run(p.poll(include_not_due=True))


def test_ingest_and_cross_feed_dedup_on_postgres(engine: Engine) -> None:
    assert engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"
    with FeedFarm(feeds=3, items=6) as farm:
        # feed 0 under two URLs: two feeds carrying the same articles must give one item each
        urls = [farm.url(0), farm.url(0) + "?v=etag", farm.url(1), farm.url(2)]
        ingest.sync_feeds(Database.of(engine), [FeedSpec(u, f"feed {i}") for i, u in enumerate(urls)])
        first = poll(engine)
        assert first.ok == 4, first.errors  # type: ignore[attr-defined]
        with engine.connect() as conn:
            items = conn.execute(select(func.count()).select_from(tables.ITEM)).scalar_one()
            sources = conn.execute(select(func.count()).select_from(tables.SOURCE)).scalar_one()
            shared = conn.execute(select(func.count()).select_from(tables.ITEM).where(tables.ITEM.c.source_count == 2))
            shared_n = shared.scalar_one()
            links = conn.execute(select(tables.ITEM.c.link)).scalars().all()
        assert items == 3 * 6  # 4 feeds, 24 entries, 18 distinct articles
        assert sources == 4 * 6
        assert shared_n == 6
        assert len(links) == len(set(links))

        farm.change(1.0, random.Random(2), count=1)
        again = poll(engine)
        assert again.new == 3, again.line()  # type: ignore[attr-defined]  # feed 0's new item counts once
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(tables.ITEM)).scalar_one() == 3 * 7


def test_claim_due_gives_concurrent_workers_disjoint_feeds(engine: Engine) -> None:
    ingest.sync_feeds(Database.of(engine), [FeedSpec(f"http://127.0.0.1:9/{i}.xml", f"f{i}") for i in range(200)])
    now = datetime.now(UTC)
    barrier = threading.Barrier(4)
    claimed: dict[str, list[int]] = {}

    def worker(name: str) -> None:
        barrier.wait()
        got: list[int] = []
        while batch := ingest.claim_due(
            Database.of(engine), now=now, worker=name, lease=timedelta(minutes=5), limit=15
        ):
            got += [c.request.feed_id for c in batch]
        claimed[name] = got

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    everything = [f for got in claimed.values() for f in got]
    print(f"\nclaim_due on PostgreSQL, 4 concurrent workers: {[len(g) for g in claimed.values()]} feeds each")
    assert len(everything) == 200 and len(set(everything)) == 200  # each feed claimed exactly once
    assert sum(1 for got in claimed.values() if got) >= 2  # the work was actually shared


def _write_config(path: Path, urls: list[str]) -> None:
    lines = [
        "settings:",
        "  concurrency: 10",
        "  per_host_concurrency: 10",
        "  default_interval: 10m",
        "  min_interval: 10m",  # one due window per feed during the test
        "  max_interval: 20m",
        "feeds:",
    ]
    for i, url in enumerate(urls):
        lines += [f"  - name: farm {i}", f"    url: {url}"]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.slow
def test_three_daemons_share_500_feeds_each_polled_once(pg: PgServer, engine: Engine, tmp_path: Path) -> None:
    n = 500
    with FeedFarm(feeds=n, items=2, latency=0.15) as farm:
        config = tmp_path / "feeds.yaml"
        _write_config(config, farm.urls())
        env = dict(os.environ, TRACKER_CONFIG=str(config), TRACKER_DATABASE_URL=pg.url)
        subprocess.run([*TRACKER, "init"], env=env, check=True, capture_output=True, cwd=tmp_path, timeout=120)
        farm.reset_stats()
        logs = [tmp_path / f"worker{i}.log" for i in range(3)]
        started = time.monotonic()
        procs = [
            subprocess.Popen(
                [*TRACKER, "run", "--no-web", "--poll-every", "0.5", "--batch", "20", "--processes", "0", *JSON],
                env=env,
                cwd=tmp_path,
                stdout=subprocess.DEVNULL,
                stderr=log.open("w"),
            )
            for log in logs
        ]
        try:
            deadline = time.monotonic() + 90
            done = 0
            while time.monotonic() < deadline:
                with engine.connect() as conn:
                    done = conn.execute(select(func.count(func.distinct(tables.FETCH_LOG.c.feed_id)))).scalar_one()
                if done >= n:
                    break
                time.sleep(0.5)
            elapsed = time.monotonic() - started
            time.sleep(3)  # a worker that would poll a feed a second time gets the chance to
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            codes = [p.wait(60) for p in procs]
        requests = farm.stats()["requests"]

    with engine.connect() as conn:
        per_feed = dict(
            conn.execute(select(tables.FETCH_LOG.c.feed_id, func.count()).group_by(tables.FETCH_LOG.c.feed_id)).all()
        )
        leased = conn.execute(
            select(func.count()).select_from(tables.FEED).where(tables.FEED.c.lease_owner.is_not(None))
        ).scalar_one()
    by_worker: list[set[str]] = []
    for log in logs:
        polled: set[str] = set()
        for line in log.read_text().splitlines():
            rec = json.loads(line)  # every line is JSON with --log-format json
            assert {"ts", "level", "logger", "msg"} <= rec.keys()
            if rec["logger"] == "tracker.update" and "outcome" in rec:
                assert rec["feed"] not in polled, f"{rec['feed']} polled twice by one worker"
                polled.add(rec["feed"])
        by_worker.append(polled)
    union = set().union(*by_worker)
    overlap = sum(len(a & b) for i, a in enumerate(by_worker) for b in by_worker[i + 1 :])
    twice = {k: v for k, v in per_feed.items() if v != 1}
    print(
        f"\nPostgreSQL, 3 daemons, {n} feeds: all polled in {elapsed:.1f} s; per worker "
        f"{[len(w) for w in by_worker]}; feeds polled twice: {len(twice)}; farm requests: {requests}; "
        f"exit codes {codes}"
    )
    assert codes == [0, 0, 0]
    assert len(per_feed) == n and not twice  # every feed exactly once in its due window
    assert requests == n  # and the farm saw exactly one request per feed
    assert len(union) == n and overlap == 0
    assert all(by_worker), "every worker took a share"
    assert leased == 0  # clean stops gave every lease back
