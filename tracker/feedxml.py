"""Fast path for well-formed RSS 0.9x / 2.0, RSS 1.0 (RDF) and Atom documents.

Why it exists: ``feedparser.parse`` spends ~230 µs per item in its Python state machine (attribute
normalisation, xml:base bookkeeping on every element, FeedParserDict look-ups, deep copies).  The fields
tracker keeps are few, so this module replays *feedparser's own strict-mode rules* for just the handlers
that decide them, on the parser feedparser's strict mode uses (expat, configured as ``xml.sax`` does):
well-formedness verdicts, namespace handling and character data are therefore the same by construction.

Why it is safe to be wrong in one direction only: whenever a document steps outside what is replayed here
(a DOCTYPE, xml:base, XHTML or base64 content, markup inside a text element, an element feedparser treats
specially that is not replayed, an encoding feedparser would override ...) ``parse`` returns None and the
caller falls back to feedparser.  tests/test_feedxml.py runs every file of feedparser's own test corpus
through both paths and asserts identical ``ParsedFeed`` output wherever this path accepts.

Why expat and not lxml: parsing a 30-item feed costs the same in both (≈7 µs per item with a minimal walk
or minimal handlers, measured); what costs is the per-element logic, identical either way.  expat is the
parser feedparser's strict mode runs, so it cannot disagree with it about well-formedness or namespaces,
and it is in the standard library.

Security: expat is created without a DTD handler that could load anything; a DOCTYPE aborts parsing at its
first byte, so no entity can be declared, expanded or fetched.
"""

from __future__ import annotations

import calendar
import contextlib
import functools
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from xml.parsers import expat

import feedparser
import feedparser.api
import feedparser.encodings
import feedparser.exceptions
import feedparser.html
import feedparser.sanitizer
import feedparser.urls
from feedparser.datetimes import _parse_date
from feedparser.mixin import _FeedParserMixin
from feedparser.util import FeedParserDict


class RawText(NamedTuple):
    """A feedparser "detail" dict (title_detail, summary_detail, a content item), reduced to what is read."""

    value: Any
    type: str | None
    language: str | None
    base: str | None


@dataclass(slots=True)
class RawEntry:
    """One entry as both parse paths hand it to ``tracker.parse._entry`` (one normaliser for all formats)."""

    title: Any = ""  # entry["title"], only read when there is no title_detail
    title_detail: RawText | None = None
    summary_detail: RawText | None = None
    content: list[RawText | None] = field(default_factory=list)
    link: Any = None
    links: list[tuple[Any, Any]] = field(default_factory=list)  # (rel, href) in document order
    id: Any = None  # entry["id"] or entry["guid"]
    author: Any = None
    language: Any = None
    published: datetime | None = None  # published_parsed as a UTC datetime
    updated: datetime | None = None  # updated_parsed as a UTC datetime


@dataclass(slots=True)
class RawFeed:
    """A whole document, as ``tracker.parse.parse_feed`` reads it from either path."""

    version: str
    bozo: str | None  # str(bozo_exception) when feedparser would set bozo
    title: Any  # feed.get("title", "")
    title_base: str | None  # feed title_detail["base"], when there is a title_detail
    link: Any
    language: Any
    ttl: Any
    entries: list[RawEntry | None]  # None: an entry that could not be read at all (counted, skipped)


class _Refuse(Exception):
    """Raised inside the replay: this document is not one we reproduce exactly; feedparser takes it."""


def struct_to_datetime(struct: Any) -> datetime | None:
    """feedparser's UTC 9-tuple → aware datetime (what ``_entry`` has always done with ``*_parsed``)."""
    if not struct:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(struct), tz=UTC)
    except (TypeError, ValueError, OverflowError):
        return None


# --- dates -----------------------------------------------------------------------------------------
# feedparser tries W3C-DTF first, then RFC 822, then a dozen others.  The two shapes below are parsed
# here with the same arithmetic those two parsers use (naive datetime minus the offset, seconds
# truncated); anything else, or any value the arithmetic rejects, goes to feedparser's own _parse_date.
_MONTHS = {
    m: i for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1)
}
_RFC822 = re.compile(
    r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?([0-9]{1,2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) (?:GMT|UTC|UT|Z|([+-])([0-9]{2})([0-9]{2}))"
)
_W3DTF = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]{1,6})?(?:Z|([+-])([0-9]{2}):([0-9]{2}))"
)


def parse_date(value: str | None) -> datetime | None:
    """Same result as ``struct_to_datetime(feedparser.datetimes._parse_date(value))``, faster when common."""
    if not value:
        return None
    m = _RFC822.fullmatch(value)
    if m is not None:
        day, mon, year, hh, mm, ss, sign, tzh, tzm = m.groups()
        month = _MONTHS[mon.lower()]
    else:
        m = _W3DTF.fullmatch(value)
        if m is None:
            return struct_to_datetime(_parse_date(value))
        year, month_s, day, hh, mm, ss, sign, tzh, tzm = m.groups()
        month = int(month_s)
    y = int(year)
    if not 1971 <= y <= 9998:
        return struct_to_datetime(_parse_date(value))
    try:
        stamp = datetime(y, month, int(day), int(hh), int(mm), int(ss), tzinfo=UTC)
    except ValueError:  # feedparser's parsers give up too and try the next one
        return struct_to_datetime(_parse_date(value))
    if sign:
        offset = timedelta(hours=int(tzh), minutes=int(tzm))
        stamp = stamp - offset if sign == "+" else stamp + offset
    return stamp


