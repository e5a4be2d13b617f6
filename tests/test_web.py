"""The HTML pages over real HTTP: uvicorn on 127.0.0.1 serving a SQLite file filled through the store."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from localproc import free_port
from test_timeline_queries import (
    FEEDS,
    KEYS,
    NOW,
    Seeded,
    make_entry,
    seed,
    store,
    tags_for,
    walk,
)

from tracker import app as tracker_app
from tracker.models import Evidence, Tags
from tracker.settings import Settings
from tracker.store import timeline_queries as tq
from tracker.store.timeline_queries import TimelineFilter
from tracker.web import create_app
from tracker.web.security import CONTENT_SECURITY_POLICY

HOSTILE_TITLE = 'Talks in Istanbul <script>window.__xss=1</script> & "quotes" <b onmouseover=alert(1)>x</b>'


# --- a real server --------------------------------------------------------------------------------


@contextmanager
def serving(web: FastAPI) -> Iterator[str]:
    """uvicorn in a thread on a free port; yields the base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(web, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off")
    )
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def write_config(path: Path, feeds: list[tuple[str, str, str]]) -> Path:
    """A feeds.yaml with (name, url, language) feeds."""
    lines = ["feeds:"]
    for name, url, lang in feeds:
        lines += [f"  - name: {name}", f"    url: {url}", f"    language: {lang}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def seeded_feed_urls() -> list[tuple[str, str, str]]:
    return [(n, f"http://127.0.0.1:1/{n.replace(' ', '-')}.xml", lang) for n, lang in FEEDS]


def build_app(db: Path, config: Path, *, admin_token: str | None = None) -> tracker_app.App:
    settings = Settings(admin_token=admin_token) if admin_token else Settings()
    return tracker_app.build(config_path=config, database_url=f"sqlite:///{db}", settings=settings)


@dataclass
class Site:
    base: str
    seeded: Seeded
    app: tracker_app.App
    hostile_id: int

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(self.base + path, timeout=20, **kw)


def add_hostile_and_failing(seeded: Seeded) -> int:
    """One item whose title is markup (escaped text, with a javascript: link), one failing feed."""
    entry = make_entry(
        90_001,
        title=HOSTILE_TITLE,
        summary="Envoys met near Istanbul; <img src=x onerror=alert(1)> was in the text.",
        published=NOW - timedelta(hours=2),
        language="en",
        link="javascript:window.__xss=1",
        content_html="<p>Sanitized <em>content</em> from the feed.</p>",
    )
    tags = Tags(
        relevant=True,
        score=0.9,
        mediators=("turkey",),
        obstacles=(),
        evidence=(
            Evidence("turkey", "mediator", "Istanbul", 9, 17),
            Evidence("turkey", "mediator", "<b onmouseover=alert(1)>", 0, 0),
        ),
    )
    store(seeded.engine, seeded.feed_ids["Kyiv Independent"], [(entry, tags)])
    store(seeded.engine, seeded.feed_ids["Deutsche Welle"], [], outcome="error", error="HTTP 500 <b>boom</b>")
    with seeded.engine.connect() as conn:
        row = conn.execute(tq.ITEM.select().where(tq.ITEM.c.title == HOSTILE_TITLE)).one()
    return int(row.id)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("web")
    seeded = seed(tmp / "tracker.db")
    hostile = add_hostile_and_failing(seeded)
    app = build_app(tmp / "tracker.db", write_config(tmp / "feeds.yaml", seeded_feed_urls()))
    web = create_app(app, clock=lambda: NOW, keys=KEYS, overview_ttl=0)
    with serving(web) as base:
        yield Site(base, seeded, app, hostile)


# --- helpers to read our own markup ---------------------------------------------------------------

ENTRY_ID = re.compile(r'<li class="entry entry-(item|baseline)" id="([ib])-([^"]+)"')


def entry_ids(html: str) -> list[str]:
    return [f"{m.group(2)}:{m.group(3)}" for m in ENTRY_ID.finditer(html)]


def link(html: str, cls: str) -> str | None:
    m = re.search(rf'<a class="{cls}" rel="[a-z]+" href="([^"]+)"', html)
    return unescape(m.group(1)) if m else None


# --- tests ---------------------------------------------------------------------------------------------


def test_overview_has_a_card_for_every_key_with_status(site: Site) -> None:
    r = site.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    with site.seeded.engine.connect() as conn:
        ov = tq.overview(conn, KEYS, now=NOW)
    for s in ov.mediators + ov.obstacles:
        card = re.search(
            rf'<article class="card card-{s.kind} card-{s.state}" id="{s.kind}-{s.key}">(.*?)</article>',
            html,
            re.S,
        )
        assert card, s.key
        body = card.group(1)
        assert f">{s.label}</a></h3>" in body
        assert f"<b>{s.total_30d}</b> in 30 days" in body
        assert body.count("<rect ") == 30
        newest = s.latest[0]
        assert f'datetime="{newest.date.isoformat()}"' in body
        assert f"/atom/{s.kind}/{s.key}.xml" in body
    assert html.count('<svg class="spark"') == len(KEYS)
    # The "changed since yesterday" strip names the keys with news in the last 24 hours.
    moved = [s for s in ov.mediators + ov.obstacles if s.new_24h]
    assert moved
    for s in moved:
        assert f"{s.label} <b>+{s.new_24h}</b>" in html
    # Header: last poll and failing feeds.
    assert "Polled 5 min ago" in html
    assert "1 of 4 feeds failing" in html


def test_every_response_carries_the_security_headers(site: Site) -> None:
    for path in (
        "/",
        "/timeline",
        f"/items/{site.hostile_id}",
        "/feeds",
        "/api/status",
        "/atom.xml",
        "/static/style.css",
        "/no-such-page",
        "/items/999999",
    ):
        r = site.get(path)
        assert r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["x-frame-options"] == "DENY"
    assert CONTENT_SECURITY_POLICY == (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )


def test_pages_have_no_script_inline_style_or_event_handler(site: Site) -> None:
    pages = [
        "/",
        "/timeline",
        "/timeline?order=asc&mediator=turkey",
        f"/items/{site.hostile_id}",
        "/feeds",
        "/no-such-page",
    ]
    for path in pages:
        html = site.get(path).text
        assert "<script" not in html.lower(), path
        assert not re.search(r"<[^>]+\sstyle\s*=", html, re.I), path
        assert not re.search(r"<[^>]+\son[a-z]+\s*=", html, re.I), path
        assert 'href="javascript:' not in html.lower(), path


def test_feed_text_is_escaped_and_evidence_marked(site: Site) -> None:
    html = site.get("/timeline?mediator=turkey").text
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in html
    assert '<mark class="ev-mediator">Istanbul</mark>' in html
    assert '<mark class="ev-mediator">&lt;b onmouseover=alert(1)&gt;</mark>' in html
    assert "&amp; &#34;quotes&#34;" in html
    item = site.get(f"/items/{site.hostile_id}").text
    assert "<p>Sanitized <em>content</em> from the feed.</p>" in item  # sanitized HTML kept as HTML
    assert "Read the original article" not in item  # a javascript: link is not a link
    assert "&lt;script&gt;" in item


def test_timeline_pages_follow_the_filters_both_ways(site: Site) -> None:
    flt = TimelineFilter(mediator="turkey")
    want = walk(site.seeded.engine, flt)
    got: list[str] = []
    pages = []
    path: str | None = "/timeline?mediator=turkey&limit=7"
    while path:
        html = site.get(path).text
        ids = entry_ids(html)
        assert 0 < len(ids) <= 7
        got += ids
        pages.append(ids)
        path = link(html, "older")
    assert got == want and len(pages) > 2
    # Walk back with "Newer" from the last page.
    html = site.get(f"/timeline?mediator=turkey&limit=7&after={_cursor_before(site, flt, pages)}").text
    back = [entry_ids(html)]
    while (newer := link(html, "newer")) is not None:
        html = site.get(newer).text
        back.append(entry_ids(html))
    assert list(reversed(back)) == pages
    # Oldest first is the same log reversed.
    asc: list[str] = []
    path = "/timeline?mediator=turkey&order=asc&limit=9"
    while path:
        html = site.get(path).text
        asc += entry_ids(html)
        path = link(html, "newer")
    assert asc == list(reversed(want))


def _cursor_before(site: Site, flt: TimelineFilter, pages: list[list[str]]) -> str:
    """The cursor whose next page is the last page shown (the last entry of the page before it)."""
    with site.seeded.engine.connect() as conn:
        cursor = None
        for _ in pages[:-1]:
            cursor = tq.timeline_page(conn, flt, after=cursor, limit=7).next
    assert cursor is not None
    return cursor.encode()


def test_search_language_source_and_date_filters(site: Site) -> None:
    cases = {
        "/timeline?q=ceasefire&limit=200": TimelineFilter(q="ceasefire"),
        "/timeline?language=uk&limit=200": TimelineFilter(language="uk"),
        "/timeline?source=Meduza&limit=200": TimelineFilter(source="Meduza"),
        "/timeline?since=2026-11-01&until=2026-11-10&limit=200": TimelineFilter(
            since=NOW.replace(day=1, hour=0), until=NOW.replace(day=11, hour=0)
        ),
        "/timeline?obstacle=territory&mediator=china&limit=200": TimelineFilter(obstacle="territory", mediator="china"),
    }
    for path, flt in cases.items():
        want = walk(site.seeded.engine, flt, limit=200)
        assert want, path
        assert entry_ids(site.get(path).text) == want, path
    html = site.get("/timeline?q=ceasefire&mediator=turkey").text
    assert 'value="ceasefire"' in html and '<option value="turkey" selected>' in html


def test_baseline_events_are_visibly_distinct(site: Site) -> None:
    html = site.get("/timeline?source=seed").text
    items = re.findall(r'<li class="entry entry-(\w+)"', html)
    assert items and set(items) == {"baseline"}
    assert html.count('<span class="label label-baseline">baseline</span>') == len(items)
    mixed = site.get("/timeline?mediator=turkey&order=asc&limit=3").text
    assert re.findall(r'<li class="entry entry-(\w+)"', mixed)[:2] == ["baseline", "baseline"]


def test_item_page_lists_sources_tags_and_evidence(site: Site) -> None:
    shared = site.seeded.items[17][0]  # carried by two feeds
    with site.seeded.engine.connect() as conn:
        item_id = conn.execute(tq.ITEM.select().where(tq.ITEM.c.link == shared.link)).one().id
    html = site.get(f"/items/{item_id}").text
    assert FEEDS[1][0] in html and FEEDS[2][0] in html
    assert f'href="{shared.link}" rel="noopener noreferrer nofollow"' in html
    detail = tq.item_detail(site.seeded.engine.connect(), item_id)
    assert detail is not None
    for ev in detail.entry.evidence:
        assert f">{ev.phrase}</mark>" in html
    for key in detail.entry.mediators:
        assert f'href="/timeline?mediator={key}"' in html


def test_feeds_page_shows_health(site: Site) -> None:
    html = site.get("/feeds").text
    for name, _ in FEEDS:
        assert f">{name}</a>" in html
    assert html.count('class="row-failing"') == 1
    assert "HTTP 500 &lt;b&gt;boom&lt;/b&gt;" in html


def test_bad_requests_get_clear_errors(site: Site) -> None:
    r = site.get("/items/999999")
    assert r.status_code == 404 and "There is no item 999999" in r.text
    assert site.get("/timeline?after=not-a-cursor").status_code == 400
    r = site.get("/timeline?since=yesterday")
    assert r.status_code == 400 and "not a date" in r.text
    assert site.get("/timeline?limit=0").status_code == 400
    assert site.get("/timeline?order=sideways").status_code == 400


def test_admin_is_off_without_a_token(site: Site) -> None:
    assert httpx.post(site.base + "/admin/poll").status_code == 404
    assert httpx.post(site.base + "/admin/poll", headers={"Authorization": "Bearer x"}).status_code == 404


def test_admin_poll_needs_the_bearer_token(tmp_path: Path) -> None:
    pytest.importorskip("pytest_httpserver")
    from pytest_httpserver import HTTPServer

    rss = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Wire</title><link>http://example.org/</link>'
        "<item><title>Turkey offers Istanbul for new round of peace talks between Ukraine and Russia</title>"
        "<link>http://example.org/a1</link><guid>a1</guid><pubDate>Thu, 19 Nov 2026 10:00:00 GMT</pubDate>"
        "<description>Erdogan said Ankara is ready to host negotiations on a ceasefire.</description></item>"
        "</channel></rss>"
    )
    with HTTPServer(host="127.0.0.1", port=0) as feeds:
        feeds.expect_request("/wire.xml").respond_with_data(rss, content_type="application/rss+xml")
        config = write_config(tmp_path / "feeds.yaml", [("Wire", feeds.url_for("/wire.xml"), "en")])
        app = build_app(tmp_path / "t.db", config, admin_token="s3cret-token")
        tracker_app.init(app)
        with serving(create_app(app, overview_ttl=0)) as base:
            url = base + "/admin/poll?all_feeds=true"
            assert httpx.post(url).status_code == 401
            assert httpx.post(url, headers={"Authorization": "Bearer wrong"}).status_code == 403
            assert httpx.post(url, headers={"Authorization": "Basic s3cret-token"}).status_code == 401
            assert httpx.get(url, headers={"Authorization": "Bearer s3cret-token"}).status_code == 405
            r = httpx.post(url, headers={"Authorization": "Bearer s3cret-token"}, timeout=60)
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["ok"] == 1 and body["new"] == 1
            html = httpx.get(base + "/timeline?source=Wire").text
            assert "Turkey offers Istanbul" in re.sub(r"<[^>]+>", "", html)  # (evidence is marked up)


