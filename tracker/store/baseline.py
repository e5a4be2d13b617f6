"""Loading the seed's baseline timeline into the database (idempotent upsert by slug)."""

from __future__ import annotations

from datetime import UTC, datetime, time

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine

from tracker.timeline import BaselineEvent as BaselineSpec
from tracker.timeline import load_baseline_events
from tracker.store.tables import BaselineEvent

BASELINE = BaselineEvent.__table__  # type: ignore[attr-defined]


def load(engine: Engine, *, now: datetime, events: list[BaselineSpec] | None = None) -> int:
    """Make the stored baseline equal the versioned file's events; returns how many."""
    rows = [
        {
            "slug": e.slug,
            "date": datetime.combine(e.date, time(), tzinfo=UTC),
            "precision": e.precision,
            "date_label": e.date_label,
            "title": e.title,
            "summary": e.summary,
            "mediators": " ".join(e.mediators),
            "obstacles": " ".join(e.obstacles),
            "passage": e.passage,
        }
        for e in (events if events is not None else load_baseline_events())
    ]
    with engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
        current = {r.slug: r for r in conn.execute(select(BASELINE))}
        wanted = {r["slug"] for r in rows}
        stale = [s for s in current if s not in wanted]
        if stale:
            conn.execute(delete(BASELINE).where(BASELINE.c.slug.in_(stale)))
        for row in rows:
            old = current.get(str(row["slug"]))
            if old is None:
                conn.execute(BASELINE.insert().values(**row))
            elif any(getattr(old, k) != v for k, v in row.items()):
                conn.execute(BASELINE.update().where(BASELINE.c.slug == row["slug"]).values(**row))
    return len(rows)
