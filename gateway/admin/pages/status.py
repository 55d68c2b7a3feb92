"""The landing page: what the gateway is doing now, problems first."""

from __future__ import annotations

from aiohttp import web

from gateway.admin import pictures
from gateway.admin.actions import status_view
from gateway.admin.html import page
from gateway.admin.state import state_of


async def index(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    view = await status_view(state)
    timeline = await pictures.timeline_drawing(state.store, view, state.now())
    return await page(request, "status.html", {"s": view, "timeline": timeline}, active="status")


def setup(app: web.Application) -> None:
    app.router.add_get("/", index)