def test_overview_cache_expires(tmp_path: Path) -> None:
    seeded = seed(tmp_path / "c.db", n=8)
    app = build_app(tmp_path / "c.db", write_config(tmp_path / "feeds.yaml", seeded_feed_urls()))
    web = create_app(app, clock=lambda: NOW, keys=KEYS, overview_ttl=60)
    state = web.state.tracker
    first = state.overview()
    assert state.overview() is first  # cached
    entry = make_entry(777, title="Beijing sends envoy", summary="Beijing envoy", published=NOW, language="en")
    store(seeded.engine, seeded.feed_ids["Meduza"], [(entry, tags_for(entry, ["china"], []))])
    assert state.overview() is first
    state.invalidate()
    fresh = state.overview()
    china = next(s for s in fresh.mediators if s.key == "china")
    assert china.latest[0].title == "Beijing sends envoy"


def test_highlight_escapes_everything_and_marks_phrases() -> None:
    from tracker.web.render import highlight, safe_link, spark_bars

    ev = [Evidence("turkey", "mediator", "Istanbul", 0, 8), Evidence("territory", "obstacle", "<occupied>", 0, 0)]
    out = str(highlight('<i>ISTANBUL</i> & the <occupied> "lands" until union', ev, terms=["un"]))
    assert out == (
        '&lt;i&gt;<mark class="ev-mediator">ISTANBUL</mark>&lt;/i&gt; &amp; the '
        '<mark class="ev-obstacle">&lt;occupied&gt;</mark> &#34;lands&#34; until union'
    )  # "un" is a word to search, not a substring of "until" or "union"
    assert str(highlight("talks in Riyadh", terms=["riyadh"])) == 'talks in <mark class="q">Riyadh</mark>'
    assert str(highlight("a " * 200, limit=20)).endswith("…") and len(str(highlight("a " * 200, limit=20))) < 25
    assert safe_link("javascript:alert(1)") is None and safe_link(" JavaScript:x") is None
    assert safe_link("https://example.org/a") == "https://example.org/a"
    bars = spark_bars([0, 5, 10], ["d1", "d2", "d3"])
    assert [b.height for b in bars] == [1, 17, 34] and bars[2].y == 2


def test_highlight_matches_whole_words_and_acronyms_by_case() -> None:
    from tracker.web.render import highlight

    ev = [Evidence("usa", "mediator", "US", 0, 2), Evidence("china", "mediator", "北京", 0, 2)]
    out = str(highlight("US envoy meets Russian and us officials in 北京市", ev))
    assert out == (
        '<mark class="ev-mediator">US</mark> envoy meets Russian and us officials in '
        '<mark class="ev-mediator">北京</mark>市'
    )


def test_operations_endpoints_are_mounted(site: Site) -> None:
    r = site.get("/healthz")
    assert r.status_code in (200, 503) and "database" in r.json().get("checks", r.json())
    assert r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


def test_head_requests_are_answered(site: Site) -> None:
    for path in ("/", "/timeline", "/feeds"):
        r = httpx.head(site.base + path)
        assert r.status_code == 200 and r.content == b"", path
