"""Web view latency with a million items in SQLite, measured over HTTP while a writer ingests.

    python bench/web.py                      # 1,000,000 items, 20 s of requests per phase
    python bench/web.py --items 100000 --seconds 5 --db /tmp/web.db --reuse

1. Seed: the real schema (``tracker.store.schema.upgrade``), then bulk ``executemany`` of feeds, items,
   item_source and item_tag rows (FTS5 triggers dropped during the load, the index rebuilt once, the
   triggers recreated), so 1M items take about a minute.
2. Serve: uvicorn in a subprocess running ``tracker.web.create_app`` on that database.
3. Write: a second subprocess stores new items through the real write path
   (``tracker.store.ingest.apply_feed_result``) every ``--write-every`` seconds, like a polling daemon.
4. Drive: httpx requests each page in turn for ``--seconds`` and prints p50 / p95 / max per page;
   ``--markdown`` appends the table to docs/benchmarks.md under "## Web".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FEEDS = 40
LANGS = [("en", 55), ("uk", 15), ("ru", 15), ("de", 10), ("fr", 5)]
COMMON = [
    "talks",
    "ceasefire",
    "Kyiv",
    "Moscow",
    "peace",
    "delegation",
    "negotiations",
    "envoy",
    "summit",
    "statement",
]
FILLER = [
    "officials",
    "said",
    "the",
    "proposal",
    "would",
    "be",
    "discussed",
    "again",
    "next",
    "week",
    "while",
    "fighting",
    "continued",
    "along",
    "the",
    "front",
    "line",
    "and",
    "diplomats",
    "in",
    "several",
    "capitals",
    "urged",
    "restraint",
]
RARE = [
    "Zaporizhzhia-plant",
    "Antalya",
    "Jeddah",
    "Vatican-envoy",
    "Minsk-format",
    "Bürgenstock",
    "Lavrov-Fidan",
    "Doha-channel",
]
FALLBACK_KEYS = {
    "mediator": ["turkey", "china", "african_initiative", "vatican", "un", "usa", "saudi_arabia", "qatar"],
    "obstacle": ["territory", "security_guarantees", "accountability", "international_pressure", "nato"],
}


def taxonomy() -> dict[str, list[str]]:
    """The real taxonomy's keys, so the seeded tags are the ones the overview shows."""
    try:
        from tracker.tag import load_taxonomy
        from tracker.web.state import keys_of

        keys = keys_of(load_taxonomy())
        found = {
            "mediator": [k.key for k in keys if k.kind == "mediator"],
            "obstacle": [k.key for k in keys if k.kind == "obstacle"],
        }
        if found["mediator"] and found["obstacle"]:
            return found
    except ModuleNotFoundError:
        pass
    return FALLBACK_KEYS


# --- seeding ------------------------------------------------------------------------------------


