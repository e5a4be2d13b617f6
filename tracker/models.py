"""Plain records passed between pipeline stages.

They are frozen dataclasses with no I/O so that the pure stages (parse, tag, timeline,
schedule, digest) can be tested without a database or a network.  Database rows live in
``tracker.store.tables``; these are what flows between the stages.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NamedTuple, TypeVar

FetchOutcome = Literal["ok", "not_modified", "error", "gone"]
_T = TypeVar("_T")


def _pickles_as_tuple(cls: type[_T]) -> type[_T]:
    """Pickle as ``cls(*values)``.

    A slots dataclass pickles through ``dataclasses.fields()`` for every object, which made
    moving parsed entries back from the parse workers cost as much CPU as tagging them.
    """
    values = operator.attrgetter(*(f.name for f in dataclasses.fields(cls)))  # type: ignore[arg-type]

    def __reduce__(self: Any) -> tuple[type[_T], tuple[Any, ...]]:
        return cls, values(self)

    cls.__reduce__ = __reduce__  # type: ignore[method-assign]
    return cls


@dataclass(frozen=True, slots=True)
class FeedRequest:
    """What the fetcher needs to know about one feed."""

    feed_id: int
    url: str  # current URL (updated after a 301/308)
    etag: str | None = None  # validator from the previous 200
    last_modified: str | None = None  # validator from the previous 200


@dataclass(frozen=True, slots=True)
class FetchResult:
    """The outcome of one HTTP fetch; never raises, failures are data."""

    feed_id: int
    outcome: FetchOutcome
    url: str  # URL finally fetched (after redirects)
    status: int | None = None  # last HTTP status, None when no response
    content: bytes | None = None  # decoded body (gzip/deflate/br undone) on "ok"
    headers: Mapping[str, str] = field(default_factory=dict)  # response headers, lower-case keys
    etag: str | None = None
    last_modified: str | None = None
    permanent_url: str | None = None  # set when a 301/308 chain should update the stored URL
    retry_after: float | None = None  # seconds, from Retry-After on 429/503
    max_age: float | None = None  # seconds, from Cache-Control max-age
    error: str | None = None  # human-readable error text on "error"/"gone"
    elapsed: float = 0.0  # seconds spent


@_pickles_as_tuple
@dataclass(frozen=True, slots=True)
class Entry:
    """One cleaned feed entry, ready to tag and store."""

    dedup_key: str  # "guid:..." | "link:..." | "hash:..." — unique per feed
    guid: str | None
    link: str | None  # canonical link (tracking params removed, absolute)
    title: str  # plain text, mojibake repaired
    summary: str  # plain text summary (for display, tagging)
    content_html: str  # sanitized HTML (nh3), may be empty
    text: str  # plain text used for tagging: title + summary + content
    published: datetime  # UTC, tz-aware; fallback applied when missing / in the future
    updated: datetime | None  # UTC, tz-aware
    date_fallback: str | None  # None, "missing" or "future": why `published` is not the feed's own
    author: str | None
    language: str | None
    content_hash: str  # sha256 of title+summary+content; changes mean "updated in place"


@_pickles_as_tuple
@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """A parsed feed document: metadata plus cleaned entries."""

    title: str | None
    link: str | None
    language: str | None
    ttl_minutes: int | None  # RSS <ttl>
    entries: tuple[Entry, ...]
    error: str | None = None  # set when nothing usable could be parsed (not a feed, broken XML)
    warning: str | None = None  # feedparser's bozo text when entries were still recovered


class Evidence(NamedTuple):
    """A phrase that made the tagger decide; offsets index the tagged text.

    A named tuple, not a dataclass: an item carries a dozen of these from a parse worker to the
    writer, and a tuple is built (and unpickled) several times faster than a frozen dataclass.
    """

    tag: str  # taxonomy key ("turkey", "territory") or "context" for relevance terms
    kind: Literal["mediator", "obstacle", "context"]
    phrase: str  # the exact matched text, text[start:end]
    start: int
    end: int


@_pickles_as_tuple
@dataclass(frozen=True, slots=True)
class Tags:
    """What the tagger says about one text."""

    relevant: bool
    score: float  # 0..1, how strongly the text is about the peace process
    mediators: tuple[str, ...] = ()
    obstacles: tuple[str, ...] = ()
    evidence: tuple[Evidence, ...] = ()


class ItemRecord(NamedTuple):
    """One entry and what the tagger said about it, flattened into what the store writes.

    This is what a parse worker sends back.  Plain values (the evidence already as its JSON column)
    because moving an entry between processes as objects — an Entry, its Tags and a dozen Evidence
    each — cost ~70 µs of CPU per item to pickle and unpickle, more than tagging it; this ~15 µs.
    """

    dedup_key: str
    link: str | None
    title: str
    summary: str
    content_html: str
    text: str
    author: str | None
    language: str | None
    published: datetime
    updated: datetime | None
    date_fallback: str | None
    content_hash: str
    relevant: bool
    score: float
    mediators: tuple[str, ...]
    obstacles: tuple[str, ...]
    evidence_json: str  # the item's evidence column (``tracker.store.ingest.evidence_json``)


EntryKind = Literal["baseline", "item"]
DatePrecision = Literal["day", "month", "period"]


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One line of the status log: a baseline event from the seed or a relevant news item."""

    kind: EntryKind
    id: str  # "b:<slug>" for baseline events, "i:<item id>" for items
    date: datetime  # UTC, tz-aware; for coarse dates, the first day of the period
    date_precision: DatePrecision
    date_label: str  # how a person would say it: "24 February 2022", "mid-2023"
    title: str
    summary: str
    link: str | None = None
    sources: tuple[str, ...] = ()  # feed names (items) or "seed" (baseline)
    mediators: tuple[str, ...] = ()
    obstacles: tuple[str, ...] = ()
    evidence: tuple[Evidence, ...] = ()
    score: float = 0.0
    language: str | None = None
