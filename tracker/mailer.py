"""Digest emails, the I/O half: plan due periods, fill the outbox, deliver it over SMTP.

These are plain sync functions so the daemon can run them from an APScheduler job::

    run_digests(app, now)            # = enqueue_due(app, now) then deliver_pending(...)
    enqueue_due(app, now) -> int     # one transaction per (digest, recipient): render + outbox + watermark
    deliver_pending(engine, smtp, now) -> (sent, failed)

Call ``run_digests`` every minute or so: planning is cheap and idempotent, and retries follow each
row's ``next_attempt_at``, so a frequent call is what honours the backoff.

Delivery is at-least-once with one narrow window: a row is marked ``sending_at`` before SMTP and
``sent_at`` right after the server accepted DATA.  If the process dies between those two commits
the row stays "sending"; it is re-sent only after ``STUCK_AFTER`` (6 h), with the same Message-ID,
so the rare duplicate is recognisable (and dropped by servers that dedupe on Message-ID).  A lost
digest was judged worse than a duplicate one.  Secrets (the SMTP password) are never logged.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Engine

from tracker import digest as dg
from tracker.store import outbox
from tracker.store.queries import baseline_entries

log = logging.getLogger("tracker.mailer")

BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_MAX = timedelta(hours=6)
MAX_ATTEMPTS = 12  # about 2.5 days of retries, then the row is left for a person (last_error says why)
STUCK_AFTER = timedelta(hours=6)
ACTIVITY_WINDOW = timedelta(days=30)  # "N in the last 30 days" on each section's status line

# Errors that say nothing about the message, only about the server: stop the run after one.
_SERVER_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # refused, unreachable, timeout, TLS
    smtplib.SMTPServerDisconnected,
    smtplib.SMTPConnectError,
    smtplib.SMTPHeloError,
    smtplib.SMTPAuthenticationError,
    smtplib.SMTPNotSupportedError,
)


# --- settings -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to send (from ``TRACKER_SMTP_*`` / ``TRACKER_MAIL_FROM``; never feeds.yaml)."""

    host: str | None = None
    port: int | None = None  # default 465 with ssl, 587 with starttls, else 25
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    ssl: bool = False
    mail_from: str = "tracker@localhost"
    timeout: float = 30.0

    @property
    def effective_port(self) -> int:
        if self.port:
            return self.port
        return 465 if self.ssl else 587 if self.starttls else 25

    @property
    def envelope_from(self) -> str:
        return parseaddr(self.mail_from)[1] or self.mail_from

    @classmethod
    def from_settings(cls, settings: Any) -> SmtpSettings:
        def get(name: str, default: Any = None) -> Any:
            value = getattr(settings, name, default)
            secret = getattr(value, "get_secret_value", None)
            return secret() if callable(secret) else value

        # Settings.smtp_port has a default (25): only a port that was actually set overrides the
        # per-mode default (465 with SSL, 587 with STARTTLS).
        explicit = getattr(settings, "model_fields_set", None)
        port = get("smtp_port") if explicit is None or "smtp_port" in explicit else None
        return cls(
            host=get("smtp_host") or None,
            port=int(port or 0) or None,
            user=get("smtp_user") or None,
            password=get("smtp_password") or None,
            starttls=bool(get("smtp_starttls", False)),
            ssl=bool(get("smtp_ssl", False)),
            mail_from=str(get("mail_from") or "tracker@localhost"),
            timeout=float(get("smtp_timeout") or 30.0),
        )


def digest_specs(config: Any) -> list[dg.DigestSpec]:
    return [dg.spec_from_config(d) for d in getattr(config, "digests", None) or ()]


def backoff(attempts: int) -> timedelta:
    """Delay before the next try after ``attempts`` failed ones: 1, 2, 4 ... minutes, at most 6 h."""
    return min(BACKOFF_BASE * (2 ** max(attempts - 1, 0)), BACKOFF_MAX)


# --- planning and rendering ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DuePeriod:
    spec: dg.DigestSpec
    recipient: str
    period_start: datetime
    period_end: datetime
    watermark: datetime | None  # what the plan was made from (checked again when writing)


def plan_due(engine: Engine, digests: Sequence[Any], now: datetime) -> list[DuePeriod]:
    """Every (digest, recipient) whose period has ended: one period each, catch-up included."""
    specs = [d if isinstance(d, dg.DigestSpec) else dg.spec_from_config(d) for d in digests]
    with engine.connect() as conn:
        marks = outbox.watermarks(conn)
    due = []
    for spec in specs:
        for rcpt in spec.recipients:
            mark = marks.get((spec.name, rcpt))
            period = dg.due_period(spec.schedule, spec.timezone, mark, now)
            if period is not None:
                due.append(DuePeriod(spec, rcpt, period[0], period[1], mark))
    return due


