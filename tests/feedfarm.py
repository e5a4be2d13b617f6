"""A local feed server for tests and benchmarks: N RSS feeds × M items on 127.0.0.1, plus failure endpoints.

Why it is built this way:

* asyncio with raw streams, one event loop: thousands of keep-alive connections cost little, and the
  per-response latency is an ``await asyncio.sleep`` so a 50 ms delay never holds up another request.
* A feed's ETag and Last-Modified come from its version number, so a 304 costs a dict lookup; the body
  (plain and gzip) is rendered on the first 200 of each version and kept in a bounded LRU cache, so
  10,000 feeds do not need 450 MB of pre-rendered XML.
* The item model is deterministic (guid ``urn:farm:{i}:{k}``, content derived from ``(i, k)``), and all
  changes are decided by the caller (``change(fraction, rng)``) and applied to both the caller's mirror
  and the server.  So ``items(i)`` answers from the caller's side without asking the server, and the
  server can run in a child process (``process=True``) — use that for benchmarks so the server's CPU is
  not billed to (and does not share the GIL with) the code under test.

Failure endpoints (all relative to ``base_url``)::

    /feed/{i}.xml[?v=etag|lm|none]   feed i; v chooses which validators are sent (default both)
    /redirect/{code}/{i}             {code} (301/302/303/307/308) → /feed/{i}.xml
    /chain/{n}[?code=301]            n redirects, then /feed/0.xml
    /loop/a, /loop/b                 a → b → a ...
    /status/{code}[?retry_after=X]   that status, with Retry-After: X when given (e.g. 429, 503, 410, 500)
    /gone                            410
    /slow-headers?delay=S            nothing for S seconds, then a feed (a read timeout before headers)
    /slow-body?delay=S               headers, then nothing for S seconds (a read timeout mid-body)
    /drip?every=S                    headers, then one small chunk every S seconds, forever
    /big?bytes=N[&length=0]          N bytes of XML, with Content-Length (or chunked with length=0)
    /bomb[?gb=2]                     gzip stream of zeros generated on the fly, > 1 GB inflated
    /invalid-xml  /html  /wrong-encoding  /empty
    /_farm/stats  /_farm/change  /_farm/latency  /_farm/reset   control (used in process mode)

Use::

    with FeedFarm(feeds=100, items=30, latency=0.05) as farm:
        farm.url(3)                      # http://127.0.0.1:PORT/feed/3.xml
        farm.items(3)                    # guids in feed 3, newest first
        farm.change(0.1, random.Random(1))   # 10 feeds get a new item → their ETag changes
        farm.stats()["not_modified"]     # requests, ok, not_modified, max_in_flight, connections ...

    FeedFarm(1000, 30, latency=0.05, process=True, hosts=50)   # benchmarks: own process, and feed i
                                         # on 127.0.0.{1 + i % 50} so per-host limits act as in real life

Measured (2 shared cores, client in another process): ~1,000 cold 200s/s and ~2,000 304s/s with
10,000 feeds; startup 0.2 s (bodies are rendered on first request, ~0.4 ms per 30-item feed).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import http.client
import json
import random
import re
import subprocess
import sys
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from email.utils import formatdate
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

# --- deterministic content -----------------------------------------------------------------------

MEDIATORS = (
    "Turkey",
    "Saudi Arabia",
    "Qatar",
    "the Vatican",
    "China",
    "Brazil",
    "South Africa",
    "the United Arab Emirates",
    "Switzerland",
    "India",
    "the United States",
    "the United Nations",
)
OBSTACLES = (
    "territorial claims in the occupied regions",
    "security guarantees for Kyiv",
    "NATO membership",
    "the sanctions regime",
    "the Zaporizhzhia nuclear plant",
    "prisoner exchanges",
    "Black Sea shipping and grain exports",
    "accountability for war crimes",
    "the return of deported children",
    "verification of a ceasefire line",
)
CITIES = ("Istanbul", "Riyadh", "Jeddah", "Doha", "Geneva", "Abu Dhabi", "Vatican City", "Beijing", "Kyiv")
TITLES = (
    "{m} offers to host new round of Ukraine–Russia peace talks in {c}",
    "Envoys meet in {c} as {m} pushes ceasefire plan",
    "Kyiv and Moscow trade proposals on {o}",
    "Peace talks stall over {o}, diplomats say",
    "{m} mediates prisoner swap between Russia and Ukraine",
    "Zelensky and Putin envoys discuss {o} in {c}",
    "Analysis: why {o} blocks a peace deal",
    "{m} sends delegation to {c} for talks on ending the war",
)
OFF_TOPIC = (
    "City council approves new cycling lanes",
    "Local football club wins regional cup",
    "Weekend weather: sunny spells and light showers",
    "Museum opens exhibition of medieval manuscripts",
)
PARAGRAPHS = (
    "Diplomats from {m} said on {d} that a new round of negotiations between Ukraine and Russia could "
    "take place in {c} within weeks, provided both delegations agree on an agenda. Officials familiar "
    "with the preparations said the talks would focus on {o} and on a possible ceasefire.",
    "Ukrainian officials insisted that any settlement must respect the country's territorial integrity, "
    "while the Kremlin repeated its demand that Kyiv recognise what it calls the new realities on the "
    "ground. Western governments said they would back whatever terms Ukraine accepts.",
    "The foreign minister of {m} told reporters in {c} that his government was in contact with both "
    "sides and was ready to act as a mediator. \u201cWe are not there yet, but the channels are open,\u201d "
    "he said, adding that {o} remained the hardest question.",
    "Earlier rounds of talks in Istanbul in 2022 produced a draft framework on neutrality and security "
    "guarantees that was never signed. Since then the Black Sea grain initiative, brokered by Turkey "
    "and the United Nations, has been the only agreement to have been implemented for any length of time.",
    "Negotiators have exchanged lists of prisoners of war, and a humanitarian track on the return of "
    "children has been discussed with mediation from Qatar. Observers caution that progress on these "
    "issues does not mean the two sides are closer on {o}.",
    "Analysts said the sanctions imposed on Russia, the question of frozen assets and the future of "
    "the Zaporizhzhia nuclear power plant were all likely to be raised. \u201cEveryone wants a ceasefire "
    "first and a peace treaty later; the order matters,\u201d said one European diplomat.",
)


def _http_date(ts: float) -> str:
    return formatdate(ts, usegmt=True)


# description paragraphs escaped twice up front (HTML inside XML); the fills contain no & < >
_PARAS_X = tuple(escape(f"<p>{escape(p)}</p>") for p in PARAGRAPHS)
_OFF_X = escape("<p>{t}. The decision was welcomed by residents on {d}; more details will follow.</p>") * 3


def _mix(i: int, k: int) -> int:
    """A cheap deterministic hash of (i, k): rendering a 30-item feed must take well under 1 ms."""
    x = (i * 0x9E3779B1 + k * 0x85EBCA77 + 0x27D4EB2F) & 0xFFFFFFFFFFFF
    x ^= x >> 17
    x = (x * 0xED5AD4BB) & 0xFFFFFFFFFFFF
    return x ^ (x >> 13)


def _item_xml(i: int, k: int, ts: float) -> str:
    """One <item>; content is a pure function of (i, k) so both sides of a process farm agree."""
    x = _mix(i, k)
    m = MEDIATORS[x % len(MEDIATORS)]
    x //= len(MEDIATORS)
    o = OBSTACLES[x % len(OBSTACLES)]
    x //= len(OBSTACLES)
    c = CITIES[x % len(CITIES)]
    x //= len(CITIES)
    day = time.strftime("%A", time.gmtime(ts))
    if x % 100 < 15:
        title = OFF_TOPIC[(x // 100) % len(OFF_TOPIC)]
        html_x = _OFF_X.format(t=title, d=day)
    else:
        x //= 100
        title = TITLES[x % len(TITLES)].format(m=m, o=o, c=c)
        title = title[0].upper() + title[1:]
        x //= len(TITLES)
        n, first, step = 2 + x % 3, (x // 3) % len(_PARAS_X), (1, 5)[(x // 18) % 2]
        html_x = "".join(_PARAS_X[(first + j * step) % len(_PARAS_X)] for j in range(n))
        html_x = html_x.format(m=m, o=o, c=c, d=day)
    slug = "-".join(re.findall(r"[a-z0-9]+", title.lower())[:6])
    link = f"https://news{i % 50}.example.org/world/{i}/{k}-{slug}"
    html_x += escape(f'<p><a href="{link}?utm_source=rss">Read more</a> &#8212; <em>Farm News {i}</em></p>')
    return (
        f"<item><title>{escape(title)}</title><link>{escape(link)}</link>"
        f'<guid isPermaLink="false">urn:farm:{i}:{k}</guid><pubDate>{_http_date(ts)}</pubDate>'
        f"<description>{html_x}</description></item>\n"
    )


class FarmModel:
    """The published items of every feed; identical on both sides of a process farm."""

    def __init__(self, feeds: int, items: int, epoch: float, max_items: int | None) -> None:
        self.feeds = feeds
        self.max_items = max_items
        self.epoch = epoch
        # published[i][k] = publish timestamp of item k of feed i (k grows with time)
        self.published: list[list[float]] = [
            [epoch - (items - k) * 3600 * (1 + i % 6) - i % 3600 for k in range(items)] for i in range(feeds)
        ]
        self.modified: list[float] = [epoch - 60] * feeds

    def apply(self, changes: Sequence[Sequence[float]]) -> None:
        """``changes`` = [(feed, count, timestamp), ...] — JSON-friendly so it can cross a process."""
        for i, count, ts in changes:
            feed = self.published[int(i)]
            feed.extend([ts] * int(count))
            self.modified[int(i)] = ts

    def version(self, i: int) -> int:
        return len(self.published[i])

    def etag(self, i: int) -> str:
        return f'"farm-{i}-{len(self.published[i])}"'

    def window(self, i: int) -> range:
        n = len(self.published[i])
        return range(max(0, n - self.max_items) if self.max_items else 0, n)

    def guids(self, i: int) -> list[str]:
        return [f"urn:farm:{i}:{k}" for k in reversed(self.window(i))]

    def render(self, i: int, base: str) -> bytes:
        feed = self.published[i]
        items = "".join(_item_xml(i, k, feed[k]) for k in reversed(self.window(i)))
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>'
            f"<title>Farm News {i}</title><link>{base}/site/{i}</link>"
            f"<description>Ukraine–Russia peace process coverage, desk {i}</description>"
            f"<language>en</language><lastBuildDate>{_http_date(self.modified[i])}</lastBuildDate>\n"
            f"{items}</channel></rss>\n"
        ).encode()


# --- the server ----------------------------------------------------------------------------------

REASONS = {
    200: "OK",
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    304: "Not Modified",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    410: "Gone",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
RSS_TYPE = "application/rss+xml; charset=utf-8"


class _Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.by_status: dict[int, int] = {}
        self.bytes_sent = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.connections = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "ok": self.by_status.get(200, 0),
            "not_modified": self.by_status.get(304, 0),
            "by_status": dict(self.by_status),
            "bytes_sent": self.bytes_sent,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "connections": self.connections,
        }


class FarmServer:
    """The asyncio HTTP/1.1 server; runs on whatever loop ``start`` is awaited in."""

    def __init__(self, model: FarmModel, latency: float, cache_feeds: int = 2000) -> None:
        self.model = model
        self.latency = latency
        self.stats = _Stats()
        self.cache: OrderedDict[int, tuple[int, bytes, bytes]] = OrderedDict()  # i -> (version, raw, gz)
        self.cache_feeds = cache_feeds
        self.last_headers: dict[str, dict[str, str]] = {}  # path -> headers of its latest request
        self.base = ""
        self.servers: list[asyncio.Server] = []
        self.writers: set[asyncio.StreamWriter] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self, port: int = 0, hosts: int = 1) -> int:
        """Listen on 127.0.0.1 (and 127.0.0.2.. when ``hosts`` > 1, all loopback) on one port."""
        first = await asyncio.start_server(self._conn, "127.0.0.1", port, backlog=4096)
        port = int(first.sockets[0].getsockname()[1])
        self.servers = [first]
        for k in range(2, hosts + 1):
            self.servers.append(await asyncio.start_server(self._conn, f"127.0.0.{k}", port, backlog=4096))
        self.base = f"http://127.0.0.1:{port}"
        return port

    async def stop(self) -> None:
        for server in self.servers:
            server.close()
        for w in list(self.writers):
            w.close()
        for t in list(self.tasks):
            t.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        for server in self.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)

    # connection loop: HTTP/1.1 keep-alive, GET/HEAD/POST, request bodies only via Content-Length
    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        self.stats.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    break
                lines = head.decode("latin-1").split("\r\n")
                try:
                    method, target, _ = lines[0].split(" ", 2)
                except ValueError:
                    break
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if line:
                        k, _, v = line.partition(":")
                        headers[k.strip().lower()] = v.strip()
                body = b""
                if n := int(headers.get("content-length") or 0):
                    body = await reader.readexactly(n)
                st = self.stats
                st.requests += 1
                st.in_flight += 1
                st.max_in_flight = max(st.max_in_flight, st.in_flight)
                try:
                    keep = await self._route(method, target, headers, body, writer)
                finally:
                    st.in_flight -= 1
                if not keep or headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # stop() cancels open connections; ending quietly keeps 3.11's stream callback quiet
        finally:
            self.writers.discard(writer)
            if task is not None:
                self.tasks.discard(task)
            writer.close()

    def _send(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes = b"",
        headers: Iterable[tuple[str, str]] = (),
        *,
        head_only: bool = False,
    ) -> None:
        self.stats.by_status[status] = self.stats.by_status.get(status, 0) + 1
        parts = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\n"]
        parts.extend(f"{k}: {v}\r\n" for k, v in headers)
        parts.append(f"Content-Length: {len(body)}\r\n\r\n")
        data = "".join(parts).encode("latin-1") + (b"" if head_only else body)
        self.stats.bytes_sent += len(data)
        writer.write(data)

    def _start_chunked(self, writer: asyncio.StreamWriter, status: int, headers: Iterable[tuple[str, str]]) -> None:
        self.stats.by_status[status] = self.stats.by_status.get(status, 0) + 1
        parts = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\n"]
        parts.extend(f"{k}: {v}\r\n" for k, v in headers)
        parts.append("Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        writer.write("".join(parts).encode("latin-1"))

    def _chunk(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        self.stats.bytes_sent += len(data)
        writer.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _feed_body(self, i: int) -> tuple[bytes, bytes]:
        version = self.model.version(i)
        hit = self.cache.get(i)
        if hit is not None and hit[0] == version:
            self.cache.move_to_end(i)
            return hit[1], hit[2]
        raw = self.model.render(i, self.base)
        gz = gzip.compress(raw, compresslevel=6, mtime=0)
        self.cache[i] = (version, raw, gz)
        self.cache.move_to_end(i)
        while len(self.cache) > self.cache_feeds:
            self.cache.popitem(last=False)
        return raw, gz

    async def _route(
        self, method: str, target: str, headers: dict[str, str], body: bytes, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request; returns whether the connection may be kept open."""
        url = urlsplit(target)
        path = url.path
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self.last_headers[path] = headers
        if path.startswith("/feed/") and path.endswith(".xml"):
            try:
                i = int(path[6:-4])
            except ValueError:
                i = -1
            if not 0 <= i < self.model.feeds:
                self._send(writer, 404, b"no such feed")
                await writer.drain()
                return True
            if self.latency:
                await asyncio.sleep(self.latency)
            self._serve_feed(i, headers, query.get("v", "both"), writer, head_only=method == "HEAD")
            await writer.drain()
            return True
        if path.startswith("/_farm/"):
            return await self._control(path, body, writer)
        if self.latency:
            await asyncio.sleep(self.latency)
        return await self._special(path, query, headers, writer)

    def _serve_feed(
        self,
        i: int,
        headers: dict[str, str],
        validators: str,
        writer: asyncio.StreamWriter,
        *,
        head_only: bool,
    ) -> None:
        model = self.model
        etag = model.etag(i) if validators in ("both", "etag") else None
        lm = _http_date(model.modified[i]) if validators in ("both", "lm") else None
        inm = headers.get("if-none-match")
        ims = headers.get("if-modified-since")
        out: list[tuple[str, str]] = []
        if etag:
            out.append(("ETag", etag))
        if lm:
            out.append(("Last-Modified", lm))
        if (inm is not None and etag is not None and etag in inm) or (
            inm is None and ims is not None and lm is not None and ims == lm
        ):
            self._send(writer, 304, b"", out)
            return
        raw, gz = self._feed_body(i)
        out.append(("Content-Type", RSS_TYPE))
        out.append(("Cache-Control", "public, max-age=60"))
        if "gzip" in headers.get("accept-encoding", ""):
            out.append(("Content-Encoding", "gzip"))
            out.append(("Vary", "Accept-Encoding"))
            self._send(writer, 200, gz, out, head_only=head_only)
        else:
            self._send(writer, 200, raw, out, head_only=head_only)

    async def _special(
        self, path: str, query: dict[str, str], headers: dict[str, str], writer: asyncio.StreamWriter
    ) -> bool:
        parts = path.strip("/").split("/")
        if parts[0] == "redirect" and len(parts) == 3:
            self._send(writer, int(parts[1]), b"", [("Location", f"/feed/{int(parts[2])}.xml")])
        elif parts[0] == "chain" and len(parts) == 2:
            n = int(parts[1])
            loc = f"/chain/{n - 1}?code={query.get('code', '301')}" if n > 1 else "/feed/0.xml"
            self._send(writer, int(query.get("code", "301")), b"", [("Location", loc)])
        elif parts[0] == "loop" and len(parts) == 2:
            self._send(writer, 302, b"", [("Location", "/loop/b" if parts[1] == "a" else "/loop/a")])
        elif parts[0] in ("status", "gone"):
            code = int(parts[1]) if parts[0] == "status" else 410
            extra = [("Retry-After", query["retry_after"])] if "retry_after" in query else []
            self._send(writer, code, f"status {code}".encode(), [("Content-Type", "text/plain"), *extra])
        elif parts[0] == "slow-headers":
            await asyncio.sleep(float(query.get("delay", "30")))
            self._serve_feed(0, headers, "both", writer, head_only=False)
        elif parts[0] == "slow-body":
            raw = self.model.render(0, self.base)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nContent-Length: %d\r\n\r\n%s"
                % (len(raw), raw[: len(raw) // 2])
            )
            await writer.drain()
            await asyncio.sleep(float(query.get("delay", "30")))
            writer.write(raw[len(raw) // 2 :])
        elif parts[0] == "drip":
            every = float(query.get("every", "0.2"))
            self._start_chunked(writer, 200, [("Content-Type", "application/rss+xml")])
            self._chunk(writer, b'<?xml version="1.0"?><rss version="2.0"><channel>')
            while True:
                await writer.drain()
                await asyncio.sleep(every)
                self._chunk(writer, b"<!-- . -->")
        elif parts[0] == "big":
            await self._big(int(query.get("bytes", str(20 << 20))), query.get("length", "1") == "1", writer)
            return False
        elif parts[0] == "bomb":
            await self._bomb(float(query.get("gb", "2")), writer)
            return False
        elif parts[0] in STATIC:
            ctype, content = STATIC[parts[0]]
            self._send(writer, 200, content, [("Content-Type", ctype)])
        else:
            self._send(writer, 404, b"not found", [("Content-Type", "text/plain")])
        await writer.drain()
        return True

    async def _big(self, size: int, with_length: bool, writer: asyncio.StreamWriter) -> None:
        head = b'<?xml version="1.0"?><rss version="2.0"><channel><title>big</title><!--'
        tail = b"--></channel></rss>"
        filler = b"x" * 65536
        if with_length:
            self.stats.by_status[200] = self.stats.by_status.get(200, 0) + 1
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nContent-Length: %d\r\n\r\n" % size)
        else:
            self._start_chunked(writer, 200, [("Content-Type", "application/rss+xml")])

        def send(data: bytes) -> None:
            if with_length:
                self.stats.bytes_sent += len(data)
                writer.write(data)
            else:
                self._chunk(writer, data)

        send(head)
        left = size - len(head) - len(tail)
        while left > 0:
            n = min(left, len(filler))
            send(filler[:n])
            left -= n
            await writer.drain()
        send(tail)
        if not with_length:
            writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def _bomb(self, gigabytes: float, writer: asyncio.StreamWriter) -> None:
        """A gzip stream of zeros compressed on the fly: a few MB on the wire, never held in memory."""
        self._start_chunked(writer, 200, [("Content-Type", "application/rss+xml"), ("Content-Encoding", "gzip")])
        comp = zlib.compressobj(9, zlib.DEFLATED, 31)
        self._chunk(writer, comp.compress(b'<?xml version="1.0"?><rss version="2.0"><channel><!--'))
        zeros = bytes(1 << 20)
        for _ in range(int(gigabytes * 1024)):
            out = comp.compress(zeros)
            if out:
                self._chunk(writer, out)
                await writer.drain()
        self._chunk(writer, comp.compress(b"--></channel></rss>") + comp.flush())
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def _control(self, path: str, body: bytes, writer: asyncio.StreamWriter) -> bool:
        if path == "/_farm/change":
            self.model.apply(json.loads(body))
        elif path == "/_farm/latency":
            self.latency = float(json.loads(body))
        elif path == "/_farm/reset":
            self.stats.reset()
        out = json.dumps(self.stats.as_dict()).encode()
        self._send(writer, 200, out, [("Content-Type", "application/json")])
        await writer.drain()
        return True


_FEED_HEAD = '<?xml version="1.0" encoding="{enc}"?>\n<rss version="2.0"><channel><title>{t}</title>'
STATIC: dict[str, tuple[str, bytes]] = {
    "invalid-xml": (
        RSS_TYPE,
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>Broken</title><item><title>Talks'
        b" & more</title><description><p>unclosed</description></channel>",
    ),
    "html": (
        "text/html; charset=utf-8",
        b"<!DOCTYPE html><html><head><title>Not a feed</title></head><body><h1>Welcome</h1>"
        b"<p>This is a web page about peace talks, not a feed.</p></body></html>",
    ),
    "wrong-encoding": (
        "application/rss+xml; charset=utf-8",
        (
            _FEED_HEAD.format(enc="utf-8", t="Переговоры")
            + "<item><title>Переговоры в Стамбуле: Украина и Россия</title>"
            "<guid>urn:farm:enc:1</guid><description>Турция предложила посредничество.</description>"
            "</item></channel></rss>"
        ).encode("windows-1251"),
    ),
    "empty": (RSS_TYPE, b""),
}


# --- running it ----------------------------------------------------------------------------------


class FeedFarm:
    """Context manager: a FarmServer in a background thread (default) or a child process."""

    def __init__(
        self,
        feeds: int = 10,
        items: int = 30,
        *,
        latency: float = 0.0,
        max_items: int | None = None,
        process: bool = False,
        cache_feeds: int = 2000,
        epoch: float | None = None,
        hosts: int = 1,
    ) -> None:
        """``hosts`` > 1 spreads feeds over 127.0.0.1..N so per-host limits act as with real feeds."""
        if not 1 <= hosts <= 254:
            raise ValueError("hosts must be 1..254")
        self.hosts = hosts
        self.model = FarmModel(feeds, items, time.time() if epoch is None else epoch, max_items)
        self.items_per_feed = items
        self.latency = latency
        self.process = process
        self.cache_feeds = cache_feeds
        self.port = 0
        self.server: FarmServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def feeds(self) -> int:
        return self.model.feeds

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, i: int, path: str | None = None) -> str:
        """URL of feed i (on host 127.0.0.{1 + i % hosts}), or of any ``path`` on 127.0.0.1."""
        if path is not None:
            return f"{self.base_url}{path}"
        return f"http://127.0.0.{1 + i % self.hosts}:{self.port}/feed/{i}.xml"

    def urls(self) -> list[str]:
        return [self.url(i) for i in range(self.feeds)]

    def items(self, i: int) -> list[str]:
        """Guids currently in feed i's document, newest first."""
        return self.model.guids(i)

    def all_items(self) -> set[str]:
        return {g for i in range(self.feeds) for g in self.model.guids(i)}

    def change(self, fraction: float, rng: random.Random, *, count: int = 1, now: float | None = None) -> list[int]:
        """Publish ``count`` new items in ``fraction`` of the feeds; returns the changed feed indices."""
        k = round(fraction * self.feeds)
        chosen = sorted(rng.sample(range(self.feeds), k))
        ts = time.time() if now is None else now
        changes = [(i, count, ts) for i in chosen]
        if self.process:
            self._post("/_farm/change", changes)
            self.model.apply(changes)
        else:
            self._call(lambda: self.model.apply(changes))
        return chosen

    def set_latency(self, seconds: float) -> None:
        self.latency = seconds
        if self.process:
            self._post("/_farm/latency", seconds)
        elif self.server is not None:
            self.server.latency = seconds

    def stats(self) -> dict[str, Any]:
        """Counters: requests, ok, not_modified, by_status, bytes_sent, max_in_flight, connections."""
        if self.process:
            out: dict[str, Any] = self._post("/_farm/stats", None)
            out["by_status"] = {int(k): v for k, v in out["by_status"].items()}
            return out
        assert self.server is not None
        return self.server.stats.as_dict()

    def reset_stats(self) -> None:
        if self.process:
            self._post("/_farm/reset", None)
        elif self.server is not None:
            self._call(self.server.stats.reset)

    def last_headers(self, path: str) -> dict[str, str]:
        """Request headers of the latest request to ``path`` (thread mode only)."""
        assert self.server is not None, "last_headers needs a thread-mode farm"
        return dict(self.server.last_headers.get(path, {}))

    @property
    def requests(self) -> int:
        return int(self.stats()["requests"])

    @property
    def not_modified(self) -> int:
        return int(self.stats()["not_modified"])

    # lifecycle
    def start(self) -> FeedFarm:
        if self.process:
            cfg = {
                "feeds": self.model.feeds,
                "items": self.items_per_feed,
                "latency": self.latency,
                "max_items": self.model.max_items,
                "epoch": self.model.epoch,
                "cache_feeds": self.cache_feeds,
                "hosts": self.hosts,
            }
            self._proc = subprocess.Popen(
                [sys.executable, __file__, json.dumps(cfg)], stdout=subprocess.PIPE, stdin=subprocess.PIPE
            )
            assert self._proc.stdout is not None
            line = self._proc.stdout.readline()
            if not line:
                raise RuntimeError("feed farm process failed to start")
            self.port = int(line)
            return self
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self.server = FarmServer(self.model, self.latency, self.cache_feeds)

        def run() -> None:
            assert self._loop is not None and self.server is not None
            asyncio.set_event_loop(self._loop)
            self.port = self._loop.run_until_complete(self.server.start(hosts=self.hosts))
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self.server.stop())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="feedfarm", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._proc is not None:
            if self._proc.stdin is not None:
                self._proc.stdin.close()  # the child exits when its stdin closes
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None
            self._thread = None

    def __enter__(self) -> FeedFarm:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _call(self, fn: Any) -> None:
        """Run ``fn`` on the server loop so the model never changes halfway through a response."""
        if self._loop is None:
            fn()
            return
        done = threading.Event()

        def wrapped() -> None:
            try:
                fn()
            finally:
                done.set()

        self._loop.call_soon_threadsafe(wrapped)
        done.wait(10)

    def _post(self, path: str, payload: Any) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("POST", path, body=json.dumps(payload).encode(), headers={"Connection": "close"})
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()


def _serve_child(cfg: dict[str, Any]) -> None:
    """Entry point of a process farm: print the port, serve until stdin closes."""
    model = FarmModel(cfg["feeds"], cfg["items"], cfg["epoch"], cfg["max_items"])
    server = FarmServer(model, cfg["latency"], cfg["cache_feeds"])

    async def main() -> None:
        port = await server.start(hosts=cfg["hosts"])
        print(port, flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.buffer.read)  # returns when the parent closes stdin
        await server.stop()

    asyncio.run(main())


if __name__ == "__main__":
    _serve_child(json.loads(sys.argv[1]))
