"""Serving the admin application on every ``admin.listen`` address.

The endpoint is HTTPS with the device identity. ``http://`` is accepted in
``admin.listen`` only for a loopback address (a reverse proxy on the same box);
asking for plain HTTP on any other address is a :class:`ConfigError`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from certstore.errors import CertStoreError
from gateway.admin.app import STATE
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
        self._sites: dict[ListenAddress, tuple[web.TCPSite, list[str]]] = {}
        self.urls: list[str] = []

    async def start(self) -> list[str]:
        """Bind every address; returns a line per URL actually served (port 0 resolved)."""
        await asyncio.to_thread(self._tls.reload)
        await self._runner.setup()
        for address in self._addresses:
            await self._start_site(address)
        return [f"Admin endpoint: {url}" for url in self.urls]

    async def _start_site(self, address: ListenAddress) -> None:
        context: ssl.SSLContext | None = self._tls.server_context() if address.tls else None
        site = web.TCPSite(
            self._runner, address.host, address.port, ssl_context=context, reuse_address=True
        )
        before = set(map(_addr_key, self._runner.addresses))
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(
                f"The admin endpoint cannot listen on {address.host}:{address.port}: "
                f"{exc.strerror or exc}."
            ) from exc
        bound = [a for a in self._runner.addresses if _addr_key(a) not in before]
        urls = [address.url(port=int(a[1])) for a in bound] or [address.url()]
        self._sites[address] = (site, urls)
        self.urls.extend(urls)
        for url in urls:
            _log.info("admin.listener.started", url=url)

    async def _stop_site(self, address: ListenAddress) -> None:
        site, urls = self._sites.pop(address)
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


def _addr_key(address: Any) -> tuple[str, int]:
    return (str(address[0]), int(address[1]))