# --- feedparser's rules, referenced rather than copied where it has them as plain functions ------------
_MATCH = {k.lower(): v for k, v in _FeedParserMixin.namespaces.items()}
_urljoin: Callable[[str, str], str] = functools.lru_cache(maxsize=4096)(feedparser.urls._urljoin)

# An absolute http(s) URL that urllib's urljoin() returns unchanged whatever the base (as long as the
# base itself parses): the same scheme keeps netloc/path/query/fragment as they are (no ";" params, no
# empty "?" / "#", plain ASCII host, no brackets, whitespace or controls), another scheme returns the URL
# as given.  feedparser's _urljoin() also collapses "scheme:///" slashes, which the pattern excludes.
ABSOLUTE_URL = re.compile(
    r"https?://[A-Za-z0-9.\-]+(?::[0-9]+)?(?:/[^?#;\s\x00-\x1f\x7f\[\]\\]*)?"
    r"(?:\?[^#\s\x00-\x1f\x7f\[\]\\]+)?(?:#[^#\s\x00-\x1f\x7f\[\]\\]+)?"
)


@functools.lru_cache(maxsize=1024)
def base_parses(base: str) -> bool:
    """urljoin() parses its base first; with a base it rejects, no URL may skip the real call."""
    if ABSOLUTE_URL.fullmatch(base):  # nothing in it that urlsplit() rejects
        return True
    try:
        urllib.parse.urljoin(base, "http://x/")
    except ValueError:
        return False
    return True


_fp_looks_like_html: Callable[[str], bool] = _FeedParserMixin.looks_like_html


def _looks_like_html(s: str) -> bool:
    """feedparser's looks_like_html, which needs a close tag or an entity reference to say yes."""
    return ("</" in s or "&" in s) and _fp_looks_like_html(s)


_map_content_type: Callable[[str], str] = _FeedParserMixin.map_content_type
_CP1252 = feedparser.html._cp1252
_C1 = re.compile("[\x80-\x9f]")
_SPACE = re.compile(r"\s")  # what xml.sax's name.split() splits on
_AMP_REF = re.compile("&([A-Za-z0-9_]+);")
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_CAN_BE_RELATIVE = _FeedParserMixin.can_be_relative_uri
_FP_HANDLED = frozenset(
    n.split("_", 2)[2] for n in dir(feedparser.api.StrictFeedParser) if n.startswith(("_start_", "_end_"))
)
_XLINK = "http://www.w3.org/1999/xlink"
# feedparser adds an xmlns attribute to <math> / <svg> elements, which re-tracks namespaces: not replayed.
_REFUSED_NS = frozenset({"http://www.w3.org/1998/Math/MathML", "http://www.w3.org/2000/svg"})

# Keys some feedparser handler (or tracker) reads back from an entry / feed dict: an element without a
# handler is stored under its own name (through FeedParserDict's key aliases), so one named like these
# would change what is read.  (Keys read only by handlers of elements are safe: such an element is
# handled, never unknown.)  RSS 1.0's <items> is stored as feed["entries"], which nothing reads.
_KEYMAP = FeedParserDict.keymap
_UNSAFE_KEYS = frozenset(
    {
        "title", "summary", "subtitle", "content", "link", "links", "id", "guid", "guidislink", "author",
        "authors", "contributors", "publisher", "publishers", "language", "published", "updated", "created",
        "expired", "tags", "category", "image", "textinput", "source", "license", "href", "generator",
        "cloud", "where", "chapters", "rights", "info", "enclosures", "name", "email", "entries", "feed",
        "version", "channel", "width", "height", "newlocation", "ttl",
    }
    | (set(_KEYMAP) - {"items"})
    | {v for vs in _KEYMAP.values() for v in ([vs] if isinstance(vs, str) else vs)}
)  # fmt: skip

# What a frame does with what is inside it.
_OPEN = 0  # children allowed, text ignored (containers, harmless elements)
_LEAF = 1  # text collected, a child element means "not reproduced here"
_AUTHOR = 2  # text collected, only name/email/uri children
_OWNER = 3  # itunes:owner: text ignored, only name/email children

_AUTHOR_CHILDREN = frozenset({"name", "itunes_name", "email", "itunes_email", "url", "uri", "homepage"})
_OWNER_CHILDREN = frozenset({"name", "itunes_name", "email", "itunes_email"})

