"""Serving the admin application on every ``admin.listen`` address.

The endpoint is HTTPS with the device identity. ``http://`` is accepted in
``admin.listen`` only for a loopback address (a reverse proxy on the same box);
asking for plain HTTP on any other address is a :class:`ConfigError`.

Connections are bounded where they are accepted (:class:`ConnectionBudget`): every TLS
connection costs its buffers (asyncio keeps 256 KiB per connection) from the moment it
is accepted, before any request, so a client address may hold ``admin.source_connections``
and all together ``admin.max_connections``; one more is closed at once.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import threading
from dataclasses import dataclass

from aiohttp import web

from certstore.errors import CertStoreError
from gateway.admin.state import STATE
from gateway.admin.tls import AdminTlsError, DeviceTls
from gateway.config import Config
from gateway.errors import ConfigError
from gateway.log import get_logger

SHUTDOWN_TIMEOUT = 3.0  # seconds given to open requests at shutdown
IDENTITY_POLL_SECONDS = 2.0  # how often a changed device identity is looked for

_log = get_logger(area="admin")


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenAddress:
    host: str
    port: int
    tls: bool = True

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def url(self, port: int | None = None) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host}:{self.port if port is None else port}/"


def parse_listen(text: str, key: str = "admin.listen") -> ListenAddress:
    """``host:port``, ``[v6]:port``, ``https://host:port`` or (loopback only) ``http://...``."""
    value = text.strip()
    tls = True
    if value.startswith("https://"):
        value = value[len("https://") :]
    elif value.startswith("http://"):
        value = value[len("http://") :]
        tls = False
    value = value.rstrip("/")
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ConfigError(f'Config key {key}: "{text}" is not "[address]:port".')
        port_text = rest[1:]
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep or not host:
            raise ConfigError(f'Config key {key}: "{text}" is not "host:port".')
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f'Config key {key}: the port in "{text}" is not a number.') from None
    if not 0 <= port <= 65535:
        raise ConfigError(f'Config key {key}: the port in "{text}" is not 0 to 65535.')
    address = ListenAddress(host=host, port=port, tls=tls)
    if not tls and not address.is_loopback:
        raise ConfigError(
            f'Config key {key}: "{text}" asks for plain HTTP on a non-loopback address; the '
            "admin endpoint serves other machines only over HTTPS. Drop the http:// prefix."
        )
    return address


def parse_listen_all(config: Config) -> tuple[ListenAddress, ...]:
    return tuple(
        parse_listen(text, f"admin.listen[{i}]") for i, text in enumerate(config.admin.listen)
    )


class ConnectionBudget:
    """Open admin connections, per client address and in all."""

    def __init__(self, total: int, per_source: int) -> None:
        self.total = total
        self.per_source = per_source
        self._lock = threading.Lock()
        self._open = 0
        self._by_source: dict[str, int] = {}
        self.refused = 0

    def take(self, source: str) -> bool:
        with self._lock:
            count = self._by_source.get(source, 0)
            if self._open >= self.total or count >= self.per_source:
                self.refused += 1
                return False
            self._open += 1
            self._by_source[source] = count + 1
            return True

    def release(self, source: str) -> None:
        with self._lock:
            self._open -= 1
            left = self._by_source.get(source, 1) - 1
            if left > 0:
                self._by_source[source] = left
            else:
                self._by_source.pop(source, None)


class _CountedConnection(socket.socket):
    """An accepted connection that gives its place in the budget back when closed."""

    budget: ConnectionBudget | None = None
    source = ""

    def close(self) -> None:
        budget, self.budget = self.budget, None
        if budget is not None:
            budget.release(self.source)
        super().close()


class _BudgetListener(socket.socket):
    """A listening socket whose ``accept()`` (called by asyncio's accept loop) closes a
    connection over the budget at once, before asyncio wraps it in TLS."""

    budget: ConnectionBudget

    def accept(self) -> tuple[socket.socket, object]:
        while True:
            fd, address = self._accept()  # type: ignore[attr-defined]
            source = str(address[0]) if isinstance(address, tuple) else ""
            conn = _CountedConnection(self.family, self.type, self.proto, fileno=fd)
            if self.budget.take(source):
                conn.budget = self.budget
                conn.source = source
                return conn, address
            conn.close()


