"""An HTTP/1.1 keep-alive client transport on ``asyncio.Protocol`` and httptools (no httpcore, h11 or anyio).

A poll cycle is mostly small conditional GETs answered 304, so the fetch stage costs what the client
spends per request.  Through httpcore that was ~0.5 ms of CPU: h11's parser in Python, anyio's locks
and cancel scopes around every read and write, and a pool that rescans its connections on every
request (encode/httpx#3215).  Here the socket's bytes go straight into llhttp (httptools, as in
uvicorn), a wait is one future with one timer, and each (scheme, host, port) has a small pool of idle
connections, most recently used first: ~0.15 ms per request, the kernel's share included.

It does what a feed reader needs: HTTP/1.1 with keep-alive, TLS, bodies handed to the caller as they
arrive (still content-encoded; reading pauses while more than ``MAX_BUFFER`` bytes wait unread),
timeouts, and errors named as httpx names them.  No HTTP/2, no proxies (Fetcher keeps httpx's stock
transport for a proxy), no pipelining.  It does not import httpx (~30 ms of a `tracker poll` start-up):
``tracker.transport_httpx`` puts httpx's transport interface on it.
"""

from __future__ import annotations

import asyncio
import collections
import os
import ssl
import sys
from collections.abc import AsyncIterator

import httptools

MAX_BUFFER = 256 * 1024  # unread body bytes at which reading from the socket pauses
Key = tuple[str, str, int]  # scheme, host, port
DEFAULT_PORTS = {"http": 80, "https": 443}
Timeouts = dict[str, float | None]  # "connect", "read", "write", "pool" (httpx.Timeout.as_dict())


class TransportError(Exception):
    """A request that got no complete response.  The subclasses are httpx's names for the same failures
    (``tracker.transport_httpx`` raises httpx's own classes instead)."""


class TimeoutException(TransportError):
    pass


class ConnectTimeout(TimeoutException):
    pass


class ReadTimeout(TimeoutException):
    pass


class WriteTimeout(TimeoutException):
    pass


class PoolTimeout(TimeoutException):
    pass


class NetworkError(TransportError):
    pass


class ConnectError(NetworkError):
    pass


class ReadError(NetworkError):
    pass


class WriteError(NetworkError):
    pass


class RemoteProtocolError(TransportError):
    pass


def default_ssl_context() -> ssl.SSLContext:
    """A verifying client context made as ``httpx.create_ssl_context()`` makes it (the CA file in
    ``SSL_CERT_FILE``, else the directory in ``SSL_CERT_DIR``, else certifi's bundle), without httpx."""
    if os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    if os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


