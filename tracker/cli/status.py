"""Commands that read the status log: status, timeline, serve (the web view alone)."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from enum import StrEnum
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tracker import app as tracker_app
from tracker.cli.app import EXIT_USAGE, app
from tracker.cli.ingest import open_app

out = Console()
err = Console(stderr=True)


class Format(StrEnum):
    text = "text"
    json = "json"


class Order(StrEnum):
    desc = "desc"
    asc = "asc"


def _when(value: str | None, *, end_of_day: bool = False) -> datetime | None:
    from tracker.web.params import parse_when

    if not value:
        return None
    try:
        return parse_when(value, end_of_day=end_of_day)
    except ValueError as exc:
        err.print(str(exc), highlight=False)
        raise typer.Exit(EXIT_USAGE) from exc


def _write_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


@app.command()
def status(
    ctx: typer.Context,
    fmt: Format = typer.Option(Format.text, "--format", help="text (tables) or json (same as GET /api/status)."),
) -> None:
    """Latest status of every mediator and obstacle: newest entries and activity over 30 days."""
    from tracker.web.schemas import status_payload
    from tracker.web.state import status_overview

    a = open_app(ctx)
    tracker_app.ensure_ready(a)
    payload = status_payload(status_overview(a))
    if fmt is Format.json:
        _write_json(payload)
        return
    feeds = payload["feeds"]
    out.print(
        f"feeds: {feeds['enabled']} enabled, {feeds['failing']} failing; last poll {_short(feeds['last_polled_at'])}",
        highlight=False,
    )
    for group in ("mediators", "obstacles"):
        table = Table(title=group.capitalize(), title_justify="left", expand=False)
        table.add_column("key")
        table.add_column("state")
        table.add_column("30 d", justify="right")
        table.add_column("24 h", justify="right")
        table.add_column("latest")
        for key, s in payload[group].items():
            latest = s["latest"][0] if s["latest"] else None
            line = "—"
            if latest:
                src = latest["source"] or ""
                label = "baseline: " if latest["kind"] == "baseline" else ""
                line = f"{latest['date_label']} · {label}{latest['title']} ({src})"
            table.add_row(
                escape(f"{s['label']} ({key})"),
                s["state"],
                str(s["total_30d"]),
                f"+{s['new_24h']}" if s["new_24h"] else "0",
                escape(line),
            )
        out.print(table)


def _short(iso: str | None) -> str:
    return iso[:16].replace("T", " ") + " UTC" if iso else "never"


@app.command()
def timeline(
    ctx: typer.Context,
    mediator: str | None = typer.Option(None, help="Only entries tagged with this mediator key."),
    obstacle: str | None = typer.Option(None, help="Only entries tagged with this obstacle key."),
    source: str | None = typer.Option(None, help="Only items of this feed (name); 'seed' for the baseline."),
    language: str | None = typer.Option(None, help="Only items in this language."),
    since: str | None = typer.Option(None, help="From this date (YYYY-MM-DD or ISO date-time)."),
    until: str | None = typer.Option(None, help="Up to this date (inclusive for YYYY-MM-DD)."),
    search: str | None = typer.Option(None, "--search", "-q", help="Full-text search in title and summary."),
    order: Order = typer.Option(Order.desc, help="desc: newest first; asc: oldest first."),
    limit: int = typer.Option(30, min=1, max=10_000, help="How many entries."),
    fmt: Format = typer.Option(Format.text, "--format", help="text or json (entries as in GET /api/timeline)."),
) -> None:
    """The status log: baseline events and relevant news, filtered."""
    from tracker.models import TimelineEntry
    from tracker.store import timeline_queries as tq
    from tracker.store.queries import entry_record
    from tracker.web.schemas import EntryOut

    flt = tq.TimelineFilter(
        mediator=mediator,
        obstacle=obstacle,
        source=source,
        language=language,
        since=_when(since),
        until=_when(until, end_of_day=True),
        q=search,
    )
    a = open_app(ctx)
    tracker_app.ensure_ready(a)
    entries: list[TimelineEntry] = []
    cursor = None
    with a.engine.connect() as conn:
        while len(entries) < limit:
            page = tq.timeline_page(
                conn, flt, order=order.value, after=cursor, limit=min(tq.MAX_LIMIT, limit - len(entries))
            )
            entries += page.entries
            if page.next is None:
                break
            cursor = page.next
    if fmt is Format.json:
        _write_json([EntryOut.model_validate(entry_record(e, relevant=True)).model_dump(mode="json") for e in entries])
        return
    if not entries:
        err.print("no entries match", highlight=False)
        return
    for e in entries:
        tags = " ".join([f"+{k}" for k in e.mediators] + [f"!{k}" for k in e.obstacles])
        when = e.date_label if e.kind == "baseline" else e.date.strftime("%Y-%m-%d %H:%M")
        kind = "[magenta]baseline[/magenta] " if e.kind == "baseline" else ""
        src = ", ".join(e.sources)
        meta = f"[dim]{escape(src)}  {escape(tags)}[/dim]"
        out.print(
            f"[bold]{escape(when):<17}[/bold] {kind}{escape(e.title)}  {meta}",
            highlight=False,
            soft_wrap=True,
        )


@app.command()
def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(None, help="Address to listen on (default TRACKER_WEB_HOST or 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port to listen on (default TRACKER_WEB_PORT or 8080)."),
) -> None:
    """Serve the web view and JSON API alone (no polling; `tracker run` is the full service)."""
    import uvicorn

    from tracker.web import create_app

    a = open_app(ctx)
    tracker_app.ensure_ready(a)
    host = host or getattr(a.settings, "web_host", None) or "127.0.0.1"
    port = port or getattr(a.settings, "web_port", None) or 8080
    out.print(f"serving http://{host}:{port}/ (Ctrl-C to stop)", highlight=False)
    uvicorn.run(create_app(a), host=host, port=port, log_level="info", proxy_headers=False)
