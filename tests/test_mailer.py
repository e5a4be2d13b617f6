"""Digest delivery end to end: a real SQLite file, items stored by the real write path, and a real
SMTP server (aiosmtpd on 127.0.0.1) receiving the messages."""

from __future__ import annotations

import base64
import email
import hashlib
import importlib.util
import logging
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, Protocol

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from localproc import TRACKER, free_port
from pydantic import SecretStr
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from tracker import app as tracker_app
from tracker import mailer
from tracker.digest import DigestFilter, DigestSpec
from tracker.models import Entry, Evidence, Tags
from tracker.settings import Settings
from tracker.store import ingest, outbox, schema, tables
from tracker.store.db import make_engine
from tracker.store.dbapi import Database
from tracker.store.ingest import FeedSpec, FeedUpdate

# aiosmtpd warns about AUTH without TLS; the test servers listen on 127.0.0.1 only.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

# Daily at 07:00 UTC.  Day 0 is 2026-11-16.
DAY0 = datetime(2026, 11, 16, 7, 0, tzinfo=UTC)
RCPT = "ana@example.org"
SPEC = DigestSpec(
    name="daily",
    recipients=(RCPT,),
    schedule="0 7 * * *",
    timezone="UTC",
    filter=DigestFilter(mediators=("turkey", "vatican"), obstacles=("territory",)),
)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return DAY0.replace(hour=hour, minute=minute) + timedelta(days=day)


# --- a real SMTP server -------------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        msg = email.message_from_bytes(self.data, policy=default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class Inbox:
    handler: Any
    port: int
    received: list[Received] = field(default_factory=list)
    controller: Controller | None = None
    options: dict[str, Any] = field(default_factory=dict)  # aiosmtpd.smtp.SMTP keyword arguments
    logins: list[tuple[str, bool]] = field(default_factory=list)  # (login, accepted)

    def start(self) -> None:
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **self.options)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


def make_inbox(**options: Any) -> Inbox:
    box: Inbox

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            box.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
            return "250 Message accepted for delivery"

    box = Inbox(Handler(), free_port(), options=options)
    return box


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    box = make_inbox()
    box.start()
    yield box
    box.stop()


SMTP_USER = "digest-sender"
SMTP_PASSWORD = "Pa55-w0rd-that-must-never-be-logged"
WRONG_PASSWORD = "An0ther-secret-also-never-logged"


@pytest.fixture
def auth_inbox() -> Iterator[Inbox]:
    """An SMTP server that refuses mail until the client logs in with SMTP_USER / SMTP_PASSWORD."""

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            SMTP_USER.encode(),
            SMTP_PASSWORD.encode(),
        )
        login = data.login.decode() if isinstance(data, LoginPassword) else "?"
        box.logins.append((login, ok))
        return AuthResult(success=ok, handled=False)

    box = make_inbox(authenticator=authenticator, auth_required=True, auth_require_tls=False)
    box.start()
    yield box
    box.stop()


# --- a real database ----------------------------------------------------------------------------


@dataclass
class App:
    settings: Any
    config: Any
    engine: Engine


@pytest.fixture
def app(tmp_path: Path, inbox: Inbox) -> App:
    engine = make_engine(f"sqlite:///{tmp_path / 'tracker.db'}")
    schema.upgrade(engine)
    ingest.sync_feeds(
        Database.of(engine), [FeedSpec(f"http://127.0.0.1:1/{n}.xml", n) for n in ("Reuters", "AP", "DW")]
    )
    settings = SimpleNamespace(
        smtp_host="127.0.0.1",
        smtp_port=inbox.port,
        smtp_user=None,
        smtp_password=None,
        smtp_starttls=False,
        smtp_ssl=False,
        smtp_timeout=5.0,
        mail_from="Peace tracker <digest@example.org>",
        base_url="http://127.0.0.1:8000/",
    )
    return App(settings=settings, config=SimpleNamespace(digests=[SPEC]), engine=engine)


