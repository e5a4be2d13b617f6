"""The expat fast path (tracker.feedxml) against feedparser: same ParsedFeed wherever it accepts a document.

Differences accepted between the two paths: none.  Every comparison below is exact equality of the
whole ParsedFeed (title, link, language, ttl, warning, error and every field of every Entry).
"""

from __future__ import annotations

import calendar
import html
import random
import re
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock
from urllib.parse import urljoin

import feedparser
import nh3
import pytest
from feedfarm import FarmModel

from tracker import feedxml, parse
from tracker.models import ParsedFeed
from tracker.parse import parse_feed

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "feedparser-tests"
NOW = datetime(2026, 11, 20, tzinfo=UTC)
HEADER_SETS: tuple[dict[str, str], ...] = ({}, {"content-type": "application/rss+xml; charset=utf-8"})


def via_feedparser(content: bytes, url: str, headers: Mapping[str, str]) -> ParsedFeed:
    """parse_feed with the fast path switched off: what tracker produced before it existed."""
    with mock.patch.object(feedxml, "parse", lambda *a, **k: None):
        return parse_feed(content, url=url, headers=headers, now=NOW)


def both(content: bytes, url: str, headers: Mapping[str, str]) -> tuple[bool, ParsedFeed, ParsedFeed]:
    """(fast path taken, parse_feed as it runs, parse_feed through feedparser)."""
    taken = feedxml.parse(content, url=url, headers={k.lower(): v for k, v in headers.items()}) is not None
    return taken, parse_feed(content, url=url, headers=headers, now=NOW), via_feedparser(content, url, headers)


def first_difference(a: ParsedFeed, b: ParsedFeed) -> str:
    for name in ("title", "link", "language", "ttl_minutes", "error", "warning"):
        if getattr(a, name) != getattr(b, name):
            return f"{name}: {getattr(a, name)!r} != {getattr(b, name)!r}"
    if len(a.entries) != len(b.entries):
        return f"{len(a.entries)} entries != {len(b.entries)}"
    for i, (x, y) in enumerate(zip(a.entries, b.entries, strict=True)):
        for name in x.__slots__:
            if getattr(x, name) != getattr(y, name):
                return f"entry {i} {name}: {getattr(x, name)!r} != {getattr(y, name)!r}"
    return "?"


def corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        pytest.skip(f"feedparser corpus not found at {CORPUS} (expected ../shared beside the repo)")
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name != "LICENSE")


# --- the proof: every corpus file, both paths -----------------------------------------------------------
def test_corpus_fast_path_matches_feedparser() -> None:
    files = corpus_files()
    taken: Counter[str] = Counter()
    population: Counter[str] = Counter()
    mismatches: list[str] = []
    for path in files:
        content = path.read_bytes()
        url = "http://127.0.0.1/" + path.relative_to(CORPUS).as_posix()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            version = feedparser.parse(content, response_headers={"content-location": url}).get("version", "")
        population[version] += 1
        for i, headers in enumerate(HEADER_SETS):
            fast_taken, fast, slow = both(content, url, headers)
            if not fast_taken:
                continue
            taken[version if i == 0 else f"{version} (with Content-Type)"] += 1
            if fast != slow:
                mismatches.append(f"{path.relative_to(CORPUS)} headers={headers}: {first_difference(fast, slow)}")
    total = sum(v for k, v in taken.items() if "(" not in k)
    print(f"\nfast path taken for {total} of {len(files)} corpus files (without headers):")
    for version in sorted(population, key=lambda v: -population[v]):
        print(f"  {version or '(none)':10s} {taken[version]:4d} of {population[version]:4d}")
    assert mismatches == []
    # A good share of the well-formed RSS 2.0 and Atom 1.0 documents takes the fast path.
    assert taken["rss20"] >= 0.75 * population["rss20"]
    assert taken["atom10"] >= 0.8 * population["atom10"]
    assert total > 1400