def taxonomy_labels() -> dict[str, str]:
    """Display names of mediator / obstacle keys, from the tagger's taxonomy when it has them."""
    try:
        from tracker import tag
    except ImportError:
        return {}
    loader = getattr(tag, "load_taxonomy", None)
    if loader is None:
        return {}
    try:
        tax = loader()
    except Exception:  # a broken taxonomy must not stop digests; keys are shown instead
        log.warning("taxonomy labels unavailable", exc_info=True)
        return {}
    labels: dict[str, str] = {}
    for group in ("mediators", "obstacles"):
        for key, value in _items(getattr(tax, group, None) or (tax.get(group) if isinstance(tax, Mapping) else None)):
            label = value.get("label") if isinstance(value, Mapping) else getattr(value, "label", None)
            if label:
                labels[str(key)] = str(label)
    return labels


def _items(group: Any) -> list[tuple[Any, Any]]:
    if isinstance(group, Mapping):
        return list(group.items())
    if isinstance(group, (list, tuple)):
        return [(getattr(v, "key", None) or (v.get("key") if isinstance(v, Mapping) else None), v) for v in group]
    return []


@dataclass(frozen=True)
class Composed:
    digest: dg.Digest
    subject: str
    text: str
    html: str
    message: Any  # EmailMessage

    @property
    def item_count(self) -> int:
        return self.digest.item_count


def compose(
    conn: Connection,
    spec: dg.DigestSpec,
    recipient: str,
    start: datetime,
    end: datetime,
    *,
    settings: Any,
    smtp: SmtpSettings,
    now: datetime,
    labels: Mapping[str, str] | None = None,
) -> Composed:
    """Read the period's items and render the digest and its message (no writes)."""
    entries = outbox.period_items(conn, spec.filter, start, end)
    keys = [k for e in entries for k in (*e.mediators, *e.obstacles)]
    history = [*baseline_entries(conn), *outbox.prior_entries(conn, keys, start)]
    labels = labels if labels is not None else taxonomy_labels()
    base_url = getattr(settings, "base_url", None)
    d = dg.build_digest(
        spec,
        recipient,
        entries,
        period_start=start,
        period_end=end,
        labels=labels,
        history=history,
        activity=outbox.activity(conn, keys, end - ACTIVITY_WINDOW, end),
        web_url=str(base_url) if base_url else None,
        unsubscribe=dg.unsubscribe_mailto(smtp.envelope_from, spec.name),
    )
    subject, text, html = dg.render_digest(d, labels=labels)
    msg = dg.build_message(d, sender=smtp.mail_from, date=now, subject=subject, text=text, html=html)
    return Composed(d, subject, text, html, msg)


def enqueue_due(app: Any, now: datetime, *, only: str | None = None) -> int:
    """Render every due digest into the outbox; returns how many messages were queued.

    One transaction per (digest, recipient) renders the message, inserts the outbox row and moves
    the watermark, so a period is queued exactly once.  An empty period moves the watermark
    without a message unless the digest has ``send_empty``.
    """
    smtp = SmtpSettings.from_settings(app.settings)
    labels = taxonomy_labels()
    queued = 0
    specs = [s for s in digest_specs(app.config) if only is None or s.name == only]
    for due in plan_due(app.engine, specs, now):

        def render(conn: Connection, due: DuePeriod = due) -> outbox.Rendered | None:
            c = compose(
                conn,
                due.spec,
                due.recipient,
                due.period_start,
                due.period_end,
                settings=app.settings,
                smtp=smtp,
                now=now,
                labels=labels,
            )
            if c.item_count == 0 and not due.spec.send_empty:
                return None
            return outbox.Rendered(
                message_id=str(c.message["Message-ID"]),
                subject=c.subject,
                message=c.message.as_bytes(),
                item_count=c.item_count,
            )

        outcome = outbox.enqueue(
            app.engine,
            digest=due.spec.name,
            recipient=due.recipient,
            expected=due.watermark,
            period_start=due.period_start,
            period_end=due.period_end,
            render=render,
            now=now,
        )
        log.info(
            "digest %s for %s, %s .. %s: %s",
            due.spec.name,
            due.recipient,
            due.period_start.isoformat(),
            due.period_end.isoformat(),
            outcome,
        )
        queued += outcome == "queued"
    return queued


# --- delivery -----------------------------------------------------------------------------------


class _Smtp:
    """One SMTP session, opened on first use and reused for the whole delivery run."""

    def __init__(self, cfg: SmtpSettings) -> None:
        self.cfg = cfg
        self.conn: smtplib.SMTP | None = None

    def send(self, recipient: str, data: bytes) -> None:
        if self.conn is None:
            self.conn = self._open()
        # The envelope is given explicitly: headers in ``data`` can never add a recipient.
        self.conn.sendmail(self.cfg.envelope_from, [recipient], data)

    def _open(self) -> smtplib.SMTP:
        cfg = self.cfg
        assert cfg.host
        conn: smtplib.SMTP
        if cfg.ssl:
            conn = smtplib.SMTP_SSL(
                cfg.host, cfg.effective_port, timeout=cfg.timeout, context=ssl.create_default_context()
            )
        else:
            conn = smtplib.SMTP(cfg.host, cfg.effective_port, timeout=cfg.timeout)
        try:
            conn.ehlo_or_helo_if_needed()
            if cfg.starttls:
                conn.starttls(context=ssl.create_default_context())
                conn.ehlo()
            if cfg.user:
                conn.login(cfg.user, cfg.password or "")
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.quit()
            except (OSError, smtplib.SMTPException):
                self.conn.close()
            self.conn = None


