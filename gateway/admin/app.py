"""The admin web application: it only assembles the parts.

The layers of ``gateway.admin``, each importing only those above it:

- :mod:`~gateway.admin.state` — the typed state, the admin of a request, the limits;
- :mod:`~gateway.admin.errors` — :class:`ApiError` and the status of each exception;
- :mod:`~gateway.admin.parsing` — path, query, JSON, form and upload readers;
- :mod:`~gateway.admin.middleware` — errors, metrics, body limits, access and CSRF;
- :mod:`~gateway.admin.actions` — each operation once, for the API and the pages;
- :mod:`~gateway.admin.responses` and :mod:`~gateway.admin.html` — bodies, downloads,
  the page frame;
- :mod:`gateway.admin.api` and :mod:`gateway.admin.pages` — one module per resource;
- this module — the factory.

Security headers are added to every response in ``on_response_prepare``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from certstore.device_service import AsyncDeviceService
from certstore.store import CertStore
from gateway.admin import api, pages
from gateway.admin.api import health as health_routes
from gateway.admin.auth import AdminAuth
from gateway.admin.html import peer_uri, plural, size, visible_value, when
from gateway.admin.middleware import (
    access_middleware,
    error_middleware,
    is_public,
    metrics_middleware,
)
from gateway.admin.security import add_security_headers, body_limit_middleware
from gateway.admin.state import (
    LARGE_BODY,
    LOGIN_BODY_LIMIT,
    MAX_BACKUP_BYTES,
    STATE,
    AdminMetrics,
    AdminState,
    utc_now,
)
from gateway.admin.tls import DeviceTls
from gateway.config import Config
from gateway.health import ServiceHealth
from gateway.metrics import MetricsRegistry
from gateway.provisioning.service import ProvisioningService
from gateway.relay.status import RelayStatus
from gateway.tls.connector import TlsConnector


def create_app(
    store: CertStore,
    config: Config,
    *,
    auth: AdminAuth,
    registry: MetricsRegistry | None = None,
    device_tls: DeviceTls | None = None,
    device: AsyncDeviceService | None = None,
    provisioning: ProvisioningService | None = None,
    health: ServiceHealth | None = None,
    relay_status: RelayStatus | None = None,
    connector: TlsConnector | None = None,
    clock: Callable[[], datetime] = utc_now,
    revocation_errors: Callable[[], Mapping[str, str]] | None = None,
) -> web.Application:
    """The admin application. ``store`` stays owned by the caller (closed by it)."""
    registry = registry if registry is not None else MetricsRegistry()
    state = AdminState(
        store=store,
        config=config,
        auth=auth,
        registry=registry,
        metrics=AdminMetrics.create(registry),
        clock=clock,
        device_tls=device_tls,
        device=device,
        provisioning=provisioning,
        health=health,
        relay_status=relay_status,
        connector=connector,
        revocation_errors=revocation_errors,
    )

    def limit_for(request: web.Request) -> int:
        if is_public(request):
            return LOGIN_BODY_LIMIT
        # A large route's body is read only after the access check (which reads no body),
        # so before login nobody makes the gateway hold more than the login limit.
        return max(state.max_upload, LARGE_BODY.get((request.method, request.path), 0))

    app = web.Application(
        middlewares=[
            error_middleware,
            metrics_middleware,
            body_limit_middleware(limit_for),
            access_middleware,
        ],
        client_max_size=MAX_BACKUP_BYTES,
    )
    app[STATE] = state
    here = Path(__file__).parent
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(here / "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
        finalize=visible_value,
    )
    app.on_response_prepare.append(add_security_headers)
    health_routes.setup(app)
    api.setup(app)
    pages.setup(app)
    if device is not None:
        api.setup_device(app)
        pages.setup_device(app)
    static = app.router.add_static("/static", here / "static", append_version=True, name="static")
    env = aiohttp_jinja2.get_env(app)
    env.globals["static"] = lambda filename: str(static.url_for(filename=filename))
    env.filters["when"] = when
    env.filters["plural"] = plural
    env.filters["size"] = size
    env.filters["peer_uri"] = peer_uri
    return app
