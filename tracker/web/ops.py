"""``/healthz`` and ``/metrics``: what a load balancer, systemd watchdog or Prometheus asks.

``/healthz`` answers 200 only if the process is up, the database answers ``SELECT 1`` within a few
seconds and, when the daemon runs in this process, its poll job beat recently; otherwise 503 with
the failing check named.  Nothing here needs a token: neither endpoint reveals content or secrets.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tracker import metrics
from tracker.logsetup import redact

DB_TIMEOUT = 3.0  # seconds; a health check that hangs is worse than one that says 503

router = APIRouter(tags=["operations"])
_STARTED = time.time()


def _engine(request: Request) -> Engine | None:
    state = getattr(request.app.state, "tracker", None)
    app = getattr(state, "app", None)
    return getattr(app, "engine", None)


def _select_one(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1")).scalar_one()


async def database_check(engine: Engine | None, timeout: float = DB_TIMEOUT) -> tuple[bool, str]:
    if engine is None:
        return False, "no database configured"
    started = time.perf_counter()
    try:
        await asyncio.wait_for(asyncio.to_thread(_select_one, engine), timeout)
    except TimeoutError:
        return False, f"no answer within {timeout:.0f} s"
    except Exception as exc:  # any driver error means "not reachable"
        return False, redact(f"{type(exc).__name__}: {exc}".splitlines()[0])[:300]
    return True, f"SELECT 1 in {(time.perf_counter() - started) * 1000:.0f} ms"


@router.get("/healthz", summary="Process, database and scheduler health (200 or 503)")
async def healthz(request: Request) -> JSONResponse:
    db_ok, db_detail = await database_check(_engine(request))
    sched_ok, sched_detail = metrics.LIVENESS.check()
    checks: dict[str, dict[str, Any]] = {
        "process": {"ok": True, "detail": f"pid {os.getpid()}, up {time.time() - _STARTED:.0f} s"},
        "database": {"ok": db_ok, "detail": db_detail},
        "scheduler": {"ok": sched_ok, "detail": sched_detail},
    }
    healthy = all(c["ok"] for c in checks.values())
    body = {"status": "ok" if healthy else "fail", "checks": checks}
    return JSONResponse(body, status_code=200 if healthy else 503, headers={"Cache-Control": "no-store"})


@router.get("/metrics", summary="Prometheus metrics")
async def prometheus_metrics() -> Response:
    return Response(metrics.METRICS.exposition(), media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})