# Handled by feedparser, but with no effect on anything tracker reads (checked handler by handler):
# their subtree is replayed normally, their own text is ignored.
_HARMLESS_OPEN = frozenset(
    {
        "category", "keywords", "dc_subject", "media_category", "itunes_category", "tags", "itunes_keywords",
        "media_keywords", "enclosure", "media_content", "media_thumbnail", "media_credit", "media_rating",
        "media_restriction", "media_license", "media_player", "media_group", "cloud", "generator", "created",
        "dcterms_created", "expirationdate", "dcterms_valid", "webmaster", "dc_publisher", "newlocation",
        "width", "height", "itunes_image", "itunes_link", "itunes_block", "itunes_explicit", "cc_license",
        "contributor", "dc_contributor",
    }
)  # fmt: skip
# Harmless too, but they open a "content" construct in feedparser (markup inside is rewritten): leaves.
_HARMLESS_CONTENT = frozenset(
    {"rights", "copyright", "dc_rights", "subtitle", "tagline", "itunes_subtitle", "info", "feedburner_browserfriendly"}
)

# [name feedparser pushes, text pieces | None, kind, expecting_text, end handler | None, element key, lang]
Frame = list[Any]
StartHandler = Callable[["_Replay", dict[str, str], str], Frame]
EndHandler = Callable[["_Replay", Frame], None]


class _AuthorShim:
    """Lets feedparser's own ``_save_author`` / ``_sync_author_detail`` run on one of our context dicts."""

    __slots__ = ("ctx",)

    def __init__(self, ctx: dict[str, Any]) -> None:
        self.ctx = ctx

    def _get_context(self) -> dict[str, Any]:
        return self.ctx

    _save_author = _FeedParserMixin._save_author
    _sync_author_detail = _FeedParserMixin._sync_author_detail


def _fix_text(output: str) -> str:
    """feedparser's last touches on every non-ASCII value: the latin-1→UTF-8 repair, cp1252 C1 mapping.

    Both only act on U+0080..U+00FF, whose UTF-8 form starts with a 0xC2 / 0xC3 byte: text without
    those bytes (most text that is not ASCII, e.g. with curly quotes) is returned as it is.
    """
    encoded = output.encode("utf-8", "surrogatepass")
    if b"\xc2" not in encoded and b"\xc3" not in encoded:
        return output
    with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
        output = output.encode("iso-8859-1").decode("utf-8")
    if _C1.search(output):
        output = output.translate(_CP1252)
    return output


