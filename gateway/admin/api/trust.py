"""``/api/v1/trust``: the trust list."""

from __future__ import annotations

from aiohttp import web

from certstore import render
from certstore.model import CertStatus, TrustKind
from certstore.x509 import to_pem
from gateway.admin import actions
from gateway.admin.parsing import (
    FP_RE,
    fingerprint_of,
    format_of,
    paged,
    query_choice,
    read_upload,
)
from gateway.admin.responses import PEM_TYPE, add_result_body, certificate_download, download
from gateway.admin.state import API_PREFIX, principal_of, state_of


async def trust_list(request: web.Request) -> web.Response:
    state = state_of(request)
    kind = query_choice(request, "kind", [k.value for k in TrustKind])
    status = query_choice(request, "status", [s.value for s in CertStatus])
    now = state.now()
    snapshot = await state.call(state.store.snapshot)
    entries = actions.filter_trust(snapshot.trust, kind=kind, status=status, now=now)
    page, headers = paged(request, entries)
    rendered = actions.rendered_trust(state, snapshot.generation, snapshot.trust, now)
    body = [
        {**rendered[e.certificate.fingerprint], "status": e.certificate.status_at(now).value}
        for e in page
    ]
    return web.json_response(body, headers=headers)


async def trust_upload(request: web.Request) -> web.Response:
    state = state_of(request)
    kind_text = query_choice(request, "kind", [k.value for k in TrustKind])
    kind = TrustKind(kind_text) if kind_text else None
    files = await read_upload(request, state.max_upload)
    result, notes = await actions.add_certificates(state, files, principal_of(request).actor, kind)
    status = 201 if result.added else 200
    return web.json_response(add_result_body(result, state.now(), notes), status=status)


async def trust_get(request: web.Request) -> web.Response:
    state = state_of(request)
    fmt = format_of(request)
    entry = await state.call(state.store.get_trust, fingerprint_of(request))
    if fmt is not None:
        return certificate_download(entry.certificate, fmt)
    return web.json_response(render.trust_entry(entry, state.now(), details=True))


async def trust_remove(request: web.Request) -> web.Response:
    state = state_of(request)
    fp = fingerprint_of(request)
    entry = await actions.remove_trust(state, fp, principal_of(request).actor)
    return web.json_response(render.trust_entry(entry, state.now()))


async def trust_clear(request: web.Request) -> web.Response:
    state = state_of(request)
    count = await actions.clear_trust(state, principal_of(request).actor)
    return web.json_response({"removed": count})


async def trust_bundle(request: web.Request) -> web.Response:
    state = state_of(request)
    snapshot = await state.call(state.store.snapshot)
    data = to_pem(e.certificate for e in snapshot.trust)
    return download(data, content_type=PEM_TYPE, filename="sipsgate-trust-list.pem")


async def trust_restore_defaults(request: web.Request) -> web.Response:
    state = state_of(request)
    result = await actions.restore_defaults(state, principal_of(request).actor)
    return web.json_response(add_result_body(result, state.now()))


def setup(app: web.Application) -> None:
    r = app.router
    v1 = API_PREFIX
    r.add_get(f"{v1}/trust", trust_list)
    r.add_post(f"{v1}/trust", trust_upload)
    r.add_delete(f"{v1}/trust", trust_clear)
    r.add_get(f"{v1}/trust/bundle.pem", trust_bundle)
    r.add_post(f"{v1}/trust/restore-defaults", trust_restore_defaults)
    r.add_get(f"{v1}/trust/{{fingerprint:{FP_RE}}}", trust_get)
    r.add_delete(f"{v1}/trust/{{fingerprint:{FP_RE}}}", trust_remove)
