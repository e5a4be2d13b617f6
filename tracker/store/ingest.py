"""The write path: feeds from config, claiming due feeds, and one transaction per fetched feed.

Crash safety rests on two rules: a feed's new validators (ETag / Last-Modified), its items and its
outcome are committed in one transaction, so a crash before the commit leaves the feed to be fetched
again in full; and (feed_id, dedup_key) is unique, so fetching again can never duplicate an item.
Items are looked up and written in batches (one statement per kind per batch of feeds), through
the DBAPI cursor with statements written out once: this path is the poller's serial bottleneck.
Everything here is plain SQL on a driver connection (``tracker.store.dbapi``): the poller never
imports SQLAlchemy.
"""

from __future__ import annotations

import functools
import itertools
import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tracker.models import Entry, FeedRequest, ItemRecord, Tags
from tracker.store.dbapi import Database, pg_utc, sqlite_utc_text

CHUNK = 400  # bound for IN (...) lists


@dataclass(frozen=True, slots=True)
class FeedSpec:
    """A feed as configured (what ``sync_feeds`` needs from feeds.yaml)."""

    url: str
    name: str
    language: str | None = None
    interval_seconds: int | None = None
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class ClaimedFeed:
    """A leased feed: the request to make plus the state the scheduler needs afterwards."""

    request: FeedRequest
    name: str
    language: str | None
    interval_seconds: int | None
    consecutive_failures: int
    new_items_rate: float


@dataclass(frozen=True, slots=True)
class FeedUpdate:
    """New state for a feed row after a fetch; computed by ``tracker.update``."""

    feed_id: int
    outcome: str
    status: int | None
    error: str | None
    fetched_at: datetime
    next_due_at: datetime
    consecutive_failures: int
    elapsed: float
    url: str | None = None  # new URL after a permanent redirect
    etag: str | None = None
    last_modified: str | None = None
    title: str | None = None
    ttl_minutes: int | None = None
    new_items_rate: float | None = None
    disable_reason: str | None = None  # set on 410 Gone


@dataclass(frozen=True, slots=True)
class WriteCounts:
    new: int = 0  # items created
    updated: int = 0  # items whose content changed in place
    linked: int = 0  # existing items newly seen in this feed (same article, another source)


# --- feeds -------------------------------------------------------------------------------------

FEED_STATE = "SELECT id, url, config_url, name, language, interval_seconds, enabled, disabled_reason FROM feed"
INSERT_FEED = (
    "INSERT INTO feed (url, config_url, name, language, interval_seconds, enabled,"
    " consecutive_failures, item_count, new_items_rate) VALUES (?, ?, ?, ?, ?, ?, 0, 0, 0.0)"
)
UPDATE_FEED_SPEC = "UPDATE feed SET name = ?, language = ?, interval_seconds = ?, enabled = ? WHERE id = ?"


def sync_feeds(db: Database, specs: Sequence[FeedSpec]) -> tuple[int, int, int]:
    """Make the feed table match the config; returns (added, changed, disabled).

    Feeds are matched by the URL written in feeds.yaml (``config_url``) so that a feed whose stored
    URL moved after a 301 is still the same feed.  Feeds gone from the config are disabled, not
    deleted: their items stay in the log.
    """
    with db.transaction() as conn, _Cursor(conn, db.pg) as cur:
        rows = {r[2]: r for r in cur.rows(FEED_STATE)}
        by_url = {r[1]: r for r in rows.values()}
        seen: set[int] = set()
        inserts, updates = [], []
        for spec in specs:
            row = rows.get(spec.url) or by_url.get(spec.url)
            if row is None:
                inserts.append((spec.url, spec.url, spec.name, spec.language, spec.interval_seconds, spec.enabled))
                continue
            feed_id, _, _, name, language, interval, enabled, disabled_reason = row
            seen.add(feed_id)
            # 410 Gone stays disabled until removed from feeds.yaml by hand
            values = (spec.name, spec.language, spec.interval_seconds, spec.enabled and disabled_reason is None)
            if values != (name, language, interval, bool(enabled)):
                updates.append((*values, feed_id))
        cur.many(INSERT_FEED, inserts)
        cur.many(UPDATE_FEED_SPEC, updates)
        added, changed = len(inserts), len(updates)
        stale = [r[0] for r in rows.values() if r[0] not in seen and r[6]]
        cur.in_list("UPDATE feed SET enabled = FALSE WHERE id", stale, _INT)
    return added, changed, len(stale)


