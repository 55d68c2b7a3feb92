"""The trust list pages: the list, one certificate, upload, remove, clear, defaults."""

from __future__ import annotations

import math
from urllib.parse import urlencode

from aiohttp import web

from certstore import render
from certstore.errors import InputError
from certstore.model import TrustKind
from certstore.snapshot import TrustSnapshot
from gateway.admin import actions, pictures
from gateway.admin.html import PAGE_SIZE, back, distinct_names, needs_confirmation, page, plural
from gateway.admin.parsing import (
    FP_RE,
    fingerprint_of,
    form_files,
    form_text,
    local_target,
    page_number,
    read_form,
)
from gateway.admin.state import AdminState, principal_of, state_of

# At most this many certificates of one upload are listed by name after it.
MAX_SHOWN_ADDED = 50


def trust_names(state: AdminState, snapshot: TrustSnapshot) -> dict[str, str]:
    """The trust list's distinct names, worked out once per store generation."""
    cached = state.cache.get("trust-names")
    if cached is not None and cached[0] == snapshot.generation:
        return cached[1]  # type: ignore[no-any-return]
    names = distinct_names(e.certificate for e in snapshot.trust)
    state.cache["trust-names"] = (snapshot.generation, names)
    return names


async def trust_page(request: web.Request) -> web.Response:
    state = state_of(request)
    now = state.now()
    kind = request.query.get("kind", "")
    if kind not in ("", "ca", "server"):
        kind = ""
    query = request.query.get("q", "").strip()[:200]
    snapshot = await state.call(state.store.snapshot)
    entries = actions.filter_trust(snapshot.trust, kind=kind or None, status=None, now=now)
    if query:
        needle = query.lower()
        entries = [
            e
            for e in entries
            if needle in e.certificate.subject.lower()
            or needle in e.certificate.issuer.lower()
            or e.certificate.fingerprint.startswith(needle.replace(":", ""))
        ]
    names = trust_names(state, snapshot)
    entries.sort(key=lambda e: (e.kind.value, names[e.certificate.fingerprint].lower()))
    pages = max(1, math.ceil(len(entries) / PAGE_SIZE))
    number = min(page_number(request), pages)
    shown = entries[(number - 1) * PAGE_SIZE : number * PAGE_SIZE]
    counts = {
        "all": len(snapshot.trust),
        "ca": sum(1 for e in snapshot.trust if e.kind is TrustKind.CA),
        "server": sum(1 for e in snapshot.trust if e.kind is TrustKind.SERVER),
    }
    rows = [
        {
            "fingerprint": e.certificate.fingerprint,
            "name": names[e.certificate.fingerprint],
            "issuer": e.certificate.issuer,
            "kind": e.kind.value,
            "source": e.source.value,
            "status": e.certificate.status_at(now).value,
            "not_after": render.iso(e.certificate.not_after),
        }
        for e in shown
    ]

    def just(name: str) -> list[dict[str, str]]:
        wanted = [v.lower() for v in request.query.getall(name, [])][:MAX_SHOWN_ADDED]
        found = (snapshot.trust_by_fingerprint.get(fp) for fp in wanted)
        return [
            {"fingerprint": e.certificate.fingerprint, "name": names[e.certificate.fingerprint]}
            for e in found
            if e is not None
        ]

    def link(n: int) -> str:
        params = {"page": str(n)}
        if kind:
            params["kind"] = kind
        if query:
            params["q"] = query
        return f"/trust?{urlencode(params)}"

    return await page(
        request,
        "trust.html",
        {
            "rows": rows,
            "kind": kind,
            "query": query,
            "matches": len(entries),
            "counts": counts,
            "page_number": number,
            "pages": pages,
            "prev_link": link(number - 1) if number > 1 else "",
            "next_link": link(number + 1) if number < pages else "",
            "max_upload": state.max_upload,
            "just_added": just("added"),
            "already_present": just("present"),
        },
        active="trust",
    )


