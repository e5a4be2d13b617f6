"""The asyncio + httptools transport against real servers on 127.0.0.1 (asyncio servers, and TLS)."""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
import time
from collections.abc import Awaitable

import httpx
import pytest
import trustme
from pytest_httpserver import HTTPServer
from rawhttp import Served, replies, serve

from tracker.transport import MAX_BUFFER, AsyncioTransport, Reply
from tracker.transport_httpx import HttpxTransport

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n<rss/>"


def client(max_connections: int = 4, keepalive_expiry: float = 30, **timeouts: float) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=max_connections, keepalive_expiry=keepalive_expiry)
    return httpx.AsyncClient(transport=HttpxTransport(limits=limits), timeout=httpx.Timeout(5, **timeouts))


def run(coro: Awaitable[None]) -> None:
    async def main() -> None:
        async with asyncio.timeout(10):
            await coro

    asyncio.run(main())


# --- keep-alive ------------------------------------------------------------------------------------


def test_keep_alive_reuses_one_connection() -> None:
    async def go() -> None:
        served = Served()
        async with serve(replies(served, OK, forever=True)) as s, client() as c:
            served.url = s.url
            for _ in range(5):
                r = await c.get(s.url)
                assert (r.status_code, r.content) == (200, b"<rss/>")
            assert s.connections == 1 and served.requests == 5

    run(go())


def test_responses_without_a_body_keep_the_connection() -> None:
    """304 (with a Content-Length), 204, HEAD, and a 100 Continue before the real response."""
    answers = (
        b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 1234\r\n\r\n',
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",  # to the HEAD
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n<rss/>",
        b"HTTP/1.1 304 Not Modified\r\n\r\n",
    )

    async def go() -> None:
        served = Served()
        async with serve(replies(served, *answers)) as s, client() as c:
            got = [await c.request(m, s.url) for m in ("GET", "GET", "HEAD", "GET", "GET")]
            assert [(r.status_code, r.content) for r in got] == [
                (304, b""),
                (204, b""),
                (200, b""),
                (200, b"<rss/>"),
                (304, b""),
            ]
            assert got[0].headers["etag"] == '"v1"' and got[0].reason_phrase == "Not Modified"
            assert s.connections == 1

    run(go())


def test_a_complete_response_is_released_unread() -> None:
    """What the fetcher (which calls ``AsyncioTransport.send`` itself) relies on to skip reading a 304:
    ``complete`` only once nothing is left to read, and closing such a reply gives its connection back."""
    answers = (b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\n\r\n', OK, OK)

    async def read(reply: Reply) -> bytes:
        try:
            return b"".join([chunk async for chunk in reply])
        finally:
            await reply.aclose()

    async def go() -> None:
        served = Served()
        transport = AsyncioTransport()
        async with serve(replies(served, *answers)) as s:
            key = ("http", "127.0.0.1", int(s.url.split(":")[2].split("/")[0]))
            request = b"GET /feed.xml HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            first = await transport.send(key, request, {})
            assert (first.status, first.headers, first.complete) == (304, [(b"ETag", b'"v1"')], True)
            await first.aclose()  # unread
            second = await transport.send(key, request, {})
            await asyncio.sleep(0.05)  # the body is in, but not read yet
            assert not second.complete
            assert await read(second) == b"<rss/>"
            assert await read(await transport.send(key, request, {})) == b"<rss/>"
            assert s.connections == 1
            await transport.aclose()

    run(go())


def test_chunked_body_arriving_in_pieces() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in (b"5\r\n<rss>\r\n", b"3\r\nabc\r\n", b"6\r\n</rss>\r\n", b"0\r\n\r\n"):
            await asyncio.sleep(0.02)
            writer.write(piece)
            await writer.drain()
        await reader.read()

    async def go() -> None:
        async with serve(handler) as s, client() as c, c.stream("GET", s.url) as r:
            assert [raw async for raw in r.aiter_raw()] == [b"<rss>", b"abc", b"</rss>"]

    run(go())


def test_body_delimited_by_the_connection_closing() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/xml\r\n\r\n<rss>")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"</rss>")

    async def go() -> None:
        async with serve(handler) as s, client() as c:
            for _ in range(2):
                r = await c.get(s.url)
                assert (r.status_code, r.http_version, r.content) == (200, "HTTP/1.0", b"<rss></rss>")
            assert s.connections == 2

    run(go())


def test_connection_close_from_the_server_is_honoured() -> None:
    close = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 6\r\n\r\n<rss/>"

    async def go() -> None:
        served = Served()
        async with serve(replies(served, close, forever=True)) as s, client() as c:  # it does not close
            assert [(await c.get(s.url)).content for _ in range(3)] == [b"<rss/>"] * 3
            assert s.connections == 3

    run(go())


def test_idle_connection_closed_by_the_server_is_not_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK)  # keep-alive, then closed at once
        await writer.drain()

    async def go() -> None:
        async with serve(handler) as s, client() as c:
            await c.get(s.url)
            await asyncio.sleep(0.1)  # the client sees the close while the connection is idle
            assert (await c.get(s.url)).content == b"<rss/>"
            assert s.connections == 2

    run(go())


