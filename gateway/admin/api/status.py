"""``GET /api/v1/status``: what the gateway is doing now, problems first."""

from __future__ import annotations

from aiohttp import web

from gateway.admin.actions import status_view
from gateway.admin.state import API_PREFIX, state_of


async def status_get(request: web.Request) -> web.Response:
    return web.json_response(await status_view(state_of(request)))


def setup(app: web.Application) -> None:
    app.router.add_get(f"{API_PREFIX}/status", status_get)