async def trust_detail_page(request: web.Request) -> web.Response:
    state = state_of(request)
    entry = await state.call(state.store.get_trust, fingerprint_of(request))
    snapshot = await state.call(state.store.snapshot)
    names = trust_names(state, snapshot)
    title = names.get(entry.certificate.fingerprint, entry.certificate.display_name)
    details = render.trust_entry(entry, state.now(), details=True)
    picture = await pictures.chain_drawing(state.store, (entry.certificate,), None, state.now())
    return await page(
        request,
        "certificate.html",
        {"title": title, "cert": details, "trust": True, "picture": picture},
        active="trust",
    )


async def trust_upload_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    form = await read_form(request)
    kind_text = form_text(form, "kind")
    kind = TrustKind(kind_text) if kind_text in ("ca", "server") else None
    files = form_files(form, "file", state.max_upload)
    if not files or not any(data for _, data in files):
        raise back(request, "/trust", "error", "Choose a certificate file to upload.")
    try:
        result, notes = await actions.add_certificates(
            state, files, principal_of(request).actor, kind
        )
    except InputError as exc:
        raise back(request, "/trust", "error", f"Nothing was added: {exc}") from None
    names = distinct_names(c for c in (*result.added, *result.already_present))
    message = f"{plural(len(result.added), 'certificate')} added"
    if result.added:
        message += ": " + ", ".join(names[c.fingerprint] for c in result.added[:10])
        if len(result.added) > 10:
            message += f" and {len(result.added) - 10} more"
    if result.already_present:
        message += f"; {len(result.already_present)} already in the trust list"
    message += "."
    if notes:
        message += " " + " ".join(notes)
    # The page names and links what the upload added, at the top, beside the form.
    params = [("added", c.fingerprint) for c in result.added[:MAX_SHOWN_ADDED]]
    params += [("present", c.fingerprint) for c in result.already_present[:MAX_SHOWN_ADDED]]
    target = f"/trust?{urlencode(params)}" if params else "/trust"
    raise back(request, target, "ok", message)


async def trust_remove_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    form = await read_form(request)
    fp = fingerprint_of(request)
    entry = await state.call(state.store.get_trust, fp)
    name = entry.certificate.display_name
    confirm = await needs_confirmation(
        request, form, f"Remove “{name}” from the trust list?", button="Remove"
    )
    if confirm is not None:
        return confirm
    await actions.remove_trust(state, fp, principal_of(request).actor)
    target = local_target(form_text(form, "back"), "/trust")
    raise back(request, target, "ok", f"“{name}” was removed from the trust list.")


async def trust_clear_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    form = await read_form(request)
    confirm = await needs_confirmation(
        request,
        form,
        "Remove every certificate from the trust list? Connections to peers that are "
        "trusted only through them will fail until you trust them again.",
        button="Clear the trust list",
    )
    if confirm is not None:
        return confirm
    count = await actions.clear_trust(state, principal_of(request).actor)
    raise back(
        request, "/trust", "ok", f"{plural(count, 'certificate')} removed from the trust list."
    )


async def trust_restore_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    result = await actions.restore_defaults(state, principal_of(request).actor)
    raise back(
        request,
        "/trust",
        "ok",
        f"{plural(len(result.added), 'default CA certificate')} restored; "
        f"{len(result.already_present)} {'was' if len(result.already_present) == 1 else 'were'} "
        "already there.",
    )


async def trust_accept_form(request: web.Request) -> web.StreamResponse:
    """Pin an (expired) trusted certificate ``accept``, as the invalid view offers."""
    state = state_of(request)
    actor = principal_of(request).actor
    entry = await actions.accept_trusted(state, fingerprint_of(request), actor)
    raise back(
        request,
        "/rejected",
        "ok",
        f"“{entry.certificate.display_name}” is accepted (pinned) even though it is "
        f"{entry.certificate.status_at(state.now()).value}.",
    )


def setup(app: web.Application) -> None:
    r = app.router
    fp = f"{{fingerprint:{FP_RE}}}"
    r.add_get("/trust", trust_page)
    r.add_post("/trust/upload", trust_upload_form)
    r.add_post("/trust/clear", trust_clear_form)
    r.add_post("/trust/restore-defaults", trust_restore_form)
    r.add_get(f"/trust/{fp}", trust_detail_page)
    r.add_post(f"/trust/{fp}/remove", trust_remove_form)
    r.add_post(f"/trust/{fp}/accept", trust_accept_form)
