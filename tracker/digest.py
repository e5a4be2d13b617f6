"""Digest emails, the pure half: when a digest is due, what goes in it, and how it reads.

Nothing here touches the database, the network or the clock: ``now`` and the entries are
parameters, so every decision (periods, clustering, ordering, escaping, headers) is unit-tested
without I/O.  ``tracker.mailer`` does the I/O: it reads the items, calls these functions, writes
the outbox and talks SMTP.

The flow is::

    due_period(schedule, watermark, now) -> (start, end)      # one catch-up period, never a backlog
    build_digest(spec, entries, ...)     -> Digest             # sections, clustered stories
    render_digest(digest)                -> (subject, text, html)
    build_message(digest, ...)           -> EmailMessage       # multipart/alternative, safe headers
"""

from __future__ import annotations

import hashlib
import re
import textwrap
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr
from functools import cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from tracker.models import TimelineEntry

TEMPLATES = Path(__file__).parent / "templates"
SIMILARITY = 0.6  # Jaccard on normalised title tokens at or above which two titles are one story
FIRST_PERIOD = timedelta(hours=24)  # a recipient's first digest looks back at least this far
MAX_SUBJECT = 150
MAX_ALSO = 4  # outlets named after "also reported by N outlets"; the rest are counted


# --- configuration, as the pure core sees it ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class DigestFilter:
    """Which relevant items a digest carries; empty lists mean "any"."""

    mediators: tuple[str, ...] = ()
    obstacles: tuple[str, ...] = ()  # with mediators: an item matching either list is in
    feeds: tuple[str, ...] = ()  # feed names (or URLs as written in feeds.yaml)
    min_score: float = 0.0


@dataclass(frozen=True, slots=True)
class DigestSpec:
    """One configured digest (``digests:`` in feeds.yaml), decoupled from the pydantic model."""

    name: str
    recipients: tuple[str, ...]
    schedule: str = "0 7 * * *"  # crontab: minute hour day month weekday
    timezone: str = "UTC"
    filter: DigestFilter = field(default_factory=DigestFilter)
    send_empty: bool = False
    title: str | None = None  # shown in the subject and heading; defaults to the name

    @property
    def heading(self) -> str:
        return self.title or f"Ukraine peace digest ({self.name})"


def spec_from_config(cfg: Any) -> DigestSpec:
    """Read a ``digests:`` entry (pydantic model or mapping) into a DigestSpec."""

    def get(obj: Any, key: str, default: Any = None) -> Any:
        if isinstance(obj, Mapping):
            return obj.get(key, default)
        return getattr(obj, key, default)

    flt = get(cfg, "filter") or {}
    tz = get(cfg, "timezone") or "UTC"
    return DigestSpec(
        name=str(get(cfg, "name")),
        recipients=tuple(str(r) for r in get(cfg, "recipients") or ()),
        schedule=str(get(cfg, "schedule") or "0 7 * * *"),
        timezone=str(getattr(tz, "key", tz)),
        filter=DigestFilter(
            mediators=tuple(get(flt, "mediators") or ()),
            obstacles=tuple(get(flt, "obstacles") or ()),
            feeds=tuple(str(f) for f in get(flt, "feeds") or ()),
            min_score=float(get(flt, "min_score") or 0.0),
        ),
        send_empty=bool(get(cfg, "send_empty") or False),
        title=get(cfg, "title"),
    )


# --- when a digest is due -----------------------------------------------------------------------


@cache
def _trigger(schedule: str, timezone: str) -> CronTrigger:
    return CronTrigger.from_crontab(schedule, timezone=ZoneInfo(timezone))


# Windows searched backwards for the latest fire time: the first window holding a fire is small
# compared with the schedule's own period, so the forward walk inside it is short.
_WINDOWS = (
    timedelta(minutes=2),
    timedelta(hours=2),
    timedelta(days=2),
    timedelta(days=9),
    timedelta(days=63),
    timedelta(days=400),
    timedelta(days=5 * 366),
)


def fires_between(schedule: str, timezone: str, after: datetime, until: datetime) -> list[datetime]:
    """Scheduled fire times t with after < t <= until, in UTC (bounded walk)."""
    trig = _trigger(schedule, timezone)
    out: list[datetime] = []
    t = trig.get_next_fire_time(None, after)
    while t is not None and t <= until:
        if t > after:
            out.append(t.astimezone(after.tzinfo))
        t = trig.get_next_fire_time(t, t)
    return out


