"""OPML import and export."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tracker.config import load_config
from tracker.opml import append_feeds, feeds_from_opml, feeds_to_opml

OPML = b"""<?xml version="1.0"?>
<opml version="2.0"><head><title>mine</title></head><body>
  <outline text="News"><outline text="Kyiv Independent" xmlUrl="https://kyivindependent.com/feed/" language="en"/>
    <outline text="Nested"><outline title="Meduza" text="m" xmlUrl="https://meduza.io/rss/all"/></outline></outline>
  <outline text="No URL"/>
</body></opml>"""


def test_nested_outlines_are_read() -> None:
    feeds = feeds_from_opml(OPML)
    assert [(f.name, f.url, f.language) for f in feeds] == [
        ("Kyiv Independent", "https://kyivindependent.com/feed/", "en"),
        ("Meduza", "https://meduza.io/rss/all", None),
    ]


def test_round_trip() -> None:
    feeds = feeds_from_opml(OPML)
    assert feeds_from_opml(feeds_to_opml(feeds).encode()) == feeds


def test_append_keeps_comments_and_skips_known(tmp_path: Path) -> None:
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(
        "# my feeds\nfeeds:\n  # the first one\n  - name: Meduza\n    url: https://meduza.io/rss/all\n\ndigests: []\n"
    )
    added = append_feeds(cfg, feeds_from_opml(OPML))
    assert [f.name for f in added] == ["Kyiv Independent"]
    text = cfg.read_text()
    assert "# my feeds" in text and "# the first one" in text
    assert [f.name for f in load_config(cfg).feeds] == ["Meduza", "Kyiv Independent"]
    assert append_feeds(cfg, feeds_from_opml(OPML)) == []


def test_hostile_opml_is_refused() -> None:
    bomb = b"""<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>
    <opml><body><outline text="&lol2;" xmlUrl="https://x.example/"/></body></opml>"""
    with pytest.raises(ValueError, match="DTD"):
        feeds_from_opml(bomb)
    with pytest.raises(ValueError, match="not valid OPML"):
        feeds_from_opml(b"<opml><body>")


def test_cli_import_and_export(tmp_path: Path) -> None:
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text("feeds: []\n")
    src = tmp_path / "in.opml"
    src.write_bytes(OPML)
    run = [sys.executable, "-m", "tracker", "--config", str(cfg)]
    r = subprocess.run([*run, "feeds", "import", str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "2 of 2 feeds added" in r.stdout
    out = subprocess.run([*run, "feeds", "export"], capture_output=True, text=True)
    assert out.returncode == 0
    assert [f.url for f in feeds_from_opml(out.stdout.encode())] == [
        "https://kyivindependent.com/feed/",
        "https://meduza.io/rss/all",
    ]
