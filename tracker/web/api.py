"""The JSON API under /api (documented by FastAPI's OpenAPI at /api/openapi.json) and admin actions."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request

from tracker.store import queries
from tracker.store import timeline_queries as tq
from tracker.web.params import TimelineQuery, timeline_query
from tracker.web.schemas import (
    EntryOut,
    FeedOut,
    ItemOut,
    PollOut,
    StatusOut,
    TimelineOut,
    item_payload,
    status_payload,
)
from tracker.web.security import require_admin
from tracker.web.state import WebState

router = APIRouter(prefix="/api", tags=["api"])
admin = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])


def web_state(request: Request) -> WebState:
    state: WebState = request.app.state.tracker
    return state


State = Annotated[WebState, Depends(web_state)]


@router.get("/status", response_model=StatusOut, summary="Latest status of every mediator and obstacle")
def api_status(state: State) -> dict[str, Any]:
    """The same document ``tracker status --format json`` prints."""
    return status_payload(state.overview())


@router.get("/timeline", response_model=TimelineOut, summary="A page of the status log")
def api_timeline(
    request: Request, state: State, query: Annotated[TimelineQuery, Depends(timeline_query)]
) -> TimelineOut:
    """Baseline events and relevant items, filtered; follow ``next`` (or ``?after=next_cursor``) to page."""
    with state.app.engine.connect() as conn:
        page = tq.timeline_page(
            conn, query.flt, order=query.order, after=query.after, before=query.before, limit=query.limit
        )
    base = str(request.base_url).rstrip("/")
    nxt = query.next_url("/api/timeline", page.next)
    prev = query.prev_url("/api/timeline", page.prev)
    return TimelineOut(
        entries=[EntryOut.model_validate(queries.entry_record(e, relevant=True)) for e in page.entries],
        order=page.order,
        next_cursor=page.next.encode() if page.next else None,
        prev_cursor=page.prev.encode() if page.prev else None,
        next=base + nxt if nxt else None,
        prev=base + prev if prev else None,
    )


@router.get(
    "/items/{item_id}",
    response_model=ItemOut,
    summary="One item with its sanitized content and every feed that carried it",
    responses={404: {"description": "no such item"}},
)
def api_item(state: State, item_id: int) -> ItemOut:
    with state.app.engine.connect() as conn:
        detail = tq.item_detail(conn, item_id)
    if detail is None:
        raise HTTPException(status_code=404, detail=f"no item {item_id}")
    return item_payload(detail)


@router.get("/feeds", response_model=list[FeedOut], summary="Health of every feed")
def api_feeds(state: State) -> list[dict[str, Any]]:
    return queries.feed_health(state.app.engine)


@admin.post(
    "/poll",
    response_model=PollOut,
    summary="Poll the due feeds now (needs Authorization: Bearer $TRACKER_ADMIN_TOKEN)",
    responses={
        401: {"description": "no bearer token"},
        403: {"description": "wrong token"},
        404: {"description": "admin actions are off (no token configured)"},
        409: {"description": "a poll started from the web is already running"},
    },
)
async def admin_poll(state: State, all_feeds: bool = False) -> PollOut:
    """One polling cycle in this process; ``?all_feeds=true`` polls every enabled feed, due or not."""
    if not state.poll_lock.acquire(blocking=False):
        raise HTTPException(status_code=409, detail="a poll is already running")
    try:
        from tracker.update import Poller

        a = state.app
        poller = Poller(a.db, fetch=a.fetch_settings, schedule=a.schedule_settings, processes=0)
        try:
            summary = await poller.poll(include_not_due=all_feeds)
        finally:
            await asyncio.get_running_loop().run_in_executor(None, poller.close)
    finally:
        state.poll_lock.release()
    state.invalidate()
    return PollOut(
        feeds=summary.feeds,
        ok=summary.ok,
        not_modified=summary.not_modified,
        failed=summary.failed,
        new=summary.new,
        updated=summary.updated,
        seconds=summary.seconds,
        summary=summary.line(),
    )