class HasEngine(Protocol):
    engine: Engine


def feed_id(engine: Engine, name: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(tables.FEED.c.id).where(tables.FEED.c.name == name)).scalar_one())


def store(
    app: HasEngine,
    feed: str,
    title: str,
    when: datetime,
    *,
    mediators: Sequence[str] = ("turkey",),
    obstacles: Sequence[str] = (),
    relevant: bool = True,
    link: str | None = None,
) -> str:
    """Ingest one tagged item as the poller would (ingested_at = ``when``); returns its link."""
    key = hashlib.sha256(title.encode()).hexdigest()[:16]
    entry = Entry(
        dedup_key=f"guid:{key}",
        guid=key,
        link=link or f"https://news.example/{key}",
        title=title,
        summary=f"Summary: {title}",
        content_html="",
        text=title,
        published=when - timedelta(hours=1),
        updated=None,
        date_fallback=None,
        author=None,
        language="en",
        content_hash=key,
    )
    phrase = title.split()[0]
    tags = Tags(
        relevant=relevant,
        score=0.8 if relevant else 0.1,
        mediators=tuple(mediators),
        obstacles=tuple(obstacles),
        evidence=(Evidence(mediators[0] if mediators else "territory", "mediator", phrase, 0, len(phrase)),),
    )
    fid = feed_id(app.engine, feed)
    upd = FeedUpdate(
        feed_id=fid,
        outcome="ok",
        status=200,
        error=None,
        fetched_at=when,
        next_due_at=when + timedelta(minutes=30),
        consecutive_failures=0,
        elapsed=0.01,
    )
    ingest.apply_feed_result(Database.of(app.engine), upd, [entry], [tags], now=when)
    assert entry.link is not None
    return entry.link


def smtp(app: App) -> mailer.SmtpSettings:
    return mailer.SmtpSettings.from_settings(app.settings)


def parts(msg: EmailMessage) -> tuple[str, str]:
    text, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


# --- tests --------------------------------------------------------------------------------------


def test_digest_arrives_as_multipart_alternative_with_only_new_items(app: App, inbox: Inbox) -> None:
    old = store(app, "Reuters", "Erdogan offers Istanbul venue for talks", at(0, 12))
    store(app, "DW", "Unrelated sports result", at(0, 13), relevant=False)
    store(app, "AP", "China envoy tours Europe", at(0, 14), mediators=("china",))  # not in the filter
    run = mailer.run_digests(app, at(1, 7, 5))
    assert (run.queued, run.sent, run.failed) == (1, 1, 0)

    store(app, "AP", "Vatican envoy meets Zelensky in Kyiv", at(1, 9))
    store(app, "DW", "Occupied regions block any ceasefire", at(1, 10), mediators=(), obstacles=("territory",))
    run = mailer.run_digests(app, at(2, 7, 1))
    assert (run.queued, run.sent) == (1, 1)

    assert len(inbox.received) == 2
    first, second = (r.message for r in inbox.received)
    for r in inbox.received:
        assert r.rcpt_tos == [RCPT] and r.mail_from == "digest@example.org"
    assert second.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in second.iter_parts()] == ["text/plain", "text/html"]
    for header in ("Date", "Message-ID", "List-Id", "List-Unsubscribe", "Subject"):
        assert second[header], header
    assert second["Date"].datetime == at(2, 7, 1)  # when it was rendered into the outbox
    assert second["Message-ID"].startswith("<digest.daily.20261118T070000Z.") and second["Message-ID"].endswith(
        "@example.org>"
    )
    assert second["List-Id"] == '"Ukraine peace digest (daily)" <daily.digests.example.org>'
    assert second["List-Unsubscribe"] == "<mailto:digest@example.org?subject=unsubscribe%20daily>"
    assert second["From"] == "Peace tracker <digest@example.org>" and second["To"] == RCPT  # TRACKER_MAIL_FROM
    text, html = parts(second)
    assert "Vatican envoy meets Zelensky in Kyiv" in text and "Vatican envoy meets Zelensky in Kyiv" in html
    assert "Occupied regions block any ceasefire" in text
    assert old not in text + html  # went out in the previous digest: only recalled in a status line
    assert "* Erdogan offers" not in text
    flat = " ".join(text.split())
    assert "Status: 1 new · 2 in the last 30 days · before this digest (16 Nov 2026): Erdogan offers" in flat
    assert second["X-Tracker-Period"] == f"{at(1, 7).isoformat()} {at(2, 7).isoformat()}"
    assert "http://127.0.0.1:8000/" in text

    text1, _ = parts(first)
    assert "Erdogan offers Istanbul venue for talks" in text1
    assert "Unrelated sports result" not in text1 and "China envoy" not in text1
    assert first["Message-ID"] != second["Message-ID"]


