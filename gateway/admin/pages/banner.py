"""Hiding the expiry banner without a script: a small form posts here, a cookie keeps
which banner was hidden, and the banner comes back as soon as what it lists changes."""

from __future__ import annotations

from aiohttp import web

from gateway.admin.html import BANNER_COOKIE, BANNER_COOKIE_SECONDS, banner_key, expiring_banner
from gateway.admin.parsing import form_text, local_target, read_form
from gateway.admin.state import state_of


async def banner_dismiss(request: web.Request) -> web.StreamResponse:
    form = await read_form(request)
    target = local_target(form_text(form, "back"))
    items = await expiring_banner(state_of(request))
    redirect = web.HTTPSeeOther(target)
    redirect.set_cookie(
        BANNER_COOKIE,
        banner_key(items),
        path="/",
        secure=True,
        httponly=True,
        samesite="Strict",
        max_age=BANNER_COOKIE_SECONDS,
    )
    raise redirect


def setup(app: web.Application) -> None:
    app.router.add_post("/banner/dismiss", banner_dismiss)
