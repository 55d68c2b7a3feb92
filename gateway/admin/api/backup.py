"""``/api/v1/backup`` and ``/api/v1/restore``: the whole trust state as one document."""

from __future__ import annotations

from aiohttp import web

from gateway.admin import actions
from gateway.admin.errors import ApiError
from gateway.admin.parsing import query_bool, read_upload
from gateway.admin.responses import download, restore_summary
from gateway.admin.state import API_PREFIX, MAX_BACKUP_BYTES, principal_of, state_of


async def backup(request: web.Request) -> web.Response:
    state = state_of(request)
    secrets = query_bool(request, "include_secrets")
    if secrets and not request.secure:
        raise ApiError(403, "https-required", "A backup with secrets is only given over HTTPS.")
    stamp = state.now().strftime("%Y%m%dT%H%M%SZ")
    document = await actions.export_backup(
        state, principal_of(request).actor, include_secrets=secrets
    )
    return download(
        document, content_type="application/json", filename=f"sipsgate-backup-{stamp}.json"
    )


async def restore(request: web.Request) -> web.Response:
    state = state_of(request)
    files = await read_upload(request, MAX_BACKUP_BYTES)
    if len(files) != 1:
        raise ApiError(400, "one-file", "Upload exactly one backup document.")
    summary = await actions.restore_backup(state, files[0][1], principal_of(request).actor)
    return web.json_response(restore_summary(summary))


def setup(app: web.Application) -> None:
    app.router.add_get(f"{API_PREFIX}/backup", backup)
    app.router.add_post(f"{API_PREFIX}/restore", restore)