def test_farm_feeds_take_the_fast_path_and_match() -> None:
    model = FarmModel(40, 30, 1.79e9, None)
    base = "http://127.0.0.1:8080"
    for i in range(40):
        content = model.render(i, base)
        for headers in HEADER_SETS:
            taken, fast, slow = both(content, f"{base}/feed/{i}.xml", headers)
            assert taken, i
            assert fast == slow, first_difference(fast, slow)
            assert len(fast.entries) == 30


# --- synthetic documents: the rules the corpus rarely reaches ---------------------------------------------
RSS_ITEM_PARTS = (
    "<title>Plain title</title>",
    "<title>AT&amp;amp;T &lt;b&gt;bold&lt;/b&gt; talks</title>",
    "<title>Tags &lt;/i&gt; that are not html &lt;blink&gt;</title>",
    '<title type="html">&lt;i&gt;typed&lt;/i&gt; title</title>',
    "<title>  spaced \n\t title  </title>",
    "<title>Ã©cole and Ã¼ber</title>",
    "<title>C1 \u0085 \u0093quoted\u0094</title>",
    "<title></title>",
    "<dc:title>Dublin Core title</dc:title>",
    "<media:title>Media title</media:title>",
    "<link>https://news.example.org/a/1?utm_source=rss&amp;id=7</link>",
    "<link>/relative/path?x=1&amp;amp;y=2</link>",
    "<link>https://news.example.org/q?a=1&amp;copy;=2&amp;b_2;</link>",
    "<link></link>",
    "<link>  HTTPS://News.Example.org:443/caps#frag  </link>",
    '<atom:link rel="alternate" href="https://alt.example.org/x"/>',
    '<atom:link rel="self" href="https://self.example.org/feed"/>',
    '<atom:link href="relative/alt"/>',
    "<guid>https://guid.example.org/1</guid>",
    '<guid isPermaLink="false">g-1</guid>',
    '<guid isPermaLink="true">rel/2</guid>',
    '<guid isPermaLink="False">g-3</guid>',
    "<guid>   </guid>",
    "<pubDate>Mon, 21 Sep 2026 10:13:19 GMT</pubDate>",
    "<pubDate>Tue, 22 Sep 2026 10:13:19 +0200</pubDate>",
    "<pubDate>22 Sep 2026 23:13:19 -0530</pubDate>",
    "<pubDate>Wed, 23 Sep 2026 10:13:19 EST</pubDate>",
    "<pubDate>Sat, 31 Feb 2026 10:00:00 GMT</pubDate>",
    "<pubDate>garbage</pubDate>",
    "<pubDate>Fri, 27 Nov 2026 10:00:00 GMT</pubDate>",
    "<dc:date>2026-09-21T10:13:19Z</dc:date>",
    "<dc:date>2026-09-21T10:13:19.987+02:00</dc:date>",
    "<dc:date>2026-09-21</dc:date>",
    "<lastBuildDate>Mon, 21 Sep 2026 11:00:00 GMT</lastBuildDate>",
    '<description>&lt;p onclick="x()"&gt;Hello &lt;a href="/rel?a=1&amp;amp;b=2"&gt;x&lt;/a&gt;&lt;/p&gt;'
    "</description>",
    '<description><![CDATA[<p>cdata <b>b</b> <img src="https://img.example.org/x.png"> '
    '<a href="https://a.example.org/p?q=1&amp;r=2#f">a</a></p>]]></description>',
    '<description><![CDATA[<p><a href="javascript:alert(1)">js</a> <a href="https://x.example.org/a b">sp</a>'
    "</p>]]></description>",
    "<description>plain text &amp;amp; more &#8212; text</description>",
    "<description></description>",
    "<media:description>Media description text</media:description>",
    "<content:encoded><![CDATA[<p>Full <em>content</em> here, longer than the rest of it all.</p>]]></content:encoded>",
    "<content:encoded>short</content:encoded>",
    "<itunes:summary>Podcast summary &lt;b&gt;x&lt;/b&gt;</itunes:summary>",
    "<author>john@example.com (John Doe)</author>",
    "<dc:creator>Jane Roe</dc:creator>",
    "<itunes:author>Pod Author</itunes:author>",
    "<language>fr-FR</language>",
    "<dc:language>de_AT</dc:language>",
    '<category domain="x">Politics</category>',
    '<enclosure url="https://e.example.org/x.mp3" type="audio/mpeg" length="1"/>',
    "<comments>https://c.example.org/1</comments>",
    '<media:content url="https://m.example.org/v.mp4"/>',
    '<media:thumbnail url="https://m.example.org/t.jpg"/>',
    "<media:group><media:title>Group title</media:title>"
    "<media:description>Group desc</media:description></media:group>",
    "<slash:comments>3</slash:comments>",
    '<source url="https://s.example.org/">Source name</source>',
    '<foo:wrap xmlns:foo="urn:foo"><dc:creator>Nested creator</dc:creator></foo:wrap>',
    '<foo:wrap xmlns:foo="urn:foo"><title>Nested title</title></foo:wrap>',
    '<foo:wrap xmlns:foo="urn:foo"><description>Nested description</description></foo:wrap>',
    '<foo:note xmlns:foo="urn:foo" a="1">attr</foo:note>',
    "<ttl>5</ttl>",
)
RSS_CHANNEL_PARTS = (
    "<title>Channel &amp;amp; title</title>",
    "<title>Second channel title</title>",
    "<link>https://site.example.org/</link>",
    "<link>/home</link>",
    "<link>https://site.example.org/?a=1&amp;amp;b=2&amp;c_1;</link>",
    '<atom:link rel="self" href="https://site.example.org/feed.xml"/>',
    '<atom:link rel="alternate" href="https://alt-site.example.org/"/>',
    "<language>uk-UA</language>",
    "<dc:language>pl</dc:language>",
    "<ttl>45</ttl>",
    "<ttl>soon</ttl>",
    '<ttl unit="m">30</ttl>',
    "<description>Channel description</description>",
    "<image><url>https://site.example.org/logo.png</url><title>Logo title</title><link>https://logo/</link></image>",
    "<textInput><title>Search</title><description>d</description><name>q</name><link>https://s/</link></textInput>",
    "<lastBuildDate>Mon, 21 Sep 2026 11:00:00 GMT</lastBuildDate>",
    "<managingEditor>ed@example.org (Ed)</managingEditor>",
    '<itunes:image href="https://site.example.org/pod.png"/>',
    "<itunes:owner><itunes:name>Owner</itunes:name><itunes:email>o@example.org</itunes:email></itunes:owner>",
    "<generator>gen</generator>",
    "<copyright>c</copyright>",
    "<content:encoded>channel-level content</content:encoded>",
)
ATOM_ENTRY_PARTS = (
    "<title>Atom title</title>",
    '<title type="html">&lt;b&gt;Bold&lt;/b&gt; atom</title>',
    '<title type="text">1 &lt; 2 &amp;amp; 3</title>',
    "<title>AT&amp;amp;T &lt;/b&gt;</title>",
    "<id>urn:uuid:1225c695-cfb8-4ebb-aaaa-80da344efa6a</id>",
    "<id>https://id.example.org/2</id>",
    "<id>relative-id</id>",
    '<link href="https://a.example.org/entry"/>',
    '<link rel="alternate" type="text/html" href="/rel/entry"/>',
    '<link rel="alternate" type="application/pdf" href="https://a.example.org/x.pdf"/>',
    '<link rel="enclosure" href="https://a.example.org/x.mp3"/>',
    '<link rel="related" href="https://a.example.org/related"/>',
    '<link href=""/>',
    "<published>2026-09-21T10:13:19Z</published>",
    "<published>2026-09-21T10:13:19-05:00</published>",
    "<updated>2026-09-22T10:13:19+01:00</updated>",
    "<updated>2026-13-45T99:99:99Z</updated>",
    "<issued>2026-09-20T10:00:00Z</issued>",
    "<modified>2026-09-23T10:00:00Z</modified>",
    "<summary>Plain summary</summary>",
    '<summary type="html">&lt;p&gt;HTML summary &lt;a href="x/y"&gt;rel&lt;/a&gt;&lt;/p&gt;</summary>',
    '<content type="html">&lt;p&gt;HTML content, a longer body than the summary is.&lt;/p&gt;</content>',
    '<content type="text">Text content &lt;not a tag&gt;</content>',
    '<content type="text/html" src="https://a.example.org/c"/>',
    "<content>default typed content</content>",
    "<author><name>Ann</name><email>ann@example.org</email></author>",
    "<author><name>Bob</name><uri>/bob</uri></author>",
    "<author><email>only@example.org</email></author>",
    "<author>Text author</author>",
    "<contributor><name>Con</name></contributor>",
    '<category term="x" label="X"/>',
    "<rights>r</rights>",
    "<source><title>Source feed</title><id>urn:source</id><author><name>Src</name></author></source>",
    "<dc:language>es</dc:language>",
    "<media:group><media:title>T</media:title><media:description>D</media:description></media:group>",
)
ATOM_FEED_PARTS = (
    "<title>Atom feed</title>",
    '<title type="html">&lt;b&gt;Atom&lt;/b&gt; feed</title>',
    "<id>https://feed.example.org/id</id>",
    "<id>urn:feed:1</id>",
    '<link href="https://feed.example.org/"/>',
    '<link rel="self" href="https://feed.example.org/atom.xml"/>',
    "<updated>2026-09-22T10:13:19Z</updated>",
    "<subtitle>sub</subtitle>",
    "<author><name>Feed Author</name></author>",
    "<summary>feed-level summary</summary>",
)
NAMESPACES = (
    'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:content="http://purl.org/rss/1.0/modules/content/" '
    'xmlns:media="http://search.yahoo.com/mrss/" xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd" '
    'xmlns:slash="http://purl.org/rss/1.0/modules/slash/"'
)


