"""Protections every admin response and request gets: security headers, body limits.

Headers are set in ``on_response_prepare`` so that every response carries them,
including error pages, redirects, static files and the 404s of the router.
Every request gets a body limit before its handler runs (:func:`limit_body`): a
declared ``Content-Length`` over it is refused before a byte is read, and every body
reader (``read()``, ``post()``, ``multipart()``, :func:`read_limited`) stops at it
whatever the transfer encoding, chunked included.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from certstore.errors import InputTooLarge
from gateway.errors import GatewayError

CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=31536000",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` hook: the headers above, and no caching of admin data."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if "Cache-Control" not in response.headers:
        static = request.path.startswith("/static/")
        response.headers["Cache-Control"] = "no-cache" if static else "no-store"


async def read_limited(request: web.Request, limit: int, *, what: str = "request body") -> bytes:
    """The whole body, refusing (413, nothing kept) one longer than ``limit`` bytes."""
    limit = min(limit, request.client_max_size)
    length = request.content_length
    if length is not None and length > limit:
        raise InputTooLarge(what, length, limit)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        total += len(chunk)
        if total > limit:
            raise InputTooLarge(what, total, limit)
        chunks.append(chunk)
    return b"".join(chunks)


class BodyTooLarge(GatewayError):
    """A request body over the route's limit, whatever its transfer encoding."""

    code = "too-large"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"The request body is larger than the limit of {limit} bytes; nothing was stored."
        )
        self.limit = limit


async def limit_body(request: web.Request, limit: int, handler: Handler) -> web.StreamResponse:
    """Run ``handler`` on ``request`` with its body capped at ``limit`` bytes.

    aiohttp's own readers stop at the request's ``client_max_size``, counted on the bytes
    received (so a chunked body is cut off too); the application-wide value is only the
    largest limit any route has, so each request gets its own here. The value is set in
    place: ``clone()`` would give the handler a copy whose per-request state (the
    principal) the outer middlewares never see.
    """
    length = request.content_length
    if length is not None and length > limit:
        raise BodyTooLarge(limit)
    request._client_max_size = limit
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge as exc:
        raise BodyTooLarge(limit) from exc


def body_limit_middleware(limit_for: Callable[[web.Request], int]) -> Middleware:
    """Every request's body capped at its route's limit before the handler runs."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await limit_body(request, limit_for(request), handler)

    return middleware