def test_sending_again_for_the_same_period_sends_nothing(app: App, inbox: Inbox) -> None:
    store(app, "Reuters", "Erdogan offers Istanbul venue for talks", at(0, 12))
    assert mailer.run_digests(app, at(1, 7, 5)).sent == 1
    for now in (at(1, 7, 5), at(1, 8), at(2, 6, 59)):
        run = mailer.run_digests(app, now)
        assert (run.queued, run.sent, run.failed) == (0, 0, 0)
    assert len(inbox.received) == 1
    assert mailer.plan_due(app.engine, [SPEC], at(2, 6, 59)) == []


def test_server_down_keeps_the_digest_in_the_outbox_until_it_is_back(app: App, inbox: Inbox) -> None:
    store(app, "Reuters", "Erdogan offers Istanbul venue for talks", at(0, 12))
    inbox.stop()
    now = at(1, 7, 5)
    run = mailer.run_digests(app, now)
    assert (run.queued, run.sent, run.failed) == (1, 0, 1)
    (row,) = outbox.rows(app.engine)
    assert row["attempts"] == 1 and row["sent_at"] is None and row["sending_at"] is None
    assert row["next_attempt_at"] == now + mailer.backoff(1)
    assert "Connection" in str(row["last_error"]) or "refused" in str(row["last_error"]).lower()

    # Before the backoff has passed nothing is tried; a second failure doubles the wait.
    assert mailer.deliver_pending(app.engine, smtp(app), now + timedelta(seconds=30)) == (0, 0)
    later = now + mailer.backoff(1)
    assert mailer.deliver_pending(app.engine, smtp(app), later) == (0, 1)
    (row,) = outbox.rows(app.engine)
    assert row["attempts"] == 2 and row["next_attempt_at"] == later + mailer.backoff(2)
    assert mailer.backoff(2) == 2 * mailer.backoff(1)

    inbox.start()  # the server is back, on the same port
    retry = later + mailer.backoff(2)
    assert mailer.deliver_pending(app.engine, smtp(app), retry) == (1, 0)
    assert mailer.deliver_pending(app.engine, smtp(app), retry + timedelta(days=3)) == (0, 0)
    assert mailer.run_digests(app, retry + timedelta(minutes=1)).sent == 0
    assert len(inbox.received) == 1
    (row,) = outbox.rows(app.engine)
    assert row["sent_at"] == retry and row["last_error"] is None
    got = inbox.received[0].message
    assert got["Date"].datetime == now and got["Message-ID"] == row["message_id"]  # the bytes queued at 07:05