def _listeners(host: str, port: int, budget: ConnectionBudget) -> list[_BudgetListener]:
    """Bound, listening sockets for ``host:port`` (every address the name has)."""
    infos = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE | socket.AI_NUMERICSERV
    )
    sockets: list[_BudgetListener] = []
    try:
        for family, kind, proto, _, address in infos:
            sock = _BudgetListener(family, kind, proto)
            sockets.append(sock)
            sock.budget = budget
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            if port == 0 and len(infos) > 1:
                port = sock.getsockname()[1]  # the other addresses of the name: the same port
            sock.listen(128)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class AdminServer:
    """The admin endpoint as a part of the gateway's supervisor."""

    name = "admin"

    def __init__(self, app: web.Application, device_tls: DeviceTls, config: Config) -> None:
        self._app = app
        self._tls = device_tls
        self._config = config
        self._addresses = parse_listen_all(config)
        self._runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT
        )
        self._sites: dict[ListenAddress, tuple[list[web.SockSite], list[str]]] = {}
        self.urls: list[str] = []
        self.budget = ConnectionBudget(
            config.admin.max_connections, config.admin.source_connections
        )

    async def start(self) -> list[str]:
        """Bind every address; returns a line per URL actually served (port 0 resolved)."""
        await asyncio.to_thread(self._tls.reload)
        await self._runner.setup()
        for address in self._addresses:
            await self._start_site(address)
        return [f"Admin endpoint: {url}" for url in self.urls]

    async def _start_site(self, address: ListenAddress) -> None:
        context: ssl.SSLContext | None = self._tls.server_context() if address.tls else None
        try:
            sockets = _listeners(address.host, address.port, self.budget)
        except OSError as exc:
            raise ConfigError(
                f"The admin endpoint cannot listen on {address.host}:{address.port}: "
                f"{exc.strerror or exc}."
            ) from exc
        sites = [web.SockSite(self._runner, sock, ssl_context=context) for sock in sockets]
        for site in sites:
            await site.start()
        urls = [address.url(port=int(sock.getsockname()[1])) for sock in sockets[:1]]
        self._sites[address] = (sites, urls)
        self.urls.extend(urls)
        for url in urls:
            _log.info("admin.listener.started", url=url)

    async def _stop_site(self, address: ListenAddress) -> None:
        sites, urls = self._sites.pop(address)
        for site in sites:
            await site.stop()
        self.urls = [u for u in self.urls if u not in urls]
        for url in urls:
            _log.info("admin.listener.stopped", url=url)

    async def run(self) -> None:
        """Follow the device identity: a renewed or installed certificate is served from
        the next connection on, also when it was changed by another process (CLI)."""
        while True:
            await asyncio.sleep(IDENTITY_POLL_SECONDS)
            try:
                changed = await asyncio.to_thread(self._tls.reload)
            except (CertStoreError, AdminTlsError) as exc:
                _log.warning("admin.identity.reload_failed", error=str(exc))
                continue
            if changed:
                _log.info("admin.identity.changed", fingerprint=self._tls.fingerprint)

    async def reload(self, config: Config) -> None:
        """Apply a new configuration: restart the listeners that changed."""
        addresses = parse_listen_all(config)
        self._app[STATE].config = config
        if config.tls.min_version != self._config.tls.min_version:
            self._tls.set_min_version(config.tls.min_version)
            await asyncio.to_thread(self._tls.reload)
        self._config = config
        old, new = set(self._addresses), set(addresses)
        for address in self._addresses:
            if address not in new:
                await self._stop_site(address)
        for address in addresses:
            if address not in old:
                await self._start_site(address)
        self._addresses = addresses

    async def stop(self) -> None:
        if self._runner.server is not None:
            await self._runner.cleanup()
        self._sites.clear()
        self.urls = []
