"""The write path: feeds from config, claiming due feeds, and one transaction per fetched feed.

Crash safety rests on two rules: a feed's new validators (ETag / Last-Modified), its items and its
outcome are committed in one transaction, so a crash before the commit leaves the feed to be fetched
again in full; and (feed_id, dedup_key) is unique, so fetching again can never duplicate an item.
Items are looked up and inserted in batches (one query per kind per feed), not one by one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine

from tracker.models import Entry, FeedRequest, Tags
from tracker.store.tables import Feed, FetchLog, Item, ItemSource, ItemTag

FEED = Feed.__table__  # type: ignore[attr-defined]
ITEM = Item.__table__  # type: ignore[attr-defined]
SOURCE = ItemSource.__table__  # type: ignore[attr-defined]
TAG = ItemTag.__table__  # type: ignore[attr-defined]
FETCH_LOG = FetchLog.__table__  # type: ignore[attr-defined]

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
    last_fetched_at: datetime | None


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


def _write(engine: Engine) -> Connection:
    return engine.connect().execution_options(sqlite_immediate=True)


# --- feeds -------------------------------------------------------------------------------------


def sync_feeds(engine: Engine, specs: Sequence[FeedSpec]) -> tuple[int, int, int]:
    """Make the feed table match the config; returns (added, changed, disabled).

    Feeds are matched by the URL written in feeds.yaml (``config_url``) so that a feed whose stored
    URL moved after a 301 is still the same feed.  Feeds gone from the config are disabled, not
    deleted: their items stay in the log.
    """
    added = changed = disabled = 0
    with _write(engine) as conn, conn.begin():
        rows = {r.config_url: r for r in conn.execute(select(FEED))}
        by_url = {r.url: r for r in rows.values()}
        seen: set[int] = set()
        for spec in specs:
            row = rows.get(spec.url) or by_url.get(spec.url)
            values = {
                "name": spec.name,
                "language": spec.language,
                "interval_seconds": spec.interval_seconds,
                "enabled": spec.enabled and (row is None or row.disabled_reason is None),
            }
            if row is None:
                conn.execute(
                    insert(FEED).values(
                        url=spec.url,
                        config_url=spec.url,
                        consecutive_failures=0,
                        item_count=0,
                        new_items_rate=0.0,
                        **values,
                    )
                )
                added += 1
                continue
            seen.add(row.id)
            if spec.enabled and row.disabled_reason and not row.enabled:
                values["enabled"] = False  # 410 Gone stays disabled until removed by hand
            if any(getattr(row, k) != v for k, v in values.items()):
                conn.execute(update(FEED).where(FEED.c.id == row.id).values(**values))
                changed += 1
        stale = [r.id for r in rows.values() if r.id not in seen and r.enabled]
        for chunk in _chunks(stale):
            conn.execute(update(FEED).where(FEED.c.id.in_(chunk)).values(enabled=False))
        disabled = len(stale)
    return added, changed, disabled


def claim_due(
    engine: Engine,
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
    cond = [FEED.c.enabled.is_(True), or_(FEED.c.lease_until.is_(None), FEED.c.lease_until < now)]
    if not include_not_due:
        cond.append(or_(FEED.c.next_due_at.is_(None), FEED.c.next_due_at <= now))
    query = (
        select(
            FEED.c.id,
            FEED.c.url,
            FEED.c.etag,
            FEED.c.last_modified,
            FEED.c.name,
            FEED.c.language,
            FEED.c.interval_seconds,
            FEED.c.consecutive_failures,
            FEED.c.new_items_rate,
            FEED.c.last_fetched_at,
        )
        .where(and_(*cond))
        .order_by(FEED.c.next_due_at.is_not(None), FEED.c.next_due_at, FEED.c.id)
    )
    if limit is not None:
        query = query.limit(limit)
    if engine.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    with _write(engine) as conn, conn.begin():
        rows = conn.execute(query).all()
        ids = [r.id for r in rows]
        for chunk in _chunks(ids):
            conn.execute(update(FEED).where(FEED.c.id.in_(chunk)).values(lease_owner=worker, lease_until=now + lease))
    return [
        ClaimedFeed(
            request=FeedRequest(r.id, r.url, r.etag, r.last_modified),
            name=r.name,
            language=r.language,
            interval_seconds=r.interval_seconds,
            consecutive_failures=r.consecutive_failures,
            new_items_rate=r.new_items_rate,
            last_fetched_at=r.last_fetched_at,
        )
        for r in rows
    ]


def release_leases(engine: Engine, worker: str) -> None:
    """Give back what this worker still holds (on clean shutdown)."""
    with _write(engine) as conn, conn.begin():
        conn.execute(update(FEED).where(FEED.c.lease_owner == worker).values(lease_owner=None, lease_until=None))


# --- one feed's result ----------------------------------------------------------------------


def apply_feed_result(
    engine: Engine,
    upd: FeedUpdate,
    entries: Sequence[Entry] = (),
    tags: Sequence[Tags] = (),
    *,
    now: datetime,
) -> WriteCounts:
    """Store one fetch: items, sources, tags, the feed's new state and a log line, atomically."""
    return apply_feed_results(engine, [(upd, entries, tags)], now=now)[0]


