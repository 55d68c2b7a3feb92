"""``/api/v1/decisions``: accept and reject pins."""

from __future__ import annotations

from aiohttp import web

from certstore import render
from gateway.admin import actions
from gateway.admin.parsing import ID_RE, pin_id, pin_request, read_json_object
from gateway.admin.state import API_PREFIX, principal_of, state_of


async def decisions_list(request: web.Request) -> web.Response:
    state = state_of(request)
    now = state.now()
    snapshot = await state.call(state.store.snapshot)
    return web.json_response([render.pin(p, now) for p in snapshot.pins])


async def decisions_add(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await read_json_object(request, limit=state.max_upload)
    pin_req = pin_request(body, max_upload=state.max_upload)
    pin = await actions.add_pin(state, pin_req, principal_of(request).actor)
    return web.json_response(render.pin(pin, state.now()), status=201)


async def decisions_remove(request: web.Request) -> web.Response:
    state = state_of(request)
    pin = await actions.remove_pin(state, pin_id(request), principal_of(request).actor)
    return web.json_response(render.pin(pin, state.now()))


def setup(app: web.Application) -> None:
    r = app.router
    v1 = API_PREFIX
    r.add_get(f"{v1}/decisions", decisions_list)
    r.add_post(f"{v1}/decisions", decisions_add)
    r.add_delete(f"{v1}/decisions/{{id:{ID_RE}}}", decisions_remove)
