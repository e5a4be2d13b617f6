"""OPML import and export, so feed lists move between tracker and other readers.

Import appends to feeds.yaml as text (comments and layout stay as the operator wrote them) and
then re-validates the whole file, so a bad import never leaves a broken config behind.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from xml.sax.saxutils import quoteattr

import yaml

from tracker.config import ConfigError, FeedConfig, load_config, parse_config


def feeds_from_opml(data: bytes) -> list[FeedConfig]:
    """Every outline with an xmlUrl, nested folders included; DTDs and entities are refused."""
    head = data[:4096].lower()
    if b"<!doctype" in head or b"<!entity" in data.lower():
        raise ValueError("OPML with a DTD or entities is refused (possible entity-expansion attack)")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise ValueError(f"not valid OPML: {exc}") from None
    if root.tag.lower() != "opml":
        raise ValueError(f"not OPML: the root element is <{root.tag}>")
    feeds: list[FeedConfig] = []
    seen: set[str] = set()
    for node in root.iter("outline"):
        url = (node.get("xmlUrl") or node.get("xmlurl") or "").strip()
        if not url or url in seen:
            continue
        seen.add(url)
        name = (node.get("title") or node.get("text") or url).strip()
        lang = (node.get("language") or "").strip().lower() or None
        try:
            feeds.append(
                FeedConfig(url=url, name=name, language=lang if lang and re.fullmatch(r"[a-z]{2,3}", lang) else None)
            )
        except ValueError as exc:
            raise ValueError(f"outline {name!r}: {exc}") from None
    return feeds


def feeds_to_opml(feeds: Iterable[FeedConfig], *, title: str = "tracker feeds") -> str:
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<opml version="2.0">',
        f"  <head><title>{_esc(title)}</title><dateCreated>{datetime.now(UTC):%a, %d %b %Y %H:%M:%S} GMT"
        "</dateCreated></head>",
        "  <body>",
    ]
    for f in feeds:
        attrs = f'type="rss" text={quoteattr(f.name)} title={quoteattr(f.name)} xmlUrl={quoteattr(str(f.url))}'
        if f.language:
            attrs += f" language={quoteattr(f.language)}"
        lines.append(f"    <outline {attrs}/>")
    lines += ["  </body>", "</opml>", ""]
    return "\n".join(lines)


def _esc(s: str) -> str:
    return quoteattr(s)[1:-1]


def append_feeds(path: Path, feeds: Iterable[FeedConfig]) -> list[FeedConfig]:
    """Append feeds whose URL is new to feeds.yaml; returns those added.  The file is validated first."""
    path = Path(path)
    config = load_config(path)
    known = {str(f.url).rstrip("/").lower() for f in config.feeds}
    names = {f.name for f in config.feeds}
    added: list[FeedConfig] = []
    for f in feeds:
        if str(f.url).rstrip("/").lower() in known:
            continue
        name = f.name
        n = 2
        while name in names:
            name, n = f"{f.name} ({n})", n + 1
        names.add(name)
        known.add(str(f.url).rstrip("/").lower())
        added.append(f.model_copy(update={"name": name}))
    if not added:
        return []
    text = path.read_text(encoding="utf-8")
    block = "".join(_yaml_item(f) for f in added)
    new_text = _insert_into_feeds(text, block)
    parse_config(new_text, source=str(path))  # never write a file that does not validate
    path.write_text(new_text, encoding="utf-8")
    return added


def _yaml_item(f: FeedConfig) -> str:
    out = f"  - name: {_scalar(f.name)}\n    url: {_scalar(str(f.url))}\n"
    if f.language:
        out += f"    language: {f.language}\n"
    return out


def _scalar(s: str) -> str:
    return yaml.safe_dump(s, default_style='"', width=10_000).strip()


def _insert_into_feeds(text: str, block: str) -> str:
    """Put ``block`` at the end of the top-level ``feeds:`` list (or add the list)."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if re.match(r"^feeds:\s*(#.*)?$", line)), None)
    if start is None:
        if re.search(r"^feeds:\s*\[\s*\]", text, re.MULTILINE):
            return re.sub(r"^feeds:\s*\[\s*\]", "feeds:\n" + block.rstrip("\n"), text, count=1, flags=re.MULTILINE)
        sep = "" if text.endswith("\n") or not text else "\n"
        return text + sep + "feeds:\n" + block
    end = start + 1
    last_item = start
    while end < len(lines):
        line = lines[end]
        if line.strip() and not line.startswith((" ", "\t", "#")):
            break  # next top-level key
        if line.strip() and not line.lstrip().startswith("#"):
            last_item = end
        end += 1
    insert_at = last_item + 1
    return "".join(lines[:insert_at]) + block + "".join(lines[insert_at:])


__all__ = ["ConfigError", "append_feeds", "feeds_from_opml", "feeds_to_opml"]