CLAIM_COLUMNS = "id, url, etag, last_modified, name, language, interval_seconds, consecutive_failures, new_items_rate"


def claim_due(
    db: Database,
    *,
    now: datetime,
    worker: str,
    lease: timedelta,
    include_not_due: bool = False,
    limit: int | None = None,
) -> list[ClaimedFeed]:
    """Lease the feeds that are due, so that several workers never poll one feed twice.

    On PostgreSQL the rows are locked with ``FOR UPDATE SKIP LOCKED`` while the lease is written,
    so concurrent workers each get a disjoint set.  On SQLite a single daemon holds the database
    (see ``tracker.daemon``), and ``BEGIN IMMEDIATE`` serialises claims anyway.
    """
    query = f"SELECT {CLAIM_COLUMNS} FROM feed WHERE enabled = TRUE AND (lease_until IS NULL OR lease_until < ?)"
    params: list[object] = []
    with db.transaction() as conn, _Cursor(conn, db.pg) as cur:
        at = cur.dt(now)
        params.append(at)
        if not include_not_due:
            query += " AND (next_due_at IS NULL OR next_due_at <= ?)"
            params.append(at)
        # never-polled feeds last, as ``ORDER BY next_due_at IS NOT NULL`` sorts false first
        query += " ORDER BY next_due_at IS NOT NULL, next_due_at, id"
        if limit is not None:
            query += " LIMIT ?"
            params.append(limit)
        if db.pg:
            query += " FOR UPDATE SKIP LOCKED"
        rows = cur.rows(query, params)
        until = cur.dt(now + lease)
        lease_sql = "UPDATE feed SET lease_owner = ?, lease_until = ? WHERE id"
        for chunk in _chunks([r[0] for r in rows]):
            cur.rows(_in_sql(lease_sql, len(chunk)), [worker, until, *chunk])
    return [
        ClaimedFeed(
            request=FeedRequest(feed_id, url, etag, last_modified),
            name=name,
            language=language,
            interval_seconds=interval,
            consecutive_failures=failures,
            new_items_rate=rate,
        )
        for feed_id, url, etag, last_modified, name, language, interval, failures, rate in rows
    ]


def release_leases(db: Database, worker: str) -> None:
    """Give back what this worker still holds (on clean shutdown)."""
    with db.transaction() as conn, _Cursor(conn, db.pg) as cur:
        cur.rows("UPDATE feed SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?", (worker,))


# --- one batch of fetch results: the hot write path ------------------------------------------
#
# Everything below runs for every entry of every polled feed, on the poller's single writer thread,
# so it talks to the DBAPI cursor directly with statements written out once, instead of building
# SQLAlchemy Core statements per call: compiling, cache keys and per-value bind processors were most
# of the CPU per stored item.  Values are converted exactly as the column types would convert them
# (``tracker.store.types``), so the rows are the ones Core wrote, byte for byte (ids included).


def apply_feed_result(
    db: Database,
    upd: FeedUpdate,
    entries: Sequence[Entry] = (),
    tags: Sequence[Tags] = (),
    *,
    now: datetime,
) -> WriteCounts:
    """Store one fetch: items, sources, tags, the feed's new state and a log line, atomically."""
    return apply_feed_results(db, [(upd, item_records(entries, tags))], now=now)[0]


def item_records(entries: Sequence[Entry], tags: Sequence[Tags]) -> tuple[ItemRecord, ...]:
    """Entries and their tags as the store takes them (built in the parse workers: see ItemRecord)."""
    return tuple(
        ItemRecord(
            e.dedup_key,
            e.link,
            e.title,
            e.summary,
            e.content_html,
            e.text,
            e.author,
            e.language,
            e.published,
            e.updated,
            e.date_fallback,
            e.content_hash,
            t.relevant,
            t.score,
            t.mediators,
            t.obstacles,
            evidence_json(t),
        )
        for e, t in zip(entries, tags, strict=True)
    )


