"""A TCP proxy that breaks the link on demand: cut, black-hole, delay, reset.

It sits between the worker and a server (the broker, or PostgreSQL's Unix socket) and
forwards bytes both ways until told otherwise:

- ``cut()``: close every connection (FIN) and refuse new ones until ``heal()``;
- ``blackhole()``: keep every connection open but forward nothing, in either direction,
  until ``heal()`` (a host that vanished without a word); new connections hang too. A
  proxy made with ``postgres_frames=True`` lets a PostgreSQL message the client has begun
  finish first: a real vanished host leaves a server mid-message too, but the server's TCP
  keepalive probes then go unanswered and end the session, whereas this proxy's kernel,
  alive, answers them; at a message boundary the server's own idle timers apply, as they
  would;
- ``delay(seconds)``: hold every chunk that long before forwarding it;
- ``reset()``: abort every open connection (RST) once; new ones pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass, field

STARTUP_V3 = 196608
"""The protocol version a PostgreSQL startup packet carries (an SSL, GSS or cancel request
carries another code; every message after the startup packet starts with a type byte)."""


class FrontendFrames:
    """Where a PostgreSQL client's messages end in its byte stream."""

    def __init__(self) -> None:
        self._head = b""
        self._left = 0
        self._typed = False

    @property
    def at_boundary(self) -> bool:
        return not self._head and not self._left

    def ends(self, data: bytes) -> list[int]:
        """Offsets in ``data`` just past each message that ends in it."""
        out: list[int] = []
        i = 0
        while i < len(data):
            if self._left:
                take = min(self._left, len(data) - i)
                i += take
                self._left -= take
                if not self._left:
                    out.append(i)
                continue
            size = 5 if self._typed else 8
            take = min(size - len(self._head), len(data) - i)
            self._head += data[i : i + take]
            i += take
            if len(self._head) < size:
                break
            if self._typed:
                self._left = int.from_bytes(self._head[1:5], "big") - 4
            else:
                self._left = int.from_bytes(self._head[:4], "big") - 8
                self._typed = int.from_bytes(self._head[4:8], "big") == STARTUP_V3
            self._head = b""
            if not self._left:
                out.append(i)
        return out


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        for w in (self.client, self.server):
            w.transport.abort()


class FaultProxy:
    def __init__(
        self,
        name: str,
        *,
        target_host: str | None = None,
        target_port: int | None = None,
        target_unix: str | None = None,
        port: int = 0,
        postgres_frames: bool = False,
    ) -> None:
        self.name = name
        self._host = target_host
        self._port = target_port
        self._unix = target_unix
        self._listen_port = port
        self._postgres_frames = postgres_frames
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.refusing = False
        self.delay_seconds = 0.0
        self.connections = 0
        """Connections accepted so far."""

    @property
    def port(self) -> int:
        assert self._server is not None
        sock: socket.socket = self._server.sockets[0]
        return int(sock.getsockname()[1])

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self._listen_port)
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.abort()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    # -- faults -------------------------------------------------------------------------

    def heal(self) -> None:
        self.refusing = False
        self.delay_seconds = 0.0
        self._flowing.set()

    def cut(self) -> None:
        self.refusing = True
        for link in list(self._links):
            for w in (link.client, link.server):
                w.close()

    def blackhole(self) -> None:
        self._flowing.clear()

    def delay(self, seconds: float) -> None:
        self.delay_seconds = seconds

    def reset(self) -> int:
        links = list(self._links)
        for link in links:
            link.abort()
        return len(links)

    # -- forwarding ---------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.refusing:
            writer.transport.abort()
            return
        await self._flowing.wait()
        try:
            if self._unix is not None:
                up_reader, up_writer = await asyncio.open_unix_connection(self._unix)
            else:
                assert self._host is not None
                assert self._port is not None
                up_reader, up_writer = await asyncio.open_connection(self._host, self._port)
        except OSError:
            writer.transport.abort()
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        frames = FrontendFrames() if self._postgres_frames else None
        link.tasks = [
            asyncio.create_task(
                self._pipe(reader, up_writer, link, frames), name=f"{self.name}-up"
            ),
            asyncio.create_task(self._pipe(up_reader, writer, link), name=f"{self.name}-down"),
        ]
        try:
            await asyncio.gather(*link.tasks, return_exceptions=True)
        finally:
            self._links.discard(link)
            link.abort()

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        link: _Link,
        frames: FrontendFrames | None = None,
    ) -> None:
        try:
            while data := await reader.read(65536):
                if self.delay_seconds:
                    await asyncio.sleep(self.delay_seconds)
                at_boundary = frames is None or frames.at_boundary
                cuts = [] if frames is None else frames.ends(data)
                start = 0
                for end in [*cuts, len(data)]:
                    if end <= start:
                        continue
                    if at_boundary:
                        # A black hole holds what begins a message, never its remainder.
                        await self._flowing.wait()
                    if link not in self._links:
                        return
                    writer.write(data[start:end])
                    await writer.drain()
                    start, at_boundary = end, True
        except (OSError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            # One side closing ends the whole link, as a real connection would.
            link.abort()
