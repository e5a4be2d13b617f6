#!/usr/bin/env python3
"""Build the example digest in docs/ with the real pipeline, and screenshot its HTML part.

    .venv/bin/python scripts/digest_example.py [--out docs] [--html FILE] [--no-screenshot]

What it does, all on 127.0.0.1 and in a temporary directory:

1. Serves sample RSS feeds: two of the bundled demo feeds (``tracker/data/demo``: Demo Wire and the
   Gulf Mediation Monitor, fictional reports written for ``tracker demo``) and two small fictional
   outlets below that carry some of the same stories, so near-duplicates are collapsed.
2. Polls them with the real ``Poller`` (fetch, parse, tag, store) into a fresh SQLite database:
   once the day before, and then several times during the day, with the clock set.
3. Runs ``mailer.enqueue_due`` at 07:00 Kyiv time on both days: the first digest covers the day
   before, the second (the example) only what arrived since.  The outbox row holds the exact
   bytes that SMTP would deliver; they are parsed back into the text and HTML parts.
4. Writes ``digest-example.txt`` (the text part) and ``digest-example.png`` (the HTML part in
   headless Chromium, 800 px wide, full page).

The dates are fixed, so the output only changes when the code or the sample feeds do.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy import select

from tracker import app as tracker_app
from tracker import demo, mailer
from tracker.settings import Settings
from tracker.store import outbox
from tracker.update import Poller

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

# The example digest goes out at 07:00 in Kyiv (05:00 UTC) on 27 November 2026; the previous one
# went out 24 hours earlier.  The demo feeds' relative dates ("{ago:2h}") count back from START.
DIGEST_AT = datetime(2026, 11, 27, 5, 0, tzinfo=UTC)
PREVIOUS_AT = DIGEST_AT - timedelta(days=1)
START = DIGEST_AT - timedelta(minutes=15)
# Poll times: one before the previous digest, then through the day up to just before the example.
POLLS = (
    PREVIOUS_AT - timedelta(minutes=30),
    PREVIOUS_AT + timedelta(hours=4),
    PREVIOUS_AT + timedelta(hours=12),
    PREVIOUS_AT + timedelta(hours=19),
    DIGEST_AT - timedelta(minutes=5),
)
DEMO_FEEDS = ("demo-wire.xml", "gulf-mediation.xml")
RECIPIENT = "desk@example.org"

# Two small fictional outlets (same token syntax as the demo feeds): some of their stories are the
# Demo Wire's, told in other words, so the digest shows "also reported by N outlets".
EXTRA_FEEDS: dict[str, tuple[str, list[tuple[str, str, str, str]]]] = {
    "black-sea-herald.xml": (
        "Black Sea Herald (demo)",
        [
            (
                "1h05m",
                "turkey-istanbul-new-round",
                "Turkey offers Istanbul as venue for new round of Ukraine-Russia talks",
                "Ankara says it could host delegations from both sides within weeks.",
            ),
            (
                "4h",
                "kremlin-new-realities",
                "Kremlin: ceasefire must reflect 'new realities on the ground'",
                "Moscow again ties any truce to recognition of the regions it claims to have annexed.",
            ),
            (
                "2h40m",
                "pow-swap",
                "Prisoner swap: 150 Ukrainian and 150 Russian POWs return home in UAE-mediated exchange",
                "The exchange was the latest brokered by the United Arab Emirates.",
            ),
            (
                "7h",
                "reassurance-force",
                "Coalition of the willing outlines reassurance force as security guarantees for Ukraine",
                "European defence ministers discussed how many troops a reassurance force would need "
                "and who would command it if a ceasefire is agreed.",
            ),
            ("3h", "odesa-opera", "Odesa opera house reopens after renovation", "A gala marks the reopening."),
            (
                "1d6h",
                "grain-corridor",
                "Ukraine and Russia resume Black Sea shipping talks in Istanbul with Turkish mediation",
                "Ukrainian and Russian officials discussed safe passage for grain ships under Turkey's mediation.",
            ),
        ],
    ),
    "kyiv-morning.xml": (
        "Kyiv Morning (demo)",
        [
            (
                "50m",
                "turkey-venue",
                "Turkey offers Istanbul as venue for next round of talks",
                "Foreign Minister Hakan Fidan made the offer after calls with Kyiv and Moscow.",
            ),
            (
                "6h",
                "no-territory-for-ceasefire",
                "Zelensky: Ukraine will not cede territory in exchange for a ceasefire",
                "The president said Ukraine would not recognise the occupation of any of its territory "
                "as the price of a ceasefire.",
            ),
        ],
    ),
}


def extra_feed_xml(name: str, items: list[tuple[str, str, str, str]]) -> str:
    from xml.sax.saxutils import escape

    slug = name.split(" (")[0].lower().replace(" ", "")
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<rss version="2.0"><channel>',
        f"<title>{escape(name)}</title><link>https://{slug}.demo.example/</link>",
        "<description>Fictional sample reports. Not real news.</description><language>en</language>",
    ]
    for ago, path, title, summary in items:
        out.append(
            f"<item><title>{escape(title)}</title><link>https://{slug}.demo.example/{path}</link>"
            f'<guid isPermaLink="false">{slug}-{path}</guid><pubDate>{{ago:{ago}}}</pubDate>'
            f"<description>{escape(summary)}</description></item>"
        )
    out.append("</channel></rss>")
    return "\n".join(out)


# --- the feeds, as they looked at the moment of each poll -----------------------------------------


class Feeds:
    """Serves each feed as it was at ``self.now``: items dated later are not published yet."""

    def __init__(self) -> None:
        self.templates: dict[str, tuple[str, str]] = {}
        by_file = {f.file: f for f in demo.load_index()}
        for file in DEMO_FEEDS:
            self.templates[file] = (by_file[file].name, (demo.DEMO_DIR / file).read_text(encoding="utf-8"))
        for file, (name, items) in EXTRA_FEEDS.items():
            self.templates[file] = (name, extra_feed_xml(name, items))
        self.now = START
        feeds = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                entry = feeds.templates.get(self.path.lstrip("/"))
                if entry is None:
                    self.send_error(404)
                    return
                body = demo.render(entry[1], start=START, now=feeds.now).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True

    def config(self) -> str:
        port = self.httpd.server_address[1]
        lines = ["feeds:"]
        for file, (name, _) in self.templates.items():
            lines += [f'  - name: "{name}"', f"    url: http://127.0.0.1:{port}/{file}", "    language: en"]
        lines += [
            "digests:",
            "  - name: daily",
            f"    recipients: [{RECIPIENT}]",
            '    schedule: "0 7 * * *"',
            "    timezone: Europe/Kyiv",
        ]
        return "\n".join(lines) + "\n"

    @contextmanager
    def serving(self) -> Iterator[Feeds]:
        thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.httpd.shutdown()
            self.httpd.server_close()
            thread.join(5)


# --- the example ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    message: EmailMessage
    subject: str
    text: str
    html: str
    item_count: int


def _poll(app: tracker_app.App, now: datetime) -> None:
    clock: Callable[[], datetime] = lambda: now  # noqa: E731
    with Poller(app.db, fetch=app.fetch_settings, schedule=app.schedule_settings, processes=0, clock=clock) as p:
        summary = asyncio.run(p.poll(include_not_due=True))
    if summary.failed:
        raise RuntimeError(f"poll at {now.isoformat()} failed: {summary.errors}")


def build_example(workdir: Path) -> Example:
    """Fill a fresh database through the real pipeline and render the example digest."""
    workdir.mkdir(parents=True, exist_ok=True)
    feeds = Feeds()
    with feeds.serving():
        config = workdir / "feeds.yaml"
        config.write_text(feeds.config(), encoding="utf-8")
        settings = Settings(
            mail_from="Peace tracker <digest@example.org>",
            base_url="https://tracker.example.org/",
            smtp_host=None,
        )
        app = tracker_app.build(
            config_path=config, database_url=f"sqlite:///{workdir / 'tracker.db'}", settings=settings
        )
        tracker_app.init(app)
        previous_sent = False
        for when in POLLS:
            if when > PREVIOUS_AT and not previous_sent:
                # The previous digest goes out at 07:00: what was polled so far is in it, not in ours.
                if mailer.enqueue_due(app, PREVIOUS_AT + timedelta(minutes=1)) != 1:
                    raise RuntimeError("the previous digest was not queued")
                previous_sent = True
            feeds.now = when
            _poll(app, when)
    if mailer.enqueue_due(app, DIGEST_AT + timedelta(minutes=1)) != 1:
        raise RuntimeError("the example digest was not queued")
    with app.engine.connect() as conn:
        row = conn.execute(
            select(outbox.OUTBOX.c.message, outbox.OUTBOX.c.item_count).order_by(outbox.OUTBOX.c.id.desc()).limit(1)
        ).one()
    app.engine.dispose()
    msg = email.message_from_bytes(bytes(row.message), policy=default)
    assert isinstance(msg, EmailMessage)
    text, html = msg.get_body(("plain",)), msg.get_body(("html",))
    if text is None or html is None:
        raise RuntimeError("the digest is not multipart/alternative with text and HTML")
    return Example(msg, str(msg["Subject"]), str(text.get_content()), str(html.get_content()), int(row.item_count))


def screenshot(html: str, png: Path, *, width: int = 800) -> None:
    """The HTML part in headless Chromium, full page; fails if a script would run."""
    from playwright.sync_api import sync_playwright

    dialogs: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900}, device_scale_factor=1)

            def on_dialog(d: Any) -> None:
                dialogs.append(d.message)
                d.dismiss()

            page.on("dialog", on_dialog)
            page.set_content(html, wait_until="load")
            page.screenshot(path=str(png), full_page=True)
        finally:
            browser.close()
    if dialogs:
        raise RuntimeError(f"a script ran in the digest: {dialogs}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs", help="where digest-example.txt/.png go")
    ap.add_argument("--html", type=Path, help="also keep the HTML part here")
    ap.add_argument("--no-screenshot", action="store_true", help="skip Chromium (text part only)")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="digest-example-") as tmp:
        ex = build_example(Path(tmp))
        args.out.mkdir(parents=True, exist_ok=True)
        txt = args.out / "digest-example.txt"
        txt.write_text(ex.text.replace("\r\n", "\n"), encoding="utf-8")
        print(f"Subject: {ex.subject}\n{ex.item_count} entries; text part written to {txt}")
        html_path = args.html or Path(tmp) / "digest-example.html"
        html_path.write_text(ex.html, encoding="utf-8")
        if args.html:
            print(f"HTML part written to {args.html}")
        if not args.no_screenshot:
            png = args.out / "digest-example.png"
            screenshot(ex.html, png)
            print(f"screenshot written to {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