class _Connection(asyncio.Protocol):
    """One TCP or TLS connection, and the response being received on it (``parser`` set meanwhile)."""

    __slots__ = (
        "buffered",
        "chunks",
        "done",
        "error",
        "head",
        "headers",
        "idle_since",
        "keep_alive",
        "lost",
        "parser",
        "pool",
        "reading",
        "reason",
        "received",
        "requests",
        "status",
        "transport",
        "version",
        "waiter",
        "writing",
    )

    transport: asyncio.Transport

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.parser: httptools.HttpResponseParser | None = None
        self.requests = 0
        self.head = False  # the request is HEAD: the response ends with its headers
        self.received = False  # any byte of the response arrived
        self.status = 0  # 0 until the final status line and headers are in
        self.reason = b""
        self.version = ""
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.done = False  # the whole response is in
        self.keep_alive = False  # the connection may carry another request (once done)
        self.error: TransportError | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.reading = True
        self.writing = True
        self.lost = False
        self.idle_since = 0.0

    # -- asyncio callbacks --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.pool.conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.keep_alive = False
        self.pool.conns.discard(self)
        if self.parser is not None and not self.done:
            if self.status and exc is None and self._ends_at_close():
                self.done = True
            elif exc is not None:
                self.error = ReadError(str(exc) or type(exc).__name__)
                self.error.__cause__ = exc
            elif not self.received:
                self.error = RemoteProtocolError("Server disconnected without sending a response.")
            else:
                self.error = RemoteProtocolError("peer closed connection without sending complete message")
        self._wake()

    def data_received(self, data: bytes) -> None:
        self.received = True
        parser = self.parser
        if parser is None or self.done:  # bytes nobody asked for: this connection is done with
            if parser is None and not self.transport.is_closing():
                self.close()
            self.keep_alive = False
            return
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # 101 Switching Protocols: the response ended there
            self.keep_alive = False
        except httptools.HttpParserError as exc:
            self.keep_alive = False
            if not self.done:
                self.error = RemoteProtocolError(str(exc) or type(exc).__name__)
        self._wake()

    def pause_writing(self) -> None:
        self.writing = False

    def resume_writing(self) -> None:
        self.writing = True
        self._wake()

    # -- httptools callbacks ------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.done:  # more bytes after the response: stop parsing, and never reuse the connection
            raise httptools.HttpParserError("data after the response")

    def on_status(self, reason: bytes) -> None:
        self.reason = reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        assert parser is not None
        status = parser.get_status_code()
        if status < 200 and status != 101:  # an interim response (100 Continue, 103 Early Hints)
            self.headers = []
            return
        self.status = status
        self.version = parser.get_http_version()
        self.keep_alive = parser.should_keep_alive()
        if self.head:
            self.done = True

    def on_body(self, body: bytes) -> None:
        if self.done:  # a body after HEAD's headers
            self.keep_alive = False
            return
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > MAX_BUFFER and self.reading:
            self.reading = False
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self.status:  # not the end of an interim response
            self.done = True

    # -- used by the pool and the body stream -------------------------------------------------------

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _ends_at_close(self) -> bool:
        """Whether the body is delimited by the connection's end (no Content-Length, not chunked)."""
        fields = {name.lower(): value for name, value in self.headers}
        coding = fields.get(b"transfer-encoding")
        if coding is not None:
            return not coding.rstrip().lower().endswith(b"chunked")
        return b"content-length" not in fields

    async def wait(self, timeout: float | None, error: type[TimeoutException]) -> None:
        """Until the socket or the parser has news, or raise ``error`` after ``timeout`` seconds without."""
        loop = self.pool.loop
        waiter = self.waiter = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, _expire, waiter, error)
        try:
            await waiter
        finally:
            self.waiter = None
            if timer is not None:
                timer.cancel()

    async def exchange(self, data: bytes, head: bool, timeouts: Timeouts) -> Reply:
        """Send one request and wait for its response's headers."""
        self.parser = httptools.HttpResponseParser(self)
        self.requests += 1
        self.head = head
        self.received = self.done = False
        self.status = self.buffered = 0
        self.headers = []
        self.chunks = []
        self.error = None
        if self.lost:  # since it was handed over
            raise WriteError("connection closed by the server")
        self.transport.write(data)
        while not self.writing:
            if self.error is not None:
                raise WriteError(str(self.error)) from self.error
            await self.wait(timeouts.get("write"), WriteTimeout)
        read = timeouts.get("read")
        while not self.status:
            if self.error is not None:
                raise self.error
            await self.wait(read, ReadTimeout)
        return Reply(self, read)

    def close(self) -> None:
        """Close now (a TLS connection sends close_notify but does not wait for the server's)."""
        self.keep_alive = False
        if self.parser is not None and not self.done and self.error is None:  # a response still streaming
            self.error = ReadError("connection closed")
            self._wake()
        self.parser = None
        self.transport.close()
        if self.pool.key[0] == "https":
            self.transport.abort()


def _expire(waiter: asyncio.Future[None], error: type[TimeoutException]) -> None:
    if not waiter.done():
        waiter.set_exception(error("timed out"))


class Reply:
    """A response: its status line and header fields as received, then its body as it arrives (still
    content-encoded); closing it gives the connection back (or closes it, if unfinished).

    ``AsyncioTransport.send`` returns it; the fetcher reads it as it is (httpx's Request and Response
    objects cost ~40 µs a request), ``tracker.transport_httpx`` wraps it in an ``httpx.Response``.
    """

    __slots__ = ("_conn", "_read_timeout", "headers", "reason", "status", "version")

    def __init__(self, conn: _Connection, read_timeout: float | None) -> None:
        self._conn: _Connection | None = conn
        self._read_timeout = read_timeout
        self.status = conn.status
        self.headers = conn.headers  # [(name, value)] as received
        self.reason = conn.reason
        self.version = conn.version

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while conn is not None:
            if conn.chunks:
                chunks = conn.chunks
                conn.chunks = []
                conn.buffered = 0
                if not conn.reading:
                    conn.reading = True
                    conn.transport.resume_reading()
                yield chunks[0] if len(chunks) == 1 else b"".join(chunks)
            elif conn.done:
                return
            elif conn.error is not None:
                raise conn.error
            else:
                await conn.wait(self._read_timeout, ReadTimeout)

    @property
    def complete(self) -> bool:
        """The whole response is in and nothing of it is left unread (e.g. a 304): closing reuses the connection."""
        conn = self._conn
        return conn is not None and conn.done and not conn.chunks

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.pool.release(conn)


