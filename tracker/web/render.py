"""Jinja2 environment and the helpers templates use.

Autoescape is on for every template.  The only value rendered unescaped is an item's ``content_html``,
which ``tracker.parse`` already ran through nh3; every helper here that returns ``Markup`` escapes each
piece of feed text it puts in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape

from tracker.models import Evidence

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"
KIND_CLASSES = {"mediator": "ev-mediator", "obstacle": "ev-obstacle"}


def safe_link(url: str | None) -> str | None:
    """Only http(s) links leave this site; a ``javascript:`` link in a feed becomes no link."""
    if not url:
        return None
    try:
        scheme = urlsplit(url.strip()).scheme.lower()
    except ValueError:
        return None
    return url if scheme in ("http", "https") else None


def highlight(
    text: str | None,
    evidence: Iterable[Evidence] = (),
    *,
    limit: int | None = None,
    terms: Iterable[str] = (),
) -> Markup:
    """``text`` escaped, with every occurrence of an evidence phrase (or search term) in ``<mark>``.

    Phrases are found again in the displayed text (case-insensitive) because evidence offsets index
    the tagged text (title + summary + content), not the string being shown.
    """
    text = text or ""
    if limit is not None and len(text) > limit:
        cut = text.rfind(" ", 0, limit)
        text = text[: cut if cut > limit // 2 else limit].rstrip(" ,.;:") + "…"
    classes: dict[str, str] = {}  # casefolded phrase -> mark class
    alternatives: list[tuple[int, str]] = []
    for ev in evidence:
        key = ev.phrase.casefold()
        if ev.phrase.strip() and ev.kind in KIND_CLASSES and key not in classes:
            classes[key] = KIND_CLASSES[ev.kind]
            alternatives.append((len(key), _phrase_pattern(ev.phrase)))
    for term in terms:
        key = term.casefold()
        if term.strip() and key not in classes:
            classes[key] = "q"
            alternatives.append((len(key), rf"\b{re.escape(term)}\b"))
    if not alternatives:
        return Markup(escape(text))
    alternatives.sort(key=lambda a: -a[0])  # longest first
    pattern = re.compile("|".join(a for _, a in alternatives), re.IGNORECASE | re.UNICODE)
    out: list[str] = []
    pos = 0
    for m in pattern.finditer(text):
        if m.end() == m.start():
            continue
        out.append(str(escape(text[pos : m.start()])))
        cls = classes.get(m.group(0).casefold(), "q")
        out.append(f'<mark class="{cls}">{escape(m.group(0))}</mark>')
        pos = m.end()
    out.append(str(escape(text[pos:])))
    return Markup("".join(out))


_NO_SPACES = re.compile(r"[\u0600-\u06ff\u2e80-\u9fff\uac00-\ud7af]")  # Arabic, CJK, Hangul


def _phrase_pattern(phrase: str) -> str:
    """A phrase as a whole word ("US" must not mark "Russian"); acronyms keep their case."""
    body = re.escape(phrase)
    if phrase.isupper() and len(phrase) <= 4:
        body = f"(?-i:{body})"
    if _NO_SPACES.search(phrase):  # these scripts do not separate words with spaces
        return body
    before = r"(?<!\w)" if re.match(r"\w", phrase) else ""
    after = r"(?!\w)" if re.search(r"\w$", phrase) else ""
    return before + body + after


def evidence_context(text: str, ev: Evidence, *, width: int = 90) -> Markup:
    """The tagged text around one piece of evidence, the phrase marked (offsets checked first)."""
    start, end = ev.start, ev.end
    if not (0 <= start < end <= len(text)) or text[start:end].casefold() != ev.phrase.casefold():
        m = re.search(re.escape(ev.phrase), text, re.IGNORECASE) if ev.phrase else None
        if m is None:
            return Markup(f'<mark class="{KIND_CLASSES.get(ev.kind, "ev-mediator")}">{escape(ev.phrase)}</mark>')
        start, end = m.start(), m.end()
    left = max(0, start - width)
    right = min(len(text), end + width)
    pre = ("…" if left else "") + _squash(text[left:start])
    post = _squash(text[end:right]) + ("…" if right < len(text) else "")
    cls = KIND_CLASSES.get(ev.kind, "ev-mediator")
    return Markup(f'{escape(pre)}<mark class="{cls}">{escape(text[start:end])}</mark>{escape(post)}')


def _squash(s: str) -> str:
    return re.sub(r"\s+", " ", s)


@dataclass(frozen=True, slots=True)
class Bar:
    x: int
    y: int
    height: int
    day: str
    count: int


SPARK_BAR = 6
SPARK_GAP = 2
SPARK_HEIGHT = 36


def spark_bars(counts: Sequence[int], days: Sequence[str]) -> list[Bar]:
    """Bar geometry for the 30-day activity chart (SVG attributes, no inline style: CSP forbids it)."""
    top = max(counts) if counts else 0
    bars = []
    for i, (count, day) in enumerate(zip(counts, days, strict=False)):
        h = 0 if top == 0 or count == 0 else max(2, round(count / top * (SPARK_HEIGHT - 2)))
        bars.append(Bar(i * (SPARK_BAR + SPARK_GAP), SPARK_HEIGHT - max(h, 1), max(h, 1), day, count))
    return bars


def spark_width(n: int) -> int:
    return max(0, n * (SPARK_BAR + SPARK_GAP) - SPARK_GAP)


def fmt_date(value: datetime | None, fmt: str = "%d %b %Y") -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime(fmt).lstrip("0")


def fmt_datetime(value: datetime | None) -> str:
    if value is None:
        return "never"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def ago(value: datetime | None, now: datetime) -> str:
    """A coarse relative time ("3 min ago"); the absolute time goes in a title attribute."""
    if value is None:
        return "never"
    secs = (now - value).total_seconds()
    if secs < 0:
        secs = -secs
        suffix = "from now"
    else:
        suffix = "ago"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if secs >= size:
            return f"{int(secs // size)} {unit} {suffix}"
    return "just now"


def iso(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat() if value else ""


def make_env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "xml"], default_for_string=True, default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["highlight"] = highlight
    env.filters["date"] = fmt_date
    env.filters["datetime"] = fmt_datetime
    env.filters["iso"] = iso
    env.globals["spark_bars"] = spark_bars
    env.globals["spark_width"] = spark_width
    env.globals["spark_height"] = SPARK_HEIGHT
    env.globals["ago"] = ago
    env.globals["evidence_context"] = evidence_context
    return env


def render(env: Environment, name: str, **context: Any) -> str:
    return env.get_template(name).render(**context)
