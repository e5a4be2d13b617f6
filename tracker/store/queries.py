"""Read-side queries shared by the CLI, the web view and digests: feeds, items as log entries."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.engine import Connection, Engine

from tracker.models import Evidence, TimelineEntry
from tracker.store.tables import BASELINE, FEED, ITEM, SOURCE

FEED_HEALTH_COLUMNS = (
    "id",
    "name",
    "url",
    "language",
    "enabled",
    "disabled_reason",
    "last_outcome",
    "last_status",
    "last_error",
    "consecutive_failures",
    "last_fetched_at",
    "last_success_at",
    "next_due_at",
    "item_count",
)


def feed_health(engine: Engine) -> list[dict[str, Any]]:
    """Every feed with its fetch state, by name."""
    cols = [FEED.c[name] for name in FEED_HEALTH_COLUMNS]
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(*cols).order_by(FEED.c.name))]


def feed_names(conn: Connection) -> dict[int, str]:
    return {r.id: r.name for r in conn.execute(select(FEED.c.id, FEED.c.name))}


def sources_of(conn: Connection, item_ids: Sequence[int]) -> dict[int, list[str]]:
    """Feed names that carried each item, first carrier first."""
    names = feed_names(conn)
    found: dict[int, list[str]] = {}
    for i in range(0, len(item_ids), 500):
        chunk = list(item_ids[i : i + 500])
        rows = conn.execute(
            select(SOURCE.c.item_id, SOURCE.c.feed_id)
            .where(SOURCE.c.item_id.in_(chunk))
            .order_by(SOURCE.c.item_id, SOURCE.c.id)
        )
        for r in rows:
            name = names.get(r.feed_id, f"feed {r.feed_id}")
            lst = found.setdefault(r.item_id, [])
            if name not in lst:
                lst.append(name)
    return found


def parse_evidence(raw: str) -> tuple[Evidence, ...]:
    out = []
    for tag, kind, phrase, start, end in json.loads(raw or "[]"):
        out.append(Evidence(tag=tag, kind=kind, phrase=phrase, start=start, end=end))
    return tuple(out)


def item_entry(row: Any, sources: Sequence[str]) -> TimelineEntry:
    """An item row as a status-log entry."""
    return TimelineEntry(
        kind="item",
        id=f"i:{row.id}",
        date=row.published_at,
        date_precision="day",
        date_label=row.published_at.strftime("%d %B %Y").lstrip("0"),
        title=row.title,
        summary=row.summary,
        link=row.link,
        sources=tuple(sources),
        mediators=tuple(row.mediators.split()),
        obstacles=tuple(row.obstacles.split()),
        evidence=parse_evidence(row.evidence),
        score=row.score,
        language=row.language,
    )


def baseline_entry(row: Row[Any]) -> TimelineEntry:
    return TimelineEntry(
        kind="baseline",
        id=f"b:{row.slug}",
        date=row.date,
        date_precision=row.precision,
        date_label=row.date_label,
        title=row.title,
        summary=row.summary,
        sources=("seed",),
        mediators=tuple(row.mediators.split()),
        obstacles=tuple(row.obstacles.split()),
        score=1.0,
    )


def baseline_entries(conn: Connection) -> list[TimelineEntry]:
    return [baseline_entry(r) for r in conn.execute(select(BASELINE).order_by(BASELINE.c.date))]


ITEM_LOG_COLUMNS = (
    ITEM.c.id,
    ITEM.c.title,
    ITEM.c.summary,
    ITEM.c.link,
    ITEM.c.published_at,
    ITEM.c.language,
    ITEM.c.relevant,
    ITEM.c.score,
    ITEM.c.mediators,
    ITEM.c.obstacles,
    ITEM.c.evidence,
)


def item_entries(conn: Connection, rows: Iterable[Row[Any]]) -> list[TimelineEntry]:
    rows = list(rows)
    sources = sources_of(conn, [r.id for r in rows])
    return [item_entry(r, sources.get(r.id, [])) for r in rows]


def entry_record(entry: TimelineEntry, *, relevant: bool | None = None) -> dict[str, Any]:
    """The export / API shape of one status-log entry."""
    return {
        "id": entry.id,
        "kind": entry.kind,
        "date": entry.date.isoformat(),
        "date_precision": entry.date_precision,
        "date_label": entry.date_label,
        "title": entry.title,
        "summary": entry.summary,
        "link": entry.link,
        "source": entry.sources[0] if entry.sources else None,
        "sources": list(entry.sources),
        "language": entry.language,
        "relevant": entry.kind == "baseline" if relevant is None else relevant,
        "score": entry.score,
        "mediators": list(entry.mediators),
        "obstacles": list(entry.obstacles),
        "evidence": [
            {"tag": e.tag, "kind": e.kind, "phrase": e.phrase, "start": e.start, "end": e.end} for e in entry.evidence
        ],
    }


def export_records(engine: Engine, *, batch: int = 2000) -> Iterator[dict[str, Any]]:
    """Baseline events then every item by id, streamed in batches (constant memory)."""
    with engine.connect() as conn:
        for entry in baseline_entries(conn):
            yield entry_record(entry)
        last = 0
        while True:
            rows = conn.execute(
                select(*ITEM_LOG_COLUMNS).where(ITEM.c.id > last).order_by(ITEM.c.id).limit(batch)
            ).all()
            if not rows:
                return
            sources = sources_of(conn, [r.id for r in rows])
            for r in rows:
                yield entry_record(item_entry(r, sources.get(r.id, [])), relevant=bool(r.relevant))
            last = rows[-1].id
