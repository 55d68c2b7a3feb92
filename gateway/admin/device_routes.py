"""The device identity and its signing request: API routes and HTML pages (DESIGN §6).

Every operation goes through the device identity service (key generation runs in a
worker thread). After a change the admin endpoint's own HTTPS certificate follows at
once (:meth:`DeviceTls.reload`), without a restart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from certstore.device import (
    STANDARD_VALIDITY_DAYS,
    ExportFormat,
    IdentitySpec,
    available_key_specs,
    build_spec,
    split_san_items,
)
from certstore.device_service import AsyncDeviceService
from certstore.errors import InputError, InputTooLarge, NotFound, ValidationError
from gateway.admin import api
from gateway.admin.app import API_PREFIX, AdminState, ApiError, principal_of, state_of
from gateway.admin.pages import back, form_of, form_text, needs_confirmation, page
from gateway.admin.security import read_limited

P7B_TYPE = "application/pkcs7-mime"
CSR_TYPE = "application/pkcs10"
# OpenSSL takes passphrases of at most 1023 bytes; 255 characters of UTF-8 always fit.
MAX_PASSPHRASE = 255

_CHAIN_DOWNLOADS = {
    "pem": (api.PEM_TYPE, "sipsgate-device-chain.pem"),
    "der": (api.DER_TYPE, "sipsgate-device.der"),
    "p7b": (P7B_TYPE, "sipsgate-device-chain.p7b"),
}


def service_of(state: AdminState) -> AsyncDeviceService:
    service = state.device
    if not isinstance(service, AsyncDeviceService):
        raise ApiError(503, "unavailable", "The device identity service is not running.")
    return service


async def identity_changed(state: AdminState) -> None:
    """Serve the new device certificate from the next HTTPS connection on."""
    if state.device_tls is not None:
        await state.call(state.device_tls.reload)


def _strings(body: Mapping[str, Any], name: str) -> list[str]:
    value = body.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError(name, f"{name} must be a list of strings.")
    return list(value)


def spec_from_json(body: Mapping[str, Any], *, allow_weak: bool, csr: bool) -> IdentitySpec:
    allowed = {"key", "subject", "san_dns", "san_ip", "san_uri"}
    if not csr:
        allowed.add("validity_days")
    api.check_fields(body, allowed)
    subject = body.get("subject")
    if not isinstance(subject, dict):
        raise ValidationError("subject", 'subject must be an object such as {"CN": "name"}.')
    key = body.get("key", "ec-p256")
    if not isinstance(key, str):
        raise ValidationError("key", "key must be a key type such as ec-p256 or rsa-2048.")
    validity = body.get("validity_days", STANDARD_VALIDITY_DAYS)
    if isinstance(validity, float) and validity.is_integer():
        validity = int(validity)  # JSON has one number type: 3650.0 is 3650
    return build_spec(
        subject=subject,
        key=key,
        san_dns=_strings(body, "san_dns"),
        san_ip=_strings(body, "san_ip"),
        san_uri=_strings(body, "san_uri"),
        validity_days=validity,
        allow_weak=allow_weak,
    )


def _passphrase(value: object) -> bytes | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_PASSPHRASE:
        raise ValidationError(
            "passphrase", f"passphrase must be text of at most {MAX_PASSPHRASE} characters."
        )
    return value.encode("utf-8")


def require_https(request: web.Request) -> None:
    if not request.secure:
        raise ApiError(
            403,
            "https-required",
            "The private key is only handed out over HTTPS; connect with https://.",
        )


# -- API ----------------------------------------------------------------------------------------


async def device_get(request: web.Request) -> web.Response:
    service = service_of(state_of(request))
    return web.json_response(await service.details())


async def device_chain(request: web.Request) -> web.Response:
    state = state_of(request)
    fmt = api.query_choice(request, "format", tuple(_CHAIN_DOWNLOADS)) or "pem"
    data = await service_of(state).export(actor=principal_of(request).actor, fmt=fmt)
    content_type, filename = _CHAIN_DOWNLOADS[fmt]
    return api.download(data, content_type=content_type, filename=filename)


async def device_export(request: web.Request) -> web.Response:
    require_https(request)
    state = state_of(request)
    body = await api.read_json_object(request, limit=state.max_upload, optional=True)
    api.check_fields(body, {"passphrase"})
    data = await service_of(state).export(
        actor=principal_of(request).actor,
        fmt=ExportFormat.PEM,
        include_private_key=True,
        passphrase=_passphrase(body.get("passphrase")),
    )
    return api.download(data, content_type=api.PEM_TYPE, filename="sipsgate-device-with-key.pem")


async def device_self_signed(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await api.read_json_object(request, limit=state.max_upload)
    spec = spec_from_json(body, allow_weak=state.config.gateway.allow_weak_keys, csr=False)
    service = service_of(state)
    await service.self_signed(spec, actor=principal_of(request).actor)
    await identity_changed(state)
    return web.json_response(await service.details(), status=201)


async def device_renew(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await api.read_json_object(request, limit=state.max_upload, optional=True)
    api.check_fields(body, {"reuse_key"})
    reuse = body.get("reuse_key", False)
    if not isinstance(reuse, bool):
        raise ValidationError("reuse_key", "reuse_key must be true or false.")
    service = service_of(state)
    await service.renew(actor=principal_of(request).actor, reuse_key=reuse)
    await identity_changed(state)
    return web.json_response(await service.details())


async def _install_parts(
    request: web.Request, limit: int
) -> tuple[bytes, bytes | None, bytes | None]:
    """(certificate data, separate key PEM, passphrase) from a raw body or a form."""
    if request.content_type != "multipart/form-data":
        return await read_limited(request, limit, what="upload"), None, None
    form = await form_of(request)
    parts: dict[str, bytes] = {}
    total = 0
    for name in ("file", "key"):
        value = form.get(name)
        if value is not None and hasattr(value, "file"):
            data = value.file.read(limit + 1)
            total += len(data)
            if total > limit:
                raise InputTooLarge("upload", total, limit)
            if data:
                parts[name] = data
    if "file" not in parts:
        raise ApiError(400, "no-file", "The form holds no certificate file; choose one.")
    passphrase = _passphrase(form_text(form, "passphrase") or None)
    return parts["file"], parts.get("key"), passphrase


async def device_install(request: web.Request) -> web.Response:
    state = state_of(request)
    data, key_pem, passphrase = await _install_parts(request, state.max_upload)
    service = service_of(state)
    outcome = await service.install(
        data, actor=principal_of(request).actor, key_pem=key_pem, passphrase=passphrase
    )
    await identity_changed(state)
    details = await service.details()
    return web.json_response({**details, "source": outcome.source, "notes": list(outcome.notes)})


async def device_clear(request: web.Request) -> web.Response:
    state = state_of(request)
    service = service_of(state)
    await service.clear(actor=principal_of(request).actor)
    await identity_changed(state)
    return web.json_response(await service.details())


async def device_trust(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await api.read_json_object(request, limit=state.max_upload, optional=True)
    api.check_fields(body, {"fingerprints"})
    fingerprints = api.fingerprint_list(body) if "fingerprints" in body else None
    result = await service_of(state).trust_device_chain(
        actor=principal_of(request).actor, fingerprints=fingerprints
    )
    return web.json_response(api.add_result_body(result, state.now()))


async def csr_get(request: web.Request) -> web.Response:
    state = state_of(request)
    fmt = api.format_of(request)
    service = service_of(state)
    if fmt is None:
        return web.json_response(await service.csr_details())
    data = await service.csr_download(fmt)
    if fmt == "der":
        return api.download(data, content_type=CSR_TYPE, filename="sipsgate-request.der")
    return api.download(data, content_type=api.PEM_TYPE, filename="sipsgate-request.csr")


async def csr_create(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await api.read_json_object(request, limit=state.max_upload)
    spec = spec_from_json(body, allow_weak=state.config.gateway.allow_weak_keys, csr=True)
    service = service_of(state)
    await service.create_csr(spec, actor=principal_of(request).actor)
    return web.json_response(await service.csr_details(), status=201)


async def csr_remove(request: web.Request) -> web.Response:
    state = state_of(request)
    await service_of(state).remove_csr(actor=principal_of(request).actor)
    return web.json_response({"removed": True})


# -- pages --------------------------------------------------------------------------------------


async def device_page(request: web.Request) -> web.Response:
    state = state_of(request)
    service = service_of(state)
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


def _spec_from_form(form: Any, *, allow_weak: bool, csr: bool) -> IdentitySpec:
    subject = {
        key: form_text(form, name).strip()
        for key, name in (
            ("CN", "cn"),
            ("O", "o"),
            ("OU", "ou"),
            ("L", "l"),
            ("ST", "st"),
            ("C", "c"),
            ("emailAddress", "email"),
        )
    }
    items = [line.strip() for line in form_text(form, "sans").splitlines() if line.strip()]
    dns, ips, uris = split_san_items(items)
    days_text = form_text(form, "validity_days").strip()
    try:
        validity = int(days_text) if days_text else STANDARD_VALIDITY_DAYS
    except ValueError:
        raise ValidationError("validity_days", "The validity must be a number of days.") from None
    return build_spec(
        subject=subject,
        key=form_text(form, "key", "ec-p256"),
        san_dns=dns,
        san_ip=ips,
        san_uri=uris,
        validity_days=validity if not csr else STANDARD_VALIDITY_DAYS,
        allow_weak=allow_weak,
    )


async def device_create_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    form = await form_of(request)
    kind = form_text(form, "type")
    service = service_of(state)
    actor = principal_of(request).actor
    allow_weak = state.config.gateway.allow_weak_keys
    try:
        if kind == "csr":
            spec = _spec_from_form(form, allow_weak=allow_weak, csr=True)
            await service.create_csr(spec, actor=actor)
            raise back(
                request,
                "/device",
                "ok",
                "The signing request was created; download it and send it to your CA.",
            )
        spec = _spec_from_form(form, allow_weak=allow_weak, csr=False)
        await service.self_signed(spec, actor=actor)
    except InputError as exc:
        raise back(request, "/device", "error", f"Nothing was created: {exc}") from None
    await identity_changed(state)
    raise back(request, "/device", "ok", "A new self-signed device certificate is in use.")


async def device_renew_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    form = await form_of(request)
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
    await service_of(state).renew(actor=principal_of(request).actor, reuse_key=reuse)
    await identity_changed(state)
    raise back(request, "/device", "ok", "The standard device certificate was renewed.")


async def device_clear_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    form = await form_of(request)
    confirm = await needs_confirmation(
        request,
        form,
        "Discard the installed device certificate and its key, and go back to a standard "
        "self-signed certificate?",
        button="Clear",
    )
    if confirm is not None:
        return confirm
    await service_of(state).clear(actor=principal_of(request).actor)
    await identity_changed(state)
    raise back(request, "/device", "ok", "The standard device certificate is in use again.")


async def device_upload_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    try:
        data, key_pem, passphrase = await _install_parts(request, state.max_upload)
        outcome = await service_of(state).install(
            data, actor=principal_of(request).actor, key_pem=key_pem, passphrase=passphrase
        )
    except (InputError, ApiError) as exc:
        text = exc.message if isinstance(exc, ApiError) else str(exc)
        raise back(request, "/device", "error", f"Nothing was installed: {text}") from None
    await identity_changed(state)
    message = "The device certificate was installed."
    if outcome.notes:
        message += " " + " ".join(outcome.notes)
    raise back(request, "/device", "ok", message)


async def device_trust_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    form = await form_of(request)
    chosen = [v for v in form.getall("fingerprint", []) if isinstance(v, str)]
    if not chosen:
        raise back(request, "/device", "error", "Select the certificates to trust first.")
    result = await service_of(state).trust_device_chain(
        actor=principal_of(request).actor, fingerprints=chosen
    )
    raise back(
        request, "/device", "ok", f"{len(result.added)} certificate(s) added to the trust list."
    )


async def device_export_form(request: web.Request) -> web.StreamResponse:
    require_https(request)
    state = state_of(request)
    form = await form_of(request)
    confirm = await needs_confirmation(
        request,
        form,
        "Download the device certificate chain together with its PRIVATE KEY? Keep the file "
        "secret; anybody who has it can impersonate this gateway. The download is logged.",
        button="Download with private key",
    )
    if confirm is not None:
        return confirm
    data = await service_of(state).export(
        actor=principal_of(request).actor,
        fmt=ExportFormat.PEM,
        include_private_key=True,
        passphrase=_passphrase(form_text(form, "passphrase") or None),
    )
    return api.download(data, content_type=api.PEM_TYPE, filename="sipsgate-device-with-key.pem")


async def csr_page(request: web.Request) -> web.Response:
    state = state_of(request)
    details = await service_of(state).csr_details()
    return await page(request, "csr.html", {"csr": details}, active="device")


async def csr_remove_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    form = await form_of(request)
    confirm = await needs_confirmation(
        request,
        form,
        "Remove the signing request and its private key? A certificate the CA issues for it "
        "can then no longer be installed.",
        button="Remove",
    )
    if confirm is not None:
        return confirm
    await service_of(state).remove_csr(actor=principal_of(request).actor)
    raise back(request, "/device", "ok", "The signing request and its key were removed.")


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
    r.add_get("/device", device_page)
    r.add_post("/device/create", device_create_form)
    r.add_post("/device/renew", device_renew_form)
    r.add_post("/device/clear", device_clear_form)
    r.add_post("/device/upload", device_upload_form)
    r.add_post("/device/trust", device_trust_form)
    r.add_post("/device/export", device_export_form)
    r.add_get("/csr", csr_page)
    r.add_post("/csr/remove", csr_remove_form)
