"""The login form and logout."""

from __future__ import annotations

import aiohttp_jinja2
from aiohttp import web

from gateway.admin.auth import SESSION_COOKIE, SESSION_MAX_SECONDS, Session
from gateway.admin.errors import csrf_failed, throttled
from gateway.admin.middleware import attempt_login, client_address, session_of
from gateway.admin.parsing import form_text, local_target, read_form
from gateway.admin.state import CSRF_FIELD, state_of
from gateway.log import get_logger

_log = get_logger(area="admin")


def set_session_cookie(response: web.StreamResponse, session: Session) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        session.id,
        path="/",
        secure=True,
        httponly=True,
        samesite="Strict",
        max_age=SESSION_MAX_SECONDS,
    )


async def login_form(request: web.Request) -> web.Response:
    state = state_of(request)
    current = session_of(request)
    target = local_target(request.query.get("next"))
    if current is not None and current.authenticated:
        raise web.HTTPSeeOther(target)
    session = current or state.auth.sessions.anonymous()
    response = aiohttp_jinja2.render_template(
        "login.html",
        request,
        {
            "csrf_token": session.csrf_token,
            "csrf_field": CSRF_FIELD,
            "next": target,
            "error": "",
        },
    )
    if current is None:
        set_session_cookie(response, session)
    return response


async def login_submit(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    client = client_address(request)
    wait = state.auth.throttle.retry_after(client)
    if wait is not None:
        raise throttled(wait)
    form = await read_form(request)
    pre = session_of(request)
    if pre is None or not pre.csrf_ok(form_text(form, CSRF_FIELD) or None):
        _log.warning("admin.csrf.rejected", client=client, path=request.path)
        raise csrf_failed(
            "The login form has expired or did not come from this site; reload it and try again."
        )
    target = local_target(form_text(form, "next"))
    password = form_text(form, "password")
    if not await attempt_login(request, password, user_ok=True, via="form"):
        return aiohttp_jinja2.render_template(
            "login.html",
            request,
            {
                "csrf_token": pre.csrf_token,
                "csrf_field": CSRF_FIELD,
                "next": target,
                "error": "The password is wrong.",
            },
            status=401,
        )
    session = state.auth.login(request.cookies.get(SESSION_COOKIE))
    _log.info("admin.login.succeeded", client=client)
    redirect = web.HTTPSeeOther(target)
    set_session_cookie(redirect, session)
    raise redirect


async def logout(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    state.auth.sessions.drop(request.cookies.get(SESSION_COOKIE))
    redirect = web.HTTPSeeOther("/login")
    redirect.del_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
    raise redirect


def setup(app: web.Application) -> None:
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login_submit)
    app.router.add_post("/logout", logout)