def last_fire(schedule: str, timezone: str, now: datetime) -> datetime | None:
    """The latest scheduled fire time at or before ``now`` (None if none in five years)."""
    for window in _WINDOWS:
        fires = fires_between(schedule, timezone, now - window, now)
        if fires:
            return fires[-1]
    return None


def next_fire(schedule: str, timezone: str, now: datetime) -> datetime | None:
    t = _trigger(schedule, timezone).get_next_fire_time(None, now + timedelta(microseconds=1))
    return None if t is None else t.astimezone(now.tzinfo)


def first_period_start(schedule: str, timezone: str, end: datetime) -> datetime:
    """A recipient's first digest covers one schedule period, and at least the last 24 hours."""
    before = last_fire(schedule, timezone, end - timedelta(microseconds=1))
    start = end - FIRST_PERIOD
    return min(before, start) if before is not None else start


def due_period(
    schedule: str, timezone: str, watermark: datetime | None, now: datetime
) -> tuple[datetime, datetime] | None:
    """The period a digest should now cover, or None if it is not due.

    The period ends at the latest scheduled time <= now and starts at the watermark (the end of
    the previous digest), so periods missed while the daemon was down become one catch-up digest,
    not one per missed period.
    """
    end = last_fire(schedule, timezone, now)
    if end is None:
        return None
    if watermark is None:
        return first_period_start(schedule, timezone, end), end
    if watermark >= end:
        return None
    return watermark, end


# --- near-duplicates ----------------------------------------------------------------------------

_STOPWORD_TEXT = """
a an the and or but of to in on at for from by with as is are was were be been has have had it its
this that these those into over after before about amid says said say will would could can may might
new not no than then there their they he she his her we our you your i up out more most also just
"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def title_tokens(title: str) -> frozenset[str]:
    """Normalised word set of a title: case, accents, punctuation, plurals and stopwords ignored."""
    folded = unicodedata.normalize("NFKD", title.casefold())
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    words = []
    for w in _WORD.findall(folded):
        if w in _STOPWORDS or (len(w) == 1 and not w.isdigit()):
            continue
        if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        words.append(w)
    return frozenset(words)


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


@dataclass(frozen=True, slots=True)
class Story:
    """One piece of news: the lead entry plus near-duplicate reports of it by other outlets."""

    lead: TimelineEntry
    others: tuple[TimelineEntry, ...] = ()

    @property
    def entries(self) -> tuple[TimelineEntry, ...]:
        return (self.lead, *self.others)

    @property
    def outlets(self) -> tuple[str, ...]:
        """Distinct outlets that carried the story, lead's own first."""
        seen: dict[str, None] = {}
        for e in self.entries:
            for s in e.sources:
                seen.setdefault(s, None)
        return tuple(seen)

    @property
    def also(self) -> tuple[str, ...]:
        """Outlets other than the one the lead is shown from ("also reported by ..."), by name so the
        same story always reads the same."""
        first = self.lead.sources[0] if self.lead.sources else None
        return tuple(sorted(s for s in self.outlets if s != first))

    @property
    def importance(self) -> int:
        return len(self.outlets)

    @property
    def mediators(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(m for e in self.entries for m in e.mediators))

    @property
    def obstacles(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(o for e in self.entries for o in e.obstacles))

    @property
    def evidence(self) -> tuple[str, ...]:
        """The distinct phrases that made the tagger decide (context terms left out)."""
        seen: dict[str, str] = {}
        for e in self.entries:
            for ev in e.evidence:
                if ev.kind != "context":
                    seen.setdefault(ev.phrase.casefold(), ev.phrase)
        return tuple(seen.values())


def _rank(entry: TimelineEntry) -> tuple[int, float, float, str]:
    return (-len(entry.sources), -entry.score, -entry.date.timestamp(), entry.id)


def cluster(entries: Iterable[TimelineEntry], threshold: float = SIMILARITY) -> list[Story]:
    """Group near-duplicate titles into stories, most important first.

    Greedy single pass in importance order: an entry joins the first story any of whose members
    is similar enough, so the lead of each story is its most widely carried report.
    """
    ordered = sorted(entries, key=_rank)
    groups: list[list[tuple[TimelineEntry, frozenset[str]]]] = []
    for e in ordered:
        toks = title_tokens(e.title)
        for g in groups:
            if any(jaccard(toks, t) >= threshold for _, t in g):
                g.append((e, toks))
                break
        else:
            groups.append([(e, toks)])
    stories = [Story(g[0][0], tuple(e for e, _ in g[1:])) for g in groups]
    return sorted(stories, key=lambda s: (-s.importance, *_rank(s.lead)[1:]))


