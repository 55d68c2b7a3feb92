"""The JSON API of DESIGN §7 under ``/api/v1``, one module per resource.

Every body is rendered by :mod:`certstore.render`, so a field has the same name here,
in the CLI and in the probe. Handlers parse the request (:mod:`gateway.admin.parsing`),
call one action (:mod:`gateway.admin.actions`) and render its outcome; errors become
the error shape in the error middleware.
"""

from __future__ import annotations

from aiohttp import web

from gateway.admin.api import (
    audit,
    backup,
    device,
    metrics,
    pins,
    probe,
    provisioning,
    rejected,
    revocation,
    settings,
    status,
    trust,
)


def setup(app: web.Application) -> None:
    """The API routes but the device identity's (see :func:`setup_device`)."""
    metrics.register_gauges(app)
    for module in (
        status,
        trust,
        rejected,
        pins,
        probe,
        revocation,
        settings,
        audit,
        backup,
        provisioning,
        metrics,
    ):
        module.setup(app)


def setup_device(app: web.Application) -> None:
    device.setup(app)
