"""The Revocation page: cached sources, their dates and fetch errors, and CRL upload."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from certstore.errors import InputError
from certstore.revocation import MAX_CRL_BYTES, RevocationSource
from gateway.admin import actions
from gateway.admin.html import back, needs_confirmation, page, when
from gateway.admin.parsing import FP_RE, fingerprint_of, read_form
from gateway.admin.state import principal_of, state_of


async def revocation_page(request: web.Request) -> web.Response:
    """Cached revocation sources (fetched or uploaded) with their dates and last fetch
    error, URLs that failed with nothing cached, and the CRL upload form."""
    state = state_of(request)
    sources = await state.call(state.store.list_revocation)
    settings = await state.call(state.store.get_settings)
    errors = actions.revocation_errors(state)
    rows = [
        {
            "kind": s.kind.value,
            "source": s.source.value,
            "where": s.url or "uploaded",
            "issuer": s.issuer,
            "this_update": when(s.this_update),
            "next_update": when(s.next_update) if s.next_update else "none",
            "stale": s.next_update is not None and s.next_update < state.now(),
            "entries": s.entries,
            "error": errors.get(s.url or "", ""),
            "fingerprint": s.fingerprint,
            "uploaded": s.source is RevocationSource.UPLOADED,
        }
        for s in sources
    ]
    cached_urls = {s.url for s in sources if s.url}
    failing = sorted((url, why) for url, why in errors.items() if url not in cached_urls)
    return await page(
        request,
        "revocation.html",
        {
            "rows": rows,
            "failing": failing,
            "mode": settings.revocation.value,
            "max_crl": MAX_CRL_BYTES,
        },
        active="revocation",
    )


async def revocation_upload_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    form = await read_form(request)
    upload: Any = form.get("file")
    data: bytes = upload.file.read(MAX_CRL_BYTES + 1) if hasattr(upload, "file") else b""
    if not data:
        raise back(request, "/revocation", "error", "Choose a CRL file to upload.")
    try:
        source = await actions.upload_crl(state, data, principal_of(request).actor)
    except InputError as exc:
        raise back(request, "/revocation", "error", f"The CRL was not stored: {exc}") from None
    raise back(
        request,
        "/revocation",
        "ok",
        f"The CRL of {source.issuer} was stored ({source.entries} revoked, next update "
        f"{when(source.next_update) if source.next_update else 'none'}).",
    )


async def revocation_remove_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    form = await read_form(request)
    fp = fingerprint_of(request)
    confirm = await needs_confirmation(
        request,
        form,
        "Remove this uploaded CRL? Its issuer's certificates are then judged without it.",
        button="Remove CRL",
    )
    if confirm is not None:
        return confirm
    removed = await actions.remove_uploaded_crl(state, fp, principal_of(request).actor)
    raise back(request, "/revocation", "ok", f"The uploaded CRL of {removed.issuer} was removed.")


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get("/revocation", revocation_page)
    r.add_post("/revocation/upload", revocation_upload_form)
    r.add_post(f"/revocation/{{fingerprint:{FP_RE}}}/remove", revocation_remove_form)