# --- the digest ---------------------------------------------------------------------------------

SectionKind = Literal["mediator", "obstacle", "other"]


@dataclass(frozen=True, slots=True)
class Section:
    """A mediator or obstacle: its latest status, its new stories, and stories shown elsewhere."""

    kind: SectionKind
    key: str
    label: str
    status: str | None
    stories: tuple[Story, ...]
    see_also: tuple[tuple[Story, str], ...] = ()  # (story, label of the section showing it)


@dataclass(frozen=True, slots=True)
class Digest:
    spec: DigestSpec
    recipient: str
    period_start: datetime
    period_end: datetime
    sections: tuple[Section, ...]
    item_count: int
    story_count: int
    web_url: str | None = None
    unsubscribe: str | None = None  # mailto: or https: URL shown in the footer

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.spec.timezone)


def label_of(key: str, labels: Mapping[str, str]) -> str:
    return labels.get(key) or key.replace("_", " ").replace("-", " ").title()


def latest_by_tag(entries: Iterable[TimelineEntry]) -> dict[str, TimelineEntry]:
    """The newest entry that carries each mediator / obstacle key."""
    latest: dict[str, TimelineEntry] = {}
    for e in entries:
        for key in (*e.mediators, *e.obstacles):
            cur = latest.get(key)
            if cur is None or (e.date, e.score) > (cur.date, cur.score):
                latest[key] = e
    return latest


def status_line(new: int, prior: TimelineEntry | None, activity: int | None, tz: ZoneInfo | None = None) -> str:
    """Where a key stood: how busy it is, and what was last known before this digest's news."""
    parts = [f"{new} new"]
    if activity is not None:
        parts.append(f"{max(activity, new)} in the last 30 days")
    if prior is None:
        parts.append("nothing earlier on record")
    else:
        label = prior.date_label if prior.kind == "baseline" else _short_date(prior.date, tz)
        parts.append(f"before this digest ({label}): {prior.title}")
    return one_line(" · ".join(parts), 220)


def build_digest(
    spec: DigestSpec,
    recipient: str,
    entries: Sequence[TimelineEntry],
    *,
    period_start: datetime,
    period_end: datetime,
    labels: Mapping[str, str] | None = None,
    history: Sequence[TimelineEntry] = (),
    activity: Mapping[str, int] | None = None,
    statuses: Mapping[str, str] | None = None,
    web_url: str | None = None,
    unsubscribe: str | None = None,
) -> Digest:
    """Group the period's entries into sections, one per mediator and obstacle they carry.

    Sections come mediators first, then obstacles, each ordered by its most important story.  A
    story tagged with several keys is shown in full in the first of its sections and listed by
    title in the later ones, so nothing is read twice.

    Each section's status line says how many new entries it has, how many the key had in the last
    30 days (``activity``, key -> count, when given) and the newest earlier entry from ``history``
    (items before the period, baseline events): the news is read against what was known before.
    ``statuses`` (key -> line) overrides the computed line.
    """
    labels = labels or {}
    tz = ZoneInfo(spec.timezone)
    stories = cluster(entries)
    current = {e.id for e in entries}
    prior = latest_by_tag(e for e in history if e.id not in current and e.date <= period_end)

    buckets: dict[tuple[SectionKind, str], list[Story]] = {}
    for s in stories:
        keys: list[tuple[SectionKind, str]] = [("mediator", m) for m in s.mediators]
        keys += [("obstacle", o) for o in s.obstacles]
        for k in keys or [("other", "")]:
            buckets.setdefault(k, []).append(s)

    kind_order = {"mediator": 0, "obstacle": 1, "other": 2}

    def order(item: tuple[tuple[SectionKind, str], list[Story]]) -> tuple[int, int, str]:
        (kind, key), ss = item
        return (kind_order[kind], -max(x.importance for x in ss), label_of(key, labels).casefold())

    shown: dict[int, str] = {}
    sections: list[Section] = []
    for (kind, key), ss in sorted(buckets.items(), key=order):
        label = "Other news" if kind == "other" else label_of(key, labels)
        fresh = tuple(s for s in ss if id(s) not in shown)
        elsewhere = tuple((s, shown[id(s)]) for s in ss if id(s) in shown)
        for s in fresh:
            shown[id(s)] = label
        status = None
        if kind != "other":
            if statuses and key in statuses:
                status = one_line(statuses[key], 200)
            else:
                new = sum(1 for e in entries if key in (*e.mediators, *e.obstacles))
                count = activity.get(key, 0) if activity is not None else None
                status = status_line(new, prior.get(key), count, tz)
        sections.append(Section(kind, key, label, status, fresh, elsewhere))
    return Digest(
        spec=spec,
        recipient=recipient,
        period_start=period_start,
        period_end=period_end,
        sections=tuple(sections),
        item_count=len(entries),
        story_count=len(stories),
        web_url=web_url,
        unsubscribe=unsubscribe,
    )