def _pick(rng: random.Random, parts: tuple[str, ...], low: int, high: int) -> str:
    return "".join(rng.choice(parts) for _ in range(rng.randint(low, high)))


def synthetic_documents(seed: int, count: int) -> Iterator[tuple[str, bytes]]:
    rng = random.Random(seed)
    for n in range(count):
        kind = rng.choice(("rss", "rss", "atom", "rdf"))
        lang = rng.choice(("", "", ' xml:lang="en-GB"', ' xml:lang=""'))
        if kind == "rss":
            items = "".join(f"<item>{_pick(rng, RSS_ITEM_PARTS, 1, 9)}</item>" for _ in range(rng.randint(0, 4)))
            body = (
                f'<rss version="2.0" {NAMESPACES} xmlns:atom="http://www.w3.org/2005/Atom"{lang}><channel>'
                f"{_pick(rng, RSS_CHANNEL_PARTS, 0, 6)}{items}{_pick(rng, RSS_CHANNEL_PARTS, 0, 2)}</channel></rss>"
            )
        elif kind == "atom":
            entry_langs = ("", ' xml:lang="fr"')
            entries = "".join(
                f"<entry{rng.choice(entry_langs)}>{_pick(rng, ATOM_ENTRY_PARTS, 1, 9)}</entry>"
                for _ in range(rng.randint(0, 4))
            )
            body = (
                f'<feed xmlns="http://www.w3.org/2005/Atom" {NAMESPACES}{lang}>'
                f"{_pick(rng, ATOM_FEED_PARTS, 0, 5)}{entries}</feed>"
            )
        else:
            items = "".join(
                f'<item rdf:about="https://r.example.org/{k}">{_pick(rng, RSS_ITEM_PARTS[:30], 1, 6)}</item>'
                for k in range(rng.randint(0, 3))
            )
            body = (
                '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/" '
                f'{NAMESPACES}><channel rdf:about="https://r.example.org/">{_pick(rng, RSS_CHANNEL_PARTS[:9], 0, 4)}'
                f'<items><rdf:Seq><rdf:li rdf:resource="https://r.example.org/0"/></rdf:Seq></items></channel>'
                f"{items}</rdf:RDF>"
            )
        decl = rng.choice(('<?xml version="1.0" encoding="utf-8"?>\n', '<?xml version="1.0"?>', ""))
        yield f"synthetic {kind} #{n}", (decl + body).encode()


