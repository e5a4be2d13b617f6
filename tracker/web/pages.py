"""Server-rendered pages (no JavaScript) and the Atom feeds of the status log."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from tracker.store import queries
from tracker.store import timeline_queries as tq
from tracker.web.atom import atom_feed
from tracker.web.params import TimelineQuery, timeline_query
from tracker.web.render import render, safe_link
from tracker.web.state import WebState

router = APIRouter()

ATOM_LIMIT = 50
ATOM_TYPE = "application/atom+xml; charset=utf-8"


def web_state(request: Request) -> WebState:
    state: WebState = request.app.state.tracker
    return state


State = Annotated[WebState, Depends(web_state)]


def page(request: Request, state: WebState, name: str, **context: Any) -> HTMLResponse:
    html = render(
        request.app.state.jinja,
        f"{name}.html",
        page=name,
        now=context.pop("now", None) or state.clock(),
        labels=state.labels(),
        **context,
    )
    return HTMLResponse(html)


def public_base(request: Request, state: WebState) -> str:
    """Absolute links use TRACKER_BASE_URL when it is set (behind a proxy), else the request's own URL."""
    settings = state.app.settings
    explicit: set[str] = getattr(settings, "model_fields_set", set())
    configured = getattr(settings, "base_url", None) if "base_url" in explicit else None
    return str(configured or request.base_url).rstrip("/")


@router.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse, include_in_schema=False)
def overview_page(request: Request, state: State) -> HTMLResponse:
    ov = state.overview()
    yesterday = (ov.updated_at - timedelta(days=1)).strftime("%Y-%m-%dT%H:%MZ")  # the last 24 hours
    return page(request, state, "overview", ov=ov, feeds=ov.feeds, now=ov.updated_at, yesterday=yesterday)


@router.api_route("/timeline", methods=["GET", "HEAD"], response_class=HTMLResponse, include_in_schema=False)
def timeline_html(
    request: Request, state: State, query: Annotated[TimelineQuery, Depends(timeline_query)]
) -> HTMLResponse:
    with state.app.engine.connect() as conn:
        result = tq.timeline_page(
            conn, query.flt, order=query.order, after=query.after, before=query.before, limit=query.limit
        )
        sources, languages = tq.facet_values(conn)
        feeds = tq.feed_summary(conn)
    newer = result.newer
    older = result.older
    if query.order == "desc":
        newer_url, older_url = query.prev_url("/timeline", newer), query.next_url("/timeline", older)
    else:
        newer_url, older_url = query.next_url("/timeline", newer), query.prev_url("/timeline", older)
    atom_url = None
    only = {k for k in query.params if k not in ("order", "limit", "after", "before")}
    if not only:
        atom_url = "/atom.xml"
    elif only == {"mediator"}:
        atom_url = f"/atom/mediator/{query.flt.mediator}.xml"
    elif only == {"obstacle"}:
        atom_url = f"/atom/obstacle/{query.flt.obstacle}.xml"
    known = {k.key for k in state.keys}
    if atom_url and (query.flt.mediator or query.flt.obstacle) not in (None, *known):
        atom_url = None
    return page(
        request,
        state,
        "timeline",
        query=query,
        result=result,
        feeds=feeds,
        sources=sources,
        languages=languages,
        mediators=[k for k in state.keys if k.kind == "mediator"],
        obstacles=[k for k in state.keys if k.kind == "obstacle"],
        newer_url=newer_url,
        older_url=older_url,
        atom_url=atom_url,
        terms=tq.search_terms(query.flt.q),
    )


@router.api_route("/items/{item_id}", methods=["GET", "HEAD"], response_class=HTMLResponse, include_in_schema=False)
def item_page(request: Request, state: State, item_id: int) -> HTMLResponse:
    with state.app.engine.connect() as conn:
        detail = tq.item_detail(conn, item_id)
        feeds = tq.feed_summary(conn)
    if detail is None:
        raise HTTPException(status_code=404, detail=f"There is no item {item_id}.")
    return page(request, state, "item", d=detail, e=detail.entry, link=safe_link(detail.entry.link), feeds=feeds)


@router.api_route("/feeds", methods=["GET", "HEAD"], response_class=HTMLResponse, include_in_schema=False)
def feeds_page(request: Request, state: State) -> HTMLResponse:
    rows = queries.feed_health(state.app.engine)
    with state.app.engine.connect() as conn:
        feeds = tq.feed_summary(conn)
    return page(request, state, "feeds", rows=rows, feeds=feeds)


# --- Atom -----------------------------------------------------------------------------------------


def _atom(
    request: Request, state: WebState, flt: tq.TimelineFilter, *, title: str, feed_id: str, html: str
) -> Response:
    with state.app.engine.connect() as conn:
        entries = tq.timeline_entries(conn, flt, limit=ATOM_LIMIT)
    base = public_base(request, state)
    body = atom_feed(
        entries,
        title=title,
        feed_id=feed_id,
        self_url=base + request.url.path,
        html_url=base + html,
        base_url=base,
        updated=state.clock(),
        labels=state.labels(),
    )
    return Response(body, media_type=ATOM_TYPE)


@router.get(
    "/atom.xml",
    response_class=Response,
    tags=["atom"],
    summary="Atom feed of the whole status log",
    responses={200: {"content": {"application/atom+xml": {}}}},
)
def atom_all(request: Request, state: State) -> Response:
    return _atom(request, state, tq.TimelineFilter(), title="Peace process status log", feed_id="log", html="/timeline")


@router.get(
    "/atom/{kind}/{key}.xml",
    response_class=Response,
    tags=["atom"],
    summary="Atom feed of one mediator's or obstacle's status log",
    responses={200: {"content": {"application/atom+xml": {}}}, 404: {"description": "unknown key"}},
)
def atom_key(request: Request, state: State, kind: str, key: str) -> Response:
    kind = kind.removesuffix("s")
    match = next((k for k in state.keys if k.key == key and k.kind == kind), None)
    if match is None:
        raise HTTPException(status_code=404, detail=f"no {kind} {key!r} in the taxonomy")
    flt = tq.TimelineFilter(mediator=key) if kind == "mediator" else tq.TimelineFilter(obstacle=key)
    return _atom(
        request,
        state,
        flt,
        title=f"{match.label} ({kind}) — peace process status log",
        feed_id=f"{kind}/{key}",
        html=f"/timeline?{kind}={key}",
    )
