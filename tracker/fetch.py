"""The fetch stage: one conditional GET per feed → ``FetchResult``.  Failures are data, never exceptions.

Why it is not ``httpx.get(url, follow_redirects=True)``:

* Redirects are followed here (up to ``max_redirects``) so we can tell a loop from a long chain and
  know whether *every* hop was permanent (301/308) — only then may the stored URL be updated.
* The body is streamed and counted *after* decompression.  gzip/deflate are inflated here with zlib's
  ``max_length`` so a gzip bomb (kilobytes on the wire, gigabytes inflated) stops at ``max_body_bytes``
  holding at most that much; httpx's own decoder would inflate each 64 KiB wire chunk whole (~64 MB).
  Only gzip and deflate are advertised; anything else a server sends anyway goes through httpx's decoders.
* Limits: a semaphore per host (politeness) is taken *before* the global one, so feeds queued behind a
  busy host do not sit on global slots that other hosts could use.  The total timeout starts once the
  slots are held: waiting in our own queue is not the server being slow.
* HTTP/1.1 keep-alive through a transport (connection pool) per host (``_HostPool``): our own on
  asyncio and httptools (``tracker.transport``), as httpcore + h11 + anyio cost ~0.5 ms of CPU per
  request.  The request is written out here and the reply read as it came: httpx's client, URL,
  Request and Response objects cost ~0.1 ms a request more, and a poll of plain feed URLs
  (``PLAIN_URL``) does not even import httpx.  httpx still parses any other URL, joins redirects, and
  is the interface of a proxy's transport (httpx's own) or an injected one (``httpx.MockTransport``).
  A whole 304 fetch costs ~0.2 ms (bench/fetch.py).  Idle connections of the ``keepalive_hosts``
  most recently used hosts are kept.  The TLS context (``transport.default_ssl_context``: httpx's
  way, without httpx) is loaded only when an https URL is fetched (it costs 20-30 ms of CPU).
* Proxies come from ``FetchSettings.proxy`` only (environment variables are not read).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import re
import socket
import ssl
import sys
import time
import zlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING

from tracker import __version__
from tracker.models import FeedRequest, FetchOutcome, FetchResult
from tracker.transport import DEFAULT_PORTS, AsyncioTransport, Reply, Timeouts, default_ssl_context

if TYPE_CHECKING:
    import httpx


def _httpx() -> ModuleType:
    """httpx, imported when first needed (a URL that is not plain, a redirect, a proxy, an injected
    transport): a poll of plain feed URLs never imports it (~30 ms of start-up)."""
    module = sys.modules.get("httpx")
    if module is not None:
        return module
    # httpx/__init__ imports its command-line client, httpx._main, whenever click, rich and pygments are
    # installed (uvicorn and typer bring them): ~50 ms for a program that never runs it.  A None entry
    # makes that import fail at once, as it does without them (httpx.main then only explains what is
    # missing); the entry is removed again so that an explicit `import httpx._main` still works.
    no_cli = "httpx._main" not in sys.modules
    if no_cli:
        sys.modules["httpx._main"] = None  # type: ignore[assignment]
    try:
        import httpx
    finally:
        if no_cli and sys.modules.get("httpx._main", 0) is None:
            del sys.modules["httpx._main"]
    try:  # httpcore (the proxy transport) runs `import sniffio` for every new connection; when it is
        import sniffio  # noqa: F401  absent, each failed import walks sys.path (~0.8 ms CPU per connection).
    except ImportError:  # Cache the miss: a None entry makes it fail at once; httpcore then assumes asyncio.
        sys.modules["sniffio"] = None  # type: ignore[assignment]
    return httpx


REDIRECTS = frozenset({301, 302, 303, 307, 308})
PERMANENT = frozenset({301, 308})
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
)
DEFAULT_USER_AGENT = f"tracker/{__version__} (Ukraine-Russia peace-process news tracker; feed reader)"


@dataclass(frozen=True, slots=True)
class FetchSettings:
    """How to fetch; every limit here exists so one bad feed cannot stall or exhaust the poller."""

    user_agent: str = DEFAULT_USER_AGENT
    connect_timeout: float = 10.0  # seconds
    read_timeout: float = 20.0  # seconds between bytes
    total_timeout: float = 60.0  # seconds for the whole fetch, redirects and body included
    max_body_bytes: int = 10 * 1024 * 1024  # decompressed
    max_redirects: int = 5
    concurrency: int = 50  # requests in flight, all hosts together (CPU per request is flat: bench/fetch.py)
    per_host_concurrency: int = 4  # requests in flight to one host (scheme, host, port)
    keepalive_expiry: float = 30.0  # seconds an idle connection is kept for the next request
    keepalive_hosts: int = 100  # hosts whose idle connections are kept; least recently used go first
    proxy: str | None = None  # e.g. "http://proxy.local:3128"


class _BodyTooLarge(Exception):
    pass


class _Inflater:
    """Bounded gzip/deflate decoding: never produces more than ``limit + 1`` bytes in total."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self.gzip = encoding in ("gzip", "x-gzip")
        self.first = True
        self.obj = zlib.decompressobj(16 + zlib.MAX_WBITS if self.gzip else zlib.MAX_WBITS)

    def decompress(self, data: bytes, room: int) -> bytes:
        """Inflate ``data`` producing at most ``room + 1`` bytes (one more tells the caller it's too big)."""
        try:
            out = self.obj.decompress(data, room + 1)
        except zlib.error:
            if not (self.first and not self.gzip):
                raise
            # "deflate" is sometimes sent raw, without the zlib header
            self.obj = zlib.decompressobj(-zlib.MAX_WBITS)
            out = self.obj.decompress(data, room + 1)
        self.first = False
        # a second gzip member (concatenated streams are valid gzip)
        while self.gzip and self.obj.eof and self.obj.unused_data and len(out) <= room:
            rest = self.obj.unused_data
            self.obj = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out += self.obj.decompress(rest, room + 1 - len(out))
        return out

    def flush(self) -> bytes:
        return self.obj.flush() if not self.obj.eof else b""


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Retry-After as seconds from ``now``: delta-seconds or an HTTP-date; None when absent or garbage."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(int(value)))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def parse_max_age(cache_control: str | None) -> float | None:
    """``max-age`` from Cache-Control in seconds; None when absent, or when no-store/no-cache ask for none."""
    if not cache_control:
        return None
    max_age: float | None = None
    for token in cache_control.lower().split(","):
        name, _, arg = token.strip().partition("=")
        if name in ("no-store", "no-cache"):
            return None
        if name == "max-age":
            try:
                max_age = max(0.0, float(int(arg.strip().strip('"'))))
            except ValueError:
                max_age = None
    return max_age


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