class _Replay:
    """feedparser's ``_FeedParserMixin`` state machine, for the handlers that decide tracker's fields."""

    def __init__(self, base: str, lang: str | None) -> None:
        self.base = base
        self.base_ok = base_parses(base)
        self.lang = lang
        self.depth = 0
        self.version = ""
        self.nsmap: dict[str | None, str] = {}
        self.nsinuse: dict[str, str] = {}
        self.names: dict[str, tuple[str, str, str, StartHandler]] = {}
        self.end_names: dict[str, str] = {}
        self.infeed = self.inentry = self.insource = self.inimage = self.intextinput = 0
        self.incontent = self.inauthor = self.hascontent = self.guidislink = self.channels = 0
        self.title_depth = -1
        self.summary_key: str | None = None
        self.cp: dict[str, Any] | None = None  # contentparams while in a content construct
        self.feed: dict[str, Any] = {}
        if lang:
            self.feed["language"] = lang.replace("_", "-")
        self.entries: list[dict[str, Any]] = []
        self.entry: dict[str, Any] = {}
        self.pdm: dict[str, int] = {}  # property_depth_map of the current entry
        self.source: dict[str, Any] = {}
        self.other: dict[str, Any] = {}  # image / textinput context: nothing is read from it
        # The sentinel frame stands for "no element"; its language slot is what an empty langstack
        # leaves in feedparser (it is only read after the root element has ended).
        self.frames: list[Frame] = [["", None, _OPEN, 0, None, "", lang]]
        self.pieces: list[str] | None = None

    def join(self, uri: str) -> str:
        """feedparser's resolve_uri: ``_urljoin(baseuri, uri)``; an absolute http(s) URL needs no work."""
        if self.base_ok and ABSOLUTE_URL.fullmatch(uri):
            return uri
        return _urljoin(self.base, uri)

    # --- expat callbacks -----------------------------------------------------------------------------
    def ns_decl(self, prefix: str | None, uri: str | None) -> None:
        """xml.sax startPrefixMapping → feedparser's track_namespace."""
        if not uri:
            return
        if uri == _XLINK or _SPACE.search(uri):
            raise _Refuse("xlink declaration / whitespace in a namespace name")
        prefix = prefix or None
        loweruri = uri.lower()
        if not self.version:
            if (prefix, loweruri) == (None, "http://my.netscape.com/rdf/simple/0.9/"):
                self.version = "rss090"
            elif loweruri == "http://purl.org/rss/1.0/":
                self.version = "rss10"
            elif loweruri == "http://www.w3.org/2005/atom":
                self.version = "atom10"
        if "backend.userland.com/rss" in loweruri:
            uri = loweruri = "http://backend.userland.com/rss"
        std = _MATCH.get(loweruri)
        if std is not None:
            self.nsmap[prefix] = std
            self.nsinuse[std] = uri
        else:
            self.nsinuse[prefix or ""] = uri
        self.names.clear()
        self.end_names.clear()

    def _start_name(self, name: str) -> tuple[str, str, str, StartHandler]:
        """strict.startElementNS + unknown_starttag naming: (tag, prefix, handler key, start handler)."""
        parts = name.split(" ")
        ns, local = (parts[0], parts[1]) if len(parts) > 1 else (None, parts[0])
        if ns in _REFUSED_NS:
            raise _Refuse("MathML / SVG element")
        lowerns = (ns or "").lower()
        if "backend.userland.com/rss" in lowerns:
            ns = lowerns = "http://backend.userland.com/rss"
        prefix = _MATCH.get(lowerns)
        localname = local.lower()
        if prefix:
            localname = prefix.lower() + ":" + localname
        elif ns:
            localname = self._prefixed(ns, localname)
        tag, prefix, key = self._key(localname.lower())
        if not self.frames[-1][5] and key not in ("rss", "feed", "rdf_rdf"):
            raise _Refuse(f"root <{tag}>")
        info = (tag, prefix, key, _start_handler(tag, key))
        self.names[name] = info
        return info

    def _end_key(self, name: str) -> str:
        """strict.endElementNS naming (no userland rewrite, given prefix ''), then unknown_endtag."""
        parts = name.split(" ")
        ns, local = (parts[0], parts[1]) if len(parts) > 1 else (None, parts[0])
        prefix = _MATCH.get((ns or "").lower(), "")
        localname = local
        if prefix:
            localname = prefix + ":" + localname
        elif ns:
            localname = self._prefixed(ns, localname)
        key = self._key(localname.lower())[2]
        self.end_names[name] = key
        return key

    def _prefixed(self, ns: str, localname: str) -> str:
        for pname, value in self.nsinuse.items():
            if pname and value == ns:
                return pname + ":" + localname
        return localname

    def _key(self, tag: str) -> tuple[str, str, str]:
        prefix, _, suffix = tag.partition(":") if ":" in tag else ("", "", tag)
        prefix = self.nsmap.get(prefix, prefix)
        return tag, prefix, (prefix + "_" + suffix if prefix else suffix)

    def start(self, name: str, attrs: dict[str, str]) -> None:
        """unknown_starttag, for an element whose parent may contain it."""
        info = self.names.get(name)
        if info is None:
            info = self._start_name(name)
        tag, prefix, key, handler = info
        frames = self.frames
        kind = frames[-1][2]
        if kind and (
            kind == _LEAF
            or (kind == _AUTHOR and key not in _AUTHOR_CHILDREN)
            or (kind == _OWNER and key not in _OWNER_CHILDREN)
        ):
            raise _Refuse("markup inside a text element")
        self.depth += 1
        if attrs:
            a = _attrs(attrs)
            if "base" in a or "xml:base" in a:
                raise _Refuse("xml:base")
            lang = a.get("xml:lang", a.get("lang"))
            if lang == "":
                lang = None
            elif lang is None:
                lang = self.lang
            elif tag in ("feed", "rss"):
                self.feed["language"] = lang.replace("_", "-")
            self.lang = lang
        else:
            a = {}
            lang = self.lang
        if not prefix and (self.inimage or self.intextinput):
            if tag not in ("title", "link", "description", "name"):
                self.intextinput = 0
            if tag not in ("title", "link", "description", "url", "href", "width", "height"):
                self.inimage = 0
        frame = handler(self, a, key)
        frame.append(key)
        frame.append(lang)
        frames.append(frame)
        self.pieces = frame[1]

    def end(self, name: str) -> None:
        """unknown_endtag."""
        frames = self.frames
        frame = frames.pop()
        key = self.end_names.get(name)
        if key is None:
            key = self._end_key(name)
        if key != frame[5]:
            raise _Refuse("element named differently at its end")
        handler = frame[4]
        if handler is not None:
            handler(self, frame)
        parent = frames[-1]
        self.lang = parent[6]
        self.depth -= 1
        self.pieces = parent[1]

    def chars(self, data: str) -> None:
        pieces = self.pieces
        if pieces is not None:
            pieces.append(data)

    # --- feedparser's context and value rules ---------------------------------------------------------
    def _ctx(self) -> dict[str, Any]:
        """_get_context."""
        if self.insource:
            return self.source
        if self.inimage or self.intextinput:  # both only replayed at feed level: nothing read there
            return self.other
        if self.inentry:
            return self.entry
        return self.feed

    def _pop(self, element: str, pieces: list[str], expecting_text: int) -> str:
        """pop(): the value of a text element, stored where feedparser stores it."""
        output = "".join(pieces).strip()
        if not expecting_text:
            return output
        if output and element in _CAN_BE_RELATIVE and (element != "id" or self.guidislink):
            output = self.join(output)
        cp = self.cp
        if (
            cp is not None
            and cp["type"] == "text/plain"
            and not self.version.startswith("atom")
            and _looks_like_html(output)
        ):
            cp["type"] = "text/html"
        if not output.isascii():
            output = _fix_text(output)
        if element == "title" and -1 < self.title_depth <= self.depth:
            return output
        if self.inentry and not self.insource:
            entry = self.entry
            if element == "content":
                assert cp is not None
                entry.setdefault("content", []).append(RawText(output, cp["type"], cp["language"], cp["base"]))
            elif element == "link":
                if not self.inimage:
                    if "&" in output:
                        output = _AMP_REF.sub(r"&\g<1>", output.replace("&amp;", "&"))
                    entry["link"] = output
                    if output:
                        entry["links"][-1][1] = output
            else:
                if element == "description":
                    element = "summary"
                old = self.pdm.get(element)
                if old is None or self.depth <= old:
                    self.pdm[element] = self.depth
                    entry[element] = output
                if self.incontent:
                    assert cp is not None
                    entry[element + "_detail"] = RawText(output, cp["type"], cp["language"], cp["base"])
        elif self.infeed or self.insource:
            ctx = self._ctx()
            if element == "description":
                element = "subtitle"
            ctx[element] = output
            if element == "link":
                output = _AMP_REF.sub(r"&\g<1>", output) if "&" in output else output
                ctx["link"] = output
                ctx["links"][-1][1] = output
            elif self.incontent:
                assert cp is not None
                ctx[element + "_detail"] = RawText(output, cp["type"], cp["language"], cp["base"])
        return output

    def _push_content(
        self, tag: str, a: dict[str, str], default_type: str, expecting_text: int, end: EndHandler
    ) -> Frame:
        self.incontent += 1
        if self.lang:
            self.lang = self.lang.replace("_", "-")
        ctype = _map_content_type(a.get("type", default_type)) if a else default_type
        if a and (
            a.get("mode", "") == "base64"
            or not (ctype.startswith("text/") or ctype.endswith("+xml") or ctype.endswith("/xml"))
        ):
            raise _Refuse("base64 content")
        if ctype == "application/xhtml+xml":
            raise _Refuse("inline XHTML content")
        self.cp = {"type": ctype, "language": self.lang, "base": self.base}
        return [tag, [], _LEAF, expecting_text, end]

    def _pop_content(self, frame: Frame) -> str:
        value = self._pop(frame[0], frame[1], frame[3])
        self.incontent -= 1
        self.cp = None
        return value

    def _expecting(self) -> int:
        return 1 if (self.infeed or self.inentry or self.insource) else 0