def seed(db: Path, n: int, *, now: datetime, rng_seed: int = 1) -> float:
    from tracker.store import schema
    from tracker.store.db import make_engine

    started = time.perf_counter()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{db}")
    schema.upgrade(engine)
    engine.dispose()

    keys = taxonomy()
    rng = random.Random(rng_seed)
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("PRAGMA cache_size=-400000")
    triggers = [
        r[0] for r in con.execute("SELECT sql FROM sqlite_master WHERE type='trigger' AND name LIKE 'item_fts_%'")
    ]
    for name in ("item_fts_ai", "item_fts_ad", "item_fts_au"):
        con.execute(f"DROP TRIGGER IF EXISTS {name}")
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    con.execute("BEGIN")
    con.executemany(
        "INSERT INTO feed (id, url, config_url, name, language, enabled, consecutive_failures, item_count,"
        " new_items_rate, last_outcome, last_status, last_fetched_at, last_success_at, next_due_at)"
        " VALUES (?, ?, ?, ?, ?, 1, ?, ?, 1.0, ?, ?, ?, ?, ?)",
        [
            (
                i + 1,
                f"http://127.0.0.1:9/feed/{i}.xml",
                f"http://127.0.0.1:9/feed/{i}.xml",
                f"Feed {i:02d}",
                _lang(rng),
                2 if i % 13 == 5 else 0,
                n // FEEDS,
                "error" if i % 13 == 5 else "ok",
                500 if i % 13 == 5 else 200,
                (now - timedelta(minutes=3)).strftime(fmt),
                (now - timedelta(minutes=3 if i % 13 != 5 else 300)).strftime(fmt),
                (now + timedelta(minutes=12)).strftime(fmt),
            )
            for i in range(FEEDS)
        ],
    )
    span = timedelta(days=730).total_seconds()
    start = now - timedelta(days=730)
    batch = 20_000
    for lo in range(0, n, batch):
        items, sources, tags = [], [], []
        for i in range(lo, min(n, lo + batch)):
            item_id = i + 1
            published = start + timedelta(seconds=span * i / n + rng.uniform(-3600, 0))
            pub = published.strftime(fmt)
            relevant = rng.random() < 0.7
            meds = rng.sample(keys["mediator"], k=rng.choice((0, 1, 1, 2))) if relevant else []
            obs = rng.sample(keys["obstacle"], k=rng.choice((0, 1, 1))) if relevant else []
            words = rng.sample(COMMON, 3) + ([rng.choice(RARE)] if rng.random() < 0.002 else [])
            title = f"{' '.join(words).capitalize()} as envoys meet (report {item_id})"
            summary = " ".join(rng.sample(FILLER, 14)) + "."
            lang = _lang(rng)
            feed = rng.randrange(FEEDS) + 1
            items.append(
                (
                    item_id,
                    f"https://news.example/{feed}/{item_id}",
                    title,
                    summary,
                    f"<p>{summary}</p>",
                    f"{title}\n{summary}",
                    lang,
                    pub,
                    pub,
                    hashlib.blake2b(title.encode(), digest_size=8).hexdigest(),
                    int(relevant),
                    0.8 if relevant else 0.1,
                    " ".join(meds),
                    " ".join(obs),
                    "[]",
                    feed,
                )
            )
            sources.append((item_id, feed, f"guid:{item_id}", "h", pub))
            tags += [(item_id, k, "mediator", pub) for k in meds]
            tags += [(item_id, k, "obstacle", pub) for k in obs]
        con.executemany(
            "INSERT INTO item (id, link, title, summary, content_html, text, language, published_at,"
            " ingested_at, content_hash, relevant, score, mediators, obstacles, evidence, source_count,"
            " feed_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)",
            items,
        )
        con.executemany(
            "INSERT INTO item_source (item_id, feed_id, dedup_key, content_hash, seen_at) VALUES (?, ?, ?, ?, ?)",
            sources,
        )
        con.executemany("INSERT INTO item_tag (item_id, tag, kind, published_at) VALUES (?, ?, ?, ?)", tags)
        if lo and lo % 200_000 == 0:
            print(f"  seeded {lo:,} items ({time.perf_counter() - started:.0f} s)", flush=True)
    con.execute("INSERT INTO item_fts(item_fts) VALUES ('rebuild')")
    for sql in triggers:
        con.execute(sql)
    con.execute("COMMIT")
    con.execute("ANALYZE")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return time.perf_counter() - started


def _lang(rng: random.Random) -> str:
    return rng.choices([lang for lang, _ in LANGS], weights=[w for _, w in LANGS])[0]


def count_items(db: Path) -> int:
    try:
        con = sqlite3.connect(db)
        try:
            return int(con.execute("SELECT max(id) FROM item").fetchone()[0] or 0)
        finally:
            con.close()
    except sqlite3.Error:
        return 0


# --- subprocess roles ---------------------------------------------------------------------------


class _Settings:
    admin_token = None


class _Config:
    taxonomy = None


