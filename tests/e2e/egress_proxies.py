"""Small egress proxies for the egress tests: a SOCKS5 proxy (RFC 1928, username/password of RFC 1929) and an
HTTP CONNECT proxy, each on its own loopback port and asyncio loop thread.

Each one connects onward from its own source address (`source_ip`, e.g. 127.0.0.2; all of 127/8 is loopback
on Linux), so the simulator's per-peer stats show which connections came through which proxy, and each counts
what it did itself (`accepted`, `tunnels`, `refused_auth`, `targets`). `stop()` closes the listener and every
open tunnel (a dead proxy, not a paused one); `start()` again listens on the same port.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
import ssl
import struct
import threading
from concurrent.futures import Future


class TunnelProxy:
    """The common part: a listener on a loop thread, counters, and the byte pump of an open tunnel."""

    kind = "proxy"

    def __init__(self, source_ip: str, user: str | None = None, password: str | None = None,
                 tls: ssl.SSLContext | None = None):
        self.source_ip = source_ip
        # With `tls`, clients speak TLS to the proxy itself (an `https://` proxy).
        self.tls = tls
        self.user = user
        self.password = password
        self.port = _free_port()
        self.accepted = 0
        self.tunnels = 0
        self.refused_auth = 0
        self.targets: list[str] = []
        # SOCKS5 only: how each target was named (1 = IPv4, 3 = a name for the proxy to resolve, 4 = IPv6).
        self.address_types: list[int] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"{self.kind}-{self.port}",
                                        daemon=True)
        self._thread.start()
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        raise NotImplementedError

    def _run(self, coroutine) -> object:
        future: Future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout=10)

    def start(self) -> "TunnelProxy":
        async def listen() -> None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True,
                                                      ssl=self.tls)
        self._run(listen())
        return self

    def stop(self) -> None:
        """Closes the listener and every tunnel: afterwards a connection to the port is refused."""
        async def close() -> None:
            server, self._server = self._server, None
            if server is not None:
                server.close()
            for writer in list(self._writers):
                writer.close()
            self._writers.clear()
            if server is not None:
                try:
                    await asyncio.wait_for(server.wait_closed(), 5)
                except asyncio.TimeoutError:
                    pass
        self._run(close())

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self.accepted += 1
        self._writers.add(writer)
        try:
            target = await self._handshake(reader, writer)
            if target is None:
                return
            host, port = target
            try:
                up_reader, up_writer = await asyncio.open_connection(
                    host, port, local_addr=(self._source_for(writer), 0), family=socket.AF_INET)
            except OSError:
                await self._failed(writer)
                return
            self._writers.add(up_writer)
            with self._lock:
                self.tunnels += 1
                self.targets.append(f"{host}:{port}")
            await self._succeeded(writer)
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    def _source_for(self, writer: asyncio.StreamWriter) -> str:
        return self.source_ip

    async def _handshake(self, reader, writer) -> tuple[str, int] | None:
        raise NotImplementedError

    async def _succeeded(self, writer) -> None:
        raise NotImplementedError

    async def _failed(self, writer) -> None:
        raise NotImplementedError


class Socks5Proxy(TunnelProxy):
    kind = "socks5"

    @property
    def url(self) -> str:
        return f"socks5h://127.0.0.1:{self.port}"

    async def _handshake(self, reader, writer):
        version, count = await reader.readexactly(2)
        methods = await reader.readexactly(count)
        if version != 5:
            return None
        wanted = 2 if self.user is not None else 0
        if wanted not in methods:
            writer.write(b"\x05\xff")
            await writer.drain()
            return None
        writer.write(bytes([5, wanted]))
        await writer.drain()
        if wanted == 2:
            _, ulen = await reader.readexactly(2)
            user = (await reader.readexactly(ulen)).decode()
            (plen,) = await reader.readexactly(1)
            password = (await reader.readexactly(plen)).decode()
            ok = (user, password) == (self.user, self.password)
            writer.write(b"\x01\x00" if ok else b"\x01\x01")
            await writer.drain()
            if not ok:
                with self._lock:
                    self.refused_auth += 1
                return None
        version, command, _, atyp = await reader.readexactly(4)
        if version != 5 or command != 1:
            return None
        if atyp == 1:
            host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
        elif atyp == 4:
            host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
        elif atyp == 3:
            (length,) = await reader.readexactly(1)
            host = (await reader.readexactly(length)).decode()
        else:
            return None
        (port,) = struct.unpack("!H", await reader.readexactly(2))
        with self._lock:
            self.address_types.append(atyp)
        return host, port

    async def _succeeded(self, writer) -> None:
        writer.write(b"\x05\x00\x00\x01" + socket.inet_aton(self.source_ip) + b"\x00\x00")
        await writer.drain()

    async def _failed(self, writer) -> None:
        writer.write(b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00")
        await writer.drain()


class ConnectProxy(TunnelProxy):
    kind = "connect"

    @property
    def url(self) -> str:
        # A TLS proxy is named as its certificate names it.
        return f"https://localhost:{self.port}" if self.tls else f"http://127.0.0.1:{self.port}"

    async def _handshake(self, reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, authority, _ = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:] if l)}
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            await writer.drain()
            return None
        if self.user is not None:
            expected = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            if headers.get("proxy-authorization") != expected:
                with self._lock:
                    self.refused_auth += 1
                writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                             b"Proxy-Authenticate: Basic realm=\"e2e\"\r\n\r\n")
                await writer.drain()
                return None
        host, _, port = authority.rpartition(":")
        return host.strip("[]"), int(port)

    async def _succeeded(self, writer) -> None:
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()

    async def _failed(self, writer) -> None:
        writer.write(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
        await writer.drain()


class TlsFront(TunnelProxy):
    """Google's TLS in front of the plain-HTTP simulator: it terminates TLS (a certificate for localhost) and
    forwards the bytes to the sim from the address the connection came from, so the sim's per-peer stats still
    show the path. It records the SNI of every handshake (`server_names`) and who connected (`peers`)."""

    kind = "tls-front"

    def __init__(self, backend_port: int, tls: ssl.SSLContext):
        super().__init__("127.0.0.1", tls=tls)
        self.backend_port = backend_port
        self.server_names: list[str | None] = []
        self.peers: list[str] = []
        tls.sni_callback = lambda _sock, name, _context: self.server_names.append(name)

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def _source_for(self, writer: asyncio.StreamWriter) -> str:
        return writer.get_extra_info("peername")[0]

    async def _handshake(self, reader, writer):
        with self._lock:
            self.peers.append(writer.get_extra_info("peername")[0])
        return "127.0.0.1", self.backend_port

    async def _succeeded(self, writer) -> None:
        pass

    async def _failed(self, writer) -> None:
        pass


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
