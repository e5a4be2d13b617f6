"""A whole polling cycle against a real local feed server and a real SQLite file."""

from __future__ import annotations

import asyncio
import fcntl
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from feedfarm import FeedFarm
from pytest_httpserver import HTTPServer
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from tracker.fetch import FetchSettings
from tracker.models import FeedRequest, FetchResult
from tracker.schedule import ScheduleSettings
from tracker.store import ingest, queries, schema, tables
from tracker.store.db import make_engine
from tracker.store.dbapi import Database
from tracker.store.ingest import ClaimedFeed, FeedSpec
from tracker.update import PIPE_BYTES, Poller, Processed, decide, make_process_pool

FAST = FetchSettings(concurrency=20, per_host_concurrency=20, read_timeout=2, total_timeout=5)
SCHEDULE = ScheduleSettings()


def make_db(tmp_path: Path, urls: list[str]) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'tracker.db'}")
    schema.upgrade(engine)
    ingest.sync_feeds(Database.of(engine), [FeedSpec(u, f"feed {i}") for i, u in enumerate(urls)])
    return engine


def poll(engine: Engine, *, include_not_due: bool = True) -> object:
    with Poller(Database.of(engine), fetch=FAST, schedule=SCHEDULE, processes=0) as p:
        return asyncio.run(p.poll(include_not_due=include_not_due))


def stored_guids(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(select(tables.SOURCE.c.dedup_key)).scalars().all()
    return [r.removeprefix("guid:") for r in rows]


def test_cold_then_unchanged_then_changed(tmp_path: Path) -> None:
    with FeedFarm(feeds=6, items=5) as farm:
        engine = make_db(tmp_path, farm.urls())
        cold = poll(engine)
        assert (cold.ok, cold.failed, cold.new) == (6, 0, 30)  # type: ignore[attr-defined]
        assert sorted(stored_guids(engine)) == sorted(farm.all_items())

        farm.reset_stats()
        unchanged = poll(engine)
        assert (unchanged.not_modified, unchanged.new) == (6, 0)  # type: ignore[attr-defined]
        assert farm.stats()["not_modified"] == 6
        assert "if-none-match" in {k.lower() for k in farm.last_headers("/feed/0.xml")}

        changed = farm.change(0.5, random.Random(3), count=2)
        third = poll(engine)
        assert third.new == 2 * len(changed)  # type: ignore[attr-defined]
        guids = stored_guids(engine)
        assert sorted(guids) == sorted(farm.all_items() | set(guids))  # nothing lost
        assert len(guids) == len(set(guids))  # nothing twice


def test_failures_are_recorded_per_feed_and_do_not_stop_others(tmp_path: Path) -> None:
    with FeedFarm(feeds=2, items=3) as farm:
        urls = [
            farm.url(0),
            farm.url(0, "/status/500"),
            farm.url(0, "/invalid-xml"),
            farm.url(0, "/html"),
            farm.url(0, "/gone"),
            farm.url(0, "/loop/a"),
            "http://127.0.0.1:9/closed.xml",
            farm.url(1),
        ]
        engine = make_db(tmp_path, urls)
        summary = poll(engine)
        assert summary.ok == 3  # type: ignore[attr-defined]  (the ill-formed feed is recovered)
        assert summary.failed == 5  # type: ignore[attr-defined]
        health = {r["url"]: r for r in queries.feed_health(engine)}
        assert health[farm.url(0, "/status/500")]["last_error"] == "HTTP 500"
        assert "redirect loop" in health[farm.url(0, "/loop/a")]["last_error"]
        assert health[farm.url(0, "/gone")]["enabled"] is False
        assert health[farm.url(0, "/html")]["last_error"]
        broken = health[farm.url(0, "/invalid-xml")]
        assert broken["last_outcome"] == "ok"
        assert broken["last_error"].startswith("parsed with warnings: ")  # recorded, not hidden
        assert health["http://127.0.0.1:9/closed.xml"]["last_error"].startswith("connect error")
        now = datetime.now(UTC)
        for url in (urls[1], urls[3]):
            assert health[url]["next_due_at"] > now + timedelta(minutes=3)  # backed off
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(tables.ITEM)).scalar_one() == 7


def test_only_due_feeds_are_polled(tmp_path: Path) -> None:
    with FeedFarm(feeds=3, items=2) as farm:
        engine = make_db(tmp_path, farm.urls())
        poll(engine)
        farm.reset_stats()
        summary = poll(engine, include_not_due=False)
        assert summary.feeds == 0  # type: ignore[attr-defined]
        assert farm.stats()["requests"] == 0


def test_permanent_redirect_updates_the_stored_url(tmp_path: Path) -> None:
    with FeedFarm(feeds=1, items=2) as farm:
        moved = farm.url(0, "/redirect/301/0")
        engine = make_db(tmp_path, [moved])
        poll(engine)
        (row,) = queries.feed_health(engine)
        assert row["url"] == farm.url(0)


