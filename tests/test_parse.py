"""The parse-and-clean stage: formats, mojibake, sanitizing, canonical links, dates, dedup keys."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from tracker.parse import canonical_url, parse_feed, repair

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
URL = "https://news.example.org/feeds/europe.xml"


def rss(items: str, extra: str = "") -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Example</title>'
        f"<link>https://news.example.org/</link>{extra}{items}</channel></rss>"
    ).encode()


def test_rss_atom_rdf_json() -> None:
    r = parse_feed(rss("<item><title>One</title><guid>a1</guid><link>/a/1</link></item>"), url=URL, now=NOW)
    atom = b"""<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>A</title>
      <entry><id>urn:x:1</id><title>Atom entry</title><link href="https://a.example/x"/>
      <updated>2026-11-19T10:00:00+02:00</updated>
      <content type="html">&lt;p&gt;Body&lt;/p&gt;</content></entry></feed>"""
    rdf = b"""<?xml version="1.0"?><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
      xmlns="http://purl.org/rss/1.0/"><channel rdf:about="https://r.example/"><title>R</title></channel>
      <item rdf:about="https://r.example/1"><title>RDF item</title><link>https://r.example/1</link></item></rdf:RDF>"""
    jf = json.dumps(
        {
            "version": "https://jsonfeed.org/version/1.1",
            "title": "J",
            "items": [{"id": "j1", "url": "https://j.example/1", "title": "JSON item", "content_text": "Hi"}],
        }
    ).encode()
    a = parse_feed(atom, url=URL, now=NOW)
    d = parse_feed(rdf, url=URL, now=NOW)
    j = parse_feed(jf, url=URL, headers={"Content-Type": "application/feed+json"}, now=NOW)
    assert [e.title for e in r.entries] == ["One"]
    assert r.entries[0].link == "https://news.example.org/a/1"  # relative link resolved
    assert a.entries[0].published == datetime(2026, 11, 19, 8, 0, tzinfo=UTC)  # to UTC
    assert a.entries[0].content_html == "<p>Body</p>"
    assert d.entries[0].title == "RDF item"
    assert j.entries[0].title == "JSON item" and j.entries[0].link == "https://j.example/1"


def test_seed_mojibake_is_repaired() -> None:
    assert repair("President ErdoÄźan") == "President Erdoğan"
    assert repair("AntĂłnio Guterres") == "António Guterres"
    assert repair("cafÃ© in Zürich") == "café in Zürich"
    assert repair("Москва и Київ") == "Москва и Київ"  # clean text is left alone
    feed = parse_feed(
        rss("<item><title>ErdoÄźan meets AntĂłnio Guterres</title><guid>m</guid></item>"), url=URL, now=NOW
    )
    assert feed.entries[0].title == "Erdoğan meets António Guterres"


def test_html_is_sanitized_and_text_kept() -> None:
    body = (
        '&lt;p onclick="steal()"&gt;Talks &lt;b&gt;resume&lt;/b&gt;&lt;script&gt;alert(1)&lt;/script&gt;'
        '&lt;a href="javascript:alert(2)"&gt;x&lt;/a&gt;&lt;iframe src="https://evil"&gt;&lt;/iframe&gt;'
        '&lt;img src="/i.png" onerror="x()"&gt;&lt;style&gt;body{}&lt;/style&gt;&lt;/p&gt;'
    )
    e = parse_feed(
        rss(f"<item><title>T</title><guid>s</guid><description>{body}</description></item>"), url=URL, now=NOW
    ).entries[0]
    html = e.content_html.lower()
    for bad in ("<script", "onclick", "onerror", "javascript:", "<iframe", "<style", "alert(1)"):
        assert bad not in html, bad
    assert "<b>resume</b>" in e.content_html
    assert 'src="https://news.example.org/i.png"' in e.content_html
    assert e.summary.startswith("Talks resume")
    assert "alert" not in e.text


def test_canonical_links() -> None:
    assert canonical_url("HTTPS://News.Example.org:443/a?utm_source=rss&id=3&fbclid=x#top") == (
        "https://news.example.org/a?id=3"
    )
    assert canonical_url("../b?ref=home", "http://example.org/x/y") == "http://example.org/b"
    assert canonical_url("javascript:alert(1)") is None
    assert canonical_url("mailto:a@b.c") is None


def test_dates_missing_and_future_fall_back_to_now() -> None:
    future = (NOW + timedelta(days=3)).strftime("%a, %d %b %Y %H:%M:%S +0000")
    feed = parse_feed(
        rss(
            "<item><title>No date</title><guid>1</guid></item>"
            f"<item><title>Future</title><guid>2</guid><pubDate>{future}</pubDate></item>"
            "<item><title>Kyiv time</title><guid>3</guid><pubDate>Wed, 19 Nov 2026 09:00:00 +0200</pubDate></item>"
        ),
        url=URL,
        now=NOW,
    )
    nodate, fut, kyiv = feed.entries
    assert (nodate.published, nodate.date_fallback) == (NOW, "missing")
    assert (fut.published, fut.date_fallback) == (NOW, "future")
    assert kyiv.published == datetime(2026, 11, 19, 7, 0, tzinfo=UTC) and kyiv.date_fallback is None


def test_dedup_key_precedence_and_content_hash() -> None:
    feed = parse_feed(
        rss(
            "<item><title>A</title><guid isPermaLink='false'>g-1</guid><link>https://x.org/1</link></item>"
            "<item><title>B</title><link>https://x.org/2?utm_medium=rss</link></item>"
            "<item><title>C</title><description>only text</description></item>"
        ),
        url=URL,
        now=NOW,
    )
    a, b, c = feed.entries
    assert a.dedup_key == "guid:g-1"
    assert b.dedup_key == "link:https://x.org/2"
    assert c.dedup_key.startswith("hash:")
    changed = parse_feed(rss("<item><title>A2</title><guid isPermaLink='false'>g-1</guid></item>"), url=URL, now=NOW)
    assert changed.entries[0].dedup_key == a.dedup_key and changed.entries[0].content_hash != a.content_hash


def test_wrongly_declared_encoding_is_read_correctly() -> None:
    doc = (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
        "<item><title>Переговоры в Стамбуле: Украина и Россия</title><guid>e</guid></item></channel></rss>"
    ).encode("windows-1251")
    feed = parse_feed(doc, url=URL, headers={"content-type": "application/rss+xml; charset=utf-8"}, now=NOW)
    assert feed.entries[0].title == "Переговоры в Стамбуле: Украина и Россия"


def test_not_a_feed_and_broken_documents_are_errors_not_crashes() -> None:
    page = parse_feed(
        b"<!DOCTYPE html><html><body>Hello</body></html>", url=URL, headers={"content-type": "text/html"}, now=NOW
    )
    assert page.error == "not a feed: an HTML page" and page.entries == ()
    assert parse_feed(b"", url=URL, now=NOW).error == "empty document"
    garbage = parse_feed(b"\x00\xff\xfe<<<", url=URL, now=NOW)
    assert garbage.error and not garbage.entries
    recovered = parse_feed(
        b'<rss version="2.0"><channel><item><title>x &amp; y</title><guid>1</guid></item>', url=URL, now=NOW
    )
    assert recovered.entries and recovered.warning  # ill-formed but readable: kept, with the reason recorded


def test_ttl_and_language() -> None:
    feed = parse_feed(
        rss("<item><title>x</title><guid>1</guid></item>", "<ttl>45</ttl><language>uk-UA</language>"), url=URL, now=NOW
    )
    assert feed.ttl_minutes == 45
    assert feed.entries[0].language == "uk"