def _attrs(attrs: dict[str, str]) -> dict[str, str]:
    """xml.sax.expatreader + strict.startElementNS + _normalize_attributes, in their order."""
    d: dict[str, str] = {}
    qnames = []
    for aname, value in attrs.items():
        parts = aname.split(" ")
        if len(parts) == 1:
            d[aname.lower()] = value
            qnames.append((aname, value))
        else:
            std = _MATCH.get(parts[0].lower(), "")
            d[(std + ":" + parts[1] if std else parts[1]).lower()] = value
            qnames.append((parts[2] + ":" + parts[1] if len(parts) == 3 else parts[1], value))
    for qname, value in qnames:
        d[qname.lower()] = value
    for k in ("rel", "type"):
        if k in d:
            d[k] = d[k].lower()
    return d


# --- start / end handlers (named after feedparser's) ---------------------------------------------------
# A start handler gets (replay, normalised attributes, element key) and returns the element's frame,
# whose fifth slot is the end handler to run (None: nothing to do at the end).


def _s_rss(r: _Replay, a: dict[str, str], key: str) -> Frame:
    if r.depth != 1:
        raise _Refuse("nested <rss>")
    if not r.version or not r.version.startswith("rss"):
        v = a.get("version", "")
        r.version = {"0.91": "rss091u", "0.92": "rss092", "0.93": "rss093", "0.94": "rss094"}.get(v) or (
            "rss20" if v.startswith("2.") else "rss"
        )
    return ["rss", None, _OPEN, 0, None]


def _s_rdf(r: _Replay, a: dict[str, str], key: str) -> Frame:
    if r.depth != 1:
        raise _Refuse("nested <rdf:RDF>")
    return ["rdf_rdf", None, _OPEN, 0, None]


def _cdf_common(a: dict[str, str]) -> None:
    if "lastmod" in a or "href" in a:
        raise _Refuse("CDF attributes")


def _s_channel(r: _Replay, a: dict[str, str], key: str) -> Frame:
    if r.infeed or r.inentry or r.insource or r.channels:
        raise _Refuse("nested or repeated channel")
    r.channels = 1
    r.infeed = 1
    _cdf_common(a)
    return ["channel", None, _OPEN, 0, _e_channel]


def _s_feed(r: _Replay, a: dict[str, str], key: str) -> Frame:
    if r.depth != 1:
        raise _Refuse("nested <feed>")
    r.channels = 1
    r.infeed = 1
    if not r.version:
        r.version = {"0.1": "atom01", "0.2": "atom02", "0.3": "atom03"}.get(a.get("version") or "") or "atom"
    return ["feed", None, _OPEN, 0, _e_channel]


def _e_channel(r: _Replay, frame: Frame) -> None:
    r.infeed = 0