def apply_feed_results(
    db: Database,
    batch: Sequence[tuple[FeedUpdate, Sequence[ItemRecord]]],
    *,
    now: datetime,
) -> list[WriteCounts]:
    """Store several fetches in one transaction (group commit): all of them or none.

    A crash can only lose whole feeds' results, never half of one; the cost of a commit (WAL
    append, full-text index flush) is paid once per batch instead of once per feed.  Entries of all
    the batch's feeds are looked up and written together (one statement per kind per batch).
    """
    out = [WriteCounts()] * len(batch)
    with db.transaction() as conn, _Cursor(conn, db.pg) as cur:
        for indices in _rounds(batch):
            feeds = [(batch[i][0].feed_id, batch[i][1]) for i in indices]
            for i, counts in zip(indices, _write_round(cur, feeds, now), strict=True):
                out[i] = counts
        _update_feeds(cur, [(upd, c) for (upd, _), c in zip(batch, out, strict=True)])
        at = cur.dt
        cur.write(
            INSERT_FETCH_LOG,
            [
                (
                    upd.feed_id,
                    at(upd.fetched_at),
                    upd.outcome,
                    upd.status,
                    upd.error,
                    upd.elapsed,
                    c.new + c.linked,
                    c.updated,
                )
                for (upd, _), c in zip(batch, out, strict=True)
            ],
        )
    return out


def _rounds(batch: Sequence[tuple[FeedUpdate, Sequence[ItemRecord]]]) -> list[list[int]]:
    """Indices of the feeds with entries, cut wherever a feed comes back: a feed stored twice in one
    batch must see its first result as known, as if stored one after the other."""
    rounds: list[list[int]] = [[]]
    seen: set[int] = set()
    for i, (upd, items) in enumerate(batch):
        if not items:
            continue
        if upd.feed_id in seen:
            rounds.append([])
            seen = set()
        seen.add(upd.feed_id)
        rounds[-1].append(i)
    return [r for r in rounds if r]


@dataclass(frozen=True)
class _Rows:
    """A statement over many rows: ``head <rows> tail``, the rows given as a relation whose columns
    are called column1, column2, ... (a VALUES list or a staging table, see ``_Cursor``).

    ``types`` are the columns' PostgreSQL types (of its staging table); ``staged`` marks the writes
    that fire the full-text triggers on SQLite.
    """

    head: str
    tail: str
    types: tuple[str, ...]
    staged: bool = False


_TEXT, _INT, _TIME, _BOOL, _FLOAT = "text", "integer", "timestamptz", "boolean", "double precision"
ITEM_COLUMNS = (
    "id, link, title, summary, content_html, text, author, language, published_at, updated_at, date_fallback,"
    " ingested_at, content_hash, relevant, score, mediators, obstacles, evidence, source_count, feed_id"
)
INSERT_ITEM = _Rows(
    f"INSERT INTO item ({ITEM_COLUMNS})",
    " ON CONFLICT (link) DO NOTHING RETURNING id",
    (_INT, *[_TEXT] * 7, _TIME, _TIME, _TEXT, _TIME, _TEXT, _BOOL, _FLOAT, _TEXT, _TEXT, _TEXT, _INT, _INT),
    staged=True,
)
UPDATE_ITEMS = _Rows(
    "UPDATE item SET title = v.column2, summary = v.column3, content_html = v.column4, text = v.column5,"
    " author = v.column6, language = v.column7, content_hash = v.column8, relevant = v.column9, score = v.column10,"
    " mediators = v.column11, obstacles = v.column12, evidence = v.column13, updated_at = v.column14 FROM (",
    ") AS v WHERE item.id = v.column1",
    (_INT, *[_TEXT] * 7, _BOOL, _FLOAT, _TEXT, _TEXT, _TEXT, _TIME),
    staged=True,
)
INSERT_SOURCE = _Rows(
    "INSERT INTO item_source (item_id, feed_id, dedup_key, content_hash, seen_at)",
    " ON CONFLICT (feed_id, dedup_key) DO NOTHING",
    (_INT, _INT, _TEXT, _TEXT, _TIME),
)
INSERT_TAG = _Rows("INSERT INTO item_tag (item_id, tag, kind, published_at)", "", (_INT, _TEXT, _TEXT, _TIME))
UPDATE_SOURCE_HASHES = _Rows(
    "UPDATE item_source SET content_hash = v.column1 FROM (",
    ") AS v WHERE item_source.feed_id = v.column2 AND item_source.dedup_key = v.column3",
    (_TEXT, _INT, _TEXT),
)
BUMP_SOURCE_COUNTS = _Rows(
    "UPDATE item SET source_count = source_count + v.column2 FROM (", ") AS v WHERE item.id = v.column1", (_INT, _INT)
)
INSERT_FETCH_LOG = _Rows(
    "INSERT INTO fetch_log (feed_id, at, outcome, status, error, elapsed, new_items, updated_items)",
    "",
    (_INT, _TIME, _TEXT, _INT, _TEXT, _FLOAT, _INT, _INT),
)
KNOWN_SOURCES = _Rows(
    # A join with the keys as a relation uses the unique (feed_id, dedup_key) index on both databases,
    # where SQLite would scan the table for a row-value IN list.
    "SELECT s.feed_id, s.dedup_key, s.item_id, s.content_hash FROM (",
    ") AS v JOIN item_source AS s ON s.feed_id = v.column1 AND s.dedup_key = v.column2",
    (_INT, _TEXT),
)
LINKS = "SELECT link, id FROM item WHERE link"
MAX_PARAMS = 30_000  # per statement: SQLite's default limit is 32766 (since 3.32)
MAX_ROWS = 128  # per VALUES list on SQLite, a power of two