@pytest.mark.parametrize("outcome", ["error", "not_modified", "ok"])
def test_decide_counts_failures(outcome: str) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    claimed = ClaimedFeed(FeedRequest(1, "http://x/"), "x", None, None, 2, 0.0)
    result = FetchResult(feed_id=1, outcome=outcome, url="http://x/", status=500 if outcome == "error" else 200)  # type: ignore[arg-type]
    upd = decide(claimed, result, None if outcome != "ok" else _empty(), now=now, schedule=SCHEDULE, rand=0.5)
    assert upd.consecutive_failures == (3 if outcome == "error" else 0)
    assert upd.next_due_at > now


def _empty() -> Processed:
    from tracker.models import ParsedFeed

    return Processed(ParsedFeed(title="t", link=None, language=None, ttl_minutes=None, entries=()), ())


RSS = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Wire</title><link>https://wire.example/</link>
<item><guid>w-1</guid><link>https://wire.example/1</link><title>Ukraine and Russia resume peace talks</title>
<description>Delegations from Kyiv and Moscow met under the Zorbanian envoy's auspices.</description></item>
</channel></rss>"""


@pytest.mark.parametrize("overrides", [None, {"mediators": {"un": {"strong": ["Zorbanian envoy"]}}}])
def test_feeds_yaml_taxonomy_overrides_reach_the_parse_workers(
    tmp_path: Path, httpserver: HTTPServer, overrides: dict[str, object] | None
) -> None:
    httpserver.expect_request("/wire.xml").respond_with_data(RSS, content_type="application/rss+xml")
    engine = make_db(tmp_path, [httpserver.url_for("/wire.xml")])
    with Poller(Database.of(engine), fetch=FAST, schedule=SCHEDULE, processes=1, taxonomy=overrides) as p:
        assert asyncio.run(p.poll(include_not_due=True)).new == 1  # type: ignore[attr-defined]
    with engine.connect() as conn:
        relevant, mediators, evidence = conn.execute(
            select(tables.ITEM.c.relevant, tables.ITEM.c.mediators, tables.ITEM.c.evidence)
        ).one()
    assert relevant
    if overrides:
        assert mediators.split() == ["un"] and "Zorbanian envoy" in evidence
    else:
        assert mediators == "" and "Zorbanian" not in evidence


@pytest.mark.skipif(not hasattr(fcntl, "F_GETPIPE_SZ"), reason="pipe sizes can be set on Linux only")
def test_parse_pool_pipes_hold_a_whole_document_and_result() -> None:
    pool = make_process_pool(1)
    try:
        assert pool.submit(len, b"x" * PIPE_BYTES).result() == PIPE_BYTES  # a worker answers through them
        for queue in (pool._result_queue, pool._call_queue):  # type: ignore[attr-defined]
            assert fcntl.fcntl(queue._reader.fileno(), fcntl.F_GETPIPE_SZ) == PIPE_BYTES
    finally:
        pool.shutdown()


def test_a_slow_writer_holds_back_fetching(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Documents do not pile up in memory in front of a slow stage: at most concurrency + extra
    feeds are between "fetch started" and "stored"."""
    import tracker.update

    monkeypatch.setattr(tracker.update, "PIPELINE_EXTRA", 3)
    settings = FetchSettings(concurrency=4, per_host_concurrency=4, read_timeout=2, total_timeout=5)
    with FeedFarm(feeds=40, items=2) as farm:
        engine = make_db(tmp_path, farm.urls())
        ahead: list[int] = []
        stored = 0
        with Poller(Database.of(engine), fetch=settings, schedule=SCHEDULE, processes=0) as p:
            store_batch = p._store_batch

            def slow_store(batch: list[object]) -> object:
                nonlocal stored
                ahead.append(farm.stats()["requests"] - stored)
                time.sleep(0.02)
                out = store_batch(batch)  # type: ignore[arg-type]
                stored += len(batch)
                return out

            monkeypatch.setattr(p, "_store_batch", slow_store)
            summary = asyncio.run(p.poll(include_not_due=True))
        assert summary.ok == 40 and summary.new == 80
        assert max(ahead) <= 4 + 3, ahead
        assert len(ahead) >= 5  # the writer really was the bottleneck: many small batches


def test_results_arriving_one_by_one_share_transactions(tmp_path: Path) -> None:
    """Group commit: a cycle of 304s (results trickling in) is stored in a few transactions, not one per feed."""
    settings = FetchSettings(concurrency=2, per_host_concurrency=2, read_timeout=2, total_timeout=5)
    with FeedFarm(feeds=40, items=2, latency=0.02) as farm:
        engine = make_db(tmp_path, farm.urls())
        with Poller(Database.of(engine), fetch=settings, schedule=SCHEDULE, processes=0) as p:
            assert asyncio.run(p.poll(include_not_due=True)).ok == 40
            store_batch = p._store_batch
            sizes: list[int] = []

            def counting_store(batch: list[object]) -> object:
                sizes.append(len(batch))
                return store_batch(batch)  # type: ignore[arg-type]

            p._store_batch = counting_store  # type: ignore[method-assign]
            summary = asyncio.run(p.poll(include_not_due=True))
        assert summary.not_modified == 40
        assert sum(sizes) == 40 and len(sizes) <= 12, sizes  # 2 results per 20 ms: ~5 per 50 ms wait
