"""A TLS-terminating asyncio proxy, standing in for servers that cannot do TLS themselves.

The embedded broker (Tansu) cannot turn TLS on and the embedded PostgreSQL build has no
SSL. This proxy accepts TLS from the client with a certificate of a test CA and forwards
the plaintext to the real server, so clients do a real handshake and a real certificate
check against a real server behind it.

- ``kafka`` mode: TLS from the first byte, as a Kafka SSL listener does.
- ``postgres`` mode: PostgreSQL's negotiation. The client's SSLRequest is answered ``S``
  and the connection is then wrapped in TLS (or ``N`` when ``offer_tls`` is off, as a
  server without SSL answers); a client that starts without TLS is forwarded as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable
from typing import Literal

Upstream = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104


class TlsProxy:
    def __init__(
        self,
        upstream: Upstream,
        context: ssl.SSLContext,
        *,
        mode: Literal["kafka", "postgres"],
        offer_tls: bool = True,
    ) -> None:
        self.upstream = upstream
        self.context = context
        self.mode = mode
        self.offer_tls = offer_tls
        self.connections = 0
        """Client connections accepted (a refused login must not be tried again and again)."""
        self.handshakes = 0
        """Completed TLS handshakes (proof that a client really went through TLS)."""
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        assert self._listener is not None
        return int(self._listener.getsockname()[1])

    async def start(self) -> TlsProxy:
        # Accepting plain sockets and wrapping them here (rather than asyncio.start_server
        # and StreamWriter.start_tls) makes a handshake the client aborts an ordinary
        # exception of that connection.
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.setblocking(False)
        self._listener = listener
        self._accepting = asyncio.create_task(self._accept_loop(), name="tls-proxy-accept")
        return self

    async def close(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
            await asyncio.gather(self._accepting, return_exceptions=True)
        if self._listener is not None:
            self._listener.close()
        for writer in list(self._writers):
            writer.close()
        if self._tasks:
            _done, pending = await asyncio.wait(list(self._tasks), timeout=5)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def __aenter__(self) -> TlsProxy:
        return await self.start()

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def _accept_loop(self) -> None:
        assert self._listener is not None
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(self._listener)
            conn.setblocking(False)
            self.connections += 1
            task = asyncio.create_task(self._connection(conn), name="tls-proxy-connection")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _connection(self, conn: socket.socket) -> None:
        writers: list[asyncio.StreamWriter] = []
        handed_over = False
        try:
            negotiated = await self._negotiate(conn)
            handed_over = True
            await self._serve(conn, negotiated, writers)
        except Exception:
            # A client that refused our certificate or hung up, or the proxy closing:
            # that connection ends, the proxy goes on.
            pass
        finally:
            for writer in writers:
                self._writers.discard(writer)
                writer.close()
            if conn.fileno() != -1 and not handed_over:
                # Until a transport owns the socket, closing it is ours to do (after that,
                # closing it here would free its descriptor under the transport's feet).
                conn.close()

    async def _negotiate(self, conn: socket.socket) -> tuple[bool, bytes]:
        """(whether to wrap the connection in TLS, bytes already read to forward)."""
        if self.mode == "kafka":
            return True, b""
        loop = asyncio.get_running_loop()
        while True:
            head = await _receive_exactly(conn, 8)
            length, code = struct.unpack("!ii", head)
            if length == 8 and code == _GSSENC_REQUEST:
                await loop.sock_sendall(conn, b"N")
            elif length == 8 and code == _SSL_REQUEST:
                await loop.sock_sendall(conn, b"S" if self.offer_tls else b"N")
                if self.offer_tls:
                    return True, b""
            else:
                return False, head  # a StartupMessage: the client goes on without TLS

    async def _serve(
        self,
        conn: socket.socket,
        negotiated: tuple[bool, bytes],
        writers: list[asyncio.StreamWriter],
    ) -> None:
        loop = asyncio.get_running_loop()
        tls, first = negotiated
        reader = asyncio.StreamReader()
        protocol = asyncio.StreamReaderProtocol(reader)
        transport, _ = await loop.connect_accepted_socket(
            lambda: protocol, conn, ssl=self.context if tls else None
        )
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        writers.append(writer)
        self._writers.add(writer)
        if tls:
            self.handshakes += 1
        up_reader, up_writer = await self.upstream()
        writers.append(up_writer)
        self._writers.add(up_writer)
        if first:
            up_writer.write(first)
        pumps = [
            asyncio.create_task(_pump(reader, up_writer)),
            asyncio.create_task(_pump(up_reader, writer)),
        ]
        try:
            # Neither protocol half-closes: when one side hangs up, so does the other.
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)


async def _receive_exactly(conn: socket.socket, size: int) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    while len(data) < size:
        chunk = await loop.sock_recv(conn, size - len(data))
        if not chunk:
            raise ConnectionError("the client hung up")
        data += chunk
    return data


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ssl.SSLError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()


def tcp_upstream(host: str, port: int) -> Upstream:
    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(host, port)

    return connect


def unix_upstream(path: str) -> Upstream:
    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_unix_connection(path)

    return connect