def _describe_connect(exc: BaseException) -> str:
    """The root cause of a connect failure ("Connection refused", a DNS error, a TLS error)."""
    cause: BaseException | None = exc
    for _ in range(10):
        if cause is None:
            break
        if isinstance(cause, socket.gaierror):
            return f"DNS lookup failed: {cause.strerror or cause}"
        if isinstance(cause, ssl.SSLError):  # its errno is OpenSSL's, not the OS's
            return _describe(cause)
        if isinstance(cause, OSError) and cause.errno and cause.errno > 0:
            return os.strerror(cause.errno)
        cause = cause.__cause__ or cause.__context__
    return _describe(exc)


def _utcnow() -> datetime:
    return datetime.now(UTC)


HostKey = tuple[str, str, int | None]  # scheme, host, port (None: the scheme's default)

# A URL that httpx.URL would give back as it is: http(s), a lower-case ASCII host, a port, then a path and
# query of RFC 3986 characters (valid %-escapes only) and no fragment.  Such a URL is sent as it is; any
# other is parsed by httpx.URL first.
_PCHAR = r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})"
PLAIN_URL = re.compile(rf"(https?)://([a-z0-9][a-z0-9.\-]*)(?::([0-9]{{1,5}}))?(/{_PCHAR}*)?(\?(?:{_PCHAR}|\?)*)?")