def _s_item(r: _Replay, a: dict[str, str], key: str) -> Frame:
    if r.inentry or r.insource or r.inimage or r.intextinput:
        raise _Refuse("entry inside an entry / source / image")
    r.entry = {}
    r.pdm = {}
    r.entries.append(r.entry)
    r.inentry = 1
    r.guidislink = 0
    r.title_depth = -1
    if a:
        about = a.get(r.nsmap.get("rdf", "rdf") + ":about")
        if about:
            r.entry["id"] = about
        _cdf_common(a)
    return ["item", None, _OPEN, 0, _e_item]


def _e_item(r: _Replay, frame: Frame) -> None:
    r.inentry = 0
    r.hascontent = 0


def _s_image(r: _Replay, a: dict[str, str], key: str) -> Frame:
    if r.inentry or r.insource:
        raise _Refuse("image inside an entry")
    r.inimage = 1
    r.title_depth = -1
    return ["image", None, _OPEN, 0, _e_image]


def _e_image(r: _Replay, frame: Frame) -> None:
    r.inimage = 0


def _s_textinput(r: _Replay, a: dict[str, str], key: str) -> Frame:
    if r.inentry or r.insource:
        raise _Refuse("textinput inside an entry")
    r.intextinput = 1
    r.title_depth = -1
    return ["textinput", None, _OPEN, 0, _e_textinput]


def _e_textinput(r: _Replay, frame: Frame) -> None:
    r.intextinput = 0


def _s_source(r: _Replay, a: dict[str, str], key: str) -> Frame:
    if r.insource:
        raise _Refuse("nested source")
    r.insource = 1
    r.title_depth = -1
    return ["source", None, _OPEN, 0, _e_source]


def _e_source(r: _Replay, frame: Frame) -> None:
    r.insource = 0
    r.source = {}


def _s_title(r: _Replay, a: dict[str, str], key: str) -> Frame:
    end = _e_media_title if key == "media_title" else _e_title
    return r._push_content("title", a, "text/plain", r._expecting(), end)


def _e_title(r: _Replay, frame: Frame) -> None:
    value = r._pop_content(frame)
    if value:
        r.title_depth = r.depth


def _e_media_title(r: _Replay, frame: Frame) -> None:
    title_depth = r.title_depth
    _e_title(r, frame)
    r.title_depth = title_depth


def _s_content(r: _Replay, a: dict[str, str], key: str) -> Frame:
    r.hascontent = 1
    return r._push_content("content", a, "text/plain", 1, _e_content)


def _s_content_encoded(r: _Replay, a: dict[str, str], key: str) -> Frame:
    r.hascontent = 1
    return r._push_content("content", a, "text/html", 1, _e_content)


def _e_content(r: _Replay, frame: Frame) -> None:
    assert r.cp is not None
    copy_to_summary = _map_content_type(r.cp["type"]) in ("text/plain", *_HTML_TYPES)
    value = r._pop_content(frame)
    if copy_to_summary:
        r._ctx().setdefault("summary", value)


def _s_description(r: _Replay, a: dict[str, str], key: str) -> Frame:
    if "summary" in r._ctx() and not r.hascontent:
        r.summary_key = "content"
        r.hascontent = 1
        return r._push_content("content", a, "text/plain", 1, _e_description)
    return r._push_content("description", a, "text/html", r._expecting(), _e_description)


def _s_abstract(r: _Replay, a: dict[str, str], key: str) -> Frame:
    return r._push_content("description", a, "text/plain", r._expecting(), _e_description)


def _e_description(r: _Replay, frame: Frame) -> None:
    if r.summary_key == "content":
        _e_content(r, frame)
    else:
        r._pop_content(frame)
    r.summary_key = None


def _s_summary(r: _Replay, a: dict[str, str], key: str) -> Frame:
    if "summary" in r._ctx() and not r.hascontent:
        r.summary_key = "content"
        r.hascontent = 1
        return r._push_content("content", a, "text/plain", 1, _e_summary)
    r.summary_key = "summary"
    return r._push_content("summary", a, "text/plain", 1, _e_summary)


def _e_summary(r: _Replay, frame: Frame) -> None:
    _e_description(r, frame)  # feedparser's _end_summary: the same, with "summary" as its own key


def _s_link(r: _Replay, a: dict[str, str], key: str) -> Frame:
    a.setdefault("rel", "alternate")
    a.setdefault("type", "application/atom+xml" if a["rel"] == "self" else "text/html")
    ctx = r._ctx()
    href = a.get("url", a.get("uri", a.get("href")))  # _enforce_href
    if href:
        a.pop("url", None)
        a.pop("uri", None)
        a["href"] = href
    if "href" in a:
        a["href"] = r.join(a["href"])
    links = ctx.setdefault("links", [])
    if not (r.inentry and r.inimage):
        links.append([a["rel"], a.get("href")])
    if "href" in a:
        if a.get("rel") == "alternate" and _map_content_type(a["type"]) in _HTML_TYPES:
            ctx["link"] = a["href"]
        return ["link", None, _LEAF, 0, None]  # no text to read: feedparser pushes nothing here
    return ["link", [], _LEAF, r._expecting(), _e_link]


