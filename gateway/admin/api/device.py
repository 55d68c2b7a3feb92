"""``/api/v1/device`` and ``/api/v1/csr``: the device identity and its signing request
(DESIGN §6). After a change the admin endpoint's own HTTPS certificate follows at once."""

from __future__ import annotations

from aiohttp import web

from certstore.device import ExportFormat
from certstore.errors import ValidationError
from gateway.admin import actions
from gateway.admin.parsing import (
    check_fields,
    fingerprint_list,
    format_of,
    install_parts,
    passphrase,
    query_choice,
    read_json_object,
    require_https,
    spec_from_json,
)
from gateway.admin.responses import (
    CSR_TYPE,
    DER_TYPE,
    DEVICE_KEY_FILENAME,
    P7B_TYPE,
    PEM_TYPE,
    add_result_body,
    download,
)
from gateway.admin.state import API_PREFIX, principal_of, state_of

CHAIN_DOWNLOADS = {
    "pem": (PEM_TYPE, "sipsgate-device-chain.pem"),
    "der": (DER_TYPE, "sipsgate-device.der"),
    "p7b": (P7B_TYPE, "sipsgate-device-chain.p7b"),
}


async def device_get(request: web.Request) -> web.Response:
    service = actions.device_service(state_of(request))
    return web.json_response(await service.details())


async def device_chain(request: web.Request) -> web.Response:
    state = state_of(request)
    fmt = query_choice(request, "format", tuple(CHAIN_DOWNLOADS)) or "pem"
    data = await actions.device_export(state, principal_of(request).actor, fmt=fmt)
    content_type, filename = CHAIN_DOWNLOADS[fmt]
    return download(data, content_type=content_type, filename=filename)


async def device_export(request: web.Request) -> web.Response:
    require_https(request)
    state = state_of(request)
    body = await read_json_object(request, limit=state.max_upload, optional=True)
    check_fields(body, {"passphrase"})
    data = await actions.device_export(
        state,
        principal_of(request).actor,
        fmt=ExportFormat.PEM,
        include_private_key=True,
        passphrase=passphrase(body.get("passphrase")),
    )
    return download(data, content_type=PEM_TYPE, filename=DEVICE_KEY_FILENAME)


async def device_self_signed(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await read_json_object(request, limit=state.max_upload)
    spec = spec_from_json(body, allow_weak=state.config.gateway.allow_weak_keys, csr=False)
    await actions.device_self_signed(state, spec, principal_of(request).actor)
    return web.json_response(await actions.device_service(state).details(), status=201)


async def device_renew(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await read_json_object(request, limit=state.max_upload, optional=True)
    check_fields(body, {"reuse_key"})
    reuse = body.get("reuse_key", False)
    if not isinstance(reuse, bool):
        raise ValidationError("reuse_key", "reuse_key must be true or false.")
    await actions.device_renew(state, principal_of(request).actor, reuse_key=reuse)
    return web.json_response(await actions.device_service(state).details())


async def device_install(request: web.Request) -> web.Response:
    state = state_of(request)
    data, key_pem, secret = await install_parts(request, state.max_upload)
    outcome = await actions.device_install(
        state, data, principal_of(request).actor, key_pem=key_pem, passphrase=secret
    )
    details = await actions.device_service(state).details()
    return web.json_response({**details, "source": outcome.source, "notes": list(outcome.notes)})


async def device_clear(request: web.Request) -> web.Response:
    state = state_of(request)
    await actions.device_clear(state, principal_of(request).actor)
    return web.json_response(await actions.device_service(state).details())


async def device_trust(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await read_json_object(request, limit=state.max_upload, optional=True)
    check_fields(body, {"fingerprints"})
    fingerprints = fingerprint_list(body) if "fingerprints" in body else None
    result = await actions.device_trust_chain(state, principal_of(request).actor, fingerprints)
    return web.json_response(add_result_body(result, state.now()))


async def csr_get(request: web.Request) -> web.Response:
    state = state_of(request)
    fmt = format_of(request)
    service = actions.device_service(state)
    if fmt is None:
        return web.json_response(await service.csr_details())
    data = await service.csr_download(fmt)
    if fmt == "der":
        return download(data, content_type=CSR_TYPE, filename="sipsgate-request.der")
    return download(data, content_type=PEM_TYPE, filename="sipsgate-request.csr")


async def csr_create(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await read_json_object(request, limit=state.max_upload)
    spec = spec_from_json(body, allow_weak=state.config.gateway.allow_weak_keys, csr=True)
    await actions.create_csr(state, spec, principal_of(request).actor)
    return web.json_response(await actions.device_service(state).csr_details(), status=201)


async def csr_remove(request: web.Request) -> web.Response:
    state = state_of(request)
    await actions.remove_csr(state, principal_of(request).actor)
    return web.json_response({"removed": True})


def setup(app: web.Application) -> None:
    r = app.router
    v1 = API_PREFIX
    r.add_get(f"{v1}/device", device_get)
    r.add_put(f"{v1}/device", device_install)
    r.add_delete(f"{v1}/device", device_clear)
    r.add_get(f"{v1}/device/chain", device_chain)
    r.add_post(f"{v1}/device/export", device_export)
    r.add_post(f"{v1}/device/self-signed", device_self_signed)
    r.add_post(f"{v1}/device/renew", device_renew)
    r.add_post(f"{v1}/device/trust", device_trust)
    r.add_get(f"{v1}/csr", csr_get)
    r.add_post(f"{v1}/csr", csr_create)
    r.add_delete(f"{v1}/csr", csr_remove)
