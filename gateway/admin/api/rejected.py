"""``/api/v1/rejected``: chains the gateway refused, and what to do about them."""

from __future__ import annotations

from aiohttp import web

from certstore import render
from certstore.model import PinDecision
from gateway.admin import actions
from gateway.admin.parsing import (
    ID_RE,
    fingerprint_list,
    paged,
    pin_options,
    read_json_object,
    rejected_id,
)
from gateway.admin.responses import add_result_body
from gateway.admin.state import API_PREFIX, principal_of, state_of


async def rejected_list(request: web.Request) -> web.Response:
    state = state_of(request)
    now = state.now()
    view = await actions.rejected_view(state)
    page, headers = paged(request, view.entries)
    body = [{**render.rejected_entry(e, now), "resolved": view.resolved(e)} for e in page]
    return web.json_response(body, headers=headers)


async def rejected_get(request: web.Request) -> web.Response:
    state = state_of(request)
    entry = await state.call(state.store.get_rejected, rejected_id(request))
    body = render.rejected_entry(entry, state.now(), details=True)
    return web.json_response({**body, "resolved": await actions.rejected_resolved(state, entry)})


async def rejected_trust(request: web.Request) -> web.Response:
    state = state_of(request)
    chain_id = rejected_id(request)
    body = await read_json_object(request, limit=state.max_upload)
    fingerprints = fingerprint_list(body)
    actor = principal_of(request).actor
    result = await actions.trust_rejected(state, chain_id, fingerprints, actor)
    return web.json_response(add_result_body(result, state.now()))


async def _rejected_pin(request: web.Request, decision: PinDecision) -> web.Response:
    state = state_of(request)
    chain_id = rejected_id(request)
    body = await read_json_object(request, limit=state.max_upload, optional=True)
    options = pin_options(body)
    pin = await actions.pin_rejected(
        state, chain_id, decision, principal_of(request).actor, **options
    )
    return web.json_response(render.pin(pin, state.now()), status=201)


async def rejected_accept(request: web.Request) -> web.Response:
    return await _rejected_pin(request, PinDecision.ACCEPT)


async def rejected_reject(request: web.Request) -> web.Response:
    return await _rejected_pin(request, PinDecision.REJECT)


async def rejected_remove(request: web.Request) -> web.Response:
    state = state_of(request)
    chain_id = rejected_id(request)
    await actions.remove_rejected(state, chain_id, principal_of(request).actor)
    return web.json_response({"removed": chain_id})


async def rejected_clear(request: web.Request) -> web.Response:
    state = state_of(request)
    count = await actions.clear_rejected(state, principal_of(request).actor)
    return web.json_response({"removed": count})


def setup(app: web.Application) -> None:
    r = app.router
    v1 = API_PREFIX
    r.add_get(f"{v1}/rejected", rejected_list)
    r.add_delete(f"{v1}/rejected", rejected_clear)
    r.add_get(f"{v1}/rejected/{{id:{ID_RE}}}", rejected_get)
    r.add_delete(f"{v1}/rejected/{{id:{ID_RE}}}", rejected_remove)
    r.add_post(f"{v1}/rejected/{{id:{ID_RE}}}/trust", rejected_trust)
    r.add_post(f"{v1}/rejected/{{id:{ID_RE}}}/accept", rejected_accept)
    r.add_post(f"{v1}/rejected/{{id:{ID_RE}}}/reject", rejected_reject)