def _e_link(r: _Replay, frame: Frame) -> None:
    r._pop("link", frame[1], frame[3])


def _s_guid(r: _Replay, a: dict[str, str], key: str) -> Frame:
    r.guidislink = 1 if a.get("ispermalink", "true") == "true" else 0
    return ["id", [], _LEAF, 1, _e_guid]


def _e_guid(r: _Replay, frame: Frame) -> None:
    value = r._pop("id", frame[1], 1)
    if r.guidislink:
        r._ctx().setdefault("link", value)


def _s_published(r: _Replay, a: dict[str, str], key: str) -> Frame:
    return ["published", [], _LEAF, 1, _e_published]


def _e_published(r: _Replay, frame: Frame) -> None:
    r._ctx()["published_parsed"] = r._pop("published", frame[1], 1)  # parsed when the entry is built


def _s_updated(r: _Replay, a: dict[str, str], key: str) -> Frame:
    return ["updated", [], _LEAF, 1, _e_updated]


def _e_updated(r: _Replay, frame: Frame) -> None:
    r._ctx()["updated_parsed"] = r._pop("updated", frame[1], 1)


def _s_language(r: _Replay, a: dict[str, str], key: str) -> Frame:
    return ["language", [], _LEAF, 1, _e_language]


def _e_language(r: _Replay, frame: Frame) -> None:
    r._pop("language", frame[1], 1)  # feedparser also sets self.lang, which its end tag undoes at once


def _s_author(r: _Replay, a: dict[str, str], key: str) -> Frame:
    r.inauthor = 1
    r._ctx().setdefault("authors", []).append(FeedParserDict())
    return ["author", [], _AUTHOR, 1, _e_author]


def _e_author(r: _Replay, frame: Frame) -> None:
    r._pop("author", frame[1], 1)
    r.inauthor = 0
    _AuthorShim(r._ctx())._sync_author_detail()


def _s_itunes_owner(r: _Replay, a: dict[str, str], key: str) -> Frame:
    if r.inentry or r.insource:
        raise _Refuse("itunes:owner inside an entry")
    return ["itunes_owner", None, _OWNER, 0, None]


def _s_name(r: _Replay, a: dict[str, str], key: str) -> Frame:
    return ["name", [], _LEAF, 0, _e_person_part]


def _s_email(r: _Replay, a: dict[str, str], key: str) -> Frame:
    return ["email", [], _LEAF, 0, _e_person_part]


def _s_url(r: _Replay, a: dict[str, str], key: str) -> Frame:
    return ["href", [], _LEAF, 1, _e_person_part]


def _e_person_part(r: _Replay, frame: Frame) -> None:
    """_end_name / _end_email / _end_url: only an author's parts reach anything tracker reads."""
    if r.inauthor and r.frames[-1][2] == _AUTHOR:
        element = frame[0]
        value = r._pop("href", frame[1], 1) if element == "href" else "".join(frame[1]).strip()
        _AuthorShim(r._ctx())._save_author(element, value)


def _s_ttl(r: _Replay, a: dict[str, str], key: str) -> Frame:
    """<ttl> has no handler in feedparser: stored under its name (the attribute dict instead, if any)."""
    if a:
        r._ctx()["ttl"] = a
        return ["ttl", None, _LEAF, 0, None]
    return ["ttl", [], _LEAF, 1, _e_ttl]


def _e_ttl(r: _Replay, frame: Frame) -> None:
    r._pop("ttl", frame[1], 1)


def _s_open(r: _Replay, a: dict[str, str], key: str) -> Frame:
    """A harmless element, handled or not by feedparser: its children are replayed, its text ignored."""
    return [key, None, _OPEN, 0, None]


def _s_content_construct(r: _Replay, a: dict[str, str], key: str) -> Frame:
    """A harmless feedparser content construct (rights, subtitle ...): markup inside it is not replayed."""
    return [key, None, _LEAF, 0, None]


def _s_handled(r: _Replay, a: dict[str, str], key: str) -> Frame:
    raise _Refuse(f"<{key}> is handled by feedparser in a way not replayed here")


def _s_unsafe(r: _Replay, a: dict[str, str], key: str) -> Frame:
    raise _Refuse(f"unknown element <{key}> would be stored under a key that is read")


_START: dict[str, StartHandler] = {
    "rss": _s_rss,
    "rdf_rdf": _s_rdf,
    "channel": _s_channel,
    "feed": _s_feed,
    "item": _s_item,
    "entry": _s_item,
    "image": _s_image,
    "textinput": _s_textinput,
    "source": _s_source,
    "title": _s_title,
    "dc_title": _s_title,
    "media_title": _s_title,
    "description": _s_description,
    "dc_description": _s_description,
    "media_description": _s_description,
    "abstract": _s_abstract,
    "summary": _s_summary,
    "itunes_summary": _s_summary,
    "content": _s_content,
    "content_encoded": _s_content_encoded,
    "fullitem": _s_content_encoded,
    "link": _s_link,
    "guid": _s_guid,
    "id": _s_guid,
    "pubdate": _s_published,
    "published": _s_published,
    "issued": _s_published,
    "dcterms_issued": _s_published,
    "updated": _s_updated,
    "modified": _s_updated,
    "lastbuilddate": _s_updated,
    "dc_date": _s_updated,
    "dcterms_modified": _s_updated,
    "language": _s_language,
    "dc_language": _s_language,
    "author": _s_author,
    "managingeditor": _s_author,
    "dc_author": _s_author,
    "dc_creator": _s_author,
    "itunes_author": _s_author,
    "itunes_owner": _s_itunes_owner,
    "name": _s_name,
    "itunes_name": _s_name,
    "email": _s_email,
    "itunes_email": _s_email,
    "url": _s_url,
    "uri": _s_url,
    "homepage": _s_url,
    "ttl": _s_ttl,
}


