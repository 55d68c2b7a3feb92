"""Protections every admin response and request gets: security headers, body limits.

Headers are set in ``on_response_prepare`` so that every response carries them,
including error pages, redirects, static files and the 404s of the router.
Bodies larger than the limit are refused from their ``Content-Length`` before a byte
is read; chunked bodies are cut off by :func:`read_limited` at the limit.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from certstore.errors import InputTooLarge

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


def body_limit_middleware(limit_for: Callable[[web.Request], int]) -> Middleware:
    """Refuse a declared ``Content-Length`` over the route's limit before the handler runs."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        limit = limit_for(request)
        length = request.content_length
        if length is not None and length > limit:
            raise InputTooLarge("request body", length, limit)
        return await handler(request)

    return middleware
