"""The fetch stage against real HTTP servers on 127.0.0.1 (the feed farm, pytest-httpserver)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import ssl
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
import trustme
from feedfarm import FeedFarm
from pytest_httpserver import HTTPServer
from rawhttp import Served, replies, serve
from werkzeug import Response

from tracker.fetch import (
    Fetcher,
    FetchSettings,
    _plain_target,
    parse_max_age,
    parse_retry_after,
    shared_ssl_context,
)
from tracker.models import FeedRequest, FetchResult

FAST = FetchSettings(connect_timeout=2, read_timeout=2, total_timeout=5)


@pytest.fixture(scope="module")
def farm() -> Iterator[FeedFarm]:
    with FeedFarm(feeds=20, items=5) as f:
        yield f


def fetch(url: str, settings: FetchSettings = FAST, **kw: object) -> FetchResult:
    async def go() -> FetchResult:
        async with Fetcher(settings) as f:
            return await f.fetch(FeedRequest(7, url, **kw))  # type: ignore[arg-type]

    return asyncio.run(go())


# --- success and conditional GET -------------------------------------------------------------------


def test_ok_then_conditional_get_gets_304(farm: FeedFarm) -> None:
    url = farm.url(1)
    first = fetch(url)
    assert first.outcome == "ok" and first.status == 200
    assert first.content is not None and first.content.startswith(b"<?xml")
    assert all(guid.encode() in first.content for guid in farm.items(1))
    assert first.etag and first.last_modified
    assert first.headers["content-encoding"] == "gzip"  # asked for, and decoded
    assert all(k == k.lower() for k in first.headers)
    assert first.max_age == 60.0
    assert first.url == url and first.permanent_url is None and first.error is None
    sent = farm.last_headers("/feed/1.xml")
    assert "gzip" in sent["accept-encoding"] and sent["user-agent"].startswith("tracker/")
    assert "if-none-match" not in sent

    before = farm.stats()["not_modified"]
    second = fetch(url, etag=first.etag, last_modified=first.last_modified)
    sent = farm.last_headers("/feed/1.xml")
    assert sent["if-none-match"] == first.etag
    assert sent["if-modified-since"] == first.last_modified
    assert second.outcome == "not_modified" and second.status == 304
    assert second.content is None
    assert second.etag == first.etag and second.last_modified == first.last_modified
    assert farm.stats()["not_modified"] == before + 1


def test_304_without_content_length_keeps_the_connection() -> None:
    """Many servers send a 304 with no Content-Length; it has no body, so the connection is reused."""

    async def go() -> tuple[list[FetchResult], int]:
        not_modified = b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\n\r\n'
        async with serve(replies(Served(), not_modified, forever=True)) as server, Fetcher(FAST) as f:
            return [await f.fetch(FeedRequest(1, server.url, etag='"v1"')) for _ in range(3)], server.connections

    results, connections = asyncio.run(go())
    assert [r.outcome for r in results] == ["not_modified"] * 3
    assert connections == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/feed.xml",
        "https://example.org",
        "http://example.org:80/a/b?x=1&y=%20z",
        "https://news.example.org:8443/rss?topic=peace;talks&amp=1",
        "http://a.b-c.example/~user/feed.rss?q=a/b?c",
        "https://example.org:443/feeds/all.atom.xml",
    ],
)
def test_plain_urls_are_sent_as_httpx_would_send_them(url: str) -> None:
    plain = _plain_target(url)
    assert plain is not None
    key, host_header, target = plain
    u = httpx.URL(url)
    assert key == (u.scheme, u.host, u.port)
    assert host_header == u.netloc and target == u.raw_path


@pytest.mark.parametrize(
    "url",
    [
        "http://Example.org/feed",  # httpx lower-cases the host
        "http://example.org/a b",  # and quotes what RFC 3986 does not allow
        "http://example.org/a|b",
        "http://example.org/%zz",
        "http://example.org/feed#top",  # a fragment is not sent
        "http://example.org/a/../b",  # dot segments are removed
        "http://bücher.example/",  # IDNA
        "http://[::1]/feed",
        "http://example.org:99999/",
        "ftp://example.org/",
    ],
)
def test_other_urls_go_through_httpx(url: str) -> None:
    assert _plain_target(url) is None


def test_both_request_paths_send_and_read_alike() -> None:
    """A plain URL goes the fast path, the same URL with a fragment through httpx's objects: the same
    bytes on the wire, the same result from the same reply."""
    body = gzip.compress(b"<rss><channel><title>t</title></channel></rss>")
    reply = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml; charset=utf-8\r\nContent-Encoding: gzip\r\n"
        b'ETag: "v2"\r\nCache-Control: public, max-age=120\r\nX-Note: caf\xc3\xa9\r\nVary: Accept\r\n'
        b"Vary: Accept-Encoding\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )

    async def go() -> tuple[list[FetchResult], list[bytes]]:
        served = Served()
        async with serve(replies(served, reply, forever=True), "/feed.xml?lang=uk") as server, Fetcher(FAST) as f:
            results = [
                await f.fetch(FeedRequest(1, u, etag='"v1"', last_modified="Fri, 20 Nov 2026 11:00:00 GMT"))
                for u in (server.url, server.url + "#fragment")
            ]
            return results, served.heads

    (fast, slow), heads = asyncio.run(go())
    assert _plain_target(fast.url) is not None and _plain_target(slow.url) is None
    assert heads[0] == heads[1] and heads[0].startswith(b"GET /feed.xml?lang=uk HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b'\r\nIf-None-Match: "v1"\r\n' in heads[0]
    assert fast.content == slow.content == b"<rss><channel><title>t</title></channel></rss>"
    assert fast.headers == slow.headers and fast.headers["vary"] == "Accept, Accept-Encoding"
    assert fast.headers["x-note"] == "café"
    assert (fast.etag, fast.max_age, fast.status) == (slow.etag, slow.max_age, slow.status) == ('"v2"', 120.0, 200)


def test_last_modified_alone_gives_304(farm: FeedFarm) -> None:
    url = farm.url(2) + "?v=lm"
    first = fetch(url)
    assert first.etag is None and first.last_modified
    second = fetch(url, last_modified=first.last_modified)
    assert farm.last_headers("/feed/2.xml").get("if-none-match") is None
    assert second.outcome == "not_modified"


def test_changed_feed_is_fetched_again(farm: FeedFarm) -> None:
    import random

    first = fetch(farm.url(3))
    changed = farm.change(1.0, random.Random(5))
    assert 3 in changed
    again = fetch(farm.url(3), etag=first.etag, last_modified=first.last_modified)
    assert again.outcome == "ok" and again.etag != first.etag
    assert again.content is not None and farm.items(3)[0].encode() in again.content


def test_connections_are_kept_alive(farm: FeedFarm) -> None:
    async def go() -> int:
        async with Fetcher(FAST) as f:
            first = await f.fetch(FeedRequest(1, farm.url(4)))
            before = farm.stats()["connections"]
            for _ in range(10):
                r = await f.fetch(FeedRequest(1, farm.url(4), first.etag, first.last_modified))
                assert r.outcome == "not_modified"
            for i in range(5):
                assert (await f.fetch(FeedRequest(1, farm.url(i)))).outcome == "ok"
            return int(farm.stats()["connections"]) - before

    assert asyncio.run(go()) == 0  # 304s and 200s all reused the first connection


def test_idle_hosts_beyond_keepalive_hosts_are_closed() -> None:
    with FeedFarm(feeds=3, items=2, hosts=3) as farm:  # feed i lives on 127.0.0.{i + 1}

        async def go() -> list[int]:
            conns = []
            async with Fetcher(FetchSettings(keepalive_hosts=1)) as f:
                for i in (0, 1, 2, 2, 0):
                    assert (await f.fetch(FeedRequest(i, farm.url(i)))).outcome == "ok"
                    conns.append(int(farm.stats()["connections"]))
            return conns

        # host 2 twice in a row reuses its connection; host 0 was closed while idle, so reconnects
        assert asyncio.run(go()) == [1, 2, 3, 3, 4]


# --- redirects -------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [301, 308])
def test_permanent_redirect_sets_permanent_url(farm: FeedFarm, code: int) -> None:
    r = fetch(farm.url(0, f"/redirect/{code}/5"))
    assert r.outcome == "ok"
    assert r.url == r.permanent_url == farm.url(0, "/feed/5.xml")


@pytest.mark.parametrize("code", [302, 303, 307])
def test_temporary_redirect_keeps_url(farm: FeedFarm, code: int) -> None:
    r = fetch(farm.url(0, f"/redirect/{code}/5"))
    assert r.outcome == "ok" and r.url == farm.url(0, "/feed/5.xml")
    assert r.permanent_url is None


def test_chain_of_permanent_redirects(farm: FeedFarm) -> None:
    r = fetch(farm.url(0, "/chain/4?code=301"))
    assert r.outcome == "ok" and r.permanent_url == farm.url(0, "/feed/0.xml")


def test_mixed_chain_is_not_permanent(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/a").respond_with_response(Response(status=301, headers={"Location": "/b"}))
    httpserver.expect_request("/b").respond_with_response(Response(status=302, headers={"Location": "/c"}))
    httpserver.expect_request("/c").respond_with_data("<rss/>", content_type="application/rss+xml")
    r = fetch(httpserver.url_for("/a"))
    assert r.outcome == "ok" and r.content == b"<rss/>" and r.url == httpserver.url_for("/c")
    assert r.permanent_url is None


def test_redirect_loop(farm: FeedFarm) -> None:
    r = fetch(farm.url(0, "/loop/a"))
    assert r.outcome == "error" and r.error == "redirect loop"


def test_too_many_redirects(farm: FeedFarm) -> None:
    settings = FetchSettings(max_redirects=3)
    assert fetch(farm.url(0, "/chain/3"), settings).outcome == "ok"
    r = fetch(farm.url(0, "/chain/4"), settings)
    assert r.outcome == "error" and r.error is not None and r.error.startswith("too many redirects")


def test_conditional_headers_follow_redirects(farm: FeedFarm) -> None:
    first = fetch(farm.url(6))
    r = fetch(farm.url(0, "/redirect/301/6"), etag=first.etag)
    assert r.outcome == "not_modified" and r.permanent_url == farm.url(0, "/feed/6.xml")


# --- HTTP errors -------------------------------------------------------------------------------------


def test_410_is_gone(farm: FeedFarm) -> None:
    r = fetch(farm.url(0, "/gone"))
    assert r.outcome == "gone" and r.status == 410 and r.content is None


def test_429_with_retry_after_seconds(farm: FeedFarm) -> None:
    r = fetch(farm.url(0, "/status/429?retry_after=120"))
    assert (r.outcome, r.status, r.error, r.retry_after) == ("error", 429, "HTTP 429", 120.0)


def test_503_with_retry_after_date(httpserver: HTTPServer) -> None:
    now = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
    when = format_datetime(now + timedelta(seconds=90), usegmt=True)
    httpserver.expect_request("/f").respond_with_data("busy", status=503, headers={"Retry-After": when})

    async def go() -> FetchResult:
        async with Fetcher(FAST, clock=lambda: now) as f:
            return await f.fetch(FeedRequest(1, httpserver.url_for("/f")))

    r = asyncio.run(go())
    assert r.outcome == "error" and r.status == 503 and r.retry_after == 90.0


@pytest.mark.parametrize("code", [404, 500])
def test_other_statuses_are_errors(farm: FeedFarm, code: int) -> None:
    r = fetch(farm.url(0, f"/status/{code}?retry_after=50"))
    assert (r.outcome, r.status, r.error, r.retry_after) == ("error", code, f"HTTP {code}", None)


def test_connection_refused() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    r = fetch(f"http://127.0.0.1:{port}/feed.xml")
    assert r.outcome == "error" and r.status is None
    assert r.error == "connect error: Connection refused"


@contextlib.contextmanager
def tls_feed_server(ca: trustme.CA) -> Iterator[str]:
    """An https server on localhost with a certificate from ``ca``; yields the URL of a tiny feed."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    server = HTTPServer(host="localhost", port=0, ssl_context=server_ctx)
    server.expect_request("/f").respond_with_data("<feed/>")
    server.start()
    try:
        yield server.url_for("/f")
    finally:
        server.clear()
        server.stop()


