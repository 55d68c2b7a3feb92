"""What every part of the admin application shares: its typed state, the admin of a
request, and the limits and prefixes the routes and middlewares agree on.

The bottom layer of ``gateway.admin``: it imports no other module of the package but
:mod:`gateway.admin.auth` and :mod:`gateway.admin.tls`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, ParamSpec, TypeVar

from aiohttp import web

from certstore.device_service import AsyncDeviceService
from certstore.model import Actor
from certstore.revocation import MAX_CRL_BYTES
from certstore.store import CertStore
from gateway.admin.auth import AdminAuth, Session
from gateway.admin.tls import DeviceTls
from gateway.config import Config
from gateway.health import ServiceHealth
from gateway.metrics import Counter, MetricsRegistry
from gateway.provisioning.service import ProvisioningService
from gateway.relay.status import RelayStatus
from gateway.tls.connector import TlsConnector

P = ParamSpec("P")
T = TypeVar("T")

API_PREFIX = "/api/v1"
STATIC_PREFIX = "/static/"
# A backup of a large trust list is bigger than a certificate upload; only an
# authenticated admin may send that much, and only to the restore routes.
MAX_BACKUP_BYTES = 64 * 1024 * 1024
# Routes whose body may exceed ``admin.max_upload``: a backup, and a large CA's CRL
# (the form needs room for its other fields).
LARGE_BODY: Final[Mapping[tuple[str, str], int]] = {
    ("POST", "/api/v1/restore"): MAX_BACKUP_BYTES,
    ("POST", "/settings/restore"): MAX_BACKUP_BYTES,
    ("POST", "/api/v1/revocation/crl"): MAX_CRL_BYTES + 64 * 1024,
    ("POST", "/revocation/upload"): MAX_CRL_BYTES + 64 * 1024,
}
# The login form (CSRF token, password, next) is small: before login nobody may make
# the gateway hold more than this per request.
LOGIN_BODY_LIMIT = 16 * 1024
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True, kw_only=True)
class AdminMetrics:
    requests: Counter
    login_failures: Counter

    @classmethod
    def create(cls, registry: MetricsRegistry) -> AdminMetrics:
        return cls(
            requests=registry.counter(
                "sipsgate_admin_requests_total",
                "Admin endpoint requests by route, method and status.",
                ("route", "method", "status"),
            ),
            login_failures=registry.counter(
                "sipsgate_admin_login_failures_total",
                "Failed admin logins (form and HTTP Basic).",
            ),
        )


@dataclass(slots=True, kw_only=True)
class AdminState:
    """Everything the handlers share; one per application."""

    store: CertStore
    config: Config
    auth: AdminAuth
    registry: MetricsRegistry
    metrics: AdminMetrics
    clock: Callable[[], datetime] = utc_now
    device_tls: DeviceTls | None = None
    device: AsyncDeviceService | None = None
    # The running provisioning client (absent in tools and tests that do not need it).
    provisioning: ProvisioningService | None = None
    # The supervised parts' states (``/readyz``); absent when no supervisor runs the app.
    health: ServiceHealth | None = None
    # The relay's live state (status view, readiness); absent when no relay runs.
    relay_status: RelayStatus | None = None
    # The gateway's TLS connector, for "test this connection" (one is built when absent).
    connector: TlsConnector | None = None
    # URL -> why its last revocation fetch failed (the gateway's fetcher; absent in tools).
    revocation_errors: Callable[[], Mapping[str, str]] | None = None
    started: float = field(default_factory=time.monotonic)
    # Small per-application caches (e.g. the expiry banner per store generation).
    cache: dict[str, Any] = field(default_factory=dict)

    def now(self) -> datetime:
        return self.clock()

    async def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a (blocking) store call in a worker thread."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    @property
    def max_upload(self) -> int:
        return self.config.admin.max_upload


STATE: Final = web.AppKey("sipsgate_admin_state", AdminState)


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """The authenticated admin of a request, and how they got in."""

    name: str
    interface: str  # "api" (HTTP Basic or session on the API) or "web" (the pages)
    session: Session | None

    @property
    def actor(self) -> Actor:
        return Actor(name=self.name, interface=self.interface)


PRINCIPAL: Final = web.RequestKey("sipsgate_admin_principal", Principal)


def state_of(request: web.Request) -> AdminState:
    return request.app[STATE]


def principal_of(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/") or request.path == "/metrics"
