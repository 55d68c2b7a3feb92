"""Helpers for admin endpoint tests: a device identity, certificates to upload, and an
admin application served over real HTTPS on 127.0.0.1 (port 0)."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from certstore.device_service import AsyncDeviceService, DeviceService
from certstore.model import Actor
from certstore.sqlite import SqliteStore
from certstore.store import CertStore, DeviceIdentity
from certstore.x509 import to_pem
from gateway.admin.app import create_app
from gateway.admin.auth import AdminAuth, LoginThrottle, write_password
from gateway.admin.tls import DeviceTls
from gateway.config import Config, build_config
from gateway.metrics import MetricsRegistry
from gateway.provisioning.service import ProvisioningService
from gateway.relay.status import RelayStatus
from tests.pki import CertFactory

PASSWORD = "correct horse battery staple"
TEST_ACTOR = Actor(name="test", interface="cli")
# Certificates served or uploaded over real HTTPS: valid around the real time.
PKI = CertFactory(organization=None)


def device_identity(common_name: str = "sipsgate-test") -> DeviceIdentity:
    issued = PKI.leaf(None, cn=common_name, dns=["localhost"], ips=["127.0.0.1"])
    return DeviceIdentity(
        kind="standard",
        chain=(issued.model,),
        private_key_pem=issued.key_pem,
        created_at=datetime.now(UTC),
    )


def client_context(identity: DeviceIdentity) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=to_pem(identity.chain).decode())
    return context


def admin_config(data_dir: Path, **admin: Any) -> Config:
    raw: dict[str, Any] = {"gateway": {"data_dir": str(data_dir)}}
    if admin:
        raw["admin"] = admin
    return build_config(raw, env={})


@dataclass
class AdminHarness:
    """An admin app on real HTTPS, with a Basic-auth API session and a cookie session."""

    store: CertStore
    app: web.Application
    server: TestServer
    device_tls: DeviceTls
    identity: DeviceIdentity
    auth: AdminAuth
    data_dir: Path
    ssl_context: ssl.SSLContext
    sessions: list[aiohttp.ClientSession] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return str(self.server.make_url("/"))

    def client(self, *, basic: bool = False) -> aiohttp.ClientSession:
        session = aiohttp.ClientSession(
            base_url=self.base_url,
            connector=aiohttp.TCPConnector(ssl=self.ssl_context),
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            headers={"Authorization": basic_header()} if basic else None,
        )
        self.sessions.append(session)
        return session

    async def close(self) -> None:
        for session in self.sessions:
            await session.close()
        await self.server.close()


def open_store(data_dir: Path, **kwargs: Any) -> SqliteStore:
    return SqliteStore(data_dir / "sipsgate.db", **kwargs)


def device_service(store: CertStore) -> DeviceService:
    return DeviceService(store, name="sipsgate-test", host_names=("127.0.0.1", "localhost"))


async def start_admin(
    store: CertStore,
    data_dir: Path,
    *,
    config: Config | None = None,
    throttle: LoginThrottle | None = None,
    registry: MetricsRegistry | None = None,
    provisioning: ProvisioningService | None = None,
    relay_status: RelayStatus | None = None,
    revocation_errors: Callable[[], Mapping[str, str]] | None = None,
) -> AdminHarness:
    service = device_service(store)
    identity = service.ensure_standard_identity(actor=TEST_ACTOR)
    write_password(data_dir, PASSWORD)
    auth = AdminAuth(data_dir, clock=time.monotonic, throttle=throttle)
    device_tls = DeviceTls(store)
    device_tls.reload()
    app = create_app(
        store,
        config or admin_config(data_dir),
        auth=auth,
        device_tls=device_tls,
        registry=registry,
        device=AsyncDeviceService(service),
        provisioning=provisioning,
        relay_status=relay_status,
        revocation_errors=revocation_errors,
    )
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server(ssl=device_tls.server_context())
    return AdminHarness(
        store=store,
        app=app,
        server=server,
        device_tls=device_tls,
        identity=identity,
        auth=auth,
        data_dir=data_dir,
        ssl_context=client_context(identity),
    )


def basic_header(user: str = "admin", password: str = PASSWORD) -> str:
    return aiohttp.encode_basic_auth(user, password)


async def login(session: aiohttp.ClientSession, password: str = PASSWORD) -> aiohttp.ClientResponse:
    """Log in through the form like a browser: GET the form, POST it with its token."""
    token = await csrf_token(session, "/login")
    response = await session.post(
        "/login",
        data={"csrf_token": token, "password": password, "next": "/trust"},
        allow_redirects=False,
    )
    await response.read()
    return response


async def csrf_token(session: aiohttp.ClientSession, path: str) -> str:
    async with session.get(path) as response:
        text = await response.text()
    marker = 'name="csrf_token" value="'
    start = text.index(marker) + len(marker)
    return text[start : text.index('"', start)]
