"""The status log read from the database: filtered, searched, keyset-paginated, plus per-key status.

The web view, the JSON API, the CLI and digests all read the log through this module, so a page, an
API response and ``tracker status`` agree by construction.

Why the queries look the way they do (1,000,000 items must stay fast):

* The log is relevant items merged with the seed's baseline events (a few dozen rows, merged in
  Python).  Items are read in index order with ``LIMIT``: ``ix_item_relevant_published`` without a tag
  filter, ``ix_item_tag_tag_published`` (one row per item x tag) with one.
* Pagination is keyset, never ``OFFSET``: the cursor is the sort key of the last entry shown,
  ``(date, kind, id)``, so page 1,000 costs what page 1 costs.
* Full-text search on SQLite asks FTS5 for at most ``FTS_SMALL`` matches first.  A rare term gives a
  small id set that is sorted by date directly; a common term instead walks the date index and checks
  each row against FTS5 by rowid, which stops after one page.  PostgreSQL uses the GIN index on
  ``to_tsvector('simple', title || ' ' || summary)`` (the expression must match the migration's).
* The overview never scans the item table: per key it reads the newest few rows of the tag index,
  and the 30-day activity is one ``GROUP BY`` over a tag-index range bounded to 30 days.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import (
    Integer,
    Select,
    and_,
    bindparam,
    exists,
    func,
    literal,
    or_,
    select,
    text,
    tuple_,
)
from sqlalchemy.engine import Connection, Engine

from tracker.models import TimelineEntry
from tracker.store.queries import (
    BASELINE,
    FEED,
    ITEM,
    ITEM_LOG_COLUMNS,
    SOURCE,
    baseline_entry,
    entry_record,
    item_entries,
    item_entry,
)
from tracker.store.tables import TAG
from tracker.store.types import UTCDateTime

Order = Literal["desc", "asc"]
KeyKind = Literal["mediator", "obstacle"]

FTS_SMALL = 3000  # at most this many FTS matches are sorted directly; more means "walk the date index"
WALK_MIN_CHUNK = 256  # smallest first candidate chunk of a search walk (doubles each round)
WALK_MAX_CHUNK = 16_384
FTS_RANGE_SPREAD = 256  # a chunk whose id range is wider than this x its size is checked by id list
MAX_LIMIT = 500
ACTIVITY_DAYS = 30
LATEST_PER_KEY = 3


# --- filters and cursors --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimelineFilter:
    """What the reader asked for; every field is optional and they combine with AND."""

    mediator: str | None = None
    obstacle: str | None = None
    source: str | None = None  # feed name; "seed" selects the baseline events
    language: str | None = None  # "en" also matches "en-GB"
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    q: str | None = None  # full-text search over title and summary
    baseline: bool = True  # include the seed's baseline events

    def is_empty(self) -> bool:
        return not any((self.mediator, self.obstacle, self.source, self.language, self.since, self.until, self.q))


@dataclass(frozen=True, slots=True, order=True)
class Cursor:
    """The sort key of one log entry: (date, 0 for baseline / 1 for item, item id, baseline slug).

    Baseline events sort before items of the same instant; the encoded form is opaque and URL-safe.
    """

    date: datetime
    rank: int
    item_id: int = 0
    slug: str = ""

    def encode(self) -> str:
        ident = str(self.item_id) if self.rank else self.slug
        raw = f"{self.date.astimezone(UTC).isoformat()}|{self.rank}|{ident}"
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str) -> Cursor:
        """Raises ValueError on anything that is not a cursor this module made."""
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
            stamp, rank_s, ident = raw.split("|", 2)
            date = datetime.fromisoformat(stamp)
            rank = int(rank_s)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"bad cursor: {value!r}") from exc
        if date.tzinfo is None or rank not in (0, 1):
            raise ValueError(f"bad cursor: {value!r}")
        if rank == 1:
            if not ident.isdigit():
                raise ValueError(f"bad cursor: {value!r}")
            return cls(date.astimezone(UTC), 1, int(ident), "")
        return cls(date.astimezone(UTC), 0, 0, ident)

    @classmethod
    def of(cls, entry: TimelineEntry) -> Cursor:
        if entry.kind == "item":
            return cls(entry.date, 1, int(entry.id.removeprefix("i:")), "")
        return cls(entry.date, 0, 0, entry.id.removeprefix("b:"))


@dataclass(frozen=True, slots=True)
class TimelinePage:
    """One page of the log in display order, with cursors to continue either way (None: no more)."""

    entries: list[TimelineEntry]
    order: Order
    next: Cursor | None  # continues in display order (older when order="desc")
    prev: Cursor | None  # goes back (newer when order="desc")

    @property
    def older(self) -> Cursor | None:
        return self.next if self.order == "desc" else self.prev

    @property
    def newer(self) -> Cursor | None:
        return self.prev if self.order == "desc" else self.next


# --- search -------------------------------------------------------------------------------------

_WORD = re.compile(r"\w+", re.UNICODE)


def search_terms(q: str | None) -> list[str]:
    """The words of a query; punctuation and FTS operators are dropped so any input is safe."""
    return _WORD.findall(q or "")[:12]


def fts5_query(terms: Sequence[str]) -> str:
    """Every term quoted (AND of literal words): user text can never be FTS5 syntax."""
    return " ".join('"' + t.replace('"', '""') + '"' for t in terms)


_PG_DOC = "to_tsvector('simple', coalesce(item.title, '') || ' ' || coalesce(item.summary, ''))"


# --- the log --------------------------------------------------------------------------------------


def timeline_page(
    conn: Connection,
    flt: TimelineFilter = TimelineFilter(),
    *,
    order: Order = "desc",
    after: Cursor | None = None,
    before: Cursor | None = None,
    limit: int = 50,
) -> TimelinePage:
    """A page of the status log: entries strictly after ``after`` (or strictly before ``before``)."""
    limit = max(1, min(limit, MAX_LIMIT))
    backwards = before is not None
    cursor = before if backwards else after
    descending = (order == "desc") != backwards
    rows = _item_rows(conn, flt, descending=descending, cursor=cursor, limit=limit + 1)
    entries = item_entries(conn, rows)
    if flt.baseline:
        entries += _baseline_slice(conn, flt, descending=descending, cursor=cursor)
    entries.sort(key=Cursor.of, reverse=descending)
    more = len(entries) > limit
    page = entries[:limit]
    if backwards:
        page.reverse()
        prev = Cursor.of(page[0]) if more and page else None
        nxt = Cursor.of(page[-1]) if page else before
        return TimelinePage(page, order, nxt, prev)
    nxt = Cursor.of(page[-1]) if more else None
    prev = Cursor.of(page[0]) if after is not None and page else None
    return TimelinePage(page, order, nxt, prev)


def timeline_entries(
    conn: Connection, flt: TimelineFilter = TimelineFilter(), *, order: Order = "desc", limit: int = 50
) -> list[TimelineEntry]:
    """The first ``limit`` entries (CLI, Atom feeds, digests)."""
    return timeline_page(conn, flt, order=order, limit=limit).entries


def _item_rows(
    conn: Connection, flt: TimelineFilter, *, descending: bool, cursor: Cursor | None, limit: int
) -> list[Any]:
    if flt.source == "seed":
        return []
    plan = _item_query(conn, flt)
    if plan is None:
        return []
    query, date_col, id_col, walk = plan
    if flt.since is not None:
        query = query.where(date_col >= flt.since)
    if flt.until is not None:
        query = query.where(date_col < flt.until)
    if walk is not None:
        return _search_walk(conn, query, date_col, id_col, walk, descending, cursor, limit)
    query = _keyset(query, date_col, id_col, descending, _bound(cursor))
    return list(conn.execute(query.limit(limit)))


def _bound(cursor: Cursor | None) -> tuple[datetime, int] | None:
    # A baseline cursor sits before every item of its instant: bound ids by 0 (ids start at 1).
    return None if cursor is None else (cursor.date, cursor.item_id if cursor.rank else 0)


def _keyset(
    query: Select[Any], date_col: Any, id_col: Any, descending: bool, bound: tuple[datetime, int] | None
) -> Select[Any]:
    if bound is not None:
        value = tuple_(literal(bound[0], type_=UTCDateTime()), literal(bound[1]))
        key = tuple_(date_col, id_col)
        query = query.where(key < value if descending else key > value)
    if descending:
        return query.order_by(date_col.desc(), id_col.desc())
    return query.order_by(date_col.asc(), id_col.asc())


def _search_walk(
    conn: Connection,
    query: Select[Any],
    date_col: Any,
    id_col: Any,
    walk: tuple[str, float],
    descending: bool,
    cursor: Cursor | None,
    limit: int,
) -> list[Any]:
    """A common search term: walk candidates in date order, keep those FTS5 matches, until a page is full.

    Candidates come in growing chunks (keys only); each chunk is checked with one FTS5 query over its
    rowid range (ids follow ingestion order, so a date-ordered chunk spans a narrow id range), or by
    rowid list when the range is wide.  A per-row ``MATCH ... AND rowid = item.id`` costs a doclist
    seek per term per row, which is several times slower.  The first chunk is sized from the share of
    items that match (measured on the newest matches), so most pages take one round.
    """
    match, density = walk
    # Candidates are bare ids (ints: no per-row objects for the garbage collector to scan, no timestamps
    # to convert); the date of the last one is read on its own when another chunk is needed.
    keys = query.with_only_columns(id_col)
    found: list[int] = []
    bound = _bound(cursor)
    chunk = max(4 * limit, WALK_MIN_CHUNK, min(WALK_MAX_CHUNK, int(1.5 * limit / max(density, 1e-6))))
    while len(found) < limit:
        ids = list(conn.execute(_keyset(keys, date_col, id_col, descending, bound).limit(chunk)).scalars())
        if not ids:
            break
        lo, hi = min(ids), max(ids)
        if hi - lo <= FTS_RANGE_SPREAD * len(ids):
            hits = conn.execute(
                text("SELECT rowid FROM item_fts WHERE item_fts MATCH :q AND rowid BETWEEN :lo AND :hi"),
                {"q": match, "lo": lo, "hi": hi},
            )
        else:
            hits = conn.execute(
                text("SELECT rowid FROM item_fts WHERE item_fts MATCH :q AND rowid IN :ids").bindparams(
                    bindparam("ids", expanding=True)
                ),
                {"q": match, "ids": ids},
            )
        matched = {r[0] for r in hits}
        found += [i for i in ids if i in matched]
        if len(ids) < chunk:
            break
        last = conn.execute(select(ITEM.c.published_at).where(ITEM.c.id == ids[-1])).scalar_one()
        bound = (last, ids[-1])
        chunk = min(chunk * 2, WALK_MAX_CHUNK)
    found = found[:limit]
    if not found:
        return []
    full = query.where(ITEM.c.id.in_(found))
    rows = {r.id: r for r in conn.execute(full)}
    return [rows[i] for i in found if i in rows]


def _item_query(conn: Connection, flt: TimelineFilter) -> tuple[Select[Any], Any, Any, tuple[str, float] | None] | None:
    """The filtered item query, the (date, id) columns whose index gives the order, and an FTS5 match
    to apply by walking (common terms); None when nothing can match."""
    query = select(*ITEM_LOG_COLUMNS).where(ITEM.c.relevant.is_(True))
    tags = [t for t in (flt.mediator, flt.obstacle) if t]
    if tags:
        driver = TAG.alias("t")
        query = query.join(driver, and_(driver.c.item_id == ITEM.c.id, driver.c.tag == tags[0]))
        for other in tags[1:]:
            t2 = TAG.alias("t2")
            query = query.where(exists().where(t2.c.item_id == ITEM.c.id, t2.c.tag == other))
        date_col, id_col = driver.c.published_at, driver.c.item_id
    else:
        date_col, id_col = ITEM.c.published_at, ITEM.c.id
    if flt.source:
        feeds = select(FEED.c.id).where(FEED.c.name == flt.source)
        query = query.where(
            exists().where(SOURCE.c.item_id == ITEM.c.id, SOURCE.c.feed_id.in_(feeds.scalar_subquery()))
        )
    if flt.language:
        lang = flt.language.lower()
        query = query.where(or_(ITEM.c.language == lang, ITEM.c.language.like(lang + "-%")))
    terms = search_terms(flt.q)
    if flt.q is not None and flt.q.strip() and not terms:
        return None  # only punctuation: nothing can match
    walk: tuple[str, float] | None = None
    if terms:
        if conn.dialect.name == "sqlite":
            match = fts5_query(terms)
            ids = [
                r[0]
                for r in conn.execute(
                    text("SELECT rowid FROM item_fts WHERE item_fts MATCH :q ORDER BY rowid DESC LIMIT :n"),
                    {"q": match, "n": FTS_SMALL + 1},
                )
            ]
            if not ids:
                return None
            if len(ids) <= FTS_SMALL:
                query = query.where(ITEM.c.id.in_(ids))
            else:
                walk = (match, len(ids) / (ids[0] - ids[-1] + 1))  # matches per item among the newest
        elif conn.dialect.name == "postgresql":
            query = query.where(text(f"{_PG_DOC} @@ plainto_tsquery('simple', :q)").bindparams(q=" ".join(terms)))
        else:  # pragma: no cover - only SQLite and PostgreSQL are supported
            for t in terms:
                query = query.where(or_(ITEM.c.title.ilike(f"%{t}%"), ITEM.c.summary.ilike(f"%{t}%")))
    return query, date_col, id_col, walk


def _baseline_slice(
    conn: Connection, flt: TimelineFilter, *, descending: bool, cursor: Cursor | None
) -> list[TimelineEntry]:
    """Baseline events that pass the filter and lie beyond the cursor (a few dozen rows: in Python)."""
    if flt.language or (flt.source and flt.source != "seed"):
        return []
    out = []
    terms = [t.casefold() for t in search_terms(flt.q)]
    if flt.q is not None and flt.q.strip() and not terms:
        return []
    for entry in baseline_entries_cached(conn):
        if flt.mediator and flt.mediator not in entry.mediators:
            continue
        if flt.obstacle and flt.obstacle not in entry.obstacles:
            continue
        if flt.since and entry.date < flt.since:
            continue
        if flt.until and entry.date >= flt.until:
            continue
        if terms:
            hay = f"{entry.title} {entry.summary}".casefold()
            if not all(t in hay for t in terms):
                continue
        if cursor is not None:
            key = Cursor.of(entry)
            if (key >= cursor) if descending else (key <= cursor):
                continue
        out.append(entry)
    return out


def baseline_entries_cached(conn: Connection) -> list[TimelineEntry]:
    """The baseline events (re-read each call: the table is tiny and ``tracker init`` may change it)."""
    return [baseline_entry(r) for r in conn.execute(select(BASELINE).order_by(BASELINE.c.date))]


# --- single item ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SourceInfo:
    feed_id: int
    name: str
    url: str
    seen_at: datetime


@dataclass(frozen=True, slots=True)
class ItemDetail:
    entry: TimelineEntry
    relevant: bool
    content_html: str  # nh3-sanitized at parse time
    text: str  # the tagged text evidence offsets index
    author: str | None
    updated_at: datetime | None
    ingested_at: datetime
    date_fallback: str | None
    sources: list[SourceInfo]


def item_detail(conn: Connection, item_id: int) -> ItemDetail | None:
    row: Any = conn.execute(
        select(
            *ITEM_LOG_COLUMNS,
            ITEM.c.content_html,
            ITEM.c.text,
            ITEM.c.author,
            ITEM.c.updated_at,
            ITEM.c.ingested_at,
            ITEM.c.date_fallback,
        ).where(ITEM.c.id == item_id)
    ).first()
    if row is None:
        return None
    srcs = [
        SourceInfo(r.feed_id, r.name, r.url, r.seen_at)
        for r in conn.execute(
            select(SOURCE.c.feed_id, FEED.c.name, FEED.c.url, SOURCE.c.seen_at)
            .join(FEED, FEED.c.id == SOURCE.c.feed_id)
            .where(SOURCE.c.item_id == item_id)
            .order_by(SOURCE.c.id)
        )
    ]
    entry = item_entry(row, [s.name for s in srcs])
    return ItemDetail(
        entry=entry,
        relevant=bool(row.relevant),
        content_html=row.content_html or "",
        text=row.text or "",
        author=row.author,
        updated_at=row.updated_at,
        ingested_at=row.ingested_at,
        date_fallback=row.date_fallback,
        sources=srcs,
    )


def facet_values(conn: Connection) -> tuple[list[str], list[str]]:
    """Feed names and languages for the filter form (feeds table is small; languages from feeds too)."""
    feeds = [r[0] for r in conn.execute(select(FEED.c.name).distinct().order_by(FEED.c.name))]
    langs = sorted(
        {(r[0] or "").split("-")[0].lower() for r in conn.execute(select(FEED.c.language).distinct()) if r[0]}
    )
    return feeds, langs


# --- status per key -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaxonomyKey:
    key: str
    label: str
    kind: KeyKind


@dataclass(frozen=True, slots=True)
class KeyStatus:
    """Where one mediator or obstacle stands: its newest entries and its recent activity."""

    key: str
    label: str
    kind: KeyKind
    latest: list[TimelineEntry]  # newest first: items, then the baseline when news is scarce
    last_date: datetime | None  # newest item or baseline event
    last_item_at: datetime | None
    daily: list[int]  # relevant items per UTC day, oldest first, the last is today
    days: list[str]  # ISO dates matching ``daily``
    total_30d: int
    new_24h: int
    state: Literal["active", "quiet", "baseline"]  # news in 7 days / in 30 days / only the seed


@dataclass(frozen=True, slots=True)
class FeedSummary:
    total: int
    enabled: int
    failing: int
    last_polled_at: datetime | None
    last_success_at: datetime | None


@dataclass(frozen=True, slots=True)
class Overview:
    updated_at: datetime
    mediators: list[KeyStatus]
    obstacles: list[KeyStatus]
    feeds: FeedSummary
    changes: list[TimelineEntry] = field(default_factory=list)  # relevant items of the last 24 h


def feed_summary(conn: Connection) -> FeedSummary:
    failing = and_(
        FEED.c.enabled.is_(True),
        or_(FEED.c.consecutive_failures > 0, FEED.c.last_outcome.in_(("error", "gone"))),
    )
    row = conn.execute(
        select(
            func.count(),
            func.coalesce(func.sum(FEED.c.enabled.cast(Integer)), 0),
            func.coalesce(func.sum(failing.cast(Integer)), 0),
            func.max(FEED.c.last_fetched_at),
            func.max(FEED.c.last_success_at),
        )
    ).one()
    return FeedSummary(
        total=int(row[0]),
        enabled=int(row[1]),
        failing=int(row[2]),
        last_polled_at=_as_utc(row[3]),
        last_success_at=_as_utc(row[4]),
    )


def _as_utc(value: Any) -> datetime | None:
    """max() over a UTCDateTime column comes back raw on SQLite (a string)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def overview(
    conn: Connection,
    keys: Sequence[TaxonomyKey],
    *,
    now: datetime,
    latest: int = LATEST_PER_KEY,
    changes: int = 12,
) -> Overview:
    """Status of every taxonomy key (even those with no news), feed health, and the last day's news."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=ACTIVITY_DAYS - 1)
    days = [(start + timedelta(days=i)).date().isoformat() for i in range(ACTIVITY_DAYS)]
    counts = _daily_counts(conn, [k.key for k in keys], start)
    day_ago = now - timedelta(days=1)
    recent = _recent_counts(conn, [k.key for k in keys], day_ago)
    baseline = baseline_entries_cached(conn)

    rows_by_key: dict[str, list[Any]] = {}
    for k in keys:
        rows_by_key[k.key] = list(
            conn.execute(
                select(*ITEM_LOG_COLUMNS)
                .select_from(TAG.join(ITEM, ITEM.c.id == TAG.c.item_id))
                .where(TAG.c.tag == k.key, ITEM.c.relevant.is_(True))
                .order_by(TAG.c.published_at.desc(), TAG.c.item_id.desc())
                .limit(latest)
            )
        )
    unique: dict[int, Any] = {}
    for rows in rows_by_key.values():
        for r in rows:
            unique.setdefault(r.id, r)
    by_id = {int(e.id[2:]): e for e in item_entries(conn, list(unique.values()))}

    statuses: dict[KeyKind, list[KeyStatus]] = {"mediator": [], "obstacle": []}
    for k in keys:
        items = [by_id[r.id] for r in rows_by_key[k.key]]
        seeds = [e for e in baseline if k.key in (e.mediators if k.kind == "mediator" else e.obstacles)]
        seeds.sort(key=Cursor.of, reverse=True)
        shown = items + seeds[: max(0, latest - len(items))]
        daily = [counts.get((k.key, d), 0) for d in days]
        last_item = items[0].date if items else None
        dates = [d for d in (last_item, seeds[0].date if seeds else None) if d is not None]
        if last_item and last_item >= now - timedelta(days=7):
            state: Literal["active", "quiet", "baseline"] = "active"
        elif last_item and last_item >= now - timedelta(days=ACTIVITY_DAYS):
            state = "quiet"
        else:
            state = "baseline"
        statuses[k.kind].append(
            KeyStatus(
                key=k.key,
                label=k.label,
                kind=k.kind,
                latest=shown,
                last_date=max(dates) if dates else None,
                last_item_at=last_item,
                daily=daily,
                days=days,
                total_30d=sum(daily),
                new_24h=recent.get(k.key, 0),
                state=state,
            )
        )
    fresh = timeline_entries(conn, TimelineFilter(since=day_ago, baseline=False), limit=changes)
    return Overview(
        updated_at=now,
        mediators=statuses["mediator"],
        obstacles=statuses["obstacle"],
        feeds=feed_summary(conn),
        changes=fresh,
    )


def _daily_counts(conn: Connection, keys: list[str], start: datetime) -> dict[tuple[str, str], int]:
    """Items per key per UTC day since ``start``: one count per (key, day) over a tag-index range.

    Counting ranges of the covering index (tag, published_at) is a few milliseconds for a month of a
    million-item log; a ``GROUP BY`` on the day needs a temporary b-tree and is several times slower.
    Tag rows exist only for relevant items, so the item table is not read.
    """
    if not keys:
        return {}
    edges = [start + timedelta(days=i) for i in range(ACTIVITY_DAYS + 1)]
    params: dict[str, Any] = {f"k{n}": key for n, key in enumerate(keys)}
    params |= {f"d{i}": edge for i, edge in enumerate(edges)}
    row = conn.execute(_daily_counts_sql(len(keys)), params).one()
    out: dict[tuple[str, str], int] = {}
    for n, key in enumerate(keys):
        for i in range(ACTIVITY_DAYS):
            count = int(row[n * ACTIVITY_DAYS + i])
            if count:
                out[(key, edges[i].date().isoformat())] = count
    return out


@functools.lru_cache(maxsize=8)
def _daily_counts_sql(nkeys: int) -> Any:
    """One statement of nkeys x 30 scalar counts (built once: building it per request costs 20 ms)."""
    cols = [
        f"(SELECT count(*) FROM item_tag WHERE tag = :k{n} AND published_at >= :d{i} AND published_at < :d{i + 1})"
        for n in range(nkeys)
        for i in range(ACTIVITY_DAYS)
    ]
    binds = [bindparam(f"d{i}", type_=UTCDateTime()) for i in range(ACTIVITY_DAYS + 1)]
    return text("SELECT " + ", ".join(cols)).bindparams(*binds)


def _recent_counts(conn: Connection, keys: list[str], since: datetime) -> dict[str, int]:
    if not keys:
        return {}
    rows = conn.execute(
        select(TAG.c.tag, func.count()).where(TAG.c.tag.in_(keys), TAG.c.published_at >= since).group_by(TAG.c.tag)
    )
    return {r[0]: int(r[1]) for r in rows}


def read_overview(engine: Engine, keys: Sequence[TaxonomyKey], *, now: datetime) -> Overview:
    with engine.connect() as conn:
        return overview(conn, keys, now=now)


# --- JSON shapes (the API and ``tracker status --format json`` share them) -----------------------


def key_status_dict(s: KeyStatus) -> dict[str, Any]:
    return {
        "key": s.key,
        "label": s.label,
        "kind": s.kind,
        "state": s.state,
        "last_date": s.last_date.isoformat() if s.last_date else None,
        "last_item_at": s.last_item_at.isoformat() if s.last_item_at else None,
        "total_30d": s.total_30d,
        "new_24h": s.new_24h,
        "daily": {"start": s.days[0] if s.days else None, "counts": list(s.daily)},
        "latest": [entry_record(e) | {"relevant": True} for e in s.latest],
    }


def overview_dict(ov: Overview) -> dict[str, Any]:
    """``{"updated_at", "mediators": {key: {...}}, "obstacles": {key: {...}}, "feeds", "changes"}``."""
    f = ov.feeds
    return {
        "updated_at": ov.updated_at.isoformat(),
        "mediators": {s.key: key_status_dict(s) for s in ov.mediators},
        "obstacles": {s.key: key_status_dict(s) for s in ov.obstacles},
        "feeds": {
            "total": f.total,
            "enabled": f.enabled,
            "failing": f.failing,
            "last_polled_at": f.last_polled_at.isoformat() if f.last_polled_at else None,
            "last_success_at": f.last_success_at.isoformat() if f.last_success_at else None,
        },
        "changes": [entry_record(e) | {"relevant": True} for e in ov.changes],
    }