def test_hostile_titles_are_escaped_and_cannot_add_headers_or_recipients(app: App, inbox: Inbox) -> None:
    # Carried by two outlets, the injection attempt is the top story and so is in the Subject.
    for feed in ("Reuters", "AP"):
        store(app, feed, "Title\r\nBcc: victim@example.org", at(0, 12), link="https://news.example/inject")
    store(app, "DW", "<script>alert(1)</script>", at(0, 13), link="https://news.example/script")
    assert mailer.run_digests(app, at(1, 7, 5)).sent == 1

    (got,) = inbox.received
    assert got.rcpt_tos == [RCPT]
    msg = got.message
    assert msg["Bcc"] is None and msg.get_all("To") == [RCPT] and msg["Cc"] is None
    assert "victim@example.org" in msg["Subject"]  # kept as text, on one line
    assert "\n" not in msg["Subject"] and "\r" not in msg["Subject"]
    assert b"\nBcc:" not in got.data
    text, html = parts(msg)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)</script>" in text  # plain text needs no escaping


def test_catch_up_after_three_missed_days_is_one_digest(app: App, inbox: Inbox) -> None:
    old = store(app, "Reuters", "Erdogan offers Istanbul venue for talks", at(0, 12))
    assert mailer.run_digests(app, at(1, 7, 5)).sent == 1  # watermark: day 1, 07:00
    # The daemon is down for three days; news keeps arriving (e.g. from another worker).
    store(app, "AP", "Vatican envoy meets Zelensky in Kyiv", at(1, 9))
    store(app, "DW", "Pope calls for prisoner exchange", at(2, 15), mediators=("vatican",))
    store(
        app,
        "Reuters",
        "Occupied regions block any ceasefire",
        at(3, 20),
        mediators=(),
        obstacles=("territory",),
    )
    late = store(app, "AP", "Too late for this digest", at(4, 7, 30))

    now = at(4, 9)
    due = mailer.plan_due(app.engine, [SPEC], now)
    assert [(d.period_start, d.period_end) for d in due] == [(at(1, 7), at(4, 7))]
    run = mailer.run_digests(app, now)
    assert (run.queued, run.sent) == (1, 1)
    assert len(inbox.received) == 2
    text, _ = parts(inbox.received[1].message)
    for title in (
        "Vatican envoy meets Zelensky",
        "Pope calls for prisoner exchange",
        "Occupied regions block",
    ):
        assert title in text
    assert late not in text and old not in text
    (_, row) = outbox.rows(app.engine)
    assert (row["period_start"], row["period_end"], row["item_count"]) == (at(1, 7), at(4, 7), 3)


def test_empty_periods_move_the_watermark_without_mail_unless_send_empty(app: App, inbox: Inbox) -> None:
    assert mailer.run_digests(app, at(1, 7, 5)).queued == 0
    assert mailer.plan_due(app.engine, [SPEC], at(1, 7, 6)) == []  # the period is done, not pending
    app.config = SimpleNamespace(digests=[replace(SPEC, send_empty=True)])
    run = mailer.run_digests(app, at(2, 7, 5))
    assert (run.queued, run.sent) == (1, 1)
    assert "no new entries" in inbox.received[0].message["Subject"]


def test_a_send_interrupted_before_marking_is_retried_only_after_the_stuck_timeout(app: App, inbox: Inbox) -> None:
    store(app, "Reuters", "Erdogan offers Istanbul venue for talks", at(0, 12))
    now = at(1, 7, 5)
    assert mailer.enqueue_due(app, now) == 1
    (row,) = outbox.rows(app.engine)
    # A crash right after SMTP accepted: claimed ("sending_at"), never marked sent.
    claimed = outbox.claim(
        app.engine,
        int(str(row["id"])),
        now=now,
        stuck_before=now - mailer.STUCK_AFTER,
        max_attempts=mailer.MAX_ATTEMPTS,
    )
    assert claimed is not None and not claimed.stuck
    assert mailer.deliver_pending(app.engine, smtp(app), now + timedelta(hours=1)) == (0, 0)
    assert inbox.received == []
    assert mailer.deliver_pending(app.engine, smtp(app), now + mailer.STUCK_AFTER + timedelta(minutes=1)) == (
        1,
        0,
    )
    assert len(inbox.received) == 1
    assert inbox.received[0].message["Message-ID"] == row["message_id"]  # recognisable if it was a re-send


