"""The web view: FastAPI + Jinja2, server-rendered, no JavaScript.

``create_app(app)`` builds the ASGI application for one ``tracker.app.App``.  Pages: ``/`` (status
of every mediator and obstacle), ``/timeline``, ``/items/{id}``, ``/feeds``; JSON under ``/api``;
Atom at ``/atom.xml`` and ``/atom/{kind}/{key}.xml``; admin actions under ``/admin`` (bearer token).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from tracker.store.timeline_queries import TaxonomyKey
from tracker.web.render import STATIC, make_env, render
from tracker.web.security import SecurityHeaders
from tracker.web.state import OVERVIEW_TTL, WebState, taxonomy_keys, utcnow

if TYPE_CHECKING:
    from tracker.app import App

__all__ = ["create_app"]

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
}


def _ops_router() -> APIRouter | None:
    """/healthz and /metrics live in ``tracker.web.ops`` (owned by the daemon) when it exists."""
    try:
        ops = importlib.import_module("tracker.web.ops")
    except ModuleNotFoundError as exc:
        if exc.name != "tracker.web.ops":
            raise
        return None
    router: APIRouter | None = getattr(ops, "router", None)
    return router


def _wants_html(request: Request) -> bool:
    path = request.url.path
    return not path.startswith(("/api", "/admin", "/atom", "/healthz", "/metrics", "/static"))


def create_app(
    app: App,
    *,
    extra_routers: Sequence[APIRouter] = (),
    clock: Callable[[], datetime] = utcnow,
    overview_ttl: float = OVERVIEW_TTL,
    keys: Sequence[TaxonomyKey] | None = None,
) -> FastAPI:
    """The ASGI app for ``app``'s database; read-only unless ``settings.admin_token`` is set."""
    from tracker.web import api, pages

    web = FastAPI(
        title="tracker",
        summary="Status of the Ukraine–Russia peace process from tagged news feeds",
        version="1",
        docs_url=None,  # Swagger/ReDoc pages need third-party JavaScript, which the CSP forbids
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    web.state.tracker = WebState(
        app=app,
        keys=list(keys) if keys is not None else taxonomy_keys(app),
        clock=clock,
        overview_ttl=overview_ttl,
    )
    web.state.jinja = make_env()
    web.add_middleware(SecurityHeaders)
    web.mount("/static", StaticFiles(directory=STATIC), name="static")
    web.include_router(pages.router)
    web.include_router(api.router)
    web.include_router(api.admin)
    routers = list(extra_routers)
    ops = _ops_router()
    if ops is not None and ops not in routers:
        routers.append(ops)
    for r in routers:
        web.include_router(r)

    @web.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if not _wants_html(request):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        state: WebState = request.app.state.tracker
        html = render(
            request.app.state.jinja,
            "error.html",
            page="error",
            now=state.clock(),
            labels={},
            feeds=None,
            status=exc.status_code,
            title=_TITLES.get(exc.status_code, "Error"),
            detail=exc.detail if isinstance(exc.detail, str) else "",
        )
        return HTMLResponse(html, status_code=exc.status_code, headers=exc.headers)

    @web.exception_handler(RequestValidationError)
    async def bad_params(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        if not _wants_html(request):
            return JSONResponse({"detail": errors}, status_code=422)
        detail = "; ".join(f"{'.'.join(str(x) for x in e['loc'][1:])}: {e['msg']}" for e in errors)
        return await http_error(request, StarletteHTTPException(status_code=400, detail=detail))

    return web
