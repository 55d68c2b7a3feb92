"""``/api/v1/revocation``: the cached revocation sources, and uploaded CRLs."""

from __future__ import annotations

from aiohttp import web

from certstore import render
from certstore.revocation import MAX_CRL_BYTES
from gateway.admin import actions
from gateway.admin.errors import ApiError
from gateway.admin.parsing import FP_RE, fingerprint_of, read_upload
from gateway.admin.state import API_PREFIX, principal_of, state_of


async def revocation_list(request: web.Request) -> web.Response:
    state = state_of(request)
    sources = await state.call(state.store.list_revocation)
    errors = actions.revocation_errors(state)
    return web.json_response(
        [{**render.revocation_source(s), "last_error": errors.get(s.url or "")} for s in sources]
    )


async def revocation_crl_upload(request: web.Request) -> web.Response:
    """An administrator's CRL (DER or PEM), for sites whose CA cannot be reached."""
    state = state_of(request)
    files = await read_upload(request, MAX_CRL_BYTES)
    if len(files) != 1:
        raise ApiError(400, "one-file", "Upload one CRL file at a time.")
    source = await actions.upload_crl(state, files[0][1], principal_of(request).actor)
    return web.json_response(render.revocation_source(source), status=201)


async def revocation_crl_remove(request: web.Request) -> web.Response:
    """Remove an uploaded CRL (by its SHA-256 fingerprint); audited."""
    state = state_of(request)
    removed = await actions.remove_uploaded_crl(
        state, fingerprint_of(request), principal_of(request).actor
    )
    return web.json_response(render.revocation_source(removed))


def setup(app: web.Application) -> None:
    r = app.router
    v1 = API_PREFIX
    r.add_get(f"{v1}/revocation", revocation_list)
    r.add_post(f"{v1}/revocation/crl", revocation_crl_upload)
    r.add_delete(f"{v1}/revocation/crl/{{fingerprint:{FP_RE}}}", revocation_crl_remove)
