"""Raw HTTP/1.1 servers on 127.0.0.1 for transport and fetch tests: exact bytes out, request heads in."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Served:
    url: str = ""
    connections: int = 0
    requests: int = 0
    heads: list[bytes] = field(default_factory=list)  # each request's head, as received


@contextlib.asynccontextmanager
async def serve(handler: Handler, path: str = "/feed.xml") -> AsyncIterator[Served]:
    """Runs ``handler`` for each connection to a server on 127.0.0.1, counting connections."""
    served = Served()

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served.connections += 1
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(connected, "127.0.0.1", 0)
    served.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}{path}"
    async with server:
        yield served


def replies(served: Served, *answers: bytes, forever: bool = False) -> Handler:
    """A handler answering each request on a connection with the next of ``answers`` (the last again if ``forever``)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        i = 0
        while i < len(answers) or forever:
            served.heads.append(await reader.readuntil(b"\r\n\r\n"))
            served.requests += 1
            writer.write(answers[min(i, len(answers) - 1)])
            await writer.drain()
            i += 1
        await reader.read()  # until the client closes

    return handler
