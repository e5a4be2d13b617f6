"""The status log: the seed's baseline plus relevant news, and the latest status of each tag (pure).

Everything here takes the log (``TimelineEntry`` records) and ``now`` as arguments; the database
side (``tracker.store.timeline_queries``) computes the same shapes with SQL for a million items.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from tracker.models import Evidence, TimelineEntry

LATEST = 5


class BaselineEvent(BaseModel):
    """One dated event of the seed, with the passage it comes from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slug: str = Field(pattern=r"^[a-z0-9-]+$")
    date: date
    precision: Literal["day", "month", "period"]
    date_label: str
    title: str
    summary: str
    mediators: list[str] = Field(default_factory=list)
    obstacles: list[str] = Field(default_factory=list)
    passage: str = Field(min_length=10)


class BaselineFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int
    events: list[BaselineEvent] = Field(min_length=1)


def load_baseline_events() -> list[BaselineEvent]:
    text = resources.files("tracker.data").joinpath("baseline.yaml").read_text(encoding="utf-8")
    return BaselineFile.model_validate(yaml.safe_load(text)).events


def baseline_entry(event: BaselineEvent) -> TimelineEntry:
    return TimelineEntry(
        kind="baseline",
        id=f"b:{event.slug}",
        date=datetime.combine(event.date, time(), tzinfo=UTC),
        date_precision=event.precision,
        date_label=event.date_label,
        title=event.title,
        summary=event.summary,
        sources=("seed",),
        mediators=tuple(event.mediators),
        obstacles=tuple(event.obstacles),
        evidence=(Evidence(tag="seed", kind="context", phrase=event.passage, start=0, end=len(event.passage)),),
        score=1.0,
    )


def load_baseline() -> tuple[TimelineEntry, ...]:
    """The baseline as status-log entries, oldest first."""
    return tuple(sorted((baseline_entry(e) for e in load_baseline_events()), key=lambda e: e.date))


def status_log(baseline: Iterable[TimelineEntry], items: Iterable[TimelineEntry]) -> list[TimelineEntry]:
    """One ordered log, newest first; ties keep baseline after news of the same instant."""
    merged = list(baseline) + list(items)
    merged.sort(key=lambda e: (e.date, e.kind == "item", e.id), reverse=True)
    return merged


def filter_log(
    entries: Iterable[TimelineEntry],
    *,
    mediator: str | None = None,
    obstacle: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    kind: str | None = None,
) -> list[TimelineEntry]:
    return [
        e
        for e in entries
        if (mediator is None or mediator in e.mediators)
        and (obstacle is None or obstacle in e.obstacles)
        and (since is None or e.date >= since)
        and (until is None or e.date < until)
        and (kind is None or e.kind == kind)
    ]


@dataclass(frozen=True)
class TagStatus:
    """Where one mediator or obstacle stands."""

    key: str
    kind: Literal["mediator", "obstacle"]
    label: str
    latest: tuple[TimelineEntry, ...] = ()
    count_7d: int = 0
    count_30d: int = 0
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    sources: tuple[str, ...] = ()

    @property
    def headline(self) -> str:
        """The one-line status used by the CLI and digests."""
        if not self.latest:
            return f"{self.label}: no news yet"
        top = self.latest[0]
        return f"{self.label}: {top.title} ({top.date:%d %b %Y}; {self.count_7d} in 7 days, {self.count_30d} in 30)"


@dataclass(frozen=True)
class Status:
    updated_at: datetime
    mediators: dict[str, TagStatus] = field(default_factory=dict)
    obstacles: dict[str, TagStatus] = field(default_factory=dict)


def latest_status(
    entries: Sequence[TimelineEntry],
    *,
    now: datetime,
    mediators: dict[str, str],
    obstacles: dict[str, str],
    latest: int = LATEST,
) -> Status:
    """Per tag: latest entries, counts over 7 and 30 days, first/last seen, sources.

    ``mediators`` / ``obstacles`` map every taxonomy key to its label, so a tag with no news is
    still reported (with zero counts).
    """
    ordered = sorted(entries, key=lambda e: e.date, reverse=True)

    def one(key: str, label: str, kind: Literal["mediator", "obstacle"]) -> TagStatus:
        mine = [e for e in ordered if key in (e.mediators if kind == "mediator" else e.obstacles)]
        news = [e for e in mine if e.kind == "item"]
        sources: dict[str, None] = {}
        for e in news:
            for s in e.sources:
                sources[s] = None
        return TagStatus(
            key=key,
            kind=kind,
            label=label,
            latest=tuple(mine[:latest]),
            count_7d=sum(1 for e in news if now - timedelta(days=7) <= e.date <= now),
            count_30d=sum(1 for e in news if now - timedelta(days=30) <= e.date <= now),
            first_seen=mine[-1].date if mine else None,
            last_seen=mine[0].date if mine else None,
            sources=tuple(sources),
        )

    return Status(
        updated_at=now,
        mediators={k: one(k, v, "mediator") for k, v in mediators.items()},
        obstacles={k: one(k, v, "obstacle") for k, v in obstacles.items()},
    )


def changes_since(entries: Iterable[TimelineEntry], t: datetime) -> list[TimelineEntry]:
    """News entries dated after ``t``, newest first (what a digest reports)."""
    return sorted((e for e in entries if e.kind == "item" and e.date > t), key=lambda e: e.date, reverse=True)


def daily_counts(entries: Iterable[TimelineEntry], tag: str, *, now: datetime, days: int = 30) -> list[int]:
    """News per day for the last ``days`` days (oldest first), for sparklines."""
    today = now.date()
    counts = [0] * days
    for e in entries:
        if e.kind != "item" or (tag not in e.mediators and tag not in e.obstacles):
            continue
        age = (today - e.date.date()).days
        if 0 <= age < days:
            counts[days - 1 - age] += 1
    return counts


def status_to_dict(status: Status) -> dict[str, Any]:
    def one(s: TagStatus) -> dict[str, Any]:
        return {
            "label": s.label,
            "headline": s.headline,
            "count_7d": s.count_7d,
            "count_30d": s.count_30d,
            "first_seen": s.first_seen.isoformat() if s.first_seen else None,
            "last_seen": s.last_seen.isoformat() if s.last_seen else None,
            "sources": list(s.sources),
            "latest": [
                {"id": e.id, "kind": e.kind, "date": e.date.isoformat(), "title": e.title, "link": e.link}
                for e in s.latest
            ],
        }

    return {
        "updated_at": status.updated_at.isoformat(),
        "mediators": {k: one(v) for k, v in status.mediators.items()},
        "obstacles": {k: one(v) for k, v in status.obstacles.items()},
    }
