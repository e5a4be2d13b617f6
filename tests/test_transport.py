"""The asyncio network backend under httpx, against real servers on 127.0.0.1 (plain and TLS)."""

from __future__ import annotations

import asyncio
import socket
import ssl

import httpx
import pytest
import trustme
from pytest_httpserver import HTTPServer

from tracker.transport import AsyncioTransport

LIMITS = httpx.Limits(max_connections=4, max_keepalive_connections=4, keepalive_expiry=30)


async def get_twice(url: str, ctx: ssl.SSLContext) -> list[tuple[int, bytes]]:
    async with httpx.AsyncClient(transport=AsyncioTransport(ssl_context=ctx, limits=LIMITS)) as client:
        out = []
        for _ in range(2):
            r = await client.get(url)
            out.append((r.status_code, r.content))
        return out


def test_plain_http_keeps_the_connection_alive(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/f").respond_with_data("<rss/>")
    got = asyncio.run(get_twice(httpserver.url_for("/f"), ssl.create_default_context()))
    assert got == [(200, b"<rss/>"), (200, b"<rss/>")]


def test_tls_with_a_trusted_certificate() -> None:
    ca = trustme.CA()
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    server = HTTPServer(host="localhost", port=0, ssl_context=server_ctx)
    server.expect_request("/f").respond_with_data("<feed/>")
    server.start()
    try:
        url = server.url_for("/f")
        assert url.startswith("https://")
        assert asyncio.run(get_twice(url, client_ctx)) == [(200, b"<feed/>"), (200, b"<feed/>")]
        # a client that does not trust this CA refuses the connection
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            asyncio.run(get_twice(url, ssl.create_default_context()))
    finally:
        server.clear()
        server.stop()


def test_errors_are_httpx_errors() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(httpx.ConnectError):
        asyncio.run(get_twice(f"http://127.0.0.1:{port}/", ssl.create_default_context()))


def test_read_timeout() -> None:
    async def main() -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(5)
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport = AsyncioTransport(ssl_context=ssl.create_default_context(), limits=LIMITS)
        async with server, httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(0.2)) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.get(f"http://127.0.0.1:{port}/")

    asyncio.run(main())