def _plain_target(url: str) -> tuple[HostKey, bytes, bytes] | None:
    """(host key, Host header, request target) of a plain URL; None for any other."""
    m = PLAIN_URL.fullmatch(url)
    if m is None:
        return None
    scheme, host, port_text, path, query = m.groups()
    if path and "/." in path:  # dot segments: httpx removes them
        return None
    port = int(port_text) if port_text else None
    if port == DEFAULT_PORTS[scheme]:
        port = None
    elif port is not None and port > 65535:
        return None
    netloc = host if port is None else f"{host}:{port}"
    return (scheme, host, port), netloc.encode("ascii"), ((path or "/") + (query or "")).encode("ascii")


def _header_lines(fields: dict[str, str]) -> bytes:
    """Header fields as sent: a value as the bytes it came in (see ``_text``)."""
    return b"".join(b"%s: %s\r\n" % (k.encode("ascii"), _bytes(v)) for k, v in fields.items())


def _bytes(value: str) -> bytes:
    try:
        return value.encode("iso-8859-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")


def _text(value: bytes) -> str:
    """A header value as httpx decodes it: ASCII, else UTF-8, else Latin-1."""
    if value.isascii():
        return value.decode("ascii")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("iso-8859-1")


class _Answer:
    """A response as the fetcher reads it: our transport's ``Reply``, or any httpx transport's Response."""

    __slots__ = ("headers", "reply", "response", "status")

    def __init__(self, reply: Reply | None, response: httpx.Response | None) -> None:
        self.reply = reply
        self.response = response
        self.headers: dict[str, str]  # lower-case names; a repeated field's values joined by ", " (as httpx)
        if reply is not None:
            self.status = reply.status
            headers: dict[str, str] = {}
            for name, value in reply.headers:
                key = name.decode("ascii", "replace").lower()
                headers[key] = f"{headers[key]}, {_text(value)}" if key in headers else _text(value)
            self.headers = headers
        else:
            assert response is not None
            self.status = response.status_code
            self.headers = dict(response.headers.items())

    @property
    def complete(self) -> bool:
        """All of it is in and read: closing it reuses the connection (our transport only)."""
        return self.reply is not None and self.reply.complete

    def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body as it arrives, still content-encoded."""
        return self.reply.__aiter__() if self.reply is not None else self._httpx().aiter_raw()

    def aiter_decoded(self) -> AsyncIterator[bytes]:
        """The body with any content-encoding undone by httpx."""
        return self._httpx().aiter_bytes()

    async def drain(self) -> None:
        """Read the body to its end, unused (so that the connection can be reused)."""
        if self.reply is None:
            await self._httpx().aread()
            return
        async for _ in self.reply:
            pass

    def consumed(self) -> bytes | None:
        """The whole body, when a transport handed it over already read (``httpx.MockTransport``)."""
        response = self.response
        return response.content if response is not None and response.is_stream_consumed else None

    async def aclose(self) -> None:
        await (self.reply.aclose() if self.reply is not None else self._httpx().aclose())

    def _httpx(self) -> httpx.Response:
        if self.response is None:
            assert self.reply is not None
            from tracker.transport_httpx import ReplyStream

            stream = ReplyStream(self.reply)
            self.response = _httpx().Response(self.status, headers=self.reply.headers, stream=stream)
        return self.response


class _HostPool:
    """One host's politeness slot and its connections."""

    __slots__ = ("key", "slot", "transport", "users")

    def __init__(self, key: HostKey, transport: httpx.AsyncBaseTransport | AsyncioTransport, per_host: int) -> None:
        self.key = key
        self.transport = transport
        self.slot = asyncio.Semaphore(per_host)
        self.users = 0  # fetches holding or waiting for this host; only unused hosts are closed


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """One verifying context per process: loading the CA certificates costs ~10 ms and ~1 MB each
    time, and a daemon builds a Fetcher for every batch of feeds."""
    return default_ssl_context()


