"""Digest delivery end to end: a real SQLite file, items stored by the real write path, and a real
SMTP server (aiosmtpd on 127.0.0.1) receiving the messages."""

from __future__ import annotations

import email
import hashlib
import os
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from tracker import mailer
from tracker.digest import DigestFilter, DigestSpec
from tracker.models import Entry, Evidence, Tags
from tracker.store import ingest, outbox, schema
from tracker.store.db import make_engine
from tracker.store.ingest import FeedSpec, FeedUpdate

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

    def start(self) -> None:
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    box: Inbox

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            box.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
            return "250 Message accepted for delivery"

    box = Inbox(Handler(), free_port())
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
    ingest.sync_feeds(engine, [FeedSpec(f"http://127.0.0.1:1/{n}.xml", n) for n in ("Reuters", "AP", "DW")])
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


def feed_id(engine: Engine, name: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(ingest.FEED.c.id).where(ingest.FEED.c.name == name)).scalar_one())


def store(
    app: App,
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
    ingest.apply_feed_result(app.engine, upd, [entry], [tags], now=when)
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
    assert "Connection" in row["last_error"] or "refused" in row["last_error"].lower()

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
        row["id"],
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


# --- the example in docs/, rendered by the real pipeline and shown in a real browser --------------

EXAMPLE_FEEDS = ("Reuters", "AP", "DW")
EXAMPLE_SPEC = DigestSpec(
    name="daily",
    recipients=("desk@example.org",),
    schedule="0 7 * * *",
    timezone="Europe/Kyiv",
    title="Ukraine peace digest",
)
# (feeds, title, summary, mediators, obstacles, hours after the previous digest)
EXAMPLE_ITEMS: tuple[tuple[tuple[str, ...], str, str, tuple[str, ...], tuple[str, ...], float], ...] = (
    (
        ("Reuters",),
        "Erdogan says Turkey ready to host new round of talks",
        "Ankara repeats its offer.",
        ("turkey",),
        (),
        -20,
    ),
    (
        ("Reuters", "AP"),
        "Erdogan offers Istanbul as venue for new Ukraine-Russia talks",
        "Turkey's president says delegations could meet in Istanbul within weeks, building on the 2022 "
        "rounds and the grain corridor talks his government brokered.",
        ("turkey",),
        (),
        2,
    ),
    (
        ("DW",),
        "Turkey's Erdogan offers to host Ukraine, Russia talks in Istanbul",
        "Ankara proposes a new meeting of delegations.",
        ("turkey",),
        (),
        3,
    ),
    (
        ("AP",),
        "Vatican envoy meets Zelensky in Kyiv to discuss prisoner exchanges",
        "Cardinal's visit focuses on humanitarian issues: prisoner exchanges and the return of children.",
        ("vatican",),
        (),
        5,
    ),
    (
        ("Reuters",),
        "China's special envoy to visit Moscow and Kyiv next week",
        "Beijing says its envoy will discuss a political settlement, echoing its 12-point plan.",
        ("china",),
        ("security_guarantees",),
        8,
    ),
    (
        ("DW", "AP"),
        "Kremlin insists annexed regions are non-negotiable ahead of any ceasefire",
        "Moscow's spokesman says the status of the occupied regions is not up for discussion.",
        (),
        ("territory",),
        10,
    ),
    (
        ("Reuters",),
        "Kyiv says security guarantees must come before any ceasefire deal",
        "Ukraine's foreign minister says guarantees from partners are a precondition for talks.",
        (),
        ("security_guarantees",),
        14,
    ),
)


def build_example(app: App) -> EmailMessage:
    """Two days of news, one digest already sent, then the next one: the docs example."""
    end = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)  # 07:00 in Kyiv
    start = end - timedelta(days=1)
    app.config = SimpleNamespace(digests=[EXAMPLE_SPEC])
    with app.engine.begin() as conn:
        conn.execute(outbox.PERIOD.insert().values(digest="daily", recipient="desk@example.org", period_end=start))
    for feeds, title, summary, med, obs, hours in EXAMPLE_ITEMS:
        for feed in feeds:
            link = store(app, feed, title, start + timedelta(hours=hours), mediators=med, obstacles=obs)
            with app.engine.begin() as conn:
                conn.execute(update(ingest.ITEM).where(ingest.ITEM.c.link == link).values(summary=summary))
    assert mailer.run_digests(app, end + timedelta(minutes=1)).sent == 1
    return inbox_of(app)[-1].message


def inbox_of(app: App) -> list[Received]:
    return app.inbox.received  # type: ignore[attr-defined, no-any-return]


@pytest.mark.browser
def test_example_digest_renders_in_chromium(app: App, inbox: Inbox, tmp_path: Path) -> None:
    """The HTML part in headless Chromium: no feed script runs, it fits a phone; writes docs/ on demand.

    ``TRACKER_WRITE_DOCS=docs pytest tests/test_mailer.py -k example`` refreshes
    docs/digest-example.txt and docs/digest-example.png.
    """
    from playwright.sync_api import sync_playwright

    app.inbox = inbox  # type: ignore[attr-defined]
    msg = build_example(app)
    text, html = parts(msg)
    assert "Also reported by 2 outlets: AP, DW" in text
    store(
        app,
        "DW",
        "<script>alert(1)</script><img src=x onerror=alert(2)>",
        datetime(2026, 11, 25, 9, tzinfo=UTC),
    )
    assert mailer.run_digests(app, datetime(2026, 11, 26, 5, 1, tzinfo=UTC)).sent == 1
    _, hostile = parts(inbox.received[-1].message)

    out_dir = Path(os.environ.get("TRACKER_WRITE_DOCS") or tmp_path)
    png = out_dir / "digest-example.png"
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 720, "height": 900})
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.set_content(html)
            page.screenshot(path=str(png), full_page=True)
            page.set_content(hostile)
            page.wait_for_timeout(200)
            shown = page.inner_text("body")
            phone = browser.new_page(viewport={"width": 390, "height": 800})
            phone.set_content(html)
            overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        finally:
            browser.close()
    assert dialogs == []  # the hostile title is text, not markup
    assert "<script>alert(1)</script>" in shown
    assert overflow <= 0, "the HTML part scrolls sideways on a phone"
    assert png.stat().st_size > 20_000
    (out_dir / "digest-example.txt").write_text(text.replace("\r\n", "\n"), encoding="utf-8")