class _Pool:
    """The connections to one (scheme, host, port)."""

    __slots__ = ("conns", "count", "idle", "key", "loop", "owner", "waiters")

    def __init__(self, owner: AsyncioTransport, key: Key) -> None:
        self.owner = owner
        self.key = key
        self.loop = asyncio.get_running_loop()
        self.conns: set[_Connection] = set()  # every connection until it is lost (for aclose)
        self.idle: list[_Connection] = []  # most recently used last
        self.count = 0  # connections open or being opened, idle ones included
        self.waiters: collections.deque[asyncio.Future[_Connection | None]] = collections.deque()

    async def acquire(self, timeouts: Timeouts, fresh: bool) -> _Connection:
        """An idle connection (unless ``fresh``), a new one, or the first to become free."""
        idle = self.idle
        if idle:
            oldest = self.loop.time() - self.owner.keepalive_expiry
            while idle and idle[0].idle_since < oldest:
                self.drop(idle.pop(0))
            while idle and not fresh:
                conn = idle.pop()
                if conn.keep_alive:
                    return conn
                self.drop(conn)
            if idle and self.count >= self.owner.max_connections:
                self.drop(idle.pop(0))  # make room for the new connection
        if self.count < self.owner.max_connections:
            self.count += 1
            return await self._connect(timeouts.get("connect"))
        waiter: asyncio.Future[_Connection | None] = self.loop.create_future()
        self.waiters.append(waiter)
        try:
            async with asyncio.timeout(timeouts.get("pool")):
                handed = await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():  # handed over just as the wait ended
                late = waiter.result()
                if late is None:
                    self._free_slot()
                else:
                    self.release(late)
            else:
                waiter.cancel()
            if isinstance(exc, TimeoutError):
                raise PoolTimeout("timed out waiting for a connection") from exc
            raise
        return handed if handed is not None else await self._connect(timeouts.get("connect"))

    async def _connect(self, timeout: float | None) -> _Connection:
        """A new connection, its slot in ``count`` already taken."""
        scheme, host, port = self.key
        context = self.owner.ssl_context() if scheme == "https" else None
        try:
            async with asyncio.timeout(timeout):
                _, conn = await self.loop.create_connection(
                    lambda: _Connection(self), host, port, ssl=context, server_hostname=host if context else None
                )
        except BaseException as exc:
            self._free_slot()
            if isinstance(exc, TimeoutError):
                raise ConnectTimeout("timed out connecting") from exc
            if isinstance(exc, OSError):  # ssl.SSLError included
                raise ConnectError(str(exc) or type(exc).__name__) from exc
            raise
        return conn

    def release(self, conn: _Connection) -> None:
        """Keep ``conn`` for the next request if its response is all in and the server allows it."""
        if not (conn.done and conn.keep_alive):
            self.drop(conn)
            return
        conn.parser = None
        conn.chunks = []
        if not conn.reading:
            conn.reading = True
            conn.transport.resume_reading()
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        conn.idle_since = self.loop.time()
        self.idle.append(conn)

    def drop(self, conn: _Connection) -> None:
        conn.close()
        self._free_slot()

    def _free_slot(self) -> None:
        self.count -= 1
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                self.count += 1
                waiter.set_result(None)
                return


class AsyncioTransport:
    """HTTP/1.1 over pooled keep-alive connections, one pool per (scheme, host, port).

    ``max_connections`` per pool (idle ones included) and ``keepalive_expiry`` seconds an idle
    connection is kept.  ``ssl_context`` is used for https (``default_ssl_context()``, made when first
    needed, if None).
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int | None = 100,  # httpx.Limits' defaults
        keepalive_expiry: float | None = 5.0,
    ) -> None:
        self._ssl_context = ssl_context
        self.max_connections = max_connections or sys.maxsize
        self.keepalive_expiry = keepalive_expiry if keepalive_expiry is not None else float("inf")
        self._pools: dict[Key, _Pool] = {}

    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = default_ssl_context()
        return self._ssl_context

    async def send(self, key: Key, data: bytes, timeouts: Timeouts, *, head: bool = False) -> Reply:
        """Send ``data`` (a whole request: request line, header fields, body) to ``key``'s (scheme, host,
        port) on a pooled connection; the reply once its header fields are in."""
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = _Pool(self, key)
        fresh = False
        while True:
            conn = await pool.acquire(timeouts, fresh)
            reused = conn.requests > 0
            try:
                return await conn.exchange(data, head, timeouts)
            except (ReadError, WriteError, RemoteProtocolError):
                pool.drop(conn)
                # the server closed an idle connection just as it was reused: once more, on a new one
                if fresh or not reused or conn.received:
                    raise
                fresh = True
            except BaseException:
                pool.drop(conn)
                raise

    async def aclose(self) -> None:
        conns = [conn for pool in self._pools.values() for conn in pool.conns]
        self._pools.clear()
        for conn in conns:
            conn.close()
        if conns:
            await asyncio.sleep(0)  # asyncio closes the sockets in its next round of callbacks
