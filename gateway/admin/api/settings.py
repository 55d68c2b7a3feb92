"""``/api/v1/settings``: the runtime settings."""

from __future__ import annotations

from aiohttp import web

from certstore import render
from certstore.errors import ValidationError
from gateway.admin import actions
from gateway.admin.parsing import read_json_object
from gateway.admin.state import API_PREFIX, principal_of, state_of


async def settings_get(request: web.Request) -> web.Response:
    state = state_of(request)
    value = await state.call(state.store.get_settings)
    return web.json_response(render.settings(value))


async def settings_patch(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await read_json_object(request, limit=state.max_upload)
    if not body:
        raise ValidationError("settings", "The body names no setting to change.")
    value = await actions.update_settings(state, body, principal_of(request).actor)
    return web.json_response(render.settings(value))


def setup(app: web.Application) -> None:
    app.router.add_get(f"{API_PREFIX}/settings", settings_get)
    app.router.add_patch(f"{API_PREFIX}/settings", settings_patch)
