"""The landing page: what the gateway is doing now, problems first."""

from __future__ import annotations

from aiohttp import web

from gateway.admin.actions import status_view
from gateway.admin.html import page
from gateway.admin.state import state_of


async def index(request: web.Request) -> web.StreamResponse:
    view = await status_view(state_of(request))
    return await page(request, "status.html", {"s": view}, active="status")


def setup(app: web.Application) -> None:
    app.router.add_get("/", index)