def test_enqueue_is_guarded_by_the_watermark(app: App, inbox: Inbox) -> None:
    """Two planners racing for one period: only the first writes; the unique key backs it up."""
    store(app, "Reuters", "Erdogan offers Istanbul venue for talks", at(0, 12))
    now = at(1, 7, 5)
    (due,) = mailer.plan_due(app.engine, [SPEC], now)
    assert mailer.enqueue_due(app, now) == 1
    outcome = outbox.enqueue(
        app.engine,
        digest=due.spec.name,
        recipient=due.recipient,
        expected=due.watermark,
        period_start=due.period_start,
        period_end=due.period_end,
        render=lambda conn: outbox.Rendered("<x@y>", "s", b"m", 1),
        now=now,
    )
    assert outcome == "skipped"
    # Even with the watermark rolled back by hand, the outbox keeps one row per period.
    with app.engine.begin() as conn:
        conn.execute(update(outbox.PERIOD).values(period_end=due.watermark or at(0, 7)))
    assert mailer.enqueue_due(app, now) == 0
    assert len(outbox.rows(app.engine)) == 1


# --- settings and secrets -----------------------------------------------------------------------


def test_smtp_port_defaults_follow_the_mode_unless_a_port_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings.smtp_port defaults to 25: only a port actually given may override 465 / 587."""
    for key in list(os.environ):
        if key.startswith("TRACKER_"):
            monkeypatch.delenv(key)
    cases: list[tuple[dict[str, Any], int]] = [
        ({}, 25),
        ({"smtp_ssl": True}, 465),
        ({"smtp_starttls": True}, 587),
        ({"smtp_starttls": True, "smtp_port": 25}, 25),
        ({"smtp_ssl": True, "smtp_port": 2465}, 2465),
    ]
    for kwargs, port in cases:
        assert mailer.SmtpSettings.from_settings(Settings(**kwargs)).effective_port == port, kwargs
    monkeypatch.setenv("TRACKER_SMTP_SSL", "true")
    assert mailer.SmtpSettings.from_settings(Settings()).effective_port == 465
    monkeypatch.setenv("TRACKER_SMTP_PORT", "25")
    assert mailer.SmtpSettings.from_settings(Settings()).effective_port == 25


def secret_forms(*secrets: str) -> list[str]:
    """A secret as it could leak: plain, or inside an AUTH PLAIN / LOGIN exchange (base64)."""
    forms = []
    for secret in secrets:
        forms += [
            secret,
            base64.b64encode(secret.encode()).decode(),
            base64.b64encode(f"\0{SMTP_USER}\0{secret}".encode()).decode(),
        ]
    return forms


def test_smtp_login_uses_the_password_and_no_log_shows_it(
    app: App, auth_inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app.settings = Settings(
        smtp_host="127.0.0.1",
        smtp_port=auth_inbox.port,
        smtp_user=SMTP_USER,
        smtp_password=SecretStr(SMTP_PASSWORD),
        mail_from="Peace tracker <digest@example.org>",
    )
    store(app, "Reuters", "Erdogan offers Istanbul venue for talks", at(0, 12))
    run = mailer.run_digests(app, at(1, 7, 5))
    assert (run.queued, run.sent, run.failed) == (1, 1, 0)
    assert auth_inbox.logins == [(SMTP_USER, True)] and len(auth_inbox.received) == 1

    # A wrong password: the server refuses the login, the digest waits, the error is logged.
    app.settings = Settings(**{**app.settings.model_dump(), "smtp_password": SecretStr(WRONG_PASSWORD)})
    store(app, "AP", "Vatican envoy meets Zelensky in Kyiv", at(1, 9))
    run = mailer.run_digests(app, at(2, 7, 5))
    assert (run.queued, run.sent, run.failed) == (1, 0, 1)
    assert auth_inbox.logins[-1] == (SMTP_USER, False) and len(auth_inbox.received) == 1
    (_, row) = outbox.rows(app.engine)
    assert row["sent_at"] is None and "SMTPAuthenticationError" in str(row["last_error"])

    ours = [r for r in caplog.records if not r.name.startswith("mail.log")]  # aiosmtpd is the server
    text = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in ours)
    assert "digest daily sent to ana@example.org" in text and "SMTPAuthenticationError" in text
    for leak in secret_forms(SMTP_PASSWORD, WRONG_PASSWORD):
        assert leak not in text
        assert leak not in str(row["last_error"])
        assert leak not in repr(mailer.SmtpSettings.from_settings(app.settings)) + repr(app.settings)
        assert leak.encode() not in auth_inbox.received[0].data


# --- the command line, in a subprocess ----------------------------------------------------------

CLI_CONFIG = """\
feeds:
  - {name: Reuters, url: "http://127.0.0.1:1/Reuters.xml"}
  - {name: AP, url: "http://127.0.0.1:1/AP.xml"}
