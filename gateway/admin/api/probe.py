"""``POST /api/v1/probe``: test a connection as ``sipsgate probe --json`` does."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.admin.errors import ApiError
from gateway.admin.parsing import read_json_object
from gateway.admin.probing import parse_request, test_connection
from gateway.admin.state import API_PREFIX, principal_of, state_of
from gateway.tls.probe import as_json


async def probe_post(request: web.Request) -> web.Response:
    """``POST /api/v1/probe``: ``{"uri": ..., "connect": ...}`` → the ``probe --json`` view."""
    state = state_of(request)
    body = await read_json_object(request, limit=4096)
    unknown = sorted(set(body) - {"uri", "connect"})
    if unknown:
        noun = "field" if len(unknown) == 1 else "fields"
        raise ApiError(422, "invalid-field", f"Unknown {noun}: {', '.join(unknown)}.")
    uri, connect = body.get("uri", ""), body.get("connect")
    if not isinstance(uri, str):
        raise ApiError(422, "invalid-uri", "uri must be a string, e.g. sips:sip.example.net.")
    if connect is not None and not isinstance(connect, str):
        raise ApiError(422, "invalid-uri", "connect must be a string HOST:PORT, or null.")
    target = parse_request(uri, connect or "")
    test = await test_connection(state, target, principal_of(request).actor)
    doc: dict[str, Any] = as_json(
        test.result,
        state.now(),
        recorded=test.recorded,
        rejected_id=test.rejected_id,
        source=test.source,
    )
    doc["uri"] = target.uri
    return web.json_response(doc)


def setup(app: web.Application) -> None:
    app.router.add_post(f"{API_PREFIX}/probe", probe_post)