def test_synthetic_documents_match_feedparser() -> None:
    header_sets = (
        *HEADER_SETS,
        {"Content-Type": "application/atom+xml", "Content-Language": "pt_BR"},
        {"content-type": "text/xml"},
    )
    accepted = 0
    total = 0
    mismatches = []
    for name, content in synthetic_documents(seed=20261120, count=700):
        headers = header_sets[total % len(header_sets)]
        total += 1
        taken, fast, slow = both(content, "https://feeds.example.org/path/feed.xml", headers)
        accepted += taken
        if fast != slow:
            mismatches.append(f"{name} {headers}: {first_difference(fast, slow)}\n{content.decode()}")
    print(f"\nfast path taken for {accepted} of {total} synthetic documents")
    assert mismatches[:3] == []
    assert accepted > 0.6 * total


# --- hostile documents: refused before anything is expanded or fetched ----------------------------------
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE rss [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<rss version="2.0"><channel><title>&lol9;</title><item><title>&lol9;</title><guid>1</guid></item></channel></rss>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd"><!ENTITY web SYSTEM "http://127.0.0.1:9/x">]>
<rss version="2.0"><channel><title>t</title><item><title>&xxe;&web;</title><guid>1</guid></item></channel></rss>"""
PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE rss [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/evil.dtd"> %remote;]>
<rss version="2.0"><channel><item><title>x</title><guid>1</guid></item></channel></rss>"""
QUADRATIC = (
    b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "' + b"x" * 50_000 + b'">]>'
    b'<rss version="2.0"><channel><item><title>' + b"&a;" * 2_000 + b"</title><guid>1</guid></item></channel></rss>"
)
PLAIN_DOCTYPE = b"""<?xml version="1.0"?><!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN"
 "http://my.netscape.com/publish/formats/rss-0.91.dtd">
<rss version="0.91"><channel><title>t</title><item><title>x</title><link>https://x.example.org/</link></item></channel></rss>"""
UNDECLARED_ENTITY = b'<rss version="2.0"><channel><item><title>&nbsp;&lol;</title><guid>1</guid></item></channel></rss>'


