"""Loading the seed's baseline timeline into the database (idempotent upsert by slug)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, time

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine

from tracker.models import TimelineEntry
from tracker.store.tables import BASELINE
from tracker.timeline import BaselineEvent as BaselineSpec
from tracker.timeline import load_baseline_events


def load(engine: Engine, *, now: datetime, events: Sequence[BaselineSpec | TimelineEntry] | None = None) -> int:
    """Make the stored baseline equal the versioned file's events (or ``events``); returns how many."""
    specs = [_spec(e) for e in events] if events is not None else load_baseline_events()
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
        for e in specs
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


def _spec(e: BaselineSpec | TimelineEntry) -> BaselineSpec:
    if isinstance(e, BaselineSpec):
        return e
    return BaselineSpec(
        slug=e.id.removeprefix("b:"),
        date=e.date.date(),
        precision=e.date_precision,
        date_label=e.date_label,
        title=e.title,
        summary=e.summary,
        mediators=list(e.mediators),
        obstacles=list(e.obstacles),
        passage=e.evidence[0].phrase if e.evidence else e.summary,
    )
