"""A TCP proxy that breaks the link on demand: cut, black-hole, delay, reset.

It sits between the worker and a server (the broker, or PostgreSQL's Unix socket) and
forwards bytes both ways until told otherwise:

- ``cut()``: close every connection (FIN) and refuse new ones until ``heal()``;
- ``blackhole()``: keep every connection open but forward nothing, in either direction,
  until ``heal()`` (a host that vanished without a word); new connections hang too;
- ``delay(seconds)``: hold every chunk that long before forwarding it;
- ``reset()``: abort every open connection (RST) once; new ones pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass, field


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
    ) -> None:
        self.name = name
        self._host = target_host
        self._port = target_port
        self._unix = target_unix
        self._listen_port = port
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
        link.tasks = [
            asyncio.create_task(self._pipe(reader, up_writer, link), name=f"{self.name}-up"),
            asyncio.create_task(self._pipe(up_reader, writer, link), name=f"{self.name}-down"),
        ]
        try:
            await asyncio.gather(*link.tasks, return_exceptions=True)
        finally:
            self._links.discard(link)
            link.abort()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link
    ) -> None:
        try:
            while data := await reader.read(65536):
                if self.delay_seconds:
                    await asyncio.sleep(self.delay_seconds)
                await self._flowing.wait()
                if link not in self._links:
                    return
                writer.write(data)
                await writer.drain()
        except (OSError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            # One side closing ends the whole link, as a real connection would.
            link.abort()
