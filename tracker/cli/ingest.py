"""Commands of the ingest path: init, check, feeds, poll, export, retag."""

from __future__ import annotations

import asyncio
import csv
import functools
import json
import sys
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from tracker import app as tracker_app
from tracker.cli.app import EXIT_RUNTIME, EXIT_USAGE, app, collector_paused, globals_of, startup
from tracker.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console


# rich is imported when something is printed through it: a `tracker poll` whose feeds all answer
# prints one plain line and never needs it (start-up time counts for a cron-driven `poll --once`).
@functools.cache
def out() -> Console:
    from rich.console import Console

    return Console()


@functools.cache
def err() -> Console:
    from rich.console import Console

    return Console(stderr=True)


def open_app(ctx: typer.Context, *, poll: bool = False) -> tracker_app.App:
    """Build the App from the global options; a bad config exits 2 with the file/line/field message.

    ``poll``: only what polling needs from feeds.yaml, remembered while the file is unchanged
    (``App.poll_config``)."""
    g = globals_of(ctx)
    try:
        with startup():
            a = tracker_app.build(config_path=g.config_path, database_url=g.database_url, validate=not poll)
            if poll:
                a.poll_config  # noqa: B018  (read or validated now, inside this error handling)
            return a
    except ConfigError as exc:
        err().print(f"[red]config error:[/red] {exc}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from exc
    except FileNotFoundError as exc:
        err().print(f"config error: {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from exc


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


@app.command()
def init(ctx: typer.Context) -> None:
    """Create or upgrade the database (Alembic), sync feeds from feeds.yaml, load the seed baseline."""
    a = open_app(ctx)
    rep = tracker_app.init(a)
    verb = "created" if rep.revision_before is None else "at"
    out().print(
        f"database {verb} revision {rep.revision_after} ({a.engine.url.render_as_string(hide_password=True)}); "
        f"feeds: {rep.feeds_added} added, {rep.feeds_changed} changed, {rep.feeds_disabled} disabled; "
        f"baseline: {rep.baseline_events} events",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
def check(
    ctx: typer.Context,
    fetch: bool = typer.Option(False, "--fetch", help="Also fetch and parse each enabled feed once."),
) -> None:
    """Validate feeds.yaml (exit 2 naming file, line and field on error); --fetch tries every feed."""
    a = open_app(ctx)
    feeds = [f for f in a.config.feeds if f.enabled]
    out().print(f"{a.config_path}: ok — {len(a.config.feeds)} feeds ({len(feeds)} enabled)", highlight=False)
    if not fetch:
        return
    from tracker.fetch import Fetcher
    from tracker.models import FeedRequest
    from tracker.parse import parse_feed
    from tracker.update import utcnow

    async def run() -> list[tuple[str, str, str]]:
        async with Fetcher(a.fetch_settings) as fetcher:
            results = await asyncio.gather(*(fetcher.fetch(FeedRequest(i, str(f.url))) for i, f in enumerate(feeds)))
        rows = []
        for f, r in zip(feeds, results, strict=True):
            if r.outcome == "ok" and r.content is not None:
                parsed = parse_feed(r.content, url=r.url, headers=dict(r.headers), now=utcnow())
                if parsed.error:
                    rows.append((f.name, "error", parsed.error))
                else:
                    rows.append((f.name, "ok", f"{len(parsed.entries)} entries"))
            else:
                rows.append((f.name, r.outcome, r.error or f"HTTP {r.status}"))
        return rows

    rows = asyncio.run(run())
    from rich.table import Table

    table = Table("feed", "result", "detail")
    for name, result, detail in rows:
        table.add_row(name, result, detail)
    out().print(table)
    if any(r[1] not in ("ok", "not_modified") for r in rows):
        raise typer.Exit(EXIT_RUNTIME)


feeds_app = typer.Typer(help="List feeds with their health; import or export OPML.", invoke_without_command=True)
app.add_typer(feeds_app, name="feeds")


@feeds_app.callback()
def feeds(
    ctx: typer.Context,
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", help="text (table) or json."),
) -> None:
    """Table of feeds: name, url, status, last success, items, consecutive errors."""
    if ctx.invoked_subcommand is not None:
        return
    from tracker.store import queries

    a = open_app(ctx)
    tracker_app.ensure_ready(a)
    rows = queries.feed_health(a.engine)
    if fmt is OutputFormat.json:
        sys.stdout.write(json.dumps(rows, default=str, ensure_ascii=False, indent=2) + "\n")
        return
    from rich.table import Table

    table = Table("name", "url", "status", "last success", "items", "errors", "next due")
    for r in rows:
        status = r["last_outcome"] or "never polled"
        if not r["enabled"]:
            status = f"disabled ({r['disabled_reason'] or 'not in config'})"
        elif r["last_error"]:
            status = f"{status}: {r['last_error']}"
        table.add_row(
            r["name"],
            r["url"],
            status,
            _ts(r["last_success_at"]),
            str(r["item_count"]),
            str(r["consecutive_failures"]),
            _ts(r["next_due_at"]),
        )
    out().print(table)


def _ts(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "—"


@feeds_app.command("import")
def feeds_import(ctx: typer.Context, file: Path = typer.Argument(..., exists=True, dir_okay=False)) -> None:
    """Add the feeds of an OPML file to feeds.yaml (existing URLs are skipped, comments kept)."""
    from tracker.opml import append_feeds, feeds_from_opml
    from tracker.settings import Settings

    g = globals_of(ctx)
    path = Path(g.config_path or Settings().config)
    try:
        found = feeds_from_opml(file.read_bytes())
        added = append_feeds(path, found)
    except (ConfigError, ValueError) as exc:
        err().print(f"import error: {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from exc
    out().print(f"{len(added)} of {len(found)} feeds added to {path}", highlight=False)


@feeds_app.command("export")
def feeds_export(ctx: typer.Context) -> None:
    """Write the configured feeds as OPML on stdout."""
    from tracker.opml import feeds_to_opml

    a = open_app(ctx)
    sys.stdout.write(feeds_to_opml(a.config.feeds))


@app.command()
def poll(
    ctx: typer.Context,
    once: bool = typer.Option(False, "--once", help="Run one cycle and exit (the daemon is `tracker run`)."),
    all_feeds: bool = typer.Option(False, "--all", help="Poll every enabled feed, due or not."),
    processes: int | None = typer.Option(None, help="Parser processes (default: one per core, max 2)."),
) -> None:
    """Poll the due feeds once, store new items, and print a one-line summary."""
    if not once:
        err().print("poll needs --once (use `tracker run` for the service)")
        raise typer.Exit(EXIT_USAGE)
    with startup():
        from tracker.update import Poller

        a = open_app(ctx, poll=True)
        tracker_app.ensure_ready(a)
    pc = a.poll_config.config
    with (
        Poller(a.db, fetch=pc.fetch, schedule=pc.schedule, processes=processes, taxonomy=pc.taxonomy) as p,
        collector_paused(),
    ):
        if sys.stdout.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            with Progress(
                TextColumn("polling"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True
            ) as bar:
                task = bar.add_task("poll", total=None)

                def progress(done: int, total: int) -> None:
                    bar.update(task, completed=done, total=total)

                summary = asyncio.run(p.poll(include_not_due=all_feeds, progress=progress))
        else:
            summary = asyncio.run(p.poll(include_not_due=all_feeds))
    for name, error in sorted(summary.errors.items()):
        err().print(f"failed: {name}: {error}", highlight=False, soft_wrap=True)
    print(summary.line())


class ExportFormat(StrEnum):
    jsonl = "jsonl"
    csv = "csv"


CSV_FIELDS = [
    "id",
    "kind",
    "date",
    "title",
    "summary",
    "link",
    "source",
    "sources",
    "language",
    "relevant",
    "score",
    "mediators",
    "obstacles",
    "evidence",
]


@app.command()
def export(
    ctx: typer.Context,
    fmt: ExportFormat = typer.Option(ExportFormat.jsonl, "--format", help="jsonl or csv."),
    output: Path | None = typer.Option(None, "--output", "-o", help="File to write (default stdout)."),
) -> None:
    """Every stored item and the baseline events, one record each (streamed, any size)."""
    from tracker.store import queries

    a = open_app(ctx)
    tracker_app.ensure_ready(a)
    stream = output.open("w", encoding="utf-8", newline="") if output else sys.stdout
    try:
        records: Iterator[dict[str, Any]] = queries.export_records(a.engine)
        if fmt is ExportFormat.jsonl:
            for rec in records:
                stream.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
        else:
            writer = csv.DictWriter(stream, fieldnames=CSV_FIELDS, extrasaction="ignore")
            writer.writeheader()
            for rec in records:
                flat = dict(rec)
                for key in ("sources", "mediators", "obstacles"):
                    flat[key] = ";".join(rec.get(key) or [])
                flat["evidence"] = json.dumps(rec.get("evidence") or [], ensure_ascii=False)
                writer.writerow(flat)
    finally:
        if output:
            stream.close()


@app.command()
def retag(
    ctx: typer.Context,
    batch: int = typer.Option(2000, help="Items per transaction."),
) -> None:
    """Re-tag every stored item with the current taxonomy and report what changed."""
    from tracker.retag import retag_all

    a = open_app(ctx)
    tracker_app.ensure_ready(a)
    total = 0

    def progress(done: int, count: int) -> None:
        nonlocal total
        total = count
        if sys.stderr.isatty():
            err().print(f"\rretagged {done}/{count}", end="")

    report = retag_all(a.engine, taxonomy_overrides=a.config.taxonomy, batch=batch, progress=progress)
    if sys.stderr.isatty():
        err().print()
    print(report.line())
    for tag, (gained, lost) in sorted(report.per_tag.items()):
        print(f"  {tag}: +{gained} -{lost}")
