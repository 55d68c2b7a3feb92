"""What every HTML page shares: the page frame (navigation, messages, expiry banner),
redirects with a message shown once, the confirmation page, and the template filters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from markupsafe import Markup

from certstore import render
from certstore.render import visible
from gateway.admin.parsing import FormData, form_text
from gateway.admin.state import CSRF_FIELD, AdminState, principal_of, state_of

PAGE_SIZE = 50
BANNER_DAYS = 30
BANNER_CACHE_SECONDS = 60.0
NAV = (
    ("status", "/", "Status"),
    ("trust", "/trust", "Trust list"),
    ("rejected", "/rejected", "Rejected / invalid"),
    ("pins", "/pins", "Pins"),
    ("device", "/device", "Device certificate"),
    ("settings", "/settings", "Settings"),
    ("audit", "/audit", "Audit log"),
)


async def expiring_banner(state: AdminState) -> list[dict[str, Any]]:
    """What expires within 30 days (cached per store generation for a minute)."""
    snapshot = await state.call(state.store.snapshot)
    key = (snapshot.generation, int(time.monotonic() // BANNER_CACHE_SECONDS))
    cached = state.cache.get("banner")
    if cached is not None and cached[0] == key:
        return list(cached[1])
    now = state.now()
    items = await state.call(state.store.expiring, now=now, days=BANNER_DAYS)
    value = [
        {
            "role": item.role,
            "name": item.certificate.display_name,
            "days_left": item.days_left,
            "not_after": render.iso(item.not_after),
            "ref": item.ref,
        }
        for item in items
    ]
    state.cache["banner"] = (key, value)
    return value


async def page(
    request: web.Request,
    template: str,
    context: Mapping[str, Any],
    *,
    active: str = "",
    status: int = 200,
) -> web.Response:
    state = state_of(request)
    session = principal_of(request).session
    snapshot = await state.call(state.store.snapshot)
    full = {
        "nav": NAV,
        "active": active,
        "csrf_token": session.csrf_token if session else "",
        "csrf_field": CSRF_FIELD,
        "messages": session.take_messages() if session else [],
        "expiring": await expiring_banner(state),
        "accept_all": snapshot.settings.accept_all_certificates,
        "principal": principal_of(request),
        **context,
    }
    # Rendered in a worker thread: a long page (1,000 base stations, 50 certificates
    # with their details) must not hold up the event loop the SIP relay shares.
    text = await asyncio.to_thread(aiohttp_jinja2.render_string, template, request, full)
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def back(
    request: web.Request, default: str, level: str = "", message: str = ""
) -> web.HTTPSeeOther:
    """A redirect (303) to ``default``, with ``message`` shown once on the next page."""
    session = principal_of(request).session
    if session is not None and message:
        session.flash(level or "info", message)
    return web.HTTPSeeOther(default)


async def needs_confirmation(
    request: web.Request, form: FormData, message: str, *, button: str
) -> web.Response | None:
    """The confirmation page, unless the form was confirmed (by the dialog or by it)."""
    if form_text(form, "confirmed") == "1":
        return None
    fields = [
        (k, v) for k, v in form.items() if isinstance(v, str) and k not in (CSRF_FIELD, "confirmed")
    ]
    return await page(
        request,
        "confirm.html",
        {
            "message": message,
            "action": request.path,
            "fields": fields,
            "button": button,
            "cancel": "/" + request.path.strip("/").split("/", 1)[0],
        },
    )


# -- template filters ----------------------------------------------------------------------------


def visible_value(value: Any) -> Any:
    """Jinja's ``finalize``: every text a template prints goes through the same
    sanitiser as the CLI's output (certstore.render.visible) before it is escaped, so a
    name with control or bidi characters is shown as it is, never spoofed."""
    if isinstance(value, Markup):
        return Markup(visible(str(value)))  # noqa: S704 - already markup; only controls change
    if isinstance(value, str):
        return visible(value)
    return value


def when(value: object) -> str:
    """A time as pages show it: to the second, in UTC (an ISO text or a datetime)."""
    if value is None or value == "":
        return "never"
    moment = value if isinstance(value, datetime) else None
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
    if moment is None:
        return str(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
