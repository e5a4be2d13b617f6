"""``tracker.transport.AsyncioTransport`` behind httpx's transport interface.

``httpx.AsyncClient(transport=HttpxTransport())`` gets our connection pools with httpx's API, requests
and exceptions.  The fetcher does not need it (it calls ``AsyncioTransport.send`` itself, and never
imports httpx for a plain feed URL); the tests use it to hold the transport to httpx's behaviour.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import httpx

from tracker import transport

_ERRORS: dict[type[transport.TransportError], type[httpx.TransportError]] = {
    transport.ConnectTimeout: httpx.ConnectTimeout,
    transport.ReadTimeout: httpx.ReadTimeout,
    transport.WriteTimeout: httpx.WriteTimeout,
    transport.PoolTimeout: httpx.PoolTimeout,
    transport.ConnectError: httpx.ConnectError,
    transport.ReadError: httpx.ReadError,
    transport.WriteError: httpx.WriteError,
    transport.RemoteProtocolError: httpx.RemoteProtocolError,
}


def _httpx_error(exc: transport.TransportError) -> httpx.TransportError:
    """httpx's exception for ours, same message; raised from ours' cause (the OS's error), as httpcore does."""
    return _ERRORS.get(type(exc), httpx.TransportError)(str(exc))


class ReplyStream(httpx.AsyncByteStream):
    """A Reply as an httpx response stream: our exceptions become httpx's."""

    def __init__(self, reply: transport.Reply) -> None:
        self.reply = reply

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.reply:
                yield chunk
        except transport.TransportError as exc:
            raise _httpx_error(exc) from (exc.__cause__ or exc)

    async def aclose(self) -> None:
        await self.reply.aclose()


class HttpxTransport(httpx.AsyncBaseTransport):
    """``limits``: ``max_connections`` per (scheme, host, port) and ``keepalive_expiry``; idle
    connections are at most ``max_connections``, so ``max_keepalive_connections`` is not used."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None, limits: httpx.Limits | None = None) -> None:
        limits = limits or httpx.Limits()
        self.transport = transport.AsyncioTransport(
            ssl_context=ssl_context, max_connections=limits.max_connections, keepalive_expiry=limits.keepalive_expiry
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}")
        key = (scheme, url.raw_host.decode("ascii"), url.port or transport.DEFAULT_PORTS[scheme])
        data = await _serialise(request)
        try:
            reply = await self.transport.send(
                key, data, request.extensions.get("timeout", {}), head=request.method == "HEAD"
            )
        except transport.TransportError as exc:
            raise _httpx_error(exc) from (exc.__cause__ or exc)
        return httpx.Response(
            reply.status,
            headers=reply.headers,
            stream=ReplyStream(reply),
            extensions={"http_version": b"HTTP/" + reply.version.encode(), "reason_phrase": reply.reason},
        )

    async def aclose(self) -> None:
        await self.transport.aclose()


async def _serialise(request: httpx.Request) -> bytes:
    """The request as sent: request line, headers as httpx made them (Host included), then the body."""
    lines = [b"%s %s HTTP/1.1\r\n" % (request.method.encode("ascii"), request.url.raw_path)]
    lines += [b"%s: %s\r\n" % field for field in request.headers.raw]
    lines.append(b"\r\n")
    try:
        lines.append(request.content)
    except httpx.RequestNotRead:  # streamed content, which httpx frames as chunked unless given a length
        body = await request.aread()
        if "chunked" in request.headers.get("transfer-encoding", "").lower():
            body = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
        lines.append(body)
    return b"".join(lines)