def apply_feed_results(
    engine: Engine,
    batch: Sequence[tuple[FeedUpdate, Sequence[Entry], Sequence[Tags]]],
    *,
    now: datetime,
) -> list[WriteCounts]:
    """Store several fetches in one transaction (group commit): all of them or none.

    A crash can only lose whole feeds' results, never half of one; the cost of a commit (WAL
    append, full-text index flush) is paid once per batch instead of once per feed.
    """
    out = []
    with _write(engine) as conn, conn.begin():
        for upd, entries, tags in batch:
            out.append(write_entries(conn, upd.feed_id, entries, tags, now=now) if entries else WriteCounts())
        _update_feeds(conn, [(upd, c) for (upd, _, _), c in zip(batch, out, strict=True)])
        conn.execute(
            insert(FETCH_LOG),
            [
                {
                    "feed_id": upd.feed_id,
                    "at": upd.fetched_at,
                    "outcome": upd.outcome,
                    "status": upd.status,
                    "error": upd.error,
                    "elapsed": upd.elapsed,
                    "new_items": c.new + c.linked,
                    "updated_items": c.updated,
                }
                for (upd, _, _), c in zip(batch, out, strict=True)
            ],
        )
    return out


def _update_feeds(conn: Connection, rows: Sequence[tuple[FeedUpdate, WriteCounts]]) -> None:
    """The feeds' new state: one executemany per shape of update, so a cycle of 304s costs one
    statement per batch instead of one per feed."""
    shapes: dict[tuple[str, ...], list[dict[str, object]]] = {}
    for upd, counts in rows:
        values = _feed_values(upd) | {"b_id": upd.feed_id, "b_added": counts.new + counts.linked}
        shapes.setdefault(tuple(values), []).append(values)
    for params in shapes.values():
        stmt = (
            update(FEED)
            .where(FEED.c.id == bindparam("b_id"))
            .values(item_count=FEED.c.item_count + bindparam("b_added"))
        )  # the other SET columns come from the parameters' keys
        conn.execute(stmt, params)


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


def write_entries(
    conn: Connection, feed_id: int, entries: Sequence[Entry], tags: Sequence[Tags], *, now: datetime
) -> WriteCounts:
    """Insert new items, link known articles to this feed, update changed ones in place."""
    pairs: dict[str, tuple[Entry, Tags]] = {}
    for entry, tag in zip(entries, tags, strict=True):
        pairs.setdefault(entry.dedup_key, (entry, tag))  # a feed repeating a guid keeps its first copy

    known: dict[str, tuple[int, str]] = {}
    for chunk in _chunks(list(pairs)):
        for r in conn.execute(
            select(SOURCE.c.dedup_key, SOURCE.c.item_id, SOURCE.c.content_hash).where(
                SOURCE.c.feed_id == feed_id, SOURCE.c.dedup_key.in_(chunk)
            )
        ):
            known[r.dedup_key] = (r.item_id, r.content_hash)

    updated = 0
    fresh: list[tuple[Entry, Tags]] = []
    for key, (entry, tag) in pairs.items():
        if key in known:
            item_id, old_hash = known[key]
            if old_hash != entry.content_hash:
                _update_item(conn, item_id, feed_id, key, entry, tag, now=now)
                updated += 1
        else:
            fresh.append((entry, tag))
    if not fresh:
        return WriteCounts(updated=updated)

    # The same article under another feed (or under another guid) is one item: match by link.
    links: dict[str, tuple[Entry, Tags]] = {}
    unlinked: list[tuple[Entry, Tags]] = []
    for entry, tag in fresh:
        if entry.link:
            links.setdefault(entry.link, (entry, tag))
        else:
            unlinked.append((entry, tag))
    by_link = _items_by_link(conn, list(links))
    to_insert = [p for link, p in links.items() if link not in by_link] + unlinked
    inserted = _insert_items(conn, feed_id, to_insert, now=now)  # dedup_key -> new item id
    lost = [e.link for e, _ in to_insert if e.dedup_key not in inserted and e.link]
    if lost:  # another worker inserted the same link first: link to its item
        by_link.update(_items_by_link(conn, lost))
    for entry, _tag in to_insert:
        if entry.link and entry.dedup_key in inserted:
            by_link[entry.link] = inserted[entry.dedup_key]

    new_ids = set(inserted.values())
    sources = []
    linked_items: set[int] = set()
    for entry, _tag in fresh:
        found = by_link.get(entry.link) if entry.link else inserted.get(entry.dedup_key)
        if found is None:
            continue
        item_id = found
        if item_id not in new_ids:
            linked_items.add(item_id)
        sources.append(
            {
                "item_id": item_id,
                "feed_id": feed_id,
                "dedup_key": entry.dedup_key,
                "content_hash": entry.content_hash,
                "seen_at": now,
            }
        )
    _insert_sources(conn, sources)
    for chunk in _chunks(sorted(linked_items)):
        conn.execute(update(ITEM).where(ITEM.c.id.in_(chunk)).values(source_count=ITEM.c.source_count + 1))
    return WriteCounts(new=len(new_ids), updated=updated, linked=len(linked_items))