class Fetcher:
    """Fetches feeds over pooled keep-alive connections.  Use as ``async with Fetcher(settings) as f``.

    ``transport`` replaces the network for every host (e.g. ``httpx.MockTransport`` in unit tests).
    """

    def __init__(
        self,
        settings: FetchSettings | None = None,
        *,
        transport: httpx.AsyncBaseTransport | AsyncioTransport | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.settings = s = settings or FetchSettings()
        self.clock = clock
        self._shared_transport = transport
        self._headers = {"User-Agent": s.user_agent, "Accept": ACCEPT, "Accept-Encoding": "gzip, deflate"}
        self._header_lines = _header_lines(self._headers)  # the same, as written to our transport
        # as httpx.Timeout(...).as_dict() gives them, for our transport and httpx's
        self._timeouts: Timeouts = {
            "connect": s.connect_timeout,
            "read": s.read_timeout,
            "write": s.read_timeout,
            "pool": s.total_timeout,
        }
        self._global: asyncio.Semaphore | None = None
        self._pools: dict[HostKey, _HostPool] = {}
        self._idle: OrderedDict[HostKey, None] = OrderedDict()  # pools nobody uses, least recent first

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        pools = list(self._pools.values())
        self._pools.clear()
        self._idle.clear()
        for pool in pools:
            await self._close(pool)
        if self._shared_transport is not None:
            await self._shared_transport.aclose()

    def _new_transport(self, scheme: str) -> httpx.AsyncBaseTransport | AsyncioTransport:
        s = self.settings
        if self._shared_transport is not None:
            return self._shared_transport
        n = s.per_host_concurrency
        if s.proxy:
            httpx = _httpx()
            limits = httpx.Limits(max_connections=n, max_keepalive_connections=n, keepalive_expiry=s.keepalive_expiry)
            return httpx.AsyncHTTPTransport(
                verify=shared_ssl_context(), limits=limits, http1=True, retries=0, proxy=s.proxy
            )
        return AsyncioTransport(
            ssl_context=shared_ssl_context() if scheme == "https" else None,
            max_connections=n,
            keepalive_expiry=s.keepalive_expiry,
        )

    def _acquire(self, key: HostKey) -> _HostPool:
        pool = self._pools.get(key)
        if pool is None:
            transport = self._new_transport(key[0])
            pool = self._pools[key] = _HostPool(key, transport, self.settings.per_host_concurrency)
        elif pool.users == 0:
            del self._idle[key]
        pool.users += 1
        return pool

    async def _release(self, pool: _HostPool) -> None:
        """Close the least recently used idle hosts beyond ``keepalive_hosts`` (bounds open sockets)."""
        pool.users -= 1
        if pool.users:
            return
        self._idle[pool.key] = None
        while len(self._idle) > self.settings.keepalive_hosts:
            key, _ = self._idle.popitem(last=False)
            await self._close(self._pools.pop(key))

    async def _close(self, pool: _HostPool) -> None:
        if pool.transport is not self._shared_transport:
            await pool.transport.aclose()

    # -- one feed ---------------------------------------------------------------------------------

    async def fetch(self, req: FeedRequest) -> FetchResult:
        """Fetch one feed; returns a result for every failure (only cancellation propagates)."""
        s = self.settings
        if self._global is None:
            self._global = asyncio.Semaphore(s.concurrency)
        loop = asyncio.get_running_loop()
        started: float | None = None
        deadline = 0.0
        url = req.url
        seen = {url}
        hops = 0
        permanent = True
        conditional: dict[str, str] = {}
        if req.etag:
            conditional["If-None-Match"] = req.etag
        if req.last_modified:
            conditional["If-Modified-Since"] = req.last_modified

        def fail(outcome: FetchOutcome, error: str, status: int | None = None) -> FetchResult:
            elapsed = time.perf_counter() - started if started is not None else 0.0
            return FetchResult(req.feed_id, outcome, url, status=status, error=error, elapsed=elapsed)

        try:
            while True:
                plain = _plain_target(url)
                target: httpx.URL | None = None
                if plain is not None:
                    key = plain[0]
                else:
                    target = _httpx().URL(url)
                    if target.scheme not in ("http", "https") or not target.host:
                        return fail("error", f"invalid URL: {url}")
                    key = (target.scheme, target.host, target.port)
                pool = self._acquire(key)
                try:
                    async with pool.slot, self._global:
                        if started is None:
                            started = time.perf_counter()
                            deadline = loop.time() + s.total_timeout
                        async with asyncio.timeout_at(deadline):
                            answer = await self._send(pool, url, target, plain, conditional)
                            try:
                                status = answer.status
                                location = answer.headers.get("location") if status in REDIRECTS else None
                                if location is None:
                                    return await self._final(req, url, answer, started, permanent and hops > 0)
                                await self._discard(answer)
                            finally:
                                await answer.aclose()
                finally:
                    await self._release(pool)
                # a redirect: decide on the next hop outside the slots
                hops += 1
                permanent = permanent and status in PERMANENT
                httpx = _httpx()
                try:
                    url = str((target or httpx.URL(url)).join(location))
                except httpx.InvalidURL:
                    return fail("error", f"bad redirect Location: {location!r}", status)
                if url in seen:
                    return fail("error", "redirect loop", status)
                if hops > s.max_redirects:
                    return fail("error", f"too many redirects (more than {s.max_redirects})", status)
                seen.add(url)
        except TimeoutError:
            return fail("error", f"total timeout after {s.total_timeout:g}s")
        except _BodyTooLarge:
            return fail("error", f"body exceeds {s.max_body_bytes} bytes", 200)
        except zlib.error as exc:
            return fail("error", f"decoding error: {_describe(exc)}")
        except Exception as exc:  # never raise: a failure is this feed's data
            return fail("error", self._failure(exc))

    def _failure(self, exc: Exception) -> str:
        """How a failed request reads.  Our transport's exceptions are named as httpx's (it does not
        import httpx), so one look at the class names serves both."""
        s = self.settings
        module = type(exc).__module__
        if not module.startswith(("httpx", "tracker.transport")):
            return f"unexpected error: {exc!r}"
        names = {c.__name__ for c in type(exc).__mro__}
        if "ConnectTimeout" in names:
            return f"connect timeout after {s.connect_timeout:g}s"
        if "ReadTimeout" in names:
            return f"read timeout after {s.read_timeout:g}s"
        if "WriteTimeout" in names:
            return f"write timeout after {s.read_timeout:g}s"
        if "PoolTimeout" in names:
            return "timed out waiting for a connection"
        if "ConnectError" in names:
            return f"connect error: {_describe_connect(exc)}"
        if "RemoteProtocolError" in names:
            return f"protocol error: {_describe(exc)}"
        if names & {"ReadError", "WriteError", "CloseError"}:
            return f"network error: {_describe(exc)}"
        if names & {"InvalidURL", "UnsupportedProtocol"}:
            return f"invalid URL: {_describe(exc)}"
        if "DecodingError" in names:
            return f"decoding error: {_describe(exc)}"
        return f"{type(exc).__name__}: {_describe(exc)}"

    async def _send(
        self,
        pool: _HostPool,
        url: str,
        target: httpx.URL | None,
        plain: tuple[HostKey, bytes, bytes] | None,
        conditional: dict[str, str],
    ) -> _Answer:
        """One request on the host's transport: written out here for our own transport (the common case),
        through httpx's Request and Response objects for any other (a proxy, an injected transport)."""
        transport = pool.transport
        if isinstance(transport, AsyncioTransport):
            if plain is None:
                assert target is not None
                plain = (target.scheme, target.raw_host.decode("ascii"), target.port), target.netloc, target.raw_path
            (scheme, host, port), host_header, path = plain
            data = b"GET %s HTTP/1.1\r\nHost: %s\r\n%s%s\r\n" % (
                path,
                host_header,
                self._header_lines,
                _header_lines(conditional),
            )
            return _Answer(
                await transport.send((scheme, host, port or DEFAULT_PORTS[scheme]), data, self._timeouts), None
            )
        httpx = _httpx()
        headers = {**self._headers, **conditional}
        request = httpx.Request(
            "GET", target or httpx.URL(url), headers=headers, extensions={"timeout": self._timeouts}
        )
        response = await transport.handle_async_request(request)
        response.request = request
        return _Answer(None, response)

    async def _discard(self, answer: _Answer) -> None:
        """Read a small body we don't need (redirect, 304, error page) so the connection is reused.

        A streamed response closed before its end closes the connection; one read to the end goes
        back to the pool.  Bodies without a small Content-Length are not worth waiting for; a 304 or
        204 has no body whatever its headers say (servers often send no Content-Length with a 304).
        """
        if answer.complete:  # our transport has it all already
            return
        length = answer.headers.get("content-length")
        if answer.status in (204, 304) or (length is not None and length.isdigit() and int(length) <= 65536):
            await answer.drain()

    async def _final(self, req: FeedRequest, url: str, answer: _Answer, started: float, permanent: bool) -> FetchResult:
        status = answer.status
        h = answer.headers
        perm = url if permanent else None
        if not 200 <= status < 300:
            await self._discard(answer)
        if status == 304:
            return FetchResult(
                req.feed_id,
                "not_modified",
                url,
                status=status,
                headers=h,
                etag=h.get("etag") or req.etag,
                last_modified=h.get("last-modified") or req.last_modified,
                permanent_url=perm,
                max_age=parse_max_age(h.get("cache-control")),
                elapsed=time.perf_counter() - started,
            )
        if 200 <= status < 300:
            content = await self._read_body(answer)
            return FetchResult(
                req.feed_id,
                "ok",
                url,
                status=status,
                content=content,
                headers=h,
                etag=h.get("etag"),
                last_modified=h.get("last-modified"),
                permanent_url=perm,
                max_age=parse_max_age(h.get("cache-control")),
                elapsed=time.perf_counter() - started,
            )
        if status == 410:
            outcome: FetchOutcome = "gone"
            error = "HTTP 410 Gone"
        else:
            outcome = "error"
            error = f"HTTP {status}"
        retry_after = parse_retry_after(h.get("retry-after"), self.clock()) if status in (429, 503) else None
        return FetchResult(
            req.feed_id,
            outcome,
            url,
            status=status,
            headers=h,
            retry_after=retry_after,
            error=error,
            elapsed=time.perf_counter() - started,
        )

    async def _read_body(self, answer: _Answer) -> bytes:
        """The decoded body, refusing (early, in bounded memory) anything over ``max_body_bytes``."""
        limit = self.settings.max_body_bytes
        length = answer.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise _BodyTooLarge
        whole = answer.consumed()
        if whole is not None:  # a transport that handed over the whole body (MockTransport)
            if len(whole) > limit:
                raise _BodyTooLarge
            return whole
        encodings = [e.strip() for e in answer.headers.get("content-encoding", "").lower().split(",")]
        encodings = [e for e in encodings if e and e != "identity"]
        chunks: list[bytes] = []
        size = 0
        if not encodings or (len(encodings) == 1 and encodings[0] in ("gzip", "x-gzip", "deflate")):
            inflater = _Inflater(encodings[0]) if encodings else None
            async for raw in answer.aiter_raw():
                data = inflater.decompress(raw, limit - size) if inflater is not None else raw
                size += len(data)
                if size > limit:
                    raise _BodyTooLarge
                chunks.append(data)
            if inflater is not None:
                tail = inflater.flush()
                size += len(tail)
                if size > limit:
                    raise _BodyTooLarge
                chunks.append(tail)
        else:  # an encoding we did not ask for (br, zstd, stacked): httpx decodes, we still count
            async for data in answer.aiter_decoded():
                size += len(data)
                if size > limit:
                    raise _BodyTooLarge
                chunks.append(data)
        return b"".join(chunks)

    # -- many feeds -------------------------------------------------------------------------------

    async def as_completed(self, reqs: Iterable[FeedRequest]) -> AsyncIterator[FetchResult]:
        """Yield results as fetches finish; the semaphores bound what runs at once."""
        tasks = [asyncio.create_task(self.fetch(r)) for r in reqs]
        try:
            for next_done in asyncio.as_completed(tasks):
                yield await next_done
        finally:
            pending = [t for t in tasks if not t.done()]
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    async def fetch_many(
        self,
        reqs: Iterable[FeedRequest],
        on_result: Callable[[FetchResult], Awaitable[object] | object] | None = None,
    ) -> list[FetchResult]:
        """Fetch all ``reqs``; ``on_result`` (sync or async) sees each result as it completes."""
        results: list[FetchResult] = []
        async for result in self.as_completed(reqs):
            results.append(result)
            if on_result is not None:
                ret = on_result(result)
                if inspect.isawaitable(ret):
                    await ret
        return results
