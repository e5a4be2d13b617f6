"""The JSON API, the Atom feeds and the CLI, against a real server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import feedparser
import httpx
import pytest
from test_timeline_queries import KEYS, NOW, Seeded, TimelineFilter, seed, walk
from test_web import (
    HOSTILE_TITLE,
    add_hostile_and_failing,
    build_app,
    seeded_feed_urls,
    serving,
    write_config,
)

from tracker.models import TimelineEntry
from tracker.store import timeline_queries as tq
from tracker.web import create_app
from tracker.web.atom import atom_feed

ROOT = Path(__file__).resolve().parents[1]


class Api:
    def __init__(self, base: str, seeded: Seeded, config: Path, db: Path) -> None:
        self.base, self.seeded, self.config, self.db = base, seeded, config, db

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(self.base + path, params=params or None, timeout=20)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    tmp = tmp_path_factory.mktemp("api")
    seeded = seed(tmp / "tracker.db")
    add_hostile_and_failing(seeded)
    config = write_config(tmp / "feeds.yaml", seeded_feed_urls())
    app = build_app(tmp / "tracker.db", config)
    with serving(create_app(app, clock=lambda: NOW, keys=KEYS, overview_ttl=0)) as base:
        yield Api(base, seeded, config, tmp / "tracker.db")


def test_status_reports_every_key_as_the_queries_compute_it(api: Api) -> None:
    r = api.get("/api/status")
    assert r.status_code == 200
    doc = r.json()
    with api.seeded.engine.connect() as conn:
        ov = tq.overview(conn, KEYS, now=NOW)
    assert datetime.fromisoformat(doc["updated_at"].replace("Z", "+00:00")) == NOW
    assert list(doc["mediators"]) == [s.key for s in ov.mediators]
    assert list(doc["obstacles"]) == [s.key for s in ov.obstacles]
    for s in ov.mediators + ov.obstacles:
        got = doc[s.kind + "s"][s.key]
        assert got["label"] == s.label and got["state"] == s.state
        assert got["total_30d"] == s.total_30d and got["new_24h"] == s.new_24h
        assert got["daily"]["counts"] == s.daily and len(got["daily"]["counts"]) == 30
        assert got["daily"]["start"] == s.days[0]
        assert [e["id"] for e in got["latest"]] == [e.id for e in s.latest]
    assert doc["feeds"]["failing"] == 1 and doc["feeds"]["total"] == 4
    assert doc["changes"] and all(e["kind"] == "item" for e in doc["changes"])


def test_timeline_api_pages_through_the_whole_filtered_log(api: Api) -> None:
    for params, flt in [
        ({"mediator": "turkey"}, TimelineFilter(mediator="turkey")),
        ({"q": "grain"}, TimelineFilter(q="grain")),
        ({"order": "asc", "language": "ru"}, TimelineFilter(language="ru")),
    ]:
        want = walk(api.seeded.engine, flt)
        if params.get("order") == "asc":
            want.reverse()
        got: list[str] = []
        pages: list[list[str]] = []
        url: str | None = api.base + "/api/timeline?" + "&".join(f"{k}={v}" for k, v in params.items()) + "&limit=6"
        while url:
            doc = httpx.get(url, timeout=20).json()
            ids = [e["id"] for e in doc["entries"]]
            assert len(ids) <= 6
            got += ids
            pages.append(ids)
            url = doc["next"]
        assert got == want and len(pages) >= 2, params
    # "prev" of the second page is the first page.
    first = api.get("/api/timeline", limit=5).json()
    second = httpx.get(first["next"], timeout=20).json()
    assert first["prev"] is None and second["prev"] is not None
    back = httpx.get(second["prev"], timeout=20).json()
    assert [e["id"] for e in back["entries"]] == [e["id"] for e in first["entries"]]
    assert api.get("/api/timeline", after="garbage").status_code == 400
    assert api.get("/api/timeline", limit=1000).status_code == 422


def test_item_api_has_content_and_every_source(api: Api) -> None:
    shared = api.seeded.items[17][0]
    with api.seeded.engine.connect() as conn:
        item_id = conn.execute(tq.ITEM.select().where(tq.ITEM.c.link == shared.link)).one().id
    doc = api.get(f"/api/items/{item_id}").json()
    assert doc["id"] == f"i:{item_id}" and doc["title"] == shared.title
    assert doc["content_html"] == shared.content_html
    assert [f["name"] for f in doc["feeds"]] == ["Meduza", "Ukrainska Pravda"]
    assert doc["sources"] == ["Meduza", "Ukrainska Pravda"]
    assert {e["phrase"] for e in doc["evidence"]} <= set(shared.text.split("\n")[0].split(" near ")[1].split(" and "))
    r = api.get("/api/items/999999")
    assert r.status_code == 404 and r.json() == {"detail": "no item 999999"}


def test_feeds_api_lists_health(api: Api) -> None:
    rows = api.get("/api/feeds").json()
    assert [r["name"] for r in rows] == sorted(n for n, _, _ in seeded_feed_urls())
    failing = [r for r in rows if r["consecutive_failures"]]
    assert [r["name"] for r in failing] == ["Deutsche Welle"] and failing[0]["last_outcome"] == "error"


def test_openapi_documents_every_endpoint(api: Api) -> None:
    doc = api.get("/api/openapi.json").json()
    paths = doc["paths"]
    for path in (
        "/api/status",
        "/api/timeline",
        "/api/items/{item_id}",
        "/api/feeds",
        "/atom.xml",
        "/atom/{kind}/{key}.xml",
        "/admin/poll",
    ):
        assert path in paths, path
    schemas = doc["components"]["schemas"]
    for name in ("StatusOut", "KeyStatusOut", "EntryOut", "TimelineOut", "ItemOut", "FeedOut"):
        assert name in schemas
    params = {p["name"] for p in paths["/api/timeline"]["get"]["parameters"]}
    assert {"mediator", "obstacle", "source", "language", "since", "until", "q", "after", "before"} <= params
    ref = paths["/api/status"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/StatusOut")
    assert api.get("/docs").status_code == 404  # Swagger UI needs third-party scripts: off


def test_atom_feeds_parse_back_with_feedparser(api: Api) -> None:
    r = api.get("/atom.xml")
    assert r.headers["content-type"].startswith("application/atom+xml")
    feed = feedparser.parse(r.content)
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.version == "atom10"
    with api.seeded.engine.connect() as conn:
        want = tq.timeline_entries(conn, limit=50)
    assert len(feed.entries) == 50
    assert [e.title for e in feed.entries] == [("[baseline] " if w.kind == "baseline" else "") + w.title for w in want]
    assert len({e.id for e in feed.entries}) == 50
    assert any(e.title == HOSTILE_TITLE for e in feed.entries)  # markup in a title survives as text
    by_title = {e.title: e for e in feed.entries}
    hostile = by_title[HOSTILE_TITLE]
    assert all(link.href.startswith(api.base) for link in hostile.links)  # no javascript: link
    for kind, key in (("mediator", "turkey"), ("obstacle", "territory")):
        f = feedparser.parse(api.get(f"/atom/{kind}/{key}.xml").content)
        assert not f.bozo and f.entries
        assert all(key in [t.term for t in e.tags] for e in f.entries)
        assert key in f.feed.title.lower() or "Territory" in f.feed.title
    assert api.get("/atom/mediator/nope.xml").status_code == 404
    assert api.get("/atom/weather/turkey.xml").status_code == 404


def test_atom_drops_characters_xml_cannot_carry() -> None:
    entry = TimelineEntry(
        kind="item",
        id="i:1",
        date=NOW,
        date_precision="day",
        date_label="20 November 2026",
        title="bad \x0b\x00 chars \ufffe",
        summary="a\x1fb",
        link="http://example.org/a?x=1&y=<2>",
        sources=("Feed <A>",),
        mediators=("turkey",),
    )
    body = atom_feed(
        [entry],
        title="t",
        feed_id="log",
        self_url="http://h/atom.xml",
        html_url="http://h/",
        base_url="http://h",
        updated=NOW,
        labels={"turkey": "Turkey & co"},
    )
    ET.fromstring(body)  # well-formed
    f = feedparser.parse(body)
    assert (
        not f.bozo
        and f.entries[0].title.strip() == "bad  chars"
        and f.entries[0].link == "http://example.org/a?x=1&y=<2>"
    )


def _cli(config: Path, db: Path, *args: str) -> Any:
    env = {**os.environ, "TRACKER_CONFIG": str(config), "TRACKER_DATABASE_URL": f"sqlite:///{db}"}
    out = subprocess.run(
        [sys.executable, "-m", "tracker", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_cli_status_json_equals_the_api(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    seed(tmp_path / "cli.db", n=60, now=now - timedelta(minutes=1))
    config = write_config(tmp_path / "feeds.yaml", seeded_feed_urls())
    app = build_app(tmp_path / "cli.db", config)
    with serving(create_app(app, overview_ttl=0)) as base:  # the real taxonomy and clock, like the CLI
        from_api = httpx.get(base + "/api/status", timeout=20).json()
        from_cli = json.loads(_cli(config, tmp_path / "cli.db", "status", "--format", "json"))
        assert from_cli.pop("updated_at") and from_api.pop("updated_at")
        assert from_cli == from_api
        assert from_api["mediators"] and from_api["obstacles"]
        api_tl = httpx.get(base + "/api/timeline", params={"limit": 12, "since": "2020-01-01"}, timeout=20).json()
        cli_tl = json.loads(
            _cli(
                config,
                tmp_path / "cli.db",
                "timeline",
                "--since",
                "2020-01-01",
                "--limit",
                "12",
                "--format",
                "json",
            )
        )
        assert cli_tl == api_tl["entries"] and len(cli_tl) == 12
    text = _cli(config, tmp_path / "cli.db", "status")
    assert "Mediators" in text and "Obstacles" in text
    lines = _cli(config, tmp_path / "cli.db", "timeline", "--source", "seed")
    assert lines.count("baseline") >= 4
