"""The admin web application: the factory, its typed state, and the request pipeline.

Middlewares, outermost first:

1. errors — the product's exceptions and aiohttp's HTTP errors become the JSON error
   shape ``{"error": {"code", "message"}}`` under ``/api/`` and an HTML page elsewhere;
2. body limit — every body is capped (413) whatever its transfer encoding: the small
   login limit on the public routes, ``admin.max_upload`` elsewhere; a declared
   ``Content-Length`` over it is refused before any byte is read;
3. access — every route but ``/healthz``, the login form and the static files needs
   an admin: HTTP Basic or a session for the API, a session for the pages; unsafe
   methods with a session need the session's CSRF token. Only once the admin is known
   do the restore routes get the large limit a backup needs.

Security headers are added to every response in ``on_response_prepare``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, ParamSpec, TypeVar
from urllib.parse import quote

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler
from markupsafe import Markup
from multidict import MultiDictProxy

from certstore.device_service import AsyncDeviceService
from certstore.errors import (
    CertStoreError,
    Conflict,
    InputError,
    InputTooLarge,
    NotFound,
    StorageError,
    ValidationError,
)
from certstore.model import Actor
from certstore.render import visible
from certstore.revocation import MAX_CRL_BYTES
from certstore.store import CertStore
from gateway.admin.auth import (
    SESSION_COOKIE,
    AdminAuth,
    Session,
    VerifierBusy,
    is_admin_user,
    parse_basic,
)
from gateway.admin.security import (
    BodyTooLarge,
    add_security_headers,
    body_limit_middleware,
)
from gateway.admin.tls import AdminTlsError, DeviceTls
from gateway.config import Config
from gateway.errors import GatewayError
from gateway.health import ServiceHealth
from gateway.log import get_logger
from gateway.metrics import Counter, MetricsRegistry
from gateway.provisioning.service import ProvisioningService
from gateway.relay.status import RelayStatus
from gateway.tls.connector import TlsConnector

P = ParamSpec("P")
T = TypeVar("T")

API_PREFIX = "/api/v1"
STATIC_PREFIX = "/static/"
# A backup of a large trust list is bigger than a certificate upload; only an
# authenticated admin may send that much, and only to the restore routes.
MAX_BACKUP_BYTES = 64 * 1024 * 1024
# Routes whose body may exceed ``admin.max_upload``: a backup, and a large CA's CRL
# (the form needs room for its other fields).
_LARGE_BODY = {
    ("POST", "/api/v1/restore"): MAX_BACKUP_BYTES,
    ("POST", "/settings/restore"): MAX_BACKUP_BYTES,
    ("POST", "/api/v1/revocation/crl"): MAX_CRL_BYTES + 64 * 1024,
    ("POST", "/revocation/upload"): MAX_CRL_BYTES + 64 * 1024,
}
# The login form (CSRF token, password, next) is small: before login nobody may make
# the gateway hold more than this per request.
LOGIN_BODY_LIMIT = 16 * 1024
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
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


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True, kw_only=True)
class AdminMetrics:
    requests: Counter
    login_failures: Counter

    @classmethod
    def create(cls, registry: MetricsRegistry) -> AdminMetrics:
        return cls(
            requests=registry.counter(
                "sipsgate_admin_requests_total",
                "Admin endpoint requests by route, method and status.",
                ("route", "method", "status"),
            ),
            login_failures=registry.counter(
                "sipsgate_admin_login_failures_total",
                "Failed admin logins (form and HTTP Basic).",
            ),
        )


@dataclass(slots=True, kw_only=True)
class AdminState:
    """Everything the handlers share; one per application."""

    store: CertStore
    config: Config
    auth: AdminAuth
    registry: MetricsRegistry
    metrics: AdminMetrics
    clock: Callable[[], datetime] = _utc_now
    device_tls: DeviceTls | None = None
    device: AsyncDeviceService | None = None
    # The running provisioning client (absent in tools and tests that do not need it).
    provisioning: ProvisioningService | None = None
    # The supervised parts' states (``/readyz``); absent when no supervisor runs the app.
    health: ServiceHealth | None = None
    # The relay's live state (status view, readiness); absent when no relay runs.
    relay_status: RelayStatus | None = None
    # The gateway's TLS connector, for "test this connection" (one is built when absent).
    connector: TlsConnector | None = None
    # URL -> why its last revocation fetch failed (the gateway's fetcher; absent in tools).
    revocation_errors: Callable[[], Mapping[str, str]] | None = None
    started: float = field(default_factory=time.monotonic)
    # Small per-application caches (e.g. the expiry banner per store generation).
    cache: dict[str, Any] = field(default_factory=dict)

    def now(self) -> datetime:
        return self.clock()

    async def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a (blocking) store call in a worker thread."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    @property
    def max_upload(self) -> int:
        return self.config.admin.max_upload


STATE: Final = web.AppKey("sipsgate_admin_state", AdminState)


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """The authenticated admin of a request, and how they got in."""

    name: str
    interface: str  # "api" (HTTP Basic or session on the API) or "web" (the pages)
    session: Session | None

    @property
    def actor(self) -> Actor:
        return Actor(name=self.name, interface=self.interface)


PRINCIPAL: Final = web.RequestKey("sipsgate_admin_principal", Principal)


def state_of(request: web.Request) -> AdminState:
    return request.app[STATE]


def principal_of(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/") or request.path == "/metrics"


# -- errors ----------------------------------------------------------------------------------

_HTTP_CODES = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    409: "conflict",
    411: "length-required",
    413: "too-large",
    415: "unsupported-media-type",
    422: "invalid-value",
    429: "too-many-requests",
    503: "unavailable",
}

_HTTP_MESSAGES = {
    401: "Authentication is required: log in, or send HTTP Basic credentials (user admin).",
    403: "This request is not allowed.",
    404: "There is nothing at this address.",
    405: "This method is not allowed here.",
    413: "The request body is too large.",
}


class ApiError(GatewayError):
    """An error raised by a handler: HTTP status, the product's code, and a sentence."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def status_of(exc: CertStoreError | GatewayError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, InputTooLarge | BodyTooLarge):
        return 413
    if isinstance(exc, ValidationError):
        return 422
    if isinstance(exc, InputError):
        return 400
    if isinstance(exc, Conflict | AdminTlsError):
        return 409
    if isinstance(exc, StorageError):
        return 503
    return 500