# --- rendering ----------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def one_line(value: str, limit: int = MAX_SUBJECT) -> str:
    """Collapse control characters (CR, LF, tabs, NUL, line separators) and trim to ``limit``."""
    flat = " ".join(_CONTROL.sub(" ", value).split())
    if len(flat) <= limit:
        return flat
    return flat[: limit - 1].rstrip() + "…"


def safe_url(url: str | None) -> str | None:
    """Only http(s) links become links: a feed's ``javascript:`` or ``data:`` URL is dropped."""
    if not url:
        return None
    url = url.strip()
    if _CONTROL.search(url) or any(c in url for c in ' "<>\\'):
        return None
    parts = urlsplit(url)
    return url if parts.scheme in ("http", "https") and parts.netloc else None


def _short_date(when: datetime, tz: ZoneInfo | None) -> str:
    local = when.astimezone(tz) if tz else when
    return f"{local.day} {local:%b %Y}"


def _when(when: datetime, tz: ZoneInfo) -> str:
    local = when.astimezone(tz)
    return f"{local.day} {local:%b %Y, %H:%M}"


def period_label(digest: Digest) -> str:
    tz = digest.tz
    start, end = digest.period_start.astimezone(tz), digest.period_end.astimezone(tz)
    tail = f"{end.day} {end:%b %Y, %H:%M} ({digest.spec.timezone})"
    if start.date() == end.date():
        return f"{start:%H:%M} – {tail}"
    return f"{start.day} {start:%b %Y, %H:%M} – {tail}"


def _snippet(text: str, limit: int = 220) -> str:
    flat = one_line(text, 10_000)
    if len(flat) <= limit:
        return flat
    cut = flat[:limit].rsplit(" ", 1)[0].rstrip(",.;:")
    return cut + " …"


def subject_of(digest: Digest) -> str:
    """Subject: digest title, count and the top story's headline, one safe line."""
    top = next((sec.stories[0] for sec in _by_importance(digest) if sec.stories), None)
    head = one_line(digest.spec.heading, 60)
    if top is None:
        return one_line(f"{head} — no new entries")
    return one_line(f"{head} — {digest.item_count} new: {top.lead.title}")


def _by_importance(digest: Digest) -> list[Section]:
    return sorted(digest.sections, key=lambda s: -max((x.importance for x in s.stories), default=0))


@cache
def _env(html: bool) -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=html,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["wrap"] = _wrap
    return env


def _wrap(text: str, width: int = 76, indent: str = "") -> str:
    return "\n".join(
        textwrap.wrap(text, width, initial_indent=indent, subsequent_indent=indent, break_on_hyphens=False)
    )


def _story_view(story: Story, tz: ZoneInfo, labels: Mapping[str, str]) -> dict[str, Any]:
    lead = story.lead
    links: dict[str, str | None] = {s: safe_url(lead.link) for s in lead.sources}
    for e in story.others:
        for s in e.sources:
            links.setdefault(s, safe_url(e.link))
    also = [{"name": s, "link": links.get(s)} for s in story.also]
    return {
        "title": one_line(lead.title, 300),
        "link": safe_url(lead.link),
        "source": lead.sources[0] if lead.sources else "unknown source",
        "date": _when(lead.date, tz),
        "summary": _snippet(lead.summary) if lead.summary and lead.summary != lead.title else "",
        "evidence": [one_line(p, 60) for p in story.evidence[:6]],
        "also": also[:MAX_ALSO],
        "also_more": max(len(also) - MAX_ALSO, 0),
        "also_count": len(also),
        "tags": [label_of(k, labels) for k in (*story.mediators, *story.obstacles)],
    }