def serve(db: Path, port: int, ttl: float) -> None:
    """The web app on ``db``; the bench has no feeds.yaml, so the App is reduced to what the web uses."""
    import uvicorn

    from tracker.store.db import make_engine
    from tracker.web import create_app

    class BenchApp:
        settings = _Settings()
        config = _Config()
        engine = make_engine(f"sqlite:///{db}")

    from tracker.store.timeline_queries import TaxonomyKey

    keys = [TaxonomyKey(k, k.replace("_", " ").title(), kind) for kind, ks in taxonomy().items() for k in ks]  # type: ignore[arg-type]
    web = create_app(BenchApp(), overview_ttl=ttl, keys=keys)  # type: ignore[arg-type]
    uvicorn.run(web, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def write(db: Path, every: float, per_batch: int) -> None:
    """Store ``per_batch`` new items every ``every`` seconds through the real write path."""
    from tracker.models import Entry, Tags
    from tracker.store import ingest
    from tracker.store.dbapi import Database
    from tracker.store.ingest import FeedUpdate

    database = Database(f"sqlite:///{db}")
    keys = taxonomy()
    rng = random.Random(os.getpid())
    k = 0
    while True:
        now = datetime.now(UTC)
        entries, tags = [], []
        for _ in range(per_batch):
            k += 1
            title = f"{' '.join(rng.sample(COMMON, 3)).capitalize()} live {os.getpid()}-{k}"
            body = " ".join(rng.sample(FILLER, 12))
            entries.append(
                Entry(
                    dedup_key=f"guid:live-{os.getpid()}-{k}",
                    guid=f"live-{os.getpid()}-{k}",
                    link=f"https://live.example/{os.getpid()}/{k}",
                    title=title,
                    summary=body,
                    content_html=f"<p>{body}</p>",
                    text=f"{title}\n{body}",
                    published=now,
                    updated=None,
                    date_fallback=None,
                    author=None,
                    language="en",
                    content_hash=hashlib.sha256(title.encode()).hexdigest()[:32],
                )
            )
            tags.append(Tags(True, 0.8, (rng.choice(keys["mediator"]),), (rng.choice(keys["obstacle"]),)))
        upd = FeedUpdate(
            feed_id=rng.randrange(FEEDS) + 1,
            outcome="ok",
            status=200,
            error=None,
            fetched_at=now,
            next_due_at=now + timedelta(minutes=15),
            consecutive_failures=0,
            elapsed=0.1,
        )
        ingest.apply_feed_result(database, upd, entries, tags, now=now)
        time.sleep(every)


# --- driving ------------------------------------------------------------------------------------


def pages(base: str, keys: dict[str, list[str]], now: datetime) -> list[tuple[str, str, str]]:
    """(group, label, path): group is the promise the page falls under."""
    import httpx

    since = (now - timedelta(days=60)).date().isoformat()
    until = (now - timedelta(days=30)).date().isoformat()
    med, obs = keys["mediator"][0], keys["obstacle"][0]
    out = [
        ("first", "overview /", "/"),
        ("first", "timeline first page", "/timeline"),
        ("first", "api/status", "/api/status"),
        ("first", "api/timeline first page", "/api/timeline"),
        ("filtered", f"mediator={med}", f"/timeline?mediator={med}"),
        ("filtered", "mediator+obstacle", f"/timeline?mediator={med}&obstacle={obs}"),
        ("filtered", "source=Feed 07", "/timeline?source=Feed+07"),
        ("filtered", "language=fr", "/timeline?language=fr"),
        ("filtered", "date range (30 d)", f"/timeline?since={since}&until={until}"),
        ("filtered", "oldest first", "/timeline?order=asc"),
        ("searched", "q=ceasefire (common)", "/timeline?q=ceasefire"),
        ("searched", "q=Jeddah (rare)", "/timeline?q=Jeddah"),
        ("searched", "q=talks Kyiv + mediator", f"/timeline?q=talks+Kyiv&mediator={med}"),
        ("searched", "q=talks Kyiv Moscow (3 words)", "/timeline?q=talks+Kyiv+Moscow"),
        ("searched", "q=ceasefire + language=fr", "/timeline?q=ceasefire&language=fr"),
        ("searched", "q=nomatchword", "/timeline?q=nomatchword"),
    ]
    # A page deep in the log (a year back): keyset pagination costs what the first page costs.
    old = (now - timedelta(days=365)).date().isoformat()
    first = httpx.get(f"{base}/api/timeline", params={"until": old}, timeout=60).json()
    if first.get("next_cursor"):
        out.append(("first", "deep page (a year back)", f"/timeline?after={first['next_cursor']}"))
    return out


def drive(base: str, plan: list[tuple[str, str, str]], seconds: float) -> dict[str, list[float]]:
    import httpx

    times: dict[str, list[float]] = {label: [] for _, label, _ in plan}
    with httpx.Client(base_url=base, timeout=30) as client:
        for _, _, path in plan:  # warm up each page once (first request compiles templates, fills caches)
            client.get(path).raise_for_status()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for _, label, path in plan:
                t0 = time.perf_counter()
                r = client.get(path)
                times[label].append((time.perf_counter() - t0) * 1000)
                r.raise_for_status()
    return times


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


LIMITS = {"first": 50.0, "filtered": 100.0, "searched": 100.0}


def report(plan: list[tuple[str, str, str]], times: dict[str, list[float]], meta: dict[str, Any]) -> str:
    lines = [
        f"{meta['items']:,} items in SQLite ({meta['db_mb']:.0f} MB), {meta['seconds']:.0f} s of "
        f"sequential requests per run over HTTP (uvicorn subprocess), writer storing {meta['write_rate']} "
        f'while serving; overview cache TTL {meta["ttl"]} s ("cache off": a second server computing it on '
        f"every request). Seeding took {meta['seed_s']}.",
        "",
        "| page | group | n | p50 ms | p95 ms | max ms | target p95 |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for group, label, _ in plan:
        t = times[label]
        ok = pct(t, 95) < LIMITS[group]
        lines.append(
            f"| {label} | {group} | {len(t)} | {pct(t, 50):.1f} | {pct(t, 95):.1f} | {max(t):.1f} | "
            f"< {LIMITS[group]:.0f} {'✓' if ok else '✗'} |"
        )
    return "\n".join(lines)


def write_markdown(path: Path, body: str) -> None:
    """Replace (or add) the "## Web" section; other sections belong to other benchmarks."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    section = f"## Web\n\n{body}\n\nReproduce: `python bench/web.py` (see the script's docstring for options).\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.strip() == "## Web"), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        new = "".join(lines[:start]) + section + ("\n" + "".join(lines[end:]) if end < len(lines) else "")
    path.write_text(new, encoding="utf-8")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            httpx.get(base + "/api/feeds", timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit("server did not start")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=float, default=20.0, help="request time per run")
    ap.add_argument("--db", type=Path, default=Path("/tmp/tracker-bench-web.db"))
    ap.add_argument("--reuse", action="store_true", help="keep an existing database with that many items")
    ap.add_argument("--overview-ttl", type=float, default=5.0, help="overview cache (0: compute every request)")
    ap.add_argument("--write-every", type=float, default=1.0, help="seconds between writer batches (0: no writer)")
    ap.add_argument("--write-batch", type=int, default=20, help="items per writer batch")
    ap.add_argument("--markdown", type=Path, nargs="?", const=ROOT / "docs" / "benchmarks.md", default=None)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--write", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.serve:
        serve(args.db, args.port, args.overview_ttl)
        return
    if args.write:
        write(args.db, args.write_every, args.write_batch)
        return

    now = datetime.now(UTC)
    note = Path(f"{args.db}.seed.json")  # how long the reused database took to seed
    if not (args.reuse and count_items(args.db) >= args.items):
        print(f"seeding {args.items:,} items into {args.db} ...", flush=True)
        took = seed(args.db, args.items, now=now)
        note.write_text(json.dumps({"items": args.items, "seconds": took}))
        print(f"seeded in {took:.0f} s", flush=True)
    seeded = json.loads(note.read_text()) if note.exists() else None
    seed_s = f"{seeded['seconds']:.0f} s for {seeded['items']:,} items" if seeded else "not recorded"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    me = [sys.executable, __file__, "--db", str(args.db)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        server = subprocess.Popen([*me, "--serve", "--port", str(port), "--overview-ttl", str(args.overview_ttl)])
        procs.append(server)
        # A second server without the overview cache shows what computing the overview costs.
        port2 = free_port()
        nocache = subprocess.Popen([*me, "--serve", "--port", str(port2), "--overview-ttl", "0"])
        procs.append(nocache)
        wait_ready(base, server)
        wait_ready(f"http://127.0.0.1:{port2}", nocache)
        if args.write_every > 0:
            procs.append(
                subprocess.Popen(
                    [
                        *me,
                        "--write",
                        "--write-every",
                        str(args.write_every),
                        "--write-batch",
                        str(args.write_batch),
                    ]
                )
            )
        plan = pages(base, taxonomy(), now)
        plan[1:1] = [
            ("first", "overview / (cache off)", f"http://127.0.0.1:{port2}/"),
            ("first", "api/status (cache off)", f"http://127.0.0.1:{port2}/api/status"),
        ]
        times = drive(base, plan, args.seconds)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=10)
    rate = f"{args.write_batch} items every {args.write_every:g} s" if args.write_every > 0 else "nothing"
    meta = {
        "items": count_items(args.db),
        "db_mb": sum(os.path.getsize(f) for f in (args.db, Path(f"{args.db}-wal")) if Path(f).exists()) / 1e6,
        "seconds": args.seconds,
        "write_rate": rate,
        "ttl": args.overview_ttl,
        "seed_s": seed_s,
    }
    body = report(plan, times, meta)
    print(body)
    print(json.dumps({label: round(pct(t, 95), 1) for label, t in times.items()}))
    if args.markdown:
        write_markdown(args.markdown, body)
        print(f"wrote {args.markdown}")


if __name__ == "__main__":
    main()