def _start_handler(tag: str, key: str) -> StartHandler:
    """What to do with an element: replayed, harmless, or refused (feedparser decides it differently)."""
    handler = _START.get(key)
    if handler is not None:
        return handler
    if key in _HARMLESS_OPEN:
        return _s_open
    if key in _HARMLESS_CONTENT:
        return _s_content_construct
    if key in _FP_HANDLED:
        return _s_handled
    if key in _UNSAFE_KEYS or key.endswith(("_detail", "_parsed")):
        return _s_unsafe
    return _s_open  # no handler: feedparser stores its text (or attributes) under a key nobody reads


@functools.lru_cache(maxsize=1024)
def _base_uri(url: str) -> str:
    """The xml:base feedparser's strict parser settles on for every element of a document without xml:base.

    api.parse starts from make_safe_absolute_uri('', content-location), i.e. the URL; every element start
    then sets ``baseuri = make_safe_absolute_uri(baseuri, baseuri) or baseuri``: one step must reach a
    fixed point.  An absolute http(s) URL already is one (urljoin gives it back, its scheme is accepted).
    """
    if ABSOLUTE_URL.fullmatch(url):
        return url
    make_safe = feedparser.urls.make_safe_absolute_uri
    if not url:
        return _urljoin("", "")
    base = make_safe(url, url) or url
    if (make_safe(base, base) or base) != base:
        raise _Refuse("base URI is not a fixed point")
    return base


def _entry_of(d: dict[str, Any]) -> RawEntry:
    links = d.get("links")
    published = d.get("published_parsed")
    updated = d.get("updated_parsed")
    return RawEntry(
        d.get("title", ""),
        d.get("title_detail"),
        d.get("summary_detail"),
        d.get("content") or [],
        d.get("link"),
        [(rel, href) for rel, href in links] if links else [],
        d.get("id"),
        d.get("author"),
        d.get("language"),
        parse_date(published) if published else None,
        parse_date(updated) if updated else None,
    )


def parse(content: bytes, *, url: str, headers: Mapping[str, str]) -> RawFeed | None:
    """The document as feedparser would read it, or None when this path does not reproduce it exactly.

    ``headers`` must have lower-case keys (parse_feed's convention).  Never raises.
    """
    try:
        return _parse(content, url, headers)
    except Exception:  # _Refuse, ExpatError, or anything unforeseen: feedparser decides
        return None


def _parse(content: bytes, url: str, headers: Mapping[str, str]) -> RawFeed | None:
    http_headers = {**headers, "content-location": url}
    result: dict[str, Any] = {}
    data = feedparser.encodings.convert_to_utf8(http_headers, content, result)
    bozo: str | None = None
    if result.get("bozo"):
        exc = result.get("bozo_exception")
        if not isinstance(exc, feedparser.exceptions.NonXMLContentType):
            return None  # an encoding feedparser overrides or cannot find: its own path (and _redetect)
        bozo = str(exc)
    if not result.get("encoding"):
        return None
    start = re.search(rb"<\w", data)
    head = data[: start.start() + 1] if start else data
    if feedparser.sanitizer.RE_DOCTYPE_PATTERN.search(head) or feedparser.sanitizer.RE_ENTITY_PATTERN.search(head):
        return None
    lang = headers.get("content-language")
    replay = _Replay(_base_uri(url), lang)
    parser = expat.ParserCreate(None, " ")
    parser.namespace_prefixes = True
    parser.buffer_text = True
    parser.buffer_size = 1 << 16
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_doctype
    parser.EntityDeclHandler = _refuse_doctype
    parser.StartNamespaceDeclHandler = replay.ns_decl
    parser.StartElementHandler = replay.start
    parser.EndElementHandler = replay.end
    parser.CharacterDataHandler = replay.chars
    parser.Parse(data, True)
    feed = replay.feed
    title_detail = feed.get("title_detail")
    return RawFeed(
        version=replay.version,
        bozo=bozo,
        title=feed.get("title", ""),
        title_base=title_detail.base if title_detail else None,
        link=feed.get("link"),
        language=feed.get("language"),
        ttl=feed.get("ttl"),
        entries=[_entry_of(e) for e in replay.entries],
    )


def _refuse_doctype(*args: Any) -> None:
    raise _Refuse("DOCTYPE")
