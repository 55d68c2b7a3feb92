"""The admin endpoint's errors: :class:`ApiError` (HTTP status, the product's code, a
sentence) and how the product's exceptions map to an HTTP status and code."""

from __future__ import annotations

from aiohttp import web

from certstore.errors import (
    CertStoreError,
    Conflict,
    InputError,
    InputTooLarge,
    NotFound,
    StorageError,
    StoreUnreachable,
    ValidationError,
)
from gateway.admin.security import BodyTooLarge
from gateway.admin.tls import AdminTlsError
from gateway.errors import GatewayError

HTTP_CODES = {
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

HTTP_MESSAGES = {
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
    if isinstance(exc, StoreUnreachable):
        return 503  # the database is down: the same request works once it is back
    if isinstance(exc, StorageError):
        return 503
    return 500


def code_of(exc: CertStoreError | GatewayError) -> str:
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) else "gateway-error"


def message_of(exc: CertStoreError | GatewayError) -> str:
    """The sentence a page shows for an error."""
    return exc.message if isinstance(exc, ApiError) else str(exc)


def json_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers
    )


def unauthorized(message: str = "") -> ApiError:
    return ApiError(
        401,
        "unauthorized",
        message or HTTP_MESSAGES[401],
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


def csrf_failed(message: str) -> ApiError:
    return ApiError(403, "csrf-failed", message)
