"""Re-tag every stored item after a taxonomy change, in batches, counting what changed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Engine

from tracker.store.ingest import evidence_json
from tracker.store.ingest import tag_rows as tag_rows_for
from tracker.store.tables import ITEM, TAG


@dataclass
class RetagReport:
    items: int = 0
    changed: int = 0
    became_relevant: int = 0
    became_irrelevant: int = 0
    per_tag: dict[str, tuple[int, int]] = field(default_factory=dict)  # tag -> (gained, lost)
    seconds: float = 0.0

    def line(self) -> str:
        return (
            f"retagged {self.items} items in {self.seconds:.1f} s: {self.changed} changed "
            f"(+{self.became_relevant} relevant, -{self.became_irrelevant} relevant)"
        )

    def _count(self, tag: str, gained: int, lost: int) -> None:
        g, lo = self.per_tag.get(tag, (0, 0))
        self.per_tag[tag] = (g + gained, lo + lost)


def retag_all(
    engine: Engine,
    *,
    taxonomy_overrides: dict[str, Any] | None = None,
    batch: int = 2000,
    progress: Callable[[int, int], None] | None = None,
) -> RetagReport:
    """Tag every item again; only items whose tags changed are written."""
    import time

    from tracker.tag import overrides_key, tagger_for

    started = time.perf_counter()
    tagger = tagger_for(overrides_key(taxonomy_overrides))
    report = RetagReport()
    with engine.connect() as conn:
        total = int(conn.execute(select(func.count()).select_from(ITEM)).scalar_one())
    last = 0
    cols = (
        ITEM.c.id,
        ITEM.c.title,
        ITEM.c.text,
        ITEM.c.language,
        ITEM.c.published_at,
        ITEM.c.relevant,
        ITEM.c.score,
        ITEM.c.mediators,
        ITEM.c.obstacles,
        ITEM.c.evidence,
    )
    while True:
        with engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
            rows = conn.execute(select(*cols).where(ITEM.c.id > last).order_by(ITEM.c.id).limit(batch)).all()
            if not rows:
                break
            changes: list[dict[str, Any]] = []
            retagged: list[int] = []
            tag_rows: list[dict[str, object]] = []
            for r in rows:
                tags = tagger.tag(r.text, lang=r.language)
                mediators = " ".join(tags.mediators)
                obstacles = " ".join(tags.obstacles)
                evidence = evidence_json(tags)
                if (
                    bool(r.relevant) == tags.relevant
                    and r.mediators == mediators
                    and r.obstacles == obstacles
                    and r.evidence == evidence
                    and abs((r.score or 0.0) - tags.score) < 1e-9
                ):
                    continue
                report.changed += 1
                if tags.relevant and not r.relevant:
                    report.became_relevant += 1
                elif r.relevant and not tags.relevant:
                    report.became_irrelevant += 1
                old = set(r.mediators.split()) | set(r.obstacles.split())
                new = set(tags.mediators) | set(tags.obstacles)
                for t in new - old:
                    report._count(t, 1, 0)
                for t in old - new:
                    report._count(t, 0, 1)
                changes.append(
                    {
                        "_id": r.id,
                        "relevant": tags.relevant,
                        "score": tags.score,
                        "mediators": mediators,
                        "obstacles": obstacles,
                        "evidence": evidence,
                    }
                )
                if old != new:
                    retagged.append(r.id)
                    tag_rows += tag_rows_for(r.id, tags, r.published_at)
            if changes:  # one statement per batch, not one per item
                conn.execute(
                    update(ITEM)
                    .where(ITEM.c.id == bindparam("_id"))
                    .values(
                        relevant=bindparam("relevant"),
                        score=bindparam("score"),
                        mediators=bindparam("mediators"),
                        obstacles=bindparam("obstacles"),
                        evidence=bindparam("evidence"),
                    ),
                    changes,
                )
            if retagged:
                conn.execute(delete(TAG).where(TAG.c.item_id.in_(retagged)))
            if tag_rows:
                conn.execute(insert(TAG), tag_rows)
            report.items += len(rows)
            last = rows[-1].id
        if progress:
            progress(report.items, total)
    report.seconds = time.perf_counter() - started
    return report
