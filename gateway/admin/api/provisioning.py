"""``/api/v1/provisioning``: the last result, a fetch on demand, a document applied."""

from __future__ import annotations

from aiohttp import web

from gateway.admin import actions
from gateway.admin.errors import ApiError
from gateway.admin.parsing import fetch_options, query_bool, read_json_object, read_upload
from gateway.admin.state import API_PREFIX, principal_of, state_of


async def provisioning_get(request: web.Request) -> web.Response:
    service = actions.running_provisioning(state_of(request))
    return web.json_response(await actions.provisioning_status(service))


async def provisioning_fetch(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await read_json_object(request, limit=state.max_upload, optional=True)
    force = fetch_options(body)
    result = await actions.fetch_provisioning(state, force=force)
    return web.json_response(result.to_dict())


async def provisioning_apply(request: web.Request) -> web.Response:
    """Apply a provisioning document (the format the provisioning client fetches), all or
    nothing; ``?dry_run=true`` only reports what it would change."""
    state = state_of(request)
    dry_run = query_bool(request, "dry_run")
    files = await read_upload(request, state.max_upload)
    if len(files) != 1:
        raise ApiError(400, "one-file", "Send exactly one provisioning document.")
    result = await actions.apply_provisioning(
        state, files[0][1], principal_of(request).actor, dry_run=dry_run
    )
    return web.json_response(result.to_dict(), status=200 if result.ok else 422)


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{API_PREFIX}/provisioning", provisioning_get)
    r.add_post(f"{API_PREFIX}/provisioning/fetch", provisioning_fetch)
    r.add_post(f"{API_PREFIX}/provisioning/apply", provisioning_apply)
