"""Pydantic shapes of the JSON API (and of ``tracker status --format json``, which uses them too)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from tracker.store import timeline_queries as tq


class EvidenceOut(BaseModel):
    tag: str = Field(description="taxonomy key the phrase supports")
    kind: Literal["mediator", "obstacle", "context"]
    phrase: str
    start: int = Field(description="offset in the item's tagged text (title + summary + content)")
    end: int


class EntryOut(BaseModel):
    """One line of the status log: a baseline event from the seed or a relevant news item."""

    id: str = Field(description='"i:<item id>" or "b:<baseline slug>"')
    kind: Literal["item", "baseline"]
    date: datetime
    date_precision: Literal["day", "month", "period"]
    date_label: str
    title: str
    summary: str
    link: str | None = None
    source: str | None = Field(default=None, description="first feed that carried it, or 'seed'")
    sources: list[str] = []
    language: str | None = None
    relevant: bool = True
    score: float = 0.0
    mediators: list[str] = []
    obstacles: list[str] = []
    evidence: list[EvidenceOut] = []


class DailyOut(BaseModel):
    start: date | None = Field(description="UTC day of counts[0]")
    counts: list[int] = Field(description="relevant items per UTC day, oldest first, the last is today")


class KeyStatusOut(BaseModel):
    key: str
    label: str
    kind: Literal["mediator", "obstacle"]
    state: Literal["active", "quiet", "baseline"] = Field(
        description="news in the last 7 days / in the last 30 days / only the seed's baseline"
    )
    last_date: datetime | None
    last_item_at: datetime | None
    total_30d: int
    new_24h: int
    daily: DailyOut
    latest: list[EntryOut] = Field(description="newest first; baseline events fill in when news is scarce")


class FeedsSummaryOut(BaseModel):
    total: int
    enabled: int
    failing: int
    last_polled_at: datetime | None
    last_success_at: datetime | None


class StatusOut(BaseModel):
    updated_at: datetime
    mediators: dict[str, KeyStatusOut]
    obstacles: dict[str, KeyStatusOut]
    feeds: FeedsSummaryOut
    changes: list[EntryOut] = Field(description="relevant items of the last 24 hours, newest first")


class TimelineOut(BaseModel):
    entries: list[EntryOut]
    order: Literal["desc", "asc"]
    next_cursor: str | None = Field(description="pass as ?after= to continue in this order")
    prev_cursor: str | None = Field(description="pass as ?before= to go back")
    next: str | None = Field(default=None, description="URL of the next page")
    prev: str | None = Field(default=None, description="URL of the previous page")


class SourceOut(BaseModel):
    feed_id: int
    name: str
    url: str
    seen_at: datetime


class ItemOut(EntryOut):
    content_html: str = Field(description="sanitized (nh3) HTML content")
    author: str | None = None
    updated_at: datetime | None = None
    ingested_at: datetime
    date_fallback: str | None = None
    feeds: list[SourceOut]


class FeedOut(BaseModel):
    id: int
    name: str
    url: str
    language: str | None
    enabled: bool
    disabled_reason: str | None
    last_outcome: str | None
    last_status: int | None
    last_error: str | None
    consecutive_failures: int
    last_fetched_at: datetime | None
    last_success_at: datetime | None
    next_due_at: datetime | None
    item_count: int


class PollOut(BaseModel):
    feeds: int
    ok: int
    not_modified: int
    failed: int
    new: int
    updated: int
    seconds: float
    summary: str


def status_payload(ov: tq.Overview) -> dict[str, Any]:
    """The /api/status document as JSON-ready data (the CLI prints exactly this)."""
    return StatusOut.model_validate(tq.overview_dict(ov)).model_dump(mode="json")


def item_payload(detail: tq.ItemDetail) -> ItemOut:
    from tracker.store.queries import entry_record

    rec = entry_record(detail.entry, relevant=detail.relevant)
    return ItemOut.model_validate(
        rec
        | {
            "content_html": detail.content_html,
            "author": detail.author,
            "updated_at": detail.updated_at,
            "ingested_at": detail.ingested_at,
            "date_fallback": detail.date_fallback,
            "feeds": [
                {"feed_id": s.feed_id, "name": s.name, "url": s.url, "seen_at": s.seen_at} for s in detail.sources
            ],
        }
    )