def _items_by_link(conn: Connection, links: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for chunk in _chunks(links):
        for r in conn.execute(select(ITEM.c.link, ITEM.c.id).where(ITEM.c.link.in_(chunk))):
            found[r.link] = r.id
    return found


def _item_values(entry: Entry, tag: Tags) -> dict[str, object]:
    return {
        "title": entry.title,
        "summary": entry.summary,
        "content_html": entry.content_html,
        "text": entry.text,
        "author": entry.author,
        "language": entry.language,
        "content_hash": entry.content_hash,
        "relevant": tag.relevant,
        "score": tag.score,
        "mediators": " ".join(tag.mediators),
        "obstacles": " ".join(tag.obstacles),
        "evidence": evidence_json(tag),
    }


def evidence_json(tag: Tags) -> str:
    return json.dumps(
        [[e.tag, e.kind, e.phrase, e.start, e.end] for e in tag.evidence if e.kind != "context"],
        ensure_ascii=False,
    )


def _insert_items(conn: Connection, feed_id: int, pairs: list[tuple[Entry, Tags]], *, now: datetime) -> dict[str, int]:
    """Insert items in one statement; returns dedup_key -> id, leaving out links another writer took."""
    if not pairs:
        return {}
    rows = [
        _item_values(entry, tag)
        | {
            "link": entry.link,
            "published_at": entry.published,
            "updated_at": entry.updated,
            "date_fallback": entry.date_fallback,
            "ingested_at": now,
            "source_count": 1,
            "feed_id": feed_id,
        }
        for entry, tag in pairs
    ]
    stmt = _dialect_insert(conn, ITEM)
    if hasattr(stmt, "on_conflict_do_nothing"):
        stmt = stmt.on_conflict_do_nothing(index_elements=["link"])
    result = conn.execute(stmt.returning(ITEM.c.id, ITEM.c.link, ITEM.c.content_hash), rows)
    got: dict[tuple[str | None, str], list[int]] = {}
    for r in result:
        got.setdefault((r.link, r.content_hash), []).append(r.id)
    ids: dict[str, int] = {}
    tag_batch: list[dict[str, object]] = []
    for entry, tag in pairs:
        bucket = got.get((entry.link, entry.content_hash))
        if not bucket:
            continue
        item_id = bucket.pop(0)
        ids[entry.dedup_key] = item_id
        tag_batch += tag_rows(item_id, tag, entry.published)
    if tag_batch:
        conn.execute(insert(TAG), tag_batch)
    return ids


def _dialect_insert(conn: Connection, table: Any) -> Any:
    if conn.dialect.name == "postgresql":
        return pg_insert(table)
    if conn.dialect.name == "sqlite":
        return sqlite_insert(table)
    return insert(table)


def tag_rows(item_id: int, tag: Tags, published: datetime) -> list[dict[str, object]]:
    """Index rows for the item's tags; an irrelevant item is in no tag's view, whatever it says."""
    if not tag.relevant:
        return []
    rows: list[dict[str, object]] = [
        {"item_id": item_id, "tag": k, "kind": "mediator", "published_at": published} for k in tag.mediators
    ]
    rows += [{"item_id": item_id, "tag": k, "kind": "obstacle", "published_at": published} for k in tag.obstacles]
    return rows


def replace_tags(conn: Connection, item_id: int, tag: Tags, published: datetime) -> None:
    conn.execute(delete(TAG).where(TAG.c.item_id == item_id))
    rows = tag_rows(item_id, tag, published)
    if rows:
        conn.execute(insert(TAG), rows)


def _insert_sources(conn: Connection, rows: list[dict[str, object]]) -> None:
    if not rows:
        return
    stmt = _dialect_insert(conn, SOURCE)
    if hasattr(stmt, "on_conflict_do_nothing"):
        stmt = stmt.on_conflict_do_nothing(index_elements=["feed_id", "dedup_key"])
    conn.execute(stmt, rows)


def _update_item(
    conn: Connection, item_id: int, feed_id: int, key: str, entry: Entry, tag: Tags, *, now: datetime
) -> None:
    values = _item_values(entry, tag) | {"updated_at": entry.updated or now}
    conn.execute(update(ITEM).where(ITEM.c.id == item_id).values(**values))
    conn.execute(
        update(SOURCE)
        .where(SOURCE.c.feed_id == feed_id, SOURCE.c.dedup_key == key)
        .values(content_hash=entry.content_hash)
    )
    published = conn.execute(select(ITEM.c.published_at).where(ITEM.c.id == item_id)).scalar_one()
    replace_tags(conn, item_id, tag, published)


def prune_fetch_log(engine: Engine, *, older_than: datetime) -> int:
    with _write(engine) as conn, conn.begin():
        return conn.execute(delete(FETCH_LOG).where(FETCH_LOG.c.at < older_than)).rowcount or 0


def count_items(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(ITEM)).scalar_one())


def _chunks(values: list[Any], size: int = CHUNK) -> Iterable[list[Any]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]
