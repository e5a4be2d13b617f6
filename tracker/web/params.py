"""Query parameters of the timeline, shared by the HTML page and the JSON API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import HTTPException, Query

from tracker.store.timeline_queries import Cursor, Order, TimelineFilter

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def parse_when(value: str, *, end_of_day: bool = False) -> datetime:
    """``YYYY-MM-DD`` (a whole UTC day) or an ISO 8601 date-time (naive means UTC)."""
    value = value.strip()
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            start = datetime.combine(day, time(0), tzinfo=UTC)
            return start + timedelta(days=1) if end_of_day else start
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"not a date: {value!r} (use YYYY-MM-DD or an ISO 8601 date-time)") from exc
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


@dataclass(frozen=True)
class TimelineQuery:
    flt: TimelineFilter
    order: Order
    after: Cursor | None
    before: Cursor | None
    limit: int
    params: dict[str, str]  # the reader's non-empty filter parameters, to build links with

    def url(self, path: str, **extra: str) -> str:
        """``path`` with the same filters plus ``extra`` (no cursor unless given)."""
        q = {k: v for k, v in self.params.items() if k not in ("after", "before")}
        q.update({k: v for k, v in extra.items() if v})
        return f"{path}?{urlencode(q)}" if q else path

    def next_url(self, path: str, cursor: Cursor | None) -> str | None:
        return None if cursor is None else self.url(path, after=cursor.encode())

    def prev_url(self, path: str, cursor: Cursor | None) -> str | None:
        return None if cursor is None else self.url(path, before=cursor.encode())


def _blank(value: str | None) -> str | None:
    return value.strip() if value and value.strip() else None


def timeline_query(
    mediator: Annotated[str | None, Query(description="taxonomy key of a mediator, e.g. turkey")] = None,
    obstacle: Annotated[str | None, Query(description="taxonomy key of an obstacle, e.g. territory")] = None,
    source: Annotated[str | None, Query(description="feed name ('seed' for the baseline events)")] = None,
    language: Annotated[str | None, Query(description="language code; 'en' also matches 'en-GB'")] = None,
    since: Annotated[str | None, Query(description="from this date (YYYY-MM-DD or ISO date-time)")] = None,
    until: Annotated[
        str | None, Query(description="up to this date, inclusive for YYYY-MM-DD, exclusive for a date-time")
    ] = None,
    q: Annotated[str | None, Query(description="full-text search in title and summary (all words)")] = None,
    order: Annotated[str, Query(pattern="^(desc|asc)$", description="desc: newest first")] = "desc",
    after: Annotated[str | None, Query(description="cursor: the page after this entry")] = None,
    before: Annotated[str | None, Query(description="cursor: the page before this entry")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    baseline: Annotated[bool, Query(description="include the seed's baseline events")] = True,
) -> TimelineQuery:
    raw = {
        "mediator": _blank(mediator),
        "obstacle": _blank(obstacle),
        "source": _blank(source),
        "language": _blank(language),
        "since": _blank(since),
        "until": _blank(until),
        "q": _blank(q),
        "order": order if order == "asc" else None,
        "limit": str(limit) if limit != DEFAULT_LIMIT else None,
        "baseline": None if baseline else "0",
        "after": _blank(after),
        "before": _blank(before),
    }
    params = {k: v for k, v in raw.items() if v is not None}
    try:
        flt = TimelineFilter(
            mediator=raw["mediator"],
            obstacle=raw["obstacle"],
            source=raw["source"],
            language=raw["language"],
            since=parse_when(raw["since"]) if raw["since"] else None,
            until=parse_when(raw["until"], end_of_day=True) if raw["until"] else None,
            q=raw["q"],
            baseline=baseline,
        )
        after_c = Cursor.decode(raw["after"]) if raw["after"] else None
        before_c = Cursor.decode(raw["before"]) if raw["before"] else None
    except ValueError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from exc
    if after_c is not None and before_c is not None:
        raise HTTPException(status_code=400, detail="give either after or before, not both")
    return TimelineQuery(
        flt=flt,
        order="asc" if order == "asc" else "desc",
        after=after_c,
        before=before_c,
        limit=limit,
        params=params,
    )