@pytest.mark.parametrize(
    "doc",
    [BILLION_LAUGHS, EXTERNAL_ENTITY, PARAMETER_ENTITY, QUADRATIC, PLAIN_DOCTYPE, UNDECLARED_ENTITY],
    ids=["billion-laughs", "external-entity", "parameter-entity", "quadratic-blowup", "doctype", "undeclared-entity"],
)
def test_hostile_documents_fall_back_without_expansion(doc: bytes) -> None:
    started = time.process_time()
    assert feedxml.parse(doc, url="https://evil.example.org/feed", headers={}) is None
    assert time.process_time() - started < 0.05  # refused at the DOCTYPE, nothing expanded
    opened: list[object] = []
    with mock.patch("urllib.request.urlopen", side_effect=lambda *a, **k: opened.append(a)):
        parsed = parse_feed(doc, url="https://evil.example.org/feed", headers={}, now=NOW)  # feedparser's path
    assert opened == []
    for text in [parsed.title or "", *(e.title + e.text for e in parsed.entries)]:
        assert "lollollol" not in text and "root:" not in text and "x" * 1000 not in text


def test_refusals_are_what_feedparser_reads_differently() -> None:
    """A few shapes the fast path leaves to feedparser (each is also in the corpus)."""
    refused = {
        "xml:base": b'<rss version="2.0" xml:base="https://b.example/"><channel><item><link>a</link></item></channel></rss>',
        "xhtml": b'<feed xmlns="http://www.w3.org/2005/Atom"><entry><content type="xhtml">'
        b'<div xmlns="http://www.w3.org/1999/xhtml"><p>x</p></div></content></entry></feed>',
        "markup in text": b'<rss version="2.0"><channel><item><description><p>x</p></description></item>'
        b"</channel></rss>",
        "not a feed": b"<html><body>hi</body></html>",
        "ill-formed": b'<rss version="2.0"><channel><item><title>x</title></channel></rss>',
        "overridden encoding": '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Привет'
        "</title></channel></rss>".encode("windows-1251"),
    }
    for name, doc in refused.items():
        assert feedxml.parse(doc, url="https://x.example.org/f", headers={}) is None, name