digests:
  - name: daily
    recipients: [ana@example.org]
    schedule: "0 7 * * *"
    filter: {mediators: [turkey]}
  - name: vatican
    recipients: [bo@example.org]
    schedule: "0 7 * * *"
    filter: {mediators: [vatican]}
"""


def test_cli_preview_sends_nothing_and_send_delivers_what_is_due_once(tmp_path: Path, auth_inbox: Inbox) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text(CLI_CONFIG, encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    a = tracker_app.build(config_path=config, database_url=db, settings=Settings())
    tracker_app.init(a)
    store(a, "Reuters", "Erdogan offers Istanbul venue for talks", at(0, 12))
    store(a, "AP", "Vatican envoy meets <Zelensky> in Kyiv", at(0, 13), mediators=("vatican",))

    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    env |= {
        "TRACKER_SMTP_HOST": "127.0.0.1",
        "TRACKER_SMTP_PORT": str(auth_inbox.port),
        "TRACKER_SMTP_USER": SMTP_USER,
        "TRACKER_MAIL_FROM": "Peace tracker <digest@example.org>",
        "TRACKER_BASE_URL": "https://tracker.example.org/",
    }

    def digest(*args: str, password: str = SMTP_PASSWORD) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            [*TRACKER, "--config", str(config), "--db", db, "digest", *args],
            env=env | {"TRACKER_SMTP_PASSWORD": password},
            capture_output=True,
            text=True,
            timeout=60,
        )
        for leak in secret_forms(SMTP_PASSWORD, WRONG_PASSWORD):
            assert leak not in r.stdout + r.stderr
        return r

    due = at(1, 7, 5)
    html = tmp_path / "preview" / "vatican.html"
    r = digest("--preview", "--digest", "vatican", "--html", str(html), "--now", due.isoformat())
    assert r.returncode == 0, r.stderr
    assert "Vatican envoy meets <Zelensky> in Kyiv" in r.stdout and "Erdogan" not in r.stdout
    assert "digest vatican → bo@example.org" in r.stderr and "(due now)" in r.stderr
    assert "Subject: Ukraine peace digest (vatican) — 1 new: Vatican envoy" in r.stderr
    page = html.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "Vatican envoy meets &lt;Zelensky&gt; in Kyiv" in page
    assert 'href="https://tracker.example.org/timeline?mediator=vatican"' in page
    # A preview sends nothing and records nothing: no outbox row, no watermark.
    assert auth_inbox.received == [] and auth_inbox.logins == []
    assert outbox.rows(a.engine) == []
    with a.engine.connect() as conn:
        assert outbox.watermarks(conn) == {}

    r = digest("--preview", "--digest", "weekly", "--now", due.isoformat())
    assert r.returncode == 2 and "no digest named 'weekly'" in r.stderr

    # --send with a wrong password: both digests are queued and wait in the outbox (exit 1).
    r = digest("--send", "--now", due.isoformat(), password=WRONG_PASSWORD)
    assert r.returncode == 1, r.stderr
    assert "digests: 2 queued, 0 sent, 2 failed; outbox: 2 pending, 0 sent, 0 given up" in r.stdout
    assert "SMTPAuthenticationError" in r.stderr
    assert auth_inbox.received == []

    # Fixed, after the backoff: each is delivered, once.
    r = digest("--send", "--now", (due + mailer.backoff(1)).isoformat())
    assert r.returncode == 0, r.stderr
    assert "digests: 0 queued, 2 sent, 0 failed; outbox: 0 pending, 2 sent, 0 given up" in r.stdout
    r = digest("--send", "--now", at(1, 23).isoformat())
    assert r.returncode == 0, r.stderr
    assert "digests: 0 queued, 0 sent, 0 failed; outbox: 0 pending, 2 sent, 0 given up" in r.stdout

    got = {tuple(m.rcpt_tos): m.message for m in auth_inbox.received}
    assert len(auth_inbox.received) == 2 and set(got) == {("ana@example.org",), ("bo@example.org",)}
    ana, bo = parts(got[("ana@example.org",)])[0], parts(got[("bo@example.org",)])[0]
    assert "Erdogan offers Istanbul venue for talks" in ana and "Vatican" not in ana
    assert "Vatican envoy meets <Zelensky> in Kyiv" in bo and "Erdogan" not in bo
    assert auth_inbox.logins[-1] == (SMTP_USER, True)


# --- the example in docs/, rendered by the real pipeline and shown in a real browser --------------

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"


def example_script() -> ModuleType:
    """scripts/digest_example.py, which writes docs/digest-example.txt and .png."""
    spec = importlib.util.spec_from_file_location("digest_example", ROOT / "scripts" / "digest_example.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="headless Chromium (/usr/bin/chromium) is absent")
def test_example_digest_renders_in_chromium_and_no_feed_script_runs(app: App, inbox: Inbox, tmp_path: Path) -> None:
    """The docs example (built by scripts/digest_example.py through the real pipeline) and a hostile
    digest in headless Chromium: no feed script runs, and the example fits a phone."""
    from playwright.sync_api import sync_playwright

    script = example_script()
    ex = script.build_example(tmp_path / "example")
    assert ex.message.get_content_type() == "multipart/alternative"
    flat = " ".join(ex.text.split())
    assert "Also reported by 2 outlets: Black Sea Herald (demo), Kyiv Morning (demo)" in flat
    # The previous day's news went out in the previous digest: recalled in a status line only.
    assert "before this digest (26 Nov 2026): Ukraine and Russia resume Black Sea shipping talks" in flat
    assert "* Ukraine and Russia resume" not in ex.text
    assert "Odesa opera" not in ex.text  # not relevant

    store(
        app,
        "DW",
        "<script>alert(1)</script><img src=x onerror=alert(2)>",
        at(0, 12),
    )
    assert mailer.run_digests(app, at(1, 7, 5)).sent == 1
    _, hostile = parts(inbox.received[-1].message)

    dialogs: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=script.CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 800, "height": 900})

            def on_dialog(d: Any) -> None:
                dialogs.append(d.message)
                d.dismiss()

            page.on("dialog", on_dialog)
            page.set_content(hostile)
            page.wait_for_timeout(200)
            shown = page.inner_text("body")
            page.set_content(ex.html)
            title = page.inner_text("text=Turkey offers Istanbul as venue for next round")
            phone = browser.new_page(viewport={"width": 390, "height": 800})
            phone.set_content(ex.html)
            overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        finally:
            browser.close()
    assert dialogs == []  # the hostile title is text, not markup
    assert "<script>alert(1)</script><img src=x onerror=alert(2)>" in shown
    assert title.startswith("Turkey offers Istanbul")
    assert overflow <= 0, "the HTML part scrolls sideways on a phone"
