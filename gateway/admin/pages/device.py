"""The Device certificate pages: the identity, a new one, renew, install, clear, the
signing request, and the export with the private key (over HTTPS only)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from certstore.device import ExportFormat, available_key_specs
from certstore.errors import InputError, NotFound
from gateway.admin import actions
from gateway.admin.errors import ApiError, message_of
from gateway.admin.html import back, needs_confirmation, page, plural
from gateway.admin.parsing import (
    form_text,
    install_parts,
    passphrase,
    read_form,
    require_https,
    spec_from_form,
)
from gateway.admin.responses import DEVICE_KEY_FILENAME, PEM_TYPE, download
from gateway.admin.state import principal_of, state_of


async def device_page(request: web.Request) -> web.Response:
    state = state_of(request)
    service = actions.device_service(state)
    details = await service.details()
    try:
        csr: dict[str, Any] | None = await service.csr_details()
    except NotFound:
        csr = None
    allow_weak = state.config.gateway.allow_weak_keys
    leaf = details["certificate"]
    return await page(
        request,
        "device.html",
        {
            "device": details,
            "csr": csr,
            "key_specs": [k.value for k in available_key_specs(allow_weak=allow_weak)],
            "default_cn": leaf.get("common_name") or "",
            "secure": request.secure,
            "max_upload": state.max_upload,
        },
        active="device",
    )


async def device_create_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    form = await read_form(request)
    kind = form_text(form, "type")
    actions.device_service(state)  # 503 before any input is judged
    actor = principal_of(request).actor
    allow_weak = state.config.gateway.allow_weak_keys
    try:
        if kind == "csr":
            spec = spec_from_form(form, allow_weak=allow_weak, csr=True)
            await actions.create_csr(state, spec, actor)
            raise back(
                request,
                "/device",
                "ok",
                "The signing request was created; download it and send it to your CA.",
            )
        spec = spec_from_form(form, allow_weak=allow_weak, csr=False)
        await actions.device_self_signed(state, spec, actor)
    except InputError as exc:
        raise back(request, "/device", "error", f"Nothing was created: {exc}") from None
    raise back(request, "/device", "ok", "A new self-signed device certificate is in use.")


async def device_renew_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    form = await read_form(request)
    confirm = await needs_confirmation(
        request,
        form,
        "Renew the standard device certificate? Devices that pinned the current one must "
        "accept the new one.",
        button="Renew",
    )
    if confirm is not None:
        return confirm
    reuse = form_text(form, "reuse_key") == "on"
    await actions.device_renew(state, principal_of(request).actor, reuse_key=reuse)
    raise back(request, "/device", "ok", "The standard device certificate was renewed.")


async def device_clear_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    form = await read_form(request)
    confirm = await needs_confirmation(
        request,
        form,
        "Discard the installed device certificate and its key, and go back to a standard "
        "self-signed certificate?",
        button="Clear",
    )
    if confirm is not None:
        return confirm
    await actions.device_clear(state, principal_of(request).actor)
    raise back(request, "/device", "ok", "The standard device certificate is in use again.")


async def device_upload_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    try:
        data, key_pem, secret = await install_parts(request, state.max_upload)
        outcome = await actions.device_install(
            state, data, principal_of(request).actor, key_pem=key_pem, passphrase=secret
        )
    except (InputError, ApiError) as exc:
        raise back(
            request, "/device", "error", f"Nothing was installed: {message_of(exc)}"
        ) from None
    message = "The device certificate was installed."
    if outcome.notes:
        message += " " + " ".join(outcome.notes)
    raise back(request, "/device", "ok", message)


async def device_trust_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    form = await read_form(request)
    chosen = [v for v in form.getall("fingerprint", []) if isinstance(v, str)]
    if not chosen:
        raise back(request, "/device", "error", "Select the certificates to trust first.")
    result = await actions.device_trust_chain(state, principal_of(request).actor, chosen)
    raise back(
        request,
        "/device",
        "ok",
        f"{plural(len(result.added), 'certificate')} added to the trust list.",
    )


async def device_export_form(request: web.Request) -> web.StreamResponse:
    require_https(request)
    state = state_of(request)
    form = await read_form(request)
    confirm = await needs_confirmation(
        request,
        form,
        "Download the device certificate chain together with its PRIVATE KEY? Keep the file "
        "secret; anybody who has it can impersonate this gateway. The download is logged.",
        button="Download with private key",
    )
    if confirm is not None:
        return confirm
    data = await actions.device_export(
        state,
        principal_of(request).actor,
        fmt=ExportFormat.PEM,
        include_private_key=True,
        passphrase=passphrase(form_text(form, "passphrase") or None),
    )
    return download(data, content_type=PEM_TYPE, filename=DEVICE_KEY_FILENAME)


async def csr_page(request: web.Request) -> web.Response:
    state = state_of(request)
    details = await actions.device_service(state).csr_details()
    return await page(request, "csr.html", {"csr": details}, active="device")


async def csr_remove_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    form = await read_form(request)
    confirm = await needs_confirmation(
        request,
        form,
        "Remove the signing request and its private key? A certificate the CA issues for it "
        "can then no longer be installed.",
        button="Remove",
    )
    if confirm is not None:
        return confirm
    await actions.remove_csr(state, principal_of(request).actor)
    raise back(request, "/device", "ok", "The signing request and its key were removed.")


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get("/device", device_page)
    r.add_post("/device/create", device_create_form)
    r.add_post("/device/renew", device_renew_form)
    r.add_post("/device/clear", device_clear_form)
    r.add_post("/device/upload", device_upload_form)
    r.add_post("/device/trust", device_trust_form)
    r.add_post("/device/export", device_export_form)
    r.add_get("/csr", csr_page)
    r.add_post("/csr/remove", csr_remove_form)