# --- the shared normaliser's shortcuts equal what they replace -----------------------------------------------
def test_dates_equal_feedparsers_parser() -> None:
    rng = random.Random(7)
    samples = [
        "Mon, 21 Sep 2026 10:13:19 GMT",
        "Thu, 01 Jan 1970 00:00:00 GMT",
        "Sun, 31 Dec 9998 23:59:59 -1200",
        "Mon, 1 Mar 2027 00:00:00 +1400",
        "29 Feb 2028 12:00:00 UT",
        "Tue, 29 Feb 2027 12:00:00 Z",
        "Wed, 30 Sep 2026 24:00:00 UTC",
        "2026-09-21T10:13:19Z",
        "2026-09-21T10:13:19.999999+05:45",
        "2026-09-21T23:59:60Z",
        "1969-12-31T23:59:59-01:00",
        "0001-01-01T00:00:00+01:00",
    ]
    days = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    months = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    for _ in range(3000):
        y, mo, d = rng.randint(1960, 2200), rng.randint(1, 12), rng.randint(1, 31)
        hh, mm, ss = rng.randint(0, 24), rng.randint(0, 59), rng.randint(0, 60)
        offset = f"{rng.choice('+-')}{rng.randint(0, 14):02d}{rng.randint(0, 59):02d}"
        tz = rng.choice(("GMT", "UTC", "UT", "Z", offset))
        day = rng.choice((f"{rng.choice(days)}, ", ""))
        samples.append(f"{day}{d:0{rng.choice((1, 2))}d} {months[mo - 1]} {y} {hh:02d}:{mm:02d}:{ss:02d} {tz}")
        frac = rng.choice(("", ".5", ".123456"))
        iso_tz = rng.choice(("Z", f"{rng.choice('+-')}{rng.randint(0, 14):02d}:{rng.randint(0, 59):02d}"))
        samples.append(f"{y:04d}-{mo:02d}-{d:02d}T{hh:02d}:{mm:02d}:{ss:02d}{frac}{iso_tz}")
    for value in samples:
        expected = feedxml.struct_to_datetime(feedparser.datetimes._parse_date(value))
        assert feedxml.parse_date(value) == expected, value


URL_ATTR = re.compile(r'(href|src)="([^"]*)"')


def _rewrite_reference(cleaned: str, base: str) -> str:
    """sanitize()'s link rewrite as it was, applied unconditionally."""
    return URL_ATTR.sub(lambda m: f'{m.group(1)}="{html.escape(urljoin(base, html.unescape(m.group(2))))}"', cleaned)


def _canonical_reference(url: str | None, base: str | None = None) -> str | None:
    """canonical_url() as it was, without its shortcuts."""
    if not url:
        return None
    url = url.strip()
    if base:
        url = urljoin(base, url)
    try:
        parts = parse.urlsplit(url)
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    port = parts.port if parts.port not in (None, 80 if scheme == "http" else 443) else None
    netloc = f"{host}:{port}" if port else host
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    query = parts.query
    if query:
        kept = [(k, v) for k, v in parse.parse_qsl(query, keep_blank_values=True) if not parse.TRACKING_PARAMS.match(k)]
        query = parse.urlencode(kept)
    return parse.urlunsplit((scheme, netloc, parts.path or "/", query, ""))