def test_tls_context_is_loaded_only_for_https_and_errors_are_named(farm: FeedFarm) -> None:
    shared_ssl_context.cache_clear()
    assert fetch(farm.url(1)).outcome == "ok"
    assert shared_ssl_context.cache_info().currsize == 0  # ~20 ms of CPU an all-http cycle does not spend
    with tls_feed_server(trustme.CA()) as url:  # a CA the fetcher does not trust
        r = fetch(url)
    assert r.outcome == "error" and r.error is not None
    assert r.error.startswith("connect error: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    assert shared_ssl_context.cache_info().currsize == 1


def test_tls_trusts_the_ca_named_in_ssl_cert_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The TLS context is made without httpx, the way httpx makes it: SSL_CERT_FILE first, else certifi."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    shared_ssl_context.cache_clear()
    try:
        with tls_feed_server(ca) as url:
            r = fetch(url)
    finally:
        shared_ssl_context.cache_clear()
    assert r.outcome == "ok" and r.content == b"<feed/>", r.error


@pytest.mark.parametrize("url", ["ftp://example.org/feed", "not a url", "http:///nohost"])
def test_invalid_urls(url: str) -> None:
    r = fetch(url)
    assert r.outcome == "error" and r.error is not None and r.error.startswith("invalid URL")


def test_not_a_feed_is_still_ok_for_the_parser_to_judge(farm: FeedFarm) -> None:
    r = fetch(farm.url(0, "/html"))
    assert r.outcome == "ok" and r.content is not None and b"<html>" in r.content
    assert r.headers["content-type"].startswith("text/html")
    raw = fetch(farm.url(0, "/wrong-encoding"))
    assert raw.content is not None and "Переговоры".encode("windows-1251") in raw.content  # bytes untouched


# --- timeouts and limits -----------------------------------------------------------------------------


def test_read_timeout_before_headers(farm: FeedFarm) -> None:
    started = time.monotonic()
    r = fetch(farm.url(0, "/slow-headers?delay=3"), FetchSettings(read_timeout=0.3))
    assert r.outcome == "error" and r.error == "read timeout after 0.3s"
    assert time.monotonic() - started < 2


def test_read_timeout_mid_body(farm: FeedFarm) -> None:
    r = fetch(farm.url(0, "/slow-body?delay=3"), FetchSettings(read_timeout=0.3))
    assert r.outcome == "error" and r.error == "read timeout after 0.3s"


def test_slow_drip_hits_total_timeout(farm: FeedFarm) -> None:
    started = time.monotonic()
    r = fetch(farm.url(0, "/drip?every=0.05"), FetchSettings(read_timeout=0.5, total_timeout=1))
    elapsed = time.monotonic() - started
    assert r.outcome == "error" and r.error == "total timeout after 1s"
    assert 0.9 < elapsed < 3 and 0.9 < r.elapsed < 3


@pytest.mark.parametrize("length", ["1", "0"])
def test_oversized_body(farm: FeedFarm, length: str) -> None:
    settings = FetchSettings(max_body_bytes=1_000_000)
    ok = fetch(farm.url(0, f"/big?bytes=999999&length={length}"), settings)
    assert ok.outcome == "ok" and ok.content is not None and len(ok.content) == 999_999
    r = fetch(farm.url(0, f"/big?bytes=1000001&length={length}"), settings)
    assert r.outcome == "error" and r.error == "body exceeds 1000000 bytes" and r.content is None


@pytest.mark.slow
def test_gzip_bomb_is_stopped_early_in_bounded_memory() -> None:
    limit = 4 * 1024 * 1024
    with FeedFarm(feeds=1, items=1, process=True) as bomb:  # server in its own process: measure only us
        tracemalloc.start()
        started = time.monotonic()
        try:
            r = fetch(bomb.url(0, "/bomb?gb=2"), FetchSettings(max_body_bytes=limit))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        elapsed = time.monotonic() - started
        sent = bomb.stats()["bytes_sent"]
    assert r.outcome == "error" and r.error == f"body exceeds {limit} bytes"
    assert elapsed < 5
    assert peak < 3 * limit  # the 2 GB never existed; at most the limit plus a chunk
    assert sent < 50 * 1024 * 1024  # and the server was cut off long before the end


def test_content_encodings_and_deflate_variants(httpserver: HTTPServer) -> None:
    body = b"<rss>" + b"peace talks " * 1000 + b"</rss>"
    variants = {
        "/gzip": ("gzip", gzip.compress(body)),
        "/multi": ("gzip", gzip.compress(body[:5000]) + gzip.compress(body[5000:])),
        "/zlib": ("deflate", zlib.compress(body)),
        "/raw": ("deflate", zlib.compress(body)[2:-4]),
        "/plain": ("identity", body),
        "/unknown": ("x-unknown", body),  # not asked for: left to httpx's decoders, which pass it through
        "/broken": ("gzip", b"\x1f\x8b not really gzip"),
    }
    for path, (enc, data) in variants.items():
        httpserver.expect_request(path).respond_with_data(data, headers={"Content-Encoding": enc})

    async def go() -> dict[str, FetchResult]:
        async with Fetcher(FAST) as f:
            return {p: await f.fetch(FeedRequest(1, httpserver.url_for(p))) for p in variants}

    results = asyncio.run(go())
    for path in ("/gzip", "/multi", "/zlib", "/raw", "/plain", "/unknown"):
        assert results[path].content == body, path
    assert results["/broken"].outcome == "error"
    assert results["/broken"].error is not None and results["/broken"].error.startswith("decoding error")


def test_mock_transport_for_unit_tests() -> None:
    body = b"<rss>" + b"x" * 3000 + b"</rss>"

    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers.get("if-none-match") == '"v1"':
            return httpx.Response(304)
        data = gzip.compress(body)
        return httpx.Response(200, headers={"Content-Encoding": "gzip", "ETag": '"v1"'}, content=data)

    async def go() -> tuple[FetchResult, FetchResult, FetchResult]:
        small = FetchSettings(max_body_bytes=1000)
        mock = httpx.MockTransport(handler)
        async with Fetcher(FAST, transport=mock) as f, Fetcher(small, transport=mock) as g:
            return (
                await f.fetch(FeedRequest(1, "http://feeds.test/a")),
                await f.fetch(FeedRequest(1, "http://feeds.test/a", etag='"v1"')),
                await g.fetch(FeedRequest(1, "http://feeds.test/a")),
            )

    ok, not_modified, too_big = asyncio.run(go())
    assert ok.outcome == "ok" and ok.content == body and ok.etag == '"v1"'
    assert not_modified.outcome == "not_modified"
    assert too_big.error == "body exceeds 1000 bytes"


# --- concurrency ---------------------------------------------------------------------------------------


def _max_in_flight(farm: FeedFarm, settings: FetchSettings, n: int) -> tuple[int, list[FetchResult]]:
    farm.reset_stats()

    async def go() -> list[FetchResult]:
        async with Fetcher(settings) as f:
            return await f.fetch_many([FeedRequest(i, farm.url(i)) for i in range(n)])

    results = asyncio.run(go())
    return int(farm.stats()["max_in_flight"]), results


def test_per_host_limit_bounds_requests_at_the_server() -> None:
    with FeedFarm(feeds=24, items=2, latency=0.15, hosts=2) as farm:
        peak, results = _max_in_flight(farm, FetchSettings(concurrency=20, per_host_concurrency=2), 24)
        assert sorted(r.feed_id for r in results) == list(range(24))
        assert all(r.outcome == "ok" for r in results)
        assert peak == 4  # 2 per host × 2 hosts (127.0.0.1 and 127.0.0.2)


def test_global_limit_bounds_requests_across_hosts() -> None:
    with FeedFarm(feeds=24, items=2, latency=0.15, hosts=4) as farm:
        peak, _ = _max_in_flight(farm, FetchSettings(concurrency=3, per_host_concurrency=4), 24)
        assert peak == 3


def test_fetch_many_reports_each_result_as_it_completes(farm: FeedFarm) -> None:
    seen: list[int] = []

    async def on_result(r: FetchResult) -> None:
        seen.append(r.feed_id)

    async def go() -> list[FetchResult]:
        reqs = [FeedRequest(100, farm.url(0, "/slow-headers?delay=0.4")), FeedRequest(1, farm.url(1))]
        async with Fetcher(FAST) as f:
            return await f.fetch_many(reqs, on_result=on_result)

    results = asyncio.run(go())
    assert seen == [1, 100]  # the fast one first
    assert [r.feed_id for r in results] == seen


def test_cancellation_propagates(farm: FeedFarm) -> None:
    async def go() -> None:
        async with Fetcher(FAST) as f:
            task = asyncio.create_task(f.fetch(FeedRequest(1, farm.url(0, "/slow-headers?delay=3"))))
            await asyncio.sleep(0.2)
            task.cancel()
            await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(go())


# --- header parsing ------------------------------------------------------------------------------------


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(" 0 ", now) == 0.0
    assert parse_retry_after(format_datetime(now + timedelta(minutes=5), usegmt=True), now) == 300.0
    assert parse_retry_after(format_datetime(now - timedelta(minutes=5), usegmt=True), now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("-5", now) == 0.0


def test_parse_max_age() -> None:
    assert parse_max_age("public, max-age=300") == 300.0
    assert parse_max_age('max-age="60", must-revalidate') == 60.0
    assert parse_max_age("no-cache, max-age=300") is None
    assert parse_max_age("s-maxage=100") is None
    assert parse_max_age("max-age=abc") is None
    assert parse_max_age(None) is None