def _error_text(exc: BaseException) -> str:
    return dg.one_line(f"{type(exc).__name__}: {exc}", 500)


def deliver_pending(engine: Engine, smtp: SmtpSettings, now: datetime, *, limit: int = 200) -> tuple[int, int]:
    """Send due outbox rows; returns (sent, failed).  Failures get a backoff, never a duplicate.

    After a server-level failure (refused connection, TLS, login) the remaining due rows are not
    tried in this run but get the same error and backoff, so a down server costs one connect.
    """
    if not smtp.host:
        if outbox.due_ids(engine, now=now, stuck_before=now - STUCK_AFTER, max_attempts=MAX_ATTEMPTS, limit=1):
            log.warning("digests are waiting in the outbox but TRACKER_SMTP_HOST is not set")
        return 0, 0
    stuck_before = now - STUCK_AFTER
    ids = outbox.due_ids(engine, now=now, stuck_before=stuck_before, max_attempts=MAX_ATTEMPTS, limit=limit)
    sent = failed = 0
    server_error: str | None = None
    session = _Smtp(smtp)
    try:
        for row_id in ids:
            row = outbox.claim(engine, row_id, now=now, stuck_before=stuck_before, max_attempts=MAX_ATTEMPTS)
            if row is None:
                continue
            retry_at = now + backoff(row.attempts + 1)
            if server_error is not None:
                outbox.mark_failed(engine, row.id, error=f"not tried: {server_error}", next_attempt_at=retry_at)
                failed += 1
                continue
            if row.stuck:
                log.warning(
                    "re-sending %s to %s: a previous send was interrupted (same Message-ID %s)",
                    row.digest,
                    row.recipient,
                    row.message_id,
                )
            try:
                session.send(row.recipient, row.message)
            except Exception as exc:
                error = _error_text(exc)
                outbox.mark_failed(engine, row.id, error=error, next_attempt_at=retry_at)
                failed += 1
                log.warning(
                    "digest %s to %s failed (attempt %d, retry at %s): %s",
                    row.digest,
                    row.recipient,
                    row.attempts + 1,
                    retry_at.isoformat(),
                    error,
                )
                if isinstance(exc, _SERVER_ERRORS):
                    server_error = error
                    session.close()
                continue
            outbox.mark_sent(engine, row.id, now=now)  # right after DATA was accepted
            sent += 1
            log.info("digest %s sent to %s (%s)", row.digest, row.recipient, row.message_id)
    finally:
        session.close()
    return sent, failed


@dataclass(frozen=True, slots=True)
class DigestRun:
    queued: int
    sent: int
    failed: int

    def line(self) -> str:
        return f"digests: {self.queued} queued, {self.sent} sent, {self.failed} failed"


def run_digests(app: Any, now: datetime) -> DigestRun:
    """The daemon's job: queue what is due, then deliver the outbox."""
    queued = enqueue_due(app, now)
    sent, failed = deliver_pending(app.engine, SmtpSettings.from_settings(app.settings), now)
    return DigestRun(queued, sent, failed)


# --- preview ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preview:
    composed: Composed
    due: bool  # True: this period is due now; False: what has gathered so far for the next one
    next_send: datetime | None


def preview(app: Any, now: datetime, *, digest: str | None = None, recipient: str | None = None) -> list[Preview]:
    """What the next digest of each (digest, recipient) would hold, without writing anything."""
    smtp = SmtpSettings.from_settings(app.settings)
    labels = taxonomy_labels()
    out = []
    with app.engine.connect() as conn:
        marks = outbox.watermarks(conn)
        for spec in digest_specs(app.config):
            if digest is not None and spec.name != digest:
                continue
            rcpts = [recipient] if recipient else list(spec.recipients[:1]) or ["preview@localhost"]
            for rcpt in rcpts:
                mark = marks.get((spec.name, rcpt))
                period = dg.due_period(spec.schedule, spec.timezone, mark, now)
                is_due = period is not None
                if period is None:
                    start = mark or dg.first_period_start(spec.schedule, spec.timezone, now)
                    period = (start, now)
                c = compose(conn, spec, rcpt, *period, settings=app.settings, smtp=smtp, now=now, labels=labels)
                out.append(Preview(c, due=is_due, next_send=dg.next_fire(spec.schedule, spec.timezone, now)))
    return out