URLS = (
    "https://news.example.org/a/b-c?x=1&amp;y=2#frag",
    "http://news.example.org/a;params?x",
    "https://news.example.org/a?",
    "https://news.example.org/a#",
    "https://news.example.org:8443/a%20b/é?q=ü",
    "https://News.Example.org/CAPS",
    "HTTPS://upper.example.org/",
    "https://user:pw@example.org/x",
    "https://[::1]/x",
    "https://[::1/x",
    "http:///triple.example.org/x",
    "https://example.org/a b",
    "https://example.org/a\tb",
    "https://example.org/x?utm_source=rss&amp;id=3&amp;fbclid=z",
    "https://example.org/x?a=&lt;b&gt;",
    "https://example.org/x?a=&nbsp;",
    "https://example.org/x?a='q'",
    "/relative/path",
    "relative",
    "//proto.example.org/rel",
    "mailto:a@example.org",
    "javascript:alert(1)",
    "ftp://files.example.org/x",
    "https://example.org:99999/x",
    "",
)
BASES = ("https://feeds.example.org/path/feed.xml", "http://feeds.example.org/", "https://[::1/bad", "urn:x:y")


def test_link_rewrite_shortcut_is_exact() -> None:
    for base in BASES:
        for value in URLS:
            for attr in ("href", "src"):
                cleaned = f'<a {attr}="{value}">x</a> text with {attr}="{value}" in it'
                try:
                    expected: str | type[Exception] = _rewrite_reference(cleaned, base)
                except ValueError:
                    expected = ValueError
                if parse._rewrite_changes(cleaned, base):
                    continue  # the rewrite runs as before
                assert expected == cleaned, (base, value)


def test_canonical_url_shortcuts_are_exact() -> None:
    for base in (None, *BASES):
        for value in (*URLS, *(html.unescape(u) for u in URLS), " https://pad.example.org/x ", "https://a.example.org"):
            try:
                expected: str | type[Exception] | None = _canonical_reference(value, base)
            except ValueError:
                expected = ValueError
            try:
                got: str | type[Exception] | None = parse.canonical_url(value, base)
            except ValueError:
                got = ValueError
            assert got == expected, (value, base)


def test_squash_and_cleaner_equal_what_they_replace() -> None:
    rng = random.Random(3)
    spaces = [c for c in map(chr, range(0x3001)) if c.isspace()]
    for _ in range(5000):
        text = "".join(rng.choice([*spaces, "a", "b", " ", "<", "é"]) for _ in range(rng.randint(0, 20)))
        assert parse.squash(text) == re.sub(r"\s+", " ", text).strip(), repr(text)
    fragments = [p.read_text("utf-8", "replace") for p in corpus_files() if "sanitize" in p.parts][:400]
    for fragment in fragments:
        assert parse._CLEANER.clean(fragment) == nh3.clean(
            fragment,
            tags=parse.ALLOWED_TAGS,
            attributes=parse.ALLOWED_ATTRIBUTES,
            url_schemes=parse.URL_SCHEMES,
            link_rel="noopener noreferrer nofollow",
            strip_comments=True,
        )


def test_an_unreadable_entry_is_counted_not_fatal() -> None:
    good = feedparser.FeedParserDict(title="ok", id="1")
    d = feedparser.FeedParserDict(feed=feedparser.FeedParserDict(), entries=[good, object()], version="rss20", bozo=0)
    with (
        mock.patch.object(feedxml, "parse", lambda *a, **k: None),
        mock.patch.object(feedparser, "parse", lambda *a, **k: d),
    ):
        parsed = parse_feed(b"<rss/>", url="https://x.example.org/f", headers={}, now=NOW)
    assert [e.title for e in parsed.entries] == ["ok"]
    assert parsed.warning == "1 entries could not be read"


def test_struct_to_datetime_matches_timegm() -> None:
    when = datetime(2026, 9, 21, 10, 13, 19, tzinfo=UTC)
    assert feedxml.struct_to_datetime(when.utctimetuple()) == when
    assert calendar.timegm(when.utctimetuple()) == when.timestamp()
    assert feedxml.struct_to_datetime(None) is None
    assert feedxml.parse_date("Mon, 21 Sep 2026 12:13:19 +0200") == when + timedelta(hours=0)