def test_reused_connection_closed_as_the_request_arrives_is_retried_once() -> None:
    """The race a keep-alive client always runs: the server closes an idle connection just as it is reused."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK)
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")  # the second request: close without an answer

    async def go() -> None:
        async with serve(handler) as s, client() as c:
            assert (await c.get(s.url)).content == b"<rss/>"
            assert (await c.get(s.url)).content == b"<rss/>"  # retried on a new connection
            assert s.connections == 2

    run(go())


def test_new_connection_closed_without_an_answer_is_not_retried() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")

    async def go() -> None:
        async with serve(handler) as s, client() as c:
            with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
                await c.get(s.url)
            assert s.connections == 1

    run(go())


def test_keepalive_expiry() -> None:
    async def go() -> None:
        served = Served()
        async with serve(replies(served, OK, forever=True)) as s, client(keepalive_expiry=0.1) as c:
            await c.get(s.url)
            await c.get(s.url)
            await asyncio.sleep(0.2)
            await c.get(s.url)
            assert s.connections == 2

    run(go())


def test_max_connections_and_pool_timeout() -> None:
    async def go() -> None:
        served = Served()
        async with serve(replies(served, OK, forever=True)) as s, client(max_connections=2, pool=0.2) as c:
            results = await asyncio.gather(*(c.get(s.url) for _ in range(10)))
            assert [r.content for r in results] == [b"<rss/>"] * 10
            assert s.connections == 2
            async with c.stream("GET", s.url), c.stream("GET", s.url):  # both connections busy
                with pytest.raises(httpx.PoolTimeout):
                    await c.get(s.url)
            assert (await c.get(s.url)).content == b"<rss/>"  # the two went back to the pool

    run(go())


def test_request_body_is_sent() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        body = await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(head) + len(body), head + body))
        await writer.drain()
        await reader.read()

    async def go() -> None:
        async with serve(handler) as s, client() as c:
            r = await c.post(s.url + "?q=1", content=b"hello")
            assert r.content.startswith(b"POST /feed.xml?q=1 HTTP/1.1\r\n")
            assert b"\r\nHost: 127.0.0.1:" in r.content and r.content.endswith(b"\r\n\r\nhello")

    run(go())


# --- streaming, flow control ---------------------------------------------------------------------------


def test_closing_a_streamed_response_early_closes_its_connection() -> None:
    server_saw_close = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n")
        try:
            while True:
                writer.write(b"x" * 65536)
                await writer.drain()
        except ConnectionError:
            server_saw_close.set()

    async def go() -> None:
        async with serve(handler) as s, client() as c:
            async with c.stream("GET", s.url) as r:
                async for raw in r.aiter_raw():
                    assert raw
                    break
            await asyncio.wait_for(server_saw_close.wait(), 2)
            async with c.stream("GET", s.url) as r:
                assert r.status_code == 200
            assert s.connections == 2

    run(go())


def test_reading_pauses_while_the_body_is_not_consumed() -> None:
    size = 32 * 1024 * 1024  # more than the kernel's socket buffers hold
    drained_at = 0.0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal drained_at
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        writer.write(bytes(size))
        await writer.drain()
        drained_at = time.monotonic()
        await reader.read()

    async def go() -> None:
        async with serve(handler) as s, client() as c, c.stream("GET", s.url) as r:
            await asyncio.sleep(0.3)  # not reading: the client stops reading the socket, the server blocks
            conn = next(iter(next(iter(c._transport.transport._pools.values())).conns))  # type: ignore[attr-defined]
            assert MAX_BUFFER < conn.buffered <= 2 * MAX_BUFFER and not conn.reading
            reading_from = time.monotonic()
            received = 0
            async for raw in r.aiter_raw():
                received += len(raw)
                assert conn.buffered <= 2 * MAX_BUFFER
            assert received == size
            assert drained_at > reading_from

    run(go())


# --- timeouts and errors -----------------------------------------------------------------------------


def test_read_timeout_is_the_gap_between_bytes() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
        for _ in range(5):  # 0.5 s in all, never more than 0.1 s without a byte
            await asyncio.sleep(0.1)
            writer.write(b"x")
            await writer.drain()
        await asyncio.sleep(5)  # then nothing

    async def go() -> None:
        async with serve(handler) as s, client(read=0.5) as c, c.stream("GET", s.url) as r:
            received = 0
            started = time.monotonic()
            with pytest.raises(httpx.ReadTimeout):
                async for raw in r.aiter_raw():
                    received += len(raw)
            assert received == 5
            assert 0.95 < time.monotonic() - started < 2.5  # 0.5 s of drip, then the 0.5 s timeout

    run(go())


def test_read_timeout_before_the_headers() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async def go() -> None:
        async with serve(handler) as s, client(read=0.2) as c:
            with pytest.raises(httpx.ReadTimeout):
                await c.get(s.url)

    run(go())


def test_connection_refused_keeps_the_os_error() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def go() -> None:
        async with client() as c:
            with pytest.raises(httpx.ConnectError) as caught:
                await c.get(f"http://127.0.0.1:{port}/")
        cause = caught.value.__cause__
        assert isinstance(cause, OSError) and cause.errno == errno.ECONNREFUSED

    run(go())


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 abc Nope\r\nContent-Length: 0\r\n\r\n",
        b"<html>not http</html>\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_malformed_response_is_a_protocol_error(answer: bytes) -> None:
    async def go() -> None:
        served = Served()
        async with serve(replies(served, answer)) as s, client() as c:
            with pytest.raises(httpx.RemoteProtocolError):
                await c.get(s.url)

    run(go())


def test_body_cut_short_is_a_protocol_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")

    async def go() -> None:
        async with serve(handler) as s, client() as c:
            with pytest.raises(httpx.RemoteProtocolError, match="complete message"):
                await c.get(s.url)

    run(go())


# --- TLS, closing ----------------------------------------------------------------------------------------


def test_tls_with_a_trusted_certificate() -> None:
    ca = trustme.CA()
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    server = HTTPServer(host="localhost", port=0, ssl_context=server_ctx)
    server.expect_request("/f").respond_with_data("<feed/>")
    server.start()

    async def get_twice(ctx: ssl.SSLContext) -> list[tuple[int, bytes]]:
        async with httpx.AsyncClient(transport=HttpxTransport(ssl_context=ctx)) as c:
            return [((r := await c.get(url)).status_code, r.content) for _ in range(2)]

    try:
        url = server.url_for("/f")
        assert url.startswith("https://")
        assert asyncio.run(get_twice(client_ctx)) == [(200, b"<feed/>"), (200, b"<feed/>")]
        # a client that does not trust this CA refuses the connection
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            asyncio.run(get_twice(ssl.create_default_context()))
    finally:
        server.clear()
        server.stop()


def test_aclose_closes_idle_connections_at_once() -> None:
    closed = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK)
        await writer.drain()
        await reader.read()
        closed.set()

    async def go() -> None:
        async with serve(handler) as s:
            c = client()
            await c.get(s.url)
            started = time.monotonic()
            await c.aclose()
            await asyncio.wait_for(closed.wait(), 1)
            assert time.monotonic() - started < 0.2

    run(go())