def render_digest(digest: Digest, *, labels: Mapping[str, str] | None = None) -> tuple[str, str, str]:
    """Render the subject, the text/plain body and the text/html body of a digest."""
    labels = labels or {}
    tz = digest.tz
    web = safe_url(digest.web_url)
    sections = [
        {
            "kind": sec.kind,
            "label": sec.label,
            "link": f"{web.rstrip('/')}/timeline?{sec.kind}={quote(sec.key)}" if web and sec.kind != "other" else None,
            "status": sec.status,
            "stories": [_story_view(s, tz, labels) for s in sec.stories],
            "see_also": [{"title": one_line(s.lead.title, 200), "where": w} for s, w in sec.see_also],
        }
        for sec in digest.sections
    ]
    ctx = {
        "heading": one_line(digest.spec.heading, 120),
        "name": digest.spec.name,
        "period": period_label(digest),
        "item_count": digest.item_count,
        "story_count": digest.story_count,
        "sections": sections,
        "web_url": web,
        "unsubscribe": digest.unsubscribe,
        "recipient": digest.recipient,
    }
    text = _env(False).get_template("digest.txt.j2").render(ctx)
    html = _env(True).get_template("digest.html.j2").render(ctx)
    return subject_of(digest), text, html


# --- the message --------------------------------------------------------------------------------


def slug(value: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", value.casefold()).strip("-")
    return s or "digest"


def mail_domain(sender: str) -> str:
    _, _, domain = sender.rpartition("@")
    domain = re.sub(r"[^A-Za-z0-9.-]", "", domain.strip().rstrip(">"))
    return domain or "tracker.invalid"


def message_id_for(digest: str, recipient: str, period_end: datetime, domain: str) -> str:
    """A Message-ID fixed by (digest, recipient, period): a re-send after a crash is recognisable."""
    who = hashlib.sha256(recipient.casefold().encode()).hexdigest()[:12]
    return f"<digest.{slug(digest)}.{period_end:%Y%m%dT%H%M%SZ}.{who}@{domain}>"


def unsubscribe_mailto(sender: str, digest: str) -> str:
    return f"mailto:{sender}?subject={quote('unsubscribe ' + slug(digest))}"


def build_message(
    digest: Digest,
    *,
    sender: str,
    date: datetime,
    subject: str | None = None,
    text: str | None = None,
    html: str | None = None,
    message_id: str | None = None,
    unsubscribe_url: str | None = None,
) -> EmailMessage:
    """A multipart/alternative message (text then HTML) with list headers.

    Every header value is passed through ``one_line`` (CR/LF stripped), and addresses through
    ``Address``; EmailMessage with policy=SMTP refuses a header value with a line break anyway,
    so a feed title can never add a header or a recipient.
    """
    if subject is None or text is None or html is None:
        subject, text, html = render_digest(digest)
    domain = mail_domain(sender)
    msg = EmailMessage(policy=SMTP)
    msg["Subject"] = one_line(subject)
    msg["From"] = _address(sender, display=one_line(digest.spec.heading, 60))
    msg["To"] = _address(digest.recipient)
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id or message_id_for(digest.spec.name, digest.recipient, digest.period_end, domain)
    list_name = one_line(digest.spec.heading, 60).replace('"', "'")
    msg["List-Id"] = f'"{list_name}" <{slug(digest.spec.name)}.digests.{domain}>'
    unsub = [f"<{unsubscribe_mailto(parseaddr(sender)[1] or sender, digest.spec.name)}>"]
    if unsubscribe_url and safe_url(unsubscribe_url):
        unsub.append(f"<{unsubscribe_url}>")
    msg["List-Unsubscribe"] = ", ".join(unsub)
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Tracker-Digest"] = slug(digest.spec.name)
    msg["X-Tracker-Period"] = f"{digest.period_start.isoformat()} {digest.period_end.isoformat()}"
    msg.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    return msg


def _address(value: str, display: str = "") -> Address:
    addr = one_line(value, 320)
    if "<" in addr and addr.endswith(">"):
        display, addr = addr[: addr.index("<")].strip().strip('"'), addr[addr.index("<") + 1 : -1]
    return Address(display_name=display, addr_spec=addr)
