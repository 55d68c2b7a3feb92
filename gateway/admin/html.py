"""What every HTML page shares: the page frame (navigation, messages, expiry banner),
redirects with a message shown once, the confirmation page, and the template filters."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from markupsafe import Markup

from certstore import notation, render
from certstore.model import Certificate
from certstore.render import visible
from gateway.admin.parsing import FormData, form_text
from gateway.admin.state import CSRF_FIELD, AdminState, principal_of, state_of

PAGE_SIZE = 50
BANNER_DAYS = 30
BANNER_CACHE_SECONDS = 60.0
# The cookie that keeps the expiry banner hidden, until what it lists changes.
BANNER_COOKIE = "sipsgate_banner_hidden"
BANNER_COOKIE_SECONDS = 7 * 86400
NAV = (
    ("status", "/", "Status"),
    ("trust", "/trust", "Trust list"),
    ("rejected", "/rejected", "Rejected / invalid"),
    ("pins", "/pins", "Pins"),
    ("revocation", "/revocation", "Revocation"),
    ("probe", "/probe", "Test connection"),
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


def banner_key(items: list[dict[str, Any]]) -> str:
    """Which expiry banner is shown: a new item (or the days left dropping below a
    week) makes a new key, so a hidden banner comes back when there is news."""
    text = "|".join(f"{i['role']}:{i['ref']}:{i['days_left'] < 7}" for i in items)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


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
    expiring = await expiring_banner(state)
    hidden = bool(expiring) and request.cookies.get(BANNER_COOKIE) == banner_key(expiring)
    full = {
        "nav": NAV,
        "active": active,
        "csrf_token": session.csrf_token if session else "",
        "csrf_field": CSRF_FIELD,
        "messages": session.take_messages() if session else [],
        "expiring": [] if hidden else expiring,
        "here": request.rel_url.path_qs,
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


def plural(count: int, word: str, words: str | None = None) -> str:
    """``1 certificate``, ``2 certificates``: the same helper as the CLI's."""
    return notation.plural(count, word, words)


def size(value: int) -> str:
    """A size for people: ``512 bytes``, ``64 KiB``, ``1 MiB``, ``1.5 MiB``."""
    if value < 1024:
        return plural(value, "byte")
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if value >= factor:
            amount = value / factor
            text = f"{amount:.1f}".removesuffix(".0")
            return f"{text} {unit}"
    return plural(value, "byte")  # not reached


def peer_uri(peer: Mapping[str, Any]) -> str:
    """A rendered peer (``transport``, ``host``, ``port``) as the URI a user types:
    ``sips:host:port``, ``https://host:port``."""
    return notation.uri(str(peer["transport"]), str(peer["host"]), int(peer["port"]))


def distinct_names(certificates: Iterable[Certificate]) -> dict[str, str]:
    """A name per certificate (by fingerprint) that tells apart certificates whose common
    name repeats (four builtin roots are all "GlobalSign"): the subject's O and OU are
    added where they differ from the name, and a fingerprint prefix if that is not enough."""
    certs = list(certificates)
    counts = Counter(c.display_name for c in certs)
    names: dict[str, str] = {}
    for cert in certs:
        name = cert.display_name
        if counts[name] > 1:
            extra = [
                value for key, value in cert.subject_fields if key in ("O", "OU") and value != name
            ]
            if extra:
                name = f"{name} ({', '.join(dict.fromkeys(extra))})"
        names[cert.fingerprint] = name
    repeated = Counter(names.values())
    for cert in certs:
        if repeated[names[cert.fingerprint]] > 1:
            names[cert.fingerprint] += f" [{cert.fingerprint[:8]}]"
    return names
