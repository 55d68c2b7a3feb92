"""The request pipeline. Middlewares, outermost first:

1. errors — the product's exceptions and aiohttp's HTTP errors become the JSON error
   shape ``{"error": {"code", "message"}}`` under ``/api/`` and an HTML page elsewhere;
2. metrics — every request is counted by route, method and status;
3. body limit — every body is capped (413) whatever its transfer encoding: the small
   login limit on the public routes, ``admin.max_upload`` elsewhere; a declared
   ``Content-Length`` over it is refused before any byte is read;
4. access — every route but ``/healthz``, ``/readyz``, the login form and the static
   files needs an admin: HTTP Basic or a session for the API, a session for the pages;
   unsafe methods with a session need the session's CSRF token. Only once the admin is
   known do the restore routes get the large limit a backup needs.
"""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import aiohttp_jinja2
from aiohttp import web
from aiohttp.typedefs import Handler

from certstore.errors import CertStoreError
from gateway.admin.auth import SESSION_COOKIE, Session, VerifierBusy, is_admin_user, parse_basic
from gateway.admin.errors import (
    HTTP_CODES,
    HTTP_MESSAGES,
    ApiError,
    code_of,
    csrf_failed,
    json_error,
    status_of,
    throttled,
    unauthorized,
)
from gateway.admin.parsing import read_form
from gateway.admin.state import (
    CSRF_FIELD,
    CSRF_HEADER,
    PRINCIPAL,
    STATIC_PREFIX,
    Principal,
    is_api,
    state_of,
)
from gateway.errors import GatewayError
from gateway.log import get_logger

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_PUBLIC = frozenset(
    {
        ("GET", "/healthz"),
        ("HEAD", "/healthz"),
        ("GET", "/readyz"),
        ("HEAD", "/readyz"),
        ("GET", "/login"),
        ("POST", "/login"),
    }
)

_log = get_logger(area="admin")


# -- errors ----------------------------------------------------------------------------------


def _passthrough_headers(exc: web.HTTPException) -> dict[str, str]:
    keep = ("Allow", "Retry-After", "WWW-Authenticate", "Location", "Set-Cookie")
    return {k: v for k, v in exc.headers.items() if k in keep}


async def _error_page(
    request: web.Request, status: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    response = aiohttp_jinja2.render_template(
        "error.html",
        request,
        {"status": status, "message": message, "principal": request.get(PRINCIPAL)},
        status=status,
    )
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        if is_api(request):
            return json_error(exc.status, exc.code, exc.message, exc.headers)
        return await _error_page(request, exc.status, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = HTTP_MESSAGES.get(exc.status) or exc.reason
        headers = _passthrough_headers(exc)
        if is_api(request):
            return json_error(
                exc.status, HTTP_CODES.get(exc.status, "http-error"), message, headers
            )
        return await _error_page(request, exc.status, message, headers)
    except (CertStoreError, GatewayError) as exc:
        status = status_of(exc)
        if status >= 500:
            _log.error("admin.request.failed", path=request.path, error=str(exc), code=code_of(exc))
        if is_api(request):
            return json_error(status, code_of(exc), str(exc))
        return await _error_page(request, status, str(exc))
    except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
        raise
    except Exception:
        _log.exception("admin.request.crashed", path=request.path, method=request.method)
        message = "The admin endpoint hit an internal error; the details are in the log."
        if is_api(request):
            return json_error(500, "internal-error", message)
        return await _error_page(request, 500, message)


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except ApiError as exc:
        status = exc.status
        raise
    finally:
        info = request.match_info.route.resource
        route = info.canonical if info is not None else "unmatched"
        state_of(request).metrics.requests.inc(
            route=route, method=request.method, status=str(status)
        )


# -- access ----------------------------------------------------------------------------------


def client_address(request: web.Request) -> str:
    return request.remote or "unknown"


def is_public(request: web.Request) -> bool:
    if (request.method, request.path) in _PUBLIC:
        return True
    return request.method in ("GET", "HEAD") and request.path.startswith(STATIC_PREFIX)


async def attempt_login(request: web.Request, password: str, *, user_ok: bool, via: str) -> bool:
    """Check a login attempt (form or HTTP Basic) under the client's throttle.

    The attempt is admitted by the throttle before the password is checked and its
    outcome recorded after, so concurrent attempts are counted while in flight.
    """
    state = state_of(request)
    client = client_address(request)
    throttle = state.auth.throttle
    wait = throttle.begin(client)
    if wait is not None:
        raise throttled(wait)
    try:
        ok = user_ok and await state.auth.check_password(password)
    except VerifierBusy as exc:
        throttle.cancel(client)
        seconds = max(1, int(exc.retry_after))
        raise ApiError(503, exc.code, str(exc), headers={"Retry-After": str(seconds)}) from exc
    except BaseException:
        throttle.cancel(client)
        raise
    lockout = throttle.finish(client, ok=ok)
    if not ok:
        state.metrics.login_failures.inc()
        _log.warning("admin.login.failed", client=client, via=via, lockout=lockout)
    return ok


async def _basic_principal(request: web.Request, header: str) -> Principal:
    wait = state_of(request).auth.throttle.retry_after(client_address(request))
    if wait is not None:
        raise throttled(wait)
    credentials = parse_basic(header)
    if credentials is None:
        raise unauthorized("The Authorization header is not valid HTTP Basic.")
    user, password = credentials
    if not await attempt_login(request, password, user_ok=is_admin_user(user), via="basic"):
        raise unauthorized("The user name or password is wrong.")
    return Principal(name=user, interface="api", session=None)


def session_of(request: web.Request) -> Session | None:
    return state_of(request).auth.session(request.cookies.get(SESSION_COOKIE))


async def _csrf_token_of(request: web.Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await read_form(request)
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


async def _check_csrf(request: web.Request, session: Session) -> None:
    if request.method in _SAFE_METHODS:
        return
    if not session.csrf_ok(await _csrf_token_of(request)):
        _log.warning("admin.csrf.rejected", client=client_address(request), path=request.path)
        raise csrf_failed(
            "The form has expired or did not come from this page; reload the page and try again."
        )


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    unmatched = request.match_info.http_exception
    if unmatched is not None:
        raise unmatched  # 404 or 405 (with Allow): nothing is served, so nothing to guard
    if is_public(request):
        return await handler(request)
    header = request.headers.get("Authorization")
    if is_api(request) and header:
        request[PRINCIPAL] = await _basic_principal(request, header)
        return await _authenticated(request, handler, None)
    session = session_of(request)
    if session is None or not session.authenticated:
        if is_api(request):
            raise unauthorized()
        if request.method in ("GET", "HEAD"):
            target = request.rel_url.path_qs
            raise web.HTTPSeeOther(f"/login?next={quote(target, safe='')}")
        raise ApiError(401, "unauthorized", "Your session has ended; log in again.")
    interface = "api" if is_api(request) else "web"
    request[PRINCIPAL] = Principal(name="admin", interface=interface, session=session)
    return await _authenticated(request, handler, session)


async def _authenticated(
    request: web.Request, handler: Handler, session: Session | None
) -> web.StreamResponse:
    """The handler for a known admin, after the CSRF check of a session's request."""
    if session is not None:
        await _check_csrf(request, session)
    return await handler(request)
