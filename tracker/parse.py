"""Bytes of a feed document → cleaned ``Entry`` records (pure: no I/O, ``now`` passed in).

Per entry, in this order:
1. text fields are repaired (ftfy, only when a cheap check sees mojibake-looking characters);
2. HTML is sanitized with nh3 (allow-list) and a plain-text version is derived for tagging;
3. the link is made canonical (absolute, tracking parameters and fragment dropped);
4. dates are normalised to UTC; a missing or future date falls back to ``now`` and says so;
5. the dedup key is chosen: guid, else canonical link, else a hash of title + summary.

feedparser runs with ``sanitize_html=False, resolve_relative_uris=False``: nh3 sanitizes (faster and
stricter) and links are resolved here, so feedparser's slow HTML passes are not paid twice.

Well-formed RSS / Atom / RDF documents skip feedparser altogether: ``tracker.feedxml`` replays its rules
on expat and gives the same ``RawEntry`` records for ~9× less CPU than ``feedparser.parse``; anything it
does not reproduce exactly goes through feedparser as before.  Both paths, and JSON Feed, meet in the
one normaliser ``_entry`` (bench/parse.py: parse_feed ≈4–5× cheaper per item on well-formed feeds).
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import feedparser
import feedparser.mixin
import ftfy
import nh3

from tracker import feedxml
from tracker.feedxml import ABSOLUTE_URL, RawEntry, RawFeed, RawText, base_parses, struct_to_datetime
from tracker.models import Entry, ParsedFeed

FUTURE_TOLERANCE = timedelta(minutes=10)
MAX_TEXT = 20_000
MAX_SUMMARY = 500

ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "cite", "code", "dd", "del", "div", "dl", "dt", "em",
    "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "li", "ol", "p",
    "pre", "q", "s", "small", "span", "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th",
    "thead", "time", "tr", "u", "ul",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan"},
    "time": {"datetime"},
    "abbr": {"title"},
    "q": {"cite"},
    "blockquote": {"cite"},
}
URL_SCHEMES = {"http", "https", "mailto"}
TRACKING_PARAMS = re.compile(
    r"^(utm_[a-z_]+|fbclid|gclid|dclid|gbraid|wbraid|msclkid|mc_cid|mc_eid|yclid|igshid|_ga|_gl|ref|ref_src|"
    r"cmpid|cmp|ito|at_medium|at_campaign|at_custom\d*|ocid|ncid|sr_share|smid|mbid|soc_src|soc_trk|"
    r"__twitter_impression|xtor|s_cid|rss|feed|from)$",
    re.IGNORECASE,
)
# Characters that show up when UTF-8 was decoded as latin-1 / cp1252 / cp1250 (Ã©, Ä\x9f, Ă³, â€™ ...).
MOJIBAKE_HINT = re.compile("[ÃÂÄÅĂĹÐÑâ][\u0080-\u02ff\u2010-\u203a\u20ac\u2122]")
TAG_RE = re.compile(r"<[^>]*>")
BLOCK_RE = re.compile(r"</?(?:p|div|br|li|h[1-6]|tr|blockquote|pre|ul|ol|table)\b[^>]*>", re.IGNORECASE)
HTML_TYPES = ("text/html", "application/xhtml+xml")


# feedparser re-derives the xml:base of every element with a urljoin (~8 % of its time on a typical
# feed); the function is pure and the pairs repeat, so a small cache saves that work.
if hasattr(feedparser.mixin, "make_safe_absolute_uri"):
    feedparser.mixin.make_safe_absolute_uri = functools.lru_cache(maxsize=512)(feedparser.mixin.make_safe_absolute_uri)

MOJIBAKE_RUN = re.compile("[\u0080-\u02ff\u2010-\u203a\u20ac\u2122]{2,}")
LEGACY_CODECS = ("cp1252", "latin-1", "cp1250", "cp1251")


def repair(text: str) -> str:
    """Undo mojibake, cheaply: most text never reaches ftfy.

    ftfy knows UTF-8 read as Windows-1252 / Latin-1; Central European feeds also arrive as UTF-8
    read as Windows-1250 ("ErdoÄźan", "AntĂłnio"), which it leaves alone, so each run of
    suspicious characters is also tried against the legacy codecs.
    """
    if not text or text.isascii() or not MOJIBAKE_HINT.search(text):  # isascii() is O(1)
        return text
    fixed = ftfy.fix_text(text, normalization="NFC", uncurl_quotes=False)
    if fixed != text and not MOJIBAKE_HINT.search(fixed):
        return fixed
    return MOJIBAKE_RUN.sub(_redecode, fixed)


def _redecode(m: re.Match[str]) -> str:
    run = m.group(0)
    for codec in LEGACY_CODECS:
        try:
            return run.encode(codec).decode("utf-8")
        except UnicodeError:
            continue
    return run


# One prebuilt cleaner: nh3.clean() converts the allow-lists from Python on every call (~15 µs of ~25).
_CLEANER = nh3.Cleaner(
    tags=ALLOWED_TAGS,
    attributes=ALLOWED_ATTRIBUTES,
    url_schemes=URL_SCHEMES,
    link_rel="noopener noreferrer nofollow",
    strip_comments=True,
)
URL_ATTR = re.compile(r'(href|src)="([^"]*)"')
# An attribute value that the rewrite in sanitize() gives back unchanged: an http(s) URL whose urljoin()
# round trip is the identity (host of plain ASCII, no ";" params, no empty "?" or "#", no brackets,
# whitespace or control characters) and whose unescape/escape round trip is too ("&" only as "&amp;",
# no < > ' characters).  A fragment with any other value takes the rewrite, exactly as before.
_NOT_PATH = r"""[^"?#;&<>'\s\x00-\x1f\x7f\[\]\\]"""
_NOT_QUERY = r"""[^"#&<>'\s\x00-\x1f\x7f\[\]\\]"""
UNCHANGED_BY_REWRITE = re.compile(  # loops unrolled: [^…]*(?:&amp;[^…]*)* scans a run per step
    rf"https?://[A-Za-z0-9.\-]+(?::[0-9]+)?(?:/{_NOT_PATH}*(?:&amp;{_NOT_PATH}*)*)?"
    rf'(?:\?(?![#"]){_NOT_QUERY}*(?:&amp;{_NOT_QUERY}*)*)?(?:#(?![#"]){_NOT_QUERY}*(?:&amp;{_NOT_QUERY}*)*)?"'
)


def _rewrite_changes(cleaned: str, base: str) -> bool:
    """Could ``URL_ATTR.sub`` in sanitize() change ``cleaned``?  False only when provably not.

    Every place URL_ATTR can match starts with ``href="`` or ``src="``; the rewrite of a value that
    UNCHANGED_BY_REWRITE accepts is that value again.
    """
    if not base_parses(base):
        return True
    match = UNCHANGED_BY_REWRITE.match
    for marker in ('href="', 'src="'):
        i = cleaned.find(marker)
        while i != -1:
            if not match(cleaned, i + len(marker)):
                return True
            i = cleaned.find(marker, i + 1)
    return False


def sanitize(fragment: str, base: str | None = None) -> str:
    """Allow-list HTML sanitizing; relative URLs are made absolute against ``base``."""
    if not fragment:
        return ""
    if "<" not in fragment and "&" not in fragment:
        return html.escape(fragment, quote=False)
    cleaned = _CLEANER.clean(fragment)
    if base and _rewrite_changes(cleaned, base):
        cleaned = URL_ATTR.sub(
            lambda m: f'{m.group(1)}="{html.escape(urljoin(base, html.unescape(m.group(2))))}"',
            cleaned,
        )
    return cleaned


def squash(text: str) -> str:
    """``re.sub(r"\\s+", " ", text).strip()``: str.split() and ``\\s`` share one notion of whitespace (3× faster)."""
    return " ".join(text.split())


def to_text(fragment: str) -> str:
    """Plain text of an HTML fragment: tags dropped, entities decoded, whitespace collapsed."""
    if not fragment:
        return ""
    if "<" in fragment:
        fragment = BLOCK_RE.sub(" ", fragment)
        fragment = TAG_RE.sub("", fragment)
    if "&" in fragment:
        fragment = html.unescape(fragment)
    return squash(fragment)


# The common case of canonical_url() with nothing to change but the fragment: what urlsplit() and
# urlunsplit() would give back for it, without them (lower-case host, no port, user or query).
PLAIN_URL = re.compile(r"(https?://[a-z0-9.\-]+)(/[^?#;\s\x00-\x1f\x7f\[\]\\]*)?(?:#[^#\s\x00-\x1f\x7f\[\]\\]+)?")


def canonical_url(url: str | None, base: str | None = None) -> str | None:
    """Absolute http(s) URL without tracking parameters, fragment or default port; None if unusable."""
    if not url:
        return None
    url = url.strip()
    plain = PLAIN_URL.fullmatch(url)
    if plain is not None and (not base or base_parses(base)):
        return plain.group(1) + (plain.group(2) or "/")
    if base and not (ABSOLUTE_URL.fullmatch(url) and base_parses(base)):
        url = urljoin(base, url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    hostname = parts.hostname  # a property that re-parses netloc: read once
    if scheme not in ("http", "https") or not hostname:
        return None
    host = hostname.lower()
    port = parts.port
    port = port if port not in (None, 80 if scheme == "http" else 443) else None
    netloc = f"{host}:{port}" if port else host
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    query = parts.query
    if query:
        kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if not TRACKING_PARAMS.match(k)]
        query = urlencode(kept)
    return urlunsplit((scheme, netloc, parts.path or "/", query, ""))


def _html_of(detail: RawText | None) -> tuple[str, bool]:
    """(value, is_html) of a text construct."""
    if detail is None:
        return "", False
    value = detail.value or ""
    ctype = (detail.type or "text/html").lower()
    return value, ctype in HTML_TYPES or ("<" in value and ctype != "text/plain")


def _detail(d: Any) -> RawText | None:
    """A feedparser detail dict as a RawText (None when falsy, as the old ``if not detail`` read it)."""
    if not d:
        return None
    return RawText(d.get("value", ""), d.get("type"), d.get("language"), d.get("base"))


def _raw_entry(raw: Any) -> RawEntry:
    """A feedparser (or JSON Feed) entry dict in the shape ``_entry`` reads."""
    return RawEntry(
        title=raw.get("title", ""),
        title_detail=_detail(raw.get("title_detail")),
        summary_detail=_detail(raw.get("summary_detail")),
        content=[_detail(c) for c in raw.get("content") or ()],
        link=raw.get("link"),
        links=[(alt.get("rel", "alternate"), alt.get("href")) for alt in raw.get("links") or ()],
        id=raw.get("id") or raw.get("guid"),
        author=raw.get("author"),
        language=raw.get("language"),
        # dict.get: feedparser's own .get("updated_parsed") warns and aliases published_parsed.
        published=struct_to_datetime(dict.get(raw, "published_parsed")),
        updated=struct_to_datetime(dict.get(raw, "updated_parsed")),
    )


def _raw_feed(d: Any) -> RawFeed:
    """A feedparser (or JSON Feed) result in the shape ``parse_feed`` reads."""
    feed = d.get("feed", {})
    return RawFeed(
        version=d.get("version") or "",
        bozo=str(d.get("bozo_exception", "")) if d.get("bozo") else None,
        title=feed.get("title", ""),
        title_base=(feed.get("title_detail") or {}).get("base"),
        link=feed.get("link"),
        language=feed.get("language"),
        ttl=feed.get("ttl"),
        entries=[_raw_entry_or_none(e) for e in d.entries],
    )


def _raw_entry_or_none(raw: Any) -> RawEntry | None:
    """None for an entry that cannot even be read: parse_feed counts it, as it counted ``_entry`` failures."""
    try:
        return _raw_entry(raw)
    except Exception:
        return None


def _hash32(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _entry(raw: RawEntry, *, base: str, feed_language: str | None, now: datetime) -> Entry:
    """The one normaliser: every format and both parse paths end here."""
    title_detail = raw.title_detail
    entry_base = (title_detail.base if title_detail is not None else None) or base
    title_raw, title_html = _html_of(title_detail) if title_detail is not None else (raw.title, False)
    title = repair(to_text(title_raw) if title_html or "&" in title_raw else squash(title_raw))

    summary_raw, summary_is_html = _html_of(raw.summary_detail)
    content_raw = ""
    content_is_html = False
    for c in raw.content:
        value, is_html = _html_of(c)
        if len(value) > len(content_raw):
            content_raw, content_is_html = value, is_html
    body_raw, body_is_html = (content_raw, content_is_html) if content_raw else (summary_raw, summary_is_html)
    body_raw = repair(body_raw)
    summary_raw = repair(summary_raw) if summary_raw is not body_raw else body_raw
    content_html = sanitize(body_raw, entry_base) if body_is_html else html.escape(body_raw, quote=False)
    body_text = to_text(content_html) if body_is_html else squash(body_raw)
    if summary_raw is body_raw:
        summary_text = body_text
    elif summary_is_html:
        summary_text = to_text(sanitize(summary_raw))
    else:
        summary_text = squash(summary_raw)
    summary_text = summary_text or body_text
    if len(summary_text) > MAX_SUMMARY:
        summary_text = summary_text[: MAX_SUMMARY - 1].rsplit(" ", 1)[0] + "…"

    link = canonical_url(raw.link, entry_base)
    if link is None:
        for rel, href in raw.links:
            if rel == "alternate":
                link = canonical_url(href, entry_base)
                if link:
                    break

    updated = raw.updated
    published = raw.published or updated
    fallback: str | None = None
    if published is None:
        published, fallback = now, "missing"
    elif published > now + FUTURE_TOLERANCE:
        published, fallback = now, "future"
    if updated is not None and updated > now + FUTURE_TOLERANCE:
        updated = now

    guid = (raw.id or "").strip() or None
    if guid:
        key = f"guid:{guid[:1000]}"
    elif link:
        key = f"link:{link}"
    else:
        key = "hash:" + _hash32(f"{title}\n{summary_text}")
    content_hash = _hash32(f"{title}\n{summary_text}\n{body_text}")
    text = f"{title}\n{body_text}"[:MAX_TEXT]
    author = repair(raw.author or "").strip() or None
    language = raw.language or (title_detail.language if title_detail is not None else None) or feed_language or None
    return Entry(
        dedup_key=key,
        guid=guid,
        link=link,
        title=title or (summary_text[:120] if summary_text else "(untitled)"),
        summary=summary_text,
        content_html=content_html,
        text=text,
        published=published,
        updated=updated,
        date_fallback=fallback,
        author=author[:200] if author else None,
        language=_lang(language),
        content_hash=content_hash,
    )


def _lang(value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip().lower().replace("_", "-")
    return value.split("-")[0][:8] or None


def _json_feed(content: bytes) -> Any:
    """JSON Feed 1.0 / 1.1 in the shape feedparser gives, so one entry normaliser serves all formats."""
    FPD = feedparser.FeedParserDict
    try:
        doc = json.loads(content)
    except (ValueError, UnicodeDecodeError) as exc:
        return FPD(feed=FPD(), entries=[], version="", bozo=1, bozo_exception=f"invalid JSON: {exc}")
    if not isinstance(doc, dict) or "jsonfeed.org" not in str(doc.get("version", "")):
        return FPD(feed=FPD(), entries=[], version="", bozo=1, bozo_exception="JSON but not a JSON Feed")
    entries = []
    for it in doc.get("items") or []:
        if not isinstance(it, dict):
            continue
        authors = it.get("authors") or ([it["author"]] if isinstance(it.get("author"), dict) else [])
        e = FPD(
            id=str(it.get("id") or ""), link=it.get("url") or it.get("external_url") or "", title=it.get("title") or ""
        )
        e["title_detail"] = FPD(value=e["title"], type="text/plain", base="", language=doc.get("language"))
        if it.get("content_html"):
            e["content"] = [FPD(value=it["content_html"], type="text/html")]
        elif it.get("content_text"):
            e["content"] = [FPD(value=it["content_text"], type="text/plain")]
        if it.get("summary"):
            e["summary_detail"] = FPD(value=it["summary"], type="text/plain")
        for key, field in (("date_published", "published_parsed"), ("date_modified", "updated_parsed")):
            when = _iso(it.get(key))
            if when is not None:
                e[field] = when.utctimetuple()
        if authors and isinstance(authors[0], dict):
            e["author"] = authors[0].get("name") or ""
        if it.get("language"):
            e["language"] = it["language"]
        entries.append(e)
    feed = FPD(title=doc.get("title") or "", link=doc.get("home_page_url") or "", language=doc.get("language"))
    return FPD(feed=feed, entries=entries, version="json1", bozo=0)


def _iso(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _redetect(content: bytes, headers: dict[str, str], url: str) -> Any:
    """The declared encoding was wrong: let charset-normalizer guess, re-parse as UTF-8."""
    from charset_normalizer import from_bytes

    best = from_bytes(content[:200_000]).best()
    if best is None or best.encoding in ("utf_8", "ascii"):
        return None
    try:
        text = content.decode(best.encoding)
    except (UnicodeDecodeError, LookupError):
        return None
    text = re.sub(r"^(\s*<\?xml[^>]*?encoding=)([\"'])[^\"']*\2", r"\1\2utf-8\2", text, count=1)
    fixed = {k: v for k, v in headers.items() if k != "content-type"}
    fixed["content-type"] = "application/xml; charset=utf-8"
    return feedparser.parse(
        text.encode("utf-8"),
        response_headers={**fixed, "content-location": url},
        sanitize_html=False,
        resolve_relative_uris=False,
    )


def parse_feed(content: bytes, *, url: str, headers: Mapping[str, str] | None = None, now: datetime) -> ParsedFeed:
    """Parse one document; never raises on bad input (errors are in ``ParsedFeed.error``)."""
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    if not content or not content.strip():
        return ParsedFeed(None, None, None, None, (), error="empty document")
    doc: RawFeed | None = None
    try:
        if content.lstrip()[:1] == b"{" or "json" in headers.get("content-type", ""):
            doc = _raw_feed(_json_feed(content))  # feedparser 6 reads no JSON Feed
        else:
            doc = feedxml.parse(content, url=url, headers=headers)  # None: not reproduced there
            if doc is None:
                d = feedparser.parse(
                    content,
                    response_headers={**headers, "content-location": url},
                    sanitize_html=False,
                    resolve_relative_uris=False,
                )
    except Exception as exc:  # feedparser is robust, but a parser bug must stay this feed's error
        return ParsedFeed(None, None, None, None, (), error=f"parser failure: {exc!r}"[:500])
    if doc is None:
        if d.get("bozo") and isinstance(d.get("bozo_exception"), feedparser.CharacterEncodingOverride):
            d = _redetect(content, headers, url) or d
        doc = _raw_feed(d)
    bozo = doc.bozo
    if not doc.entries:
        ctype = headers.get("content-type", "")
        head = content[:512].lstrip().lower()
        if not doc.version and (ctype.startswith("text/html") or head.startswith((b"<!doctype html", b"<html"))):
            return ParsedFeed(None, None, None, None, (), error="not a feed: an HTML page")
        if bozo and not doc.version:
            return ParsedFeed(None, None, None, None, (), error=f"invalid feed: {bozo}"[:500])
    feed_language = _lang(doc.language or headers.get("content-language"))
    base = doc.title_base or url
    entries = []
    errors = 0
    for raw in doc.entries:
        try:
            if raw is None:
                raise ValueError("unreadable entry")
            entries.append(_entry(raw, base=base, feed_language=feed_language, now=now))
        except Exception:  # one malformed entry must not lose the others
            errors += 1
    ttl = doc.ttl
    try:
        ttl_minutes = int(ttl) if ttl else None
    except (TypeError, ValueError):
        ttl_minutes = None
    warning = bozo
    if not entries and not warning:
        warning = "the feed has no entries"
    if errors:
        warning = f"{errors} entries could not be read" + (f"; {bozo}" if bozo else "")
    return ParsedFeed(
        title=repair(to_text(doc.title)) or None,
        link=canonical_url(doc.link, url),
        language=feed_language,
        ttl_minutes=ttl_minutes,
        entries=tuple(entries),
        warning=warning[:500] if warning else None,
    )