def code_of(exc: CertStoreError | GatewayError) -> str:
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) else "gateway-error"


def json_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    response = web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers
    )
    return response


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
        message = _HTTP_MESSAGES.get(exc.status) or exc.reason
        headers = _passthrough_headers(exc)
        if is_api(request):
            return json_error(
                exc.status, _HTTP_CODES.get(exc.status, "http-error"), message, headers
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


def _unauthorized(message: str = "") -> ApiError:
    return ApiError(
        401,
        "unauthorized",
        message or _HTTP_MESSAGES[401],
        headers={"WWW-Authenticate": 'Basic realm="sipsgate admin", charset="UTF-8"'},
    )


def throttled(retry_after: float) -> ApiError:
    seconds = max(1, int(retry_after + 0.999))
    return ApiError(
        429,
        "too-many-attempts",
        f"Too many failed logins from this address; try again in {seconds} seconds.",
        headers={"Retry-After": str(seconds)},
    )


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
        raise _unauthorized("The Authorization header is not valid HTTP Basic.")
    user, password = credentials
    if not await attempt_login(request, password, user_ok=is_admin_user(user), via="basic"):
        raise _unauthorized("The user name or password is wrong.")
    return Principal(name=user, interface="api", session=None)


def session_of(request: web.Request) -> Session | None:
    return state_of(request).auth.session(request.cookies.get(SESSION_COOKIE))


# What aiohttp's form and multipart parsers raise on a malformed body.
FORM_ERRORS = (KeyError, ValueError, AssertionError, UnicodeDecodeError, HttpProcessingError)


def bad_form(exc: Exception) -> ApiError:
    return ApiError(
        400,
        "bad-form",
        f"The form data cannot be read ({exc.__class__.__name__}); send multipart/form-data "
        "with a boundary, or application/x-www-form-urlencoded.",
    )


async def read_form(request: web.Request) -> MultiDictProxy[Any]:
    """The submitted form; a malformed multipart body is a 400, not a crash."""
    try:
        return await request.post()
    except FORM_ERRORS as exc:
        raise bad_form(exc) from exc


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
        raise ApiError(
            403,
            "csrf-failed",
            "The form has expired or did not come from this page; reload the page and try again.",
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
            raise _unauthorized()
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


# -- the factory -----------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    state = state_of(request)
    try:
        snapshot = await state.call(state.store.snapshot)
    except CertStoreError as exc:
        return web.json_response({"status": "unavailable", "reason": str(exc)}, status=503)
    return web.json_response(
        {
            "status": "ok",
            "uptime_seconds": round(time.monotonic() - state.started, 1),
            "generation": snapshot.generation,
        }
    )


async def readyz(request: web.Request) -> web.Response:
    """Readiness: 200 while the SIP relay runs (``ready``, or ``degraded`` with a
    ``reason`` when another part failed or the upstream cannot be reached or is
    rejected), else 503."""
    state = state_of(request)
    ready, view = readiness(state)
    return web.json_response(view, status=200 if ready else 503)


def _visible_value(value: Any) -> Any:
    """Jinja's ``finalize``: every text a template prints goes through the same
    sanitiser as the CLI's output (certstore.render.visible) before it is escaped, so a
    name with control or bidi characters is shown as it is, never spoofed."""
    if isinstance(value, Markup):
        return Markup(visible(str(value)))  # noqa: S704 - already markup; only controls change
    if isinstance(value, str):
        return visible(value)
    return value


def readiness(state: AdminState) -> tuple[bool, dict[str, object]]:
    """The ``/readyz`` view: the supervised parts, then the upstream flow."""
    view: dict[str, object]
    if state.health is None:
        ready, view = True, {"status": "ready", "services": {}}
    else:
        ready, view = state.health.readiness()
    if view["status"] == "degraded":
        failed = [
            name
            for name, service in view["services"].items()  # type: ignore[attr-defined]
            if service["state"] != "running"
        ]
        view["reason"] = f"Not running: {', '.join(failed)}."
    problem = state.relay_status.readiness_problem() if state.relay_status else None
    if ready and problem is not None:
        view["status"] = "degraded"
        view["reason"] = problem
    return ready, view


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


def create_app(
    store: CertStore,
    config: Config,
    *,
    auth: AdminAuth,
    registry: MetricsRegistry | None = None,
    device_tls: DeviceTls | None = None,
    device: AsyncDeviceService | None = None,
    provisioning: ProvisioningService | None = None,
    health: ServiceHealth | None = None,
    relay_status: RelayStatus | None = None,
    connector: TlsConnector | None = None,
    clock: Callable[[], datetime] = _utc_now,
    revocation_errors: Callable[[], Mapping[str, str]] | None = None,
) -> web.Application:
    """The admin application. ``store`` stays owned by the caller (closed by it)."""
    from gateway.admin import api, device_routes, pages, probe_routes

    registry = registry if registry is not None else MetricsRegistry()
    state = AdminState(
        store=store,
        config=config,
        auth=auth,
        registry=registry,
        metrics=AdminMetrics.create(registry),
        clock=clock,
        device_tls=device_tls,
        device=device,
        provisioning=provisioning,
        health=health,
        relay_status=relay_status,
        connector=connector,
        revocation_errors=revocation_errors,
    )

    def limit_for(request: web.Request) -> int:
        if is_public(request):
            return LOGIN_BODY_LIMIT
        # A large route's body is read only after the access check (which reads no body),
        # so before login nobody makes the gateway hold more than the login limit.
        return max(state.max_upload, _LARGE_BODY.get((request.method, request.path), 0))

    app = web.Application(
        middlewares=[
            error_middleware,
            metrics_middleware,
            body_limit_middleware(limit_for),
            access_middleware,
        ],
        client_max_size=MAX_BACKUP_BYTES,
    )
    app[STATE] = state
    here = Path(__file__).parent
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(here / "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
        finalize=_visible_value,
    )
    app.on_response_prepare.append(add_security_headers)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    api.setup(app)
    pages.setup(app)
    probe_routes.setup(app)
    if device is not None:
        device_routes.setup(app)
    static = app.router.add_static("/static", here / "static", append_version=True, name="static")
    env = aiohttp_jinja2.get_env(app)
    env.globals["static"] = lambda filename: str(static.url_for(filename=filename))
    env.filters["when"] = when
    return app


AsyncHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]