class _Cursor:
    """One transaction's DBAPI cursor, and what differs between SQLite and PostgreSQL: how many
    rows reach the database in one statement.

    The writes that fire the FTS5 triggers on SQLite, and every multi-row statement on PostgreSQL,
    take their rows from a temp table ("staged"): filled by ``executemany`` on SQLite (in process)
    and by a binary COPY on PostgreSQL (the fastest way in, and psycopg formats it in C), then read
    by one set-based statement with a fixed text.  On SQLite, every statement writing to the FTS5
    table first flushes the index's pending terms (its statement savepoint), hence one statement.

    The other SQLite statements take VALUES and IN lists of power-of-two lengths only (writes cut
    into such pieces, lookups padded up to one), so that a handful of statement texts serve any
    number of rows, each compiled once and then reused from the driver's statement cache (compiling
    a long VALUES list costs SQLite about as much as running it).

    Fixed statements are written with ``?`` (sqlite3's qmark style) and rewritten to ``%s`` for
    psycopg.  Driver errors come out as the driver raised them, noting the statement that failed.
    """

    def __init__(self, conn: Any, pg: bool) -> None:
        self.pg = pg
        self.dt: Callable[[datetime | None], object] = pg_utc if pg else sqlite_utc_text
        max_params = MAX_PARAMS
        if not pg and hasattr(conn, "getlimit"):  # an old SQLite may allow only 999
            max_params = min(MAX_PARAMS, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
        self.max_params = max_params
        self.cur: Any = conn.cursor()
        self.statement = ""
        self.pg_stages_ready = False

    def __enter__(self) -> _Cursor:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        self.cur.close()
        if exc is not None and self.statement:
            exc.add_note(f"while running: {self.statement[:2000]}")

    def _run(self, statement: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        self.statement = statement
        cur = self.cur
        cur.execute(statement, params)
        return cur.fetchall() if cur.description is not None else []

    def rows(self, statement: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return self._run(_pg_sql(statement) if self.pg else statement, params)

    def many(self, statement: str, rows: Sequence[Sequence[object]]) -> None:
        """``executemany`` (pipelined by psycopg) of a fixed statement that fires no trigger."""
        if rows:
            self.statement = statement = _pg_sql(statement) if self.pg else statement
            self.cur.executemany(statement, rows)

    def write(self, stmt: _Rows, rows: Sequence[Sequence[object]]) -> list[tuple[Any, ...]]:
        """Run ``stmt`` for all the rows; returns what it returns (RETURNING)."""
        if not rows:
            return []
        if self.pg or stmt.staged:
            stage = self._stage(stmt.types, rows)
            out = self._run(f"{stmt.head} SELECT * FROM {stage} WHERE true{stmt.tail}")  # see _TYPE_CODES
            self._run(f"DELETE FROM {stage}")  # emptied, not dropped: it lives as long as the connection
            return out
        width = len(stmt.types)
        cap = min(MAX_ROWS, _floor_pow2(self.max_params // width))
        out = []
        start, total = 0, len(rows)
        while start < total:
            size = cap if total - start >= cap else _floor_pow2(total - start)
            statement = _values_sql(stmt.head, stmt.tail, width, size)
            out += self._run(statement, list(itertools.chain.from_iterable(rows[start : start + size])))
            start += size
        return out

    def lookup(self, stmt: _Rows, rows: Sequence[Sequence[object]]) -> list[tuple[Any, ...]]:
        """What ``stmt`` (a SELECT) returns for all the rows; on SQLite a VALUES list is padded by
        repeating its last row, which can only repeat a result row."""
        if not rows:
            return []
        if self.pg:
            return self.write(stmt, rows)
        width = len(stmt.types)
        out: list[tuple[Any, ...]] = []
        for start in range(0, len(rows), MAX_ROWS):
            part = list(rows[start : start + MAX_ROWS])
            size = _ceil_pow2(len(part))
            part += part[-1:] * (size - len(part))
            statement = _values_sql(stmt.head, stmt.tail, width, size)
            out += self._run(statement, list(itertools.chain.from_iterable(part)))
        return out

    def in_list(self, head: str, values: Sequence[object], pg_type: str) -> list[tuple[Any, ...]]:
        """``head IN (?, ...)`` for all the values, padded like a ``lookup``; staged on PostgreSQL."""
        out: list[tuple[Any, ...]] = []
        if not values:
            return out
        if self.pg:
            stage = self._stage((pg_type,), [(v,) for v in values])
            out = self._run(f"{head} IN (SELECT column1 FROM {stage})")
            self._run(f"DELETE FROM {stage}")
            return out
        for start in range(0, len(values), MAX_ROWS):
            part = list(values[start : start + MAX_ROWS])
            size = _ceil_pow2(len(part))
            out += self._run(_in_sql(head, size), part + part[-1:] * (size - len(part)))
        return out

    def _stage(self, types: tuple[str, ...], rows: Sequence[Sequence[object]]) -> str:
        """Put the rows into this connection's (empty) temp table for rows of these types."""
        stage = _stage_name(types)
        if self.pg:
            if not self.pg_stages_ready:  # once per transaction: creating a temp table is transactional
                self.statement = _PG_CREATE_STAGES
                self.cur.execute(_PG_CREATE_STAGES)  # no parameters: several statements in one go
                self.pg_stages_ready = True
            self.statement = f"COPY {stage} FROM STDIN"
            with self.cur.copy(f"COPY {stage} FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types([_PG_BINARY[t] for t in types])
                write_row = copy.write_row
                for row in rows:
                    write_row(row)
            return stage
        self._run(f"CREATE TEMP TABLE IF NOT EXISTS {stage} ({', '.join(_columns(len(types)))})")
        self.statement = fill = _sqlite_fill_sql(stage, len(types))
        self.cur.executemany(fill, rows)
        return stage

    def new_item_ids(self, n: int) -> list[int]:
        """Ids for ``n`` new items, ascending: chosen before the insert, so that each inserted row's
        id is known without matching RETURNING rows (whose order neither database promises) to rows.

        SQLite: the ids it would pick itself (max + 1, ...); the transaction holds the write lock, so
        nobody else can take them.  PostgreSQL: drawn from the column's sequence, as a default would.
        """
        if not n:
            return []
        if self.pg:
            got = self.rows("SELECT nextval(pg_get_serial_sequence('item', 'id')) FROM generate_series(1, ?)", (n,))
            return sorted(r[0] for r in got)
        top = self.rows("SELECT max(id) FROM item")[0][0] or 0
        return list(range(top + 1, top + 1 + n))


def _floor_pow2(n: int) -> int:
    return 1 << (n.bit_length() - 1)


def _ceil_pow2(n: int) -> int:
    return 1 << (n - 1).bit_length()


def _columns(width: int) -> list[str]:
    return [f"column{i}" for i in range(1, width + 1)]  # what a VALUES list's columns are called


@functools.lru_cache(maxsize=64)
def _pg_sql(statement: str) -> str:
    return statement.replace("?", "%s")  # psycopg's placeholder; these statements hold no other ? or %


# Staging tables, one per row type.  ``WHERE true`` after ``SELECT * FROM <stage>`` keeps SQLite from
# taking a following ``ON CONFLICT`` for a join constraint.
_TYPE_CODES = {_TEXT: "t", _INT: "i", _TIME: "z", _BOOL: "b", _FLOAT: "f"}
_PG_BINARY = {_TEXT: "text", _INT: "int4", _TIME: "timestamptz", _BOOL: "bool", _FLOAT: "float8"}


@functools.cache
def _stage_name(types: tuple[str, ...]) -> str:
    return "ingest_stage_" + "".join(_TYPE_CODES[t] for t in types)


@functools.cache
def _sqlite_fill_sql(stage: str, width: int) -> str:
    return f"INSERT INTO temp.{stage} VALUES ({', '.join(['?'] * width)})"


def _pg_create_stages(*signatures: tuple[str, ...]) -> str:
    """DDL for PostgreSQL's staging tables; ON COMMIT DELETE ROWS: emptied by every commit."""
    tables = [
        f"CREATE TEMP TABLE IF NOT EXISTS {_stage_name(types)} "
        f"({', '.join(f'{c} {t}' for c, t in zip(_columns(len(types)), types, strict=True))}) ON COMMIT DELETE ROWS"
        for types in dict.fromkeys(signatures)
    ]
    return "; ".join(["SET LOCAL client_min_messages = warning", *tables])  # no "already exists" notices


_PG_CREATE_STAGES = _pg_create_stages(
    *(s.types for s in (INSERT_ITEM, UPDATE_ITEMS, INSERT_SOURCE, INSERT_TAG, UPDATE_SOURCE_HASHES)),
    *(s.types for s in (BUMP_SOURCE_COUNTS, INSERT_FETCH_LOG, KNOWN_SOURCES)),
    (_TEXT,),
    (_INT,),
)


@functools.lru_cache(maxsize=256)
def _in_sql(head: str, n: int) -> str:
    return f"{head} IN ({', '.join(['?'] * n)})"


@functools.lru_cache(maxsize=256)
def _values_sql(head: str, tail: str, width: int, n: int) -> str:
    row = "(" + ", ".join(["?"] * width) + ")"
    return f"{head} VALUES {', '.join([row] * n)}{tail}"


def _write_round(db: _Cursor, feeds: Sequence[tuple[int, Sequence[ItemRecord]]], now: datetime) -> list[WriteCounts]:
    """Store the entries of feeds that are all different: one lookup and one write per kind.

    The result is what storing the feeds one after the other would give: the first feed to carry a
    new link creates its item, later ones (and other feeds already in the database) link to it.
    """
    dt = db.dt
    seen_at = dt(now)
    by_feed: list[dict[str, ItemRecord]] = []
    keys: list[tuple[int, str]] = []
    for fid, items in feeds:
        firsts: dict[str, ItemRecord] = {}
        for r in items:
            key = r.dedup_key
            if key not in firsts:  # a feed repeating a guid keeps its first copy
                firsts[key] = r
                keys.append((fid, key))
        by_feed.append(firsts)
    known = {(fid, key): (item_id, h) for fid, key, item_id, h in db.lookup(KNOWN_SOURCES, keys)}

    updated = [0] * len(feeds)
    changes: dict[int, ItemRecord] = {}  # item id -> new content (a later feed's copy wins, as it would in turn)
    new_hashes: list[tuple[str, int, str]] = []
    fresh_by_feed: list[list[ItemRecord]] = []
    for n, firsts in enumerate(by_feed):
        fid = feeds[n][0]
        if not known:
            fresh_by_feed.append(list(firsts.values()))
            continue
        fresh: list[ItemRecord] = []
        for key, r in firsts.items():
            hit = known.get((fid, key))
            if hit is None:
                fresh.append(r)
            elif hit[1] != r.content_hash:
                changes[hit[0]] = r
                new_hashes.append((r.content_hash, fid, key))
                updated[n] += 1
        fresh_by_feed.append(fresh)
    if changes:
        _update_items(db, changes, new_hashes, now)

    # The same article under another feed (or under another guid) is one item: match by link.
    links = list(dict.fromkeys([r.link for fresh in fresh_by_feed for r in fresh if r.link]))
    by_link: dict[str, int] = dict(db.in_list(LINKS, links, _TEXT))
    plan: list[tuple[int, ItemRecord]] = []  # (feed index, item) of the items to create, in order
    for n, fresh in enumerate(fresh_by_feed):
        first: dict[str, ItemRecord] = {}
        unlinked: list[tuple[int, ItemRecord]] = []
        for r in fresh:
            link = r.link
            if not link:
                unlinked.append((n, r))
            elif link not in first:
                first[link] = r
        for link, r in first.items():
            if link not in by_link:
                by_link[link] = 0  # claimed: later feeds link to this feed's new item
                plan.append((n, r))
        plan += unlinked

    ids = db.new_item_ids(len(plan))
    published = [dt(r.published) for _, r in plan]
    rows = [
        (
            item_id,
            r.link,
            *_content(r),
            pub,
            None if r.updated is None else dt(r.updated),
            r.date_fallback,
            seen_at,
            *_judgement(r),
            1,
            feeds[n][0],
        )
        for (n, r), pub, item_id in zip(plan, published, ids, strict=True)
    ]
    done = {r[0] for r in db.write(INSERT_ITEM, rows)}
    inserted: list[dict[str, int]] = [{} for _ in feeds]  # per feed: dedup_key -> new item id
    lost: list[str] = []
    tag_rows_: list[tuple[object, ...]] = []
    for (n, r), pub, item_id in zip(plan, published, ids, strict=True):
        if item_id not in done:  # another worker inserted the same link first: link to its item
            if r.link:
                del by_link[r.link]
                lost.append(r.link)
            continue
        inserted[n][r.dedup_key] = item_id
        if r.link:
            by_link[r.link] = item_id
        tag_rows_ += _tag_tuples(item_id, r, pub)
    if lost:
        by_link.update(db.in_list(LINKS, lost, _TEXT))
    db.write(INSERT_TAG, tag_rows_)

    sources: list[tuple[object, ...]] = []
    bumps: dict[int, int] = {}
    out: list[WriteCounts] = []
    for n, fresh in enumerate(fresh_by_feed):
        fid, mine = feeds[n][0], inserted[n]
        new_ids = set(mine.values())
        linked: set[int] = set()
        for r in fresh:
            found = by_link.get(r.link) if r.link else mine.get(r.dedup_key)
            if not found:
                continue
            if found not in new_ids:
                linked.add(found)
            sources.append((found, fid, r.dedup_key, r.content_hash, seen_at))
        for item_id in linked:
            bumps[item_id] = bumps.get(item_id, 0) + 1
        out.append(WriteCounts(new=len(new_ids), updated=updated[n], linked=len(linked)))
    db.write(INSERT_SOURCE, sources)
    db.write(BUMP_SOURCE_COUNTS, sorted(bumps.items()))  # id order: concurrent writers lock rows alike
    return out


def _content(r: ItemRecord) -> tuple[object, ...]:
    """An item's content columns, in ITEM_COLUMNS' (and UPDATE_ITEMS') order: title .. language."""
    return r.title, r.summary, r.content_html, r.text, r.author, r.language


def _judgement(r: ItemRecord) -> tuple[object, ...]:
    """What the content hashed and was tagged to, in column order: content_hash .. evidence."""
    return r.content_hash, r.relevant, r.score, " ".join(r.mediators), " ".join(r.obstacles), r.evidence_json


def _update_items(
    db: _Cursor, changes: dict[int, ItemRecord], new_hashes: list[tuple[str, int, str]], now: datetime
) -> None:
    """Rewrite changed items in place, with their sources' hashes and their tags."""
    dt = db.dt
    ids = sorted(changes)  # id order: concurrent writers lock rows in the same order
    # published_at as stored, written back as it is into item_tag
    published: dict[int, object] = dict(db.in_list("SELECT id, published_at FROM item WHERE id", ids, _INT))
    rows = []
    tag_rows_: list[tuple[object, ...]] = []
    for item_id in ids:
        r = changes[item_id]
        rows.append((item_id, *_content(r), *_judgement(r), dt(r.updated or now)))
        tag_rows_ += _tag_tuples(item_id, r, published[item_id])
    db.write(UPDATE_ITEMS, rows)
    db.write(UPDATE_SOURCE_HASHES, new_hashes)
    db.in_list("DELETE FROM item_tag WHERE item_id", ids, _INT)
    db.write(INSERT_TAG, tag_rows_)


def _update_feeds(db: _Cursor, rows: Sequence[tuple[FeedUpdate, WriteCounts]]) -> None:
    """The feeds' new state: one executemany per shape of update, so a cycle of 304s costs one
    statement per batch instead of one per feed."""
    dt = db.dt
    shapes: dict[tuple[str, ...], list[tuple[object, ...]]] = {}
    for upd, counts in rows:
        values = _feed_values(upd)
        params = (*(dt(v) if isinstance(v, datetime) else v for v in values.values()), counts.new + counts.linked)
        shapes.setdefault(tuple(values), []).append((*params, upd.feed_id))
    for columns, shape_rows in shapes.items():
        db.many(_feed_update_sql(columns), shape_rows)


@functools.cache
def _feed_update_sql(columns: tuple[str, ...]) -> str:
    sets = ", ".join(f"{c} = ?" for c in columns)
    return f"UPDATE feed SET {sets}, item_count = item_count + ? WHERE id = ?"


def _feed_values(upd: FeedUpdate) -> dict[str, object]:
    values: dict[str, object] = {
        "last_outcome": upd.outcome,
        "last_status": upd.status,
        "last_error": upd.error,
        "last_fetched_at": upd.fetched_at,
        "next_due_at": upd.next_due_at,
        "consecutive_failures": upd.consecutive_failures,
        "lease_owner": None,
        "lease_until": None,
    }
    if upd.outcome in ("ok", "not_modified"):
        values["last_success_at"] = upd.fetched_at
    if upd.outcome == "ok":
        values["etag"] = upd.etag
        values["last_modified"] = upd.last_modified
    if upd.url:
        values["url"] = upd.url
    if upd.title:
        values["title"] = upd.title
    if upd.ttl_minutes is not None:
        values["ttl_minutes"] = upd.ttl_minutes
    if upd.new_items_rate is not None:
        values["new_items_rate"] = upd.new_items_rate
    if upd.disable_reason:
        values["enabled"] = False
        values["disabled_reason"] = upd.disable_reason
    return values


def evidence_json(tag: Tags) -> str:
    """The item's evidence column: [[tag, kind, phrase, start, end], ...] without context terms.

    Exactly ``json.dumps(..., ensure_ascii=False)``, built by hand (at half its cost: it runs for
    every stored item): the "[tag, kind, phrase, " prefixes repeat from item to item, and so do the
    small offsets.
    """
    prefixes, ints = _evidence_prefixes, _small_ints
    parts = []
    for name, kind, phrase, start, end in tag.evidence:  # Evidence is a named tuple
        if kind == "context":
            continue
        key = (name, kind, phrase)
        prefix = prefixes.get(key)
        if prefix is None:
            if len(prefixes) >= 50_000:
                prefixes.clear()
            prefix = prefixes[key] = f"[{_json_str(name)}, {_json_str(kind)}, {_json_str(phrase)}, "
        parts.append(f"{prefix}{ints[start] if 0 <= start < 2048 else start}, {ints[end] if 0 <= end < 2048 else end}]")
    return "[" + ", ".join(parts) + "]"


_json_str: Callable[[str], str] = json.encoder.encode_basestring  # what ensure_ascii=False uses
_evidence_prefixes: dict[tuple[str, str, str], str] = {}
_small_ints = [str(i) for i in range(2048)]


def _tag_tuples(item_id: int, tag: Tags | ItemRecord, published: object) -> list[tuple[int, str, str, object]]:
    """(item_id, tag, kind, published_at) index rows; an irrelevant item is in no tag's view, whatever it says."""
    if not tag.relevant:
        return []
    return [(item_id, k, "mediator", published) for k in tag.mediators] + [
        (item_id, k, "obstacle", published) for k in tag.obstacles
    ]


def tag_rows(item_id: int, tag: Tags, published: datetime) -> list[dict[str, object]]:
    """The same index rows as parameter dicts, for SQLAlchemy statements (``tracker retag``)."""
    keys = ("item_id", "tag", "kind", "published_at")
    return [dict(zip(keys, row, strict=True)) for row in _tag_tuples(item_id, tag, published)]


def prune_fetch_log(db: Database, *, older_than: datetime) -> int:
    with db.transaction() as conn, _Cursor(conn, db.pg) as cur:
        cur.rows("DELETE FROM fetch_log WHERE at < ?", (cur.dt(older_than),))
        return int(cur.cur.rowcount)


def _chunks(values: list[Any], size: int = CHUNK) -> Iterable[list[Any]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]
