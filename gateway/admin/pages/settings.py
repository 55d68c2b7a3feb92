"""The Settings page: the runtime flags, provisioning, and restore from a backup."""

from __future__ import annotations

from aiohttp import web

from certstore import render
from certstore.errors import InputError
from gateway.admin import actions
from gateway.admin.errors import ApiError
from gateway.admin.html import back, page, plural
from gateway.admin.parsing import form_text, read_form
from gateway.admin.state import MAX_BACKUP_BYTES, principal_of, state_of
from gateway.provisioning.result import FetchResult

_FLAGS = (
    "accept_all_certificates",
    "trust_on_first_use",
    "allow_wildcards",
    "close_flows_on_revoke",
)


async def settings_page(request: web.Request) -> web.Response:
    state = state_of(request)
    value = await state.call(state.store.get_settings)
    rejected = await actions.rejected_view(state)
    provisioning = None
    if state.provisioning is not None:
        provisioning = await actions.provisioning_status(state.provisioning)
    return await page(
        request,
        "settings.html",
        {
            "settings": render.settings(value),
            "overridden": rejected.overridden,
            "rejected_total": len(rejected.open),
            "provisioning": provisioning,
        },
        active="settings",
    )


async def settings_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    form = await read_form(request)
    changes: dict[str, object] = {name: form_text(form, name) == "on" for name in _FLAGS}
    current = await state.call(state.store.get_settings)
    switching_on = changes["accept_all_certificates"] and not current.accept_all_certificates
    if switching_on and form_text(form, "accept_all_confirmed") != "on":
        # Accept-all turns verification off for every peer: never on a stray tick.
        raise back(
            request,
            "/settings",
            "error",
            "Accept all certificates was not switched on: tick “I understand that every "
            "peer is then accepted without verification” beside it to confirm. Nothing "
            "was changed.",
        )
    revocation = form_text(form, "revocation")
    if revocation:
        changes["revocation"] = revocation
    changes["http_auth_username"] = form_text(form, "http_auth_username")
    password = form_text(form, "http_auth_password")
    if form_text(form, "clear_password") == "on":
        changes["http_auth_password"] = ""
    elif password:
        changes["http_auth_password"] = password
    try:
        await actions.update_settings(state, changes, principal_of(request).actor)
    except InputError as exc:
        raise back(request, "/settings", "error", f"Nothing was changed: {exc}") from None
    raise back(request, "/settings", "ok", "Settings saved.")


def fetch_message(result: FetchResult) -> tuple[str, str]:
    """The flash message after *Fetch now*: its level and text."""
    if not result.ok:
        detail = result.errors[-1] if result.errors else "see the last result below"
        return "error", f"Provisioning fetch: {result.status.value}. {detail}"
    text = f"Provisioning fetch: {result.status.value}."
    if result.apply is not None:
        changed = len(result.apply.changes)
        added = len(result.apply.certificates_added)
        text += f" {plural(changed, 'setting')} changed, {plural(added, 'certificate')} added."
        if result.apply.unknown:
            text += f" {plural(len(result.apply.unknown), 'unknown name')} ignored."
    return "ok", text


async def provisioning_fetch_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    form = await read_form(request)
    force = form_text(form, "force") == "on"
    try:
        result = await actions.fetch_provisioning(state, force=force)
    except ApiError as exc:
        raise back(request, "/settings", "error", exc.message) from None
    level, text = fetch_message(result)
    raise back(request, "/settings", level, text)


async def restore_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    form = await read_form(request)
    if form_text(form, "understood") != "on":
        raise back(
            request,
            "/settings",
            "error",
            "Tick the box to confirm that the restore replaces the trust state.",
        )
    upload = form.get("file")
    if upload is None or not hasattr(upload, "file"):
        raise back(request, "/settings", "error", "Choose a backup file to restore.")
    data = upload.file.read(MAX_BACKUP_BYTES + 1)
    try:
        summary = await actions.restore_backup(state, data, principal_of(request).actor)
    except InputError as exc:
        raise back(request, "/settings", "error", f"Nothing was restored: {exc}") from None
    raise back(
        request,
        "/settings",
        "ok",
        f"Restored {plural(summary.trust, 'trusted certificate')}, "
        f"{plural(summary.pins, 'pin')} and {plural(summary.rejected, 'rejected chain')}.",
    )


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get("/settings", settings_page)
    r.add_post("/settings", settings_form)
    r.add_post("/settings/restore", restore_form)
    r.add_post("/settings/provisioning/fetch", provisioning_fetch_form)
