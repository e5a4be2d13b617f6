"""Atom 1.0 documents of the status log (built with ElementTree, so the XML is always well formed)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from xml.etree import ElementTree as ET

from tracker.models import TimelineEntry
from tracker.web.render import safe_link

ATOM_NS = "http://www.w3.org/2005/Atom"
ID_PREFIX = "tag:tracker.invalid,2022:"
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(s: str | None) -> str:
    """Characters XML 1.0 cannot carry are dropped (feeds do contain them)."""
    return _XML_BAD.sub("", s or "")


def _el(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, {k: _clean(v) for k, v in attrs.items()})
    if text is not None:
        el.text = _clean(text)
    return el


def entry_id(entry: TimelineEntry) -> str:
    if entry.kind == "item":
        return f"{ID_PREFIX}item/{entry.id.removeprefix('i:')}"
    return f"{ID_PREFIX}baseline/{entry.id.removeprefix('b:')}"


def atom_feed(
    entries: Sequence[TimelineEntry],
    *,
    title: str,
    feed_id: str,
    self_url: str,
    html_url: str,
    base_url: str,
    updated: datetime,
    labels: dict[str, str],
) -> bytes:
    """An Atom feed: newest first; each entry links to the article and to its page here."""
    feed = ET.Element("feed", {"xmlns": ATOM_NS})
    _el(feed, "id", f"{ID_PREFIX}{feed_id}")
    _el(feed, "title", title)
    _el(feed, "subtitle", "Status log of the Ukraine–Russia peace process: baseline events and tagged news")
    newest = max((e.date for e in entries), default=updated)
    _el(feed, "updated", newest.isoformat())
    _el(feed, "link", rel="self", type="application/atom+xml", href=self_url)
    _el(feed, "link", rel="alternate", type="text/html", href=html_url)
    author = _el(feed, "author")
    _el(author, "name", "tracker")
    _el(feed, "generator", "tracker")
    for e in entries:
        item = _el(feed, "entry")
        _el(item, "id", entry_id(e))
        prefix = "[baseline] " if e.kind == "baseline" else ""
        _el(item, "title", prefix + e.title, type="text")
        _el(item, "updated", e.date.isoformat())
        _el(item, "published", e.date.isoformat())
        link = safe_link(e.link)
        if link:
            _el(item, "link", rel="alternate", type="text/html", href=link)
        if e.kind == "item":
            page = f"{base_url}/items/{e.id.removeprefix('i:')}"
            _el(item, "link", rel="related" if link else "alternate", type="text/html", href=page)
        for src in e.sources:
            a = _el(item, "author")
            _el(a, "name", src)
        for key in e.mediators:
            _el(item, "category", term=key, label=labels.get(key, key), scheme=f"{base_url}/mediators")
        for key in e.obstacles:
            _el(item, "category", term=key, label=labels.get(key, key), scheme=f"{base_url}/obstacles")
        summary = e.summary
        if e.kind == "baseline":
            summary = f"{e.date_label}: {summary}"
        _el(item, "summary", summary, type="text")
    body: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return body
