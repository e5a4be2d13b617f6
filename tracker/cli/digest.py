"""``tracker digest``: preview the next digest, or queue what is due and deliver the outbox."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console

from tracker import app as tracker_app
from tracker.cli.app import EXIT_RUNTIME, EXIT_USAGE, app
from tracker.cli.ingest import open_app

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _parse_now(value: str | None) -> datetime:
    if not value:
        return datetime.now(UTC)
    try:
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        err.print(f"--now: not an ISO date-time: {value!r}")
        raise typer.Exit(EXIT_USAGE) from exc
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


@app.command()
def digest(
    ctx: typer.Context,
    preview: bool = typer.Option(False, "--preview", help="Show the next digest; send and record nothing."),
    send: bool = typer.Option(False, "--send", help="Queue the digests that are due now and deliver the outbox."),
    name: str | None = typer.Option(None, "--digest", help="Only this digest (name from feeds.yaml)."),
    recipient: str | None = typer.Option(None, "--recipient", help="Preview for this address."),
    html: Path | None = typer.Option(None, "--html", help="With --preview: also write the HTML part here."),
    now_opt: str | None = typer.Option(None, "--now", help="Pretend it is this ISO time (UTC if naive).", hidden=True),
) -> None:
    """Digest emails: --preview renders the next one; --send queues what is due and delivers it."""
    if preview == send:
        err.print("give exactly one of --preview or --send")
        raise typer.Exit(EXIT_USAGE)
    from tracker import mailer  # here, not at the top: `tracker --help` needs no jinja2 or SMTP

    a = open_app(ctx)
    specs = mailer.digest_specs(a.config)
    if name is not None and name not in {s.name for s in specs}:
        known = ", ".join(s.name for s in specs) or "none configured"
        err.print(f"no digest named {name!r} in {a.config_path} ({known})")
        raise typer.Exit(EXIT_USAGE)
    if not specs:
        err.print(f"no digests configured in {a.config_path} (add a `digests:` section)")
        raise typer.Exit(EXIT_USAGE)
    now = _parse_now(now_opt)
    if preview:
        _preview(a, now, name, recipient, html)
    else:
        _send(a, now, name)


def _preview(a: tracker_app.App, now: datetime, name: str | None, recipient: str | None, html: Path | None) -> None:
    from tracker import mailer
    from tracker.digest import slug

    previews = mailer.preview(a, now, digest=name, recipient=recipient)
    for i, p in enumerate(previews):
        d = p.composed.digest
        when = "due now" if p.due else f"so far; next send {p.next_send.isoformat() if p.next_send else 'never'}"
        err.print(
            f"digest {d.spec.name} → {d.recipient}: {d.period_start.isoformat()} .. "
            f"{d.period_end.isoformat()} ({when}); {d.item_count} entries in {d.story_count} stories"
        )
        err.print(f"Subject: {p.composed.subject}")
        sys.stdout.write(p.composed.text)
        if i + 1 < len(previews):
            sys.stdout.write("\n" + "-" * 76 + "\n\n")
        if html is not None:
            target = (
                html if len(previews) == 1 else html.with_name(f"{html.stem}-{slug(d.spec.name)}-{i + 1}{html.suffix}")
            )
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(p.composed.html, encoding="utf-8")
            err.print(f"HTML written to {target}")


def _send(a: tracker_app.App, now: datetime, name: str | None) -> None:
    from tracker import mailer
    from tracker.store import outbox

    tracker_app.ensure_ready(a)
    queued = mailer.enqueue_due(a, now, only=name)
    smtp = mailer.SmtpSettings.from_settings(a.settings)
    if not smtp.host:
        err.print("TRACKER_SMTP_HOST is not set: digests stay in the outbox")
    sent, failed = mailer.deliver_pending(a.engine, smtp, now)
    c = outbox.counts(a.engine, max_attempts=mailer.MAX_ATTEMPTS)
    out.print(
        f"digests: {queued} queued, {sent} sent, {failed} failed; outbox: {c.pending} pending, "
        f"{c.sent} sent, {c.failed} given up"
    )
    if failed:
        raise typer.Exit(EXIT_RUNTIME)
