"""Request parsing: path parameters, query parameters, JSON bodies, forms and uploads.

Every reader answers bad input with an :class:`ApiError` or a store
:class:`~certstore.errors.ValidationError` that says what was wrong; nothing here
changes anything stored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDictProxy

from certstore import validation
from certstore.device import STANDARD_VALIDITY_DAYS, IdentitySpec, build_spec, split_san_items
from certstore.errors import InputTooLarge, ValidationError
from certstore.model import Certificate, PinDecision, PinMatch
from certstore.store import PinRequest
from certstore.validation import normalize_scope
from certstore.x509 import load_certificates
from gateway.admin.errors import ApiError
from gateway.admin.security import read_limited

MAX_NOTE_LENGTH = 1000
MAX_LIST_LIMIT = 100_000
MAX_AUDIT_LIMIT = 500
MAX_OFFSET = 10**9
MAX_ID = 2**62
# OpenSSL takes passphrases of at most 1023 bytes; 255 characters of UTF-8 always fit.
MAX_PASSPHRASE = 255
# Route patterns: a fingerprint (hex, colons allowed) and a numeric id.
FP_RE = r"[0-9A-Fa-f:]{64,95}"
ID_RE = r"[0-9]{1,19}"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")

# What aiohttp's form and multipart parsers raise on a malformed body.
FORM_ERRORS = (KeyError, ValueError, AssertionError, UnicodeDecodeError, HttpProcessingError)

FormData = MultiDictProxy[Any]


# -- path and query -----------------------------------------------------------------------------


def normalise_fingerprint(text: str, *, field: str = "fingerprint") -> str:
    value = text.strip().lower().replace(":", "")
    if not _HEX64.fullmatch(value):
        raise ValidationError(
            field,
            f"{text[:80]!r} is not a SHA-256 fingerprint; give 64 hex digits (colons allowed).",
        )
    return value


def fingerprint_of(request: web.Request) -> str:
    return normalise_fingerprint(request.match_info["fingerprint"])


def _numeric_id(request: web.Request, what: str) -> int:
    text = request.match_info["id"]
    try:
        value = int(text)
    except ValueError:
        raise ValidationError("id", f'"{text[:40]}" is not a {what} id.') from None
    if not 1 <= value <= MAX_ID:
        raise ValidationError("id", f"{value} is not a {what} id.")
    return value


def rejected_id(request: web.Request) -> int:
    return _numeric_id(request, "rejected-chain")


def pin_id(request: web.Request) -> int:
    return _numeric_id(request, "pin")


def query_choice(request: web.Request, name: str, choices: Sequence[str]) -> str | None:
    value = request.query.get(name)
    if value is None:
        return None
    if value not in choices:
        raise ValidationError(
            name, f'"{value[:40]}" is not a valid {name}; use {" or ".join(choices)}.'
        )
    return value


def query_int(
    request: web.Request, name: str, *, default: int | None, low: int, high: int
) -> int | None:
    text = request.query.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValidationError(name, f'{name} must be a whole number, not "{text[:40]}".') from None
    if not low <= value <= high:
        raise ValidationError(name, f"{name} must be between {low} and {high}, not {value}.")
    return value


def query_bool(request: web.Request, name: str) -> bool:
    text = request.query.get(name, "").strip().lower()
    if text in ("", "0", "false", "no"):
        return False
    if text in ("1", "true", "yes"):
        return True
    raise ValidationError(name, f'{name} must be true or false, not "{text[:40]}".')


def format_of(request: web.Request) -> str | None:
    return query_choice(request, "format", ("pem", "der"))


def paged(request: web.Request, items: Sequence[Any]) -> tuple[Sequence[Any], dict[str, str]]:
    """The ``limit``/``offset`` slice of a list, and its ``X-Total-Count`` header."""
    limit = query_int(request, "limit", default=None, low=1, high=MAX_LIST_LIMIT)
    offset = query_int(request, "offset", default=0, low=0, high=MAX_OFFSET) or 0
    end = None if limit is None else offset + limit
    return items[offset:end], {"X-Total-Count": str(len(items))}


def page_number(request: web.Request) -> int:
    """A page's ``?page=`` (1 when absent or not a number)."""
    try:
        return max(1, int(request.query.get("page", "1")))
    except ValueError:
        return 1


def local_target(value: str | None, default: str = "/") -> str:
    """A redirect target inside this site only (no open redirect).

    Browsers drop tabs and line breaks from a URL and read a backslash as a slash, so
    ``/\t/evil.example`` would leave the site: any control character, whitespace or
    backslash, or a target a URL parser sees a host or scheme in, gives the default.
    """
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    if value.startswith(("/login", "/logout")):
        return default
    return value


def require_https(request: web.Request) -> None:
    if not request.secure:
        raise ApiError(
            403,
            "https-required",
            "The private key is only handed out over HTTPS; connect with https://.",
        )


# -- bodies --------------------------------------------------------------------------------------


def bad_form(exc: Exception) -> ApiError:
    return ApiError(
        400,
        "bad-form",
        f"The form data cannot be read ({exc.__class__.__name__}); send multipart/form-data "
        "with a boundary, or application/x-www-form-urlencoded.",
    )


async def read_form(request: web.Request) -> FormData:
    """The submitted form; a malformed multipart body is a 400, not a crash."""
    try:
        return await request.post()
    except FORM_ERRORS as exc:
        raise bad_form(exc) from exc


def form_text(form: FormData, name: str, default: str = "") -> str:
    value = form.get(name, default)
    return value if isinstance(value, str) else default


def form_files(form: FormData, name: str, limit: int) -> list[tuple[str, bytes]]:
    """The files of a form field (each read up to ``limit + 1`` bytes)."""
    files: list[tuple[str, bytes]] = []
    for value in form.getall(name, []):
        if hasattr(value, "file"):
            files.append((safe_filename(value.filename), value.file.read(limit + 1)))
    return files


async def read_json_object(
    request: web.Request, *, limit: int, optional: bool = False
) -> dict[str, Any]:
    body = await read_limited(request, limit)
    if not body.strip():
        if optional:
            return {}
        raise ApiError(400, "invalid-json", "The request needs a JSON object as its body.")
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid-json", f"The body is not valid JSON: {exc}.") from exc
    except RecursionError as exc:  # nested deeper than the parser goes
        raise ApiError(400, "invalid-json", "The body is JSON nested too deeply.") from exc
    if not isinstance(value, dict):
        raise ApiError(400, "invalid-json", "The body must be a JSON object.")
    return value


def safe_filename(name: str | None) -> str:
    """A file name that cannot leave a directory or break a header (for display only)."""
    if not name:
        return ""
    base = unquote(name).replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _SAFE_NAME.sub("_", base)
    cleaned = re.sub(r"\.{2,}", ".", cleaned).strip("._")
    return cleaned[:100]


async def read_upload(request: web.Request, limit: int) -> list[tuple[str, bytes]]:
    """The uploaded files: a raw body (DER, PEM, p7b), or every file part of a multipart
    form. File names are only shown, never used as paths."""
    if request.content_type != "multipart/form-data":
        return [("", await read_limited(request, limit, what="upload"))]
    try:
        return await _read_multipart(request, limit)
    except FORM_ERRORS as exc:
        raise bad_form(exc) from exc


async def _read_multipart(request: web.Request, limit: int) -> list[tuple[str, bytes]]:
    reader = await request.multipart()
    files: list[tuple[str, bytes]] = []
    total = 0
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            continue
        if part.filename is None and part.name not in ("file", "certificate", "document"):
            await part.release()
            continue
        chunks: list[bytes] = []
        while chunk := await part.read_chunk(64 * 1024):
            total += len(chunk)
            if total > limit:
                raise InputTooLarge("upload", total, limit)
            chunks.append(chunk)
        files.append((safe_filename(part.filename), b"".join(chunks)))
    if not files:
        raise ApiError(400, "no-file", "The form holds no file; choose a file to upload.")
    return files


# -- fields ----------------------------------------------------------------------------------------


def parse_time(value: object, field: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(field, f"{field} must be an ISO 8601 time string or null.")
    return validation.parse_time(value, field=field, naive_is_utc=True)


def parse_scope(value: object) -> str | None:
    """None (any peer), ``host`` or ``host:port``, normalised as the store keeps it."""
    if value is None:
        return None
    if isinstance(value, str) and not value.strip():
        raise ValidationError("scope", "scope must be null (any peer) or host or host:port.")
    return normalize_scope(value)


def parse_enum(value: object, field: str, enum: type[PinDecision] | type[PinMatch]) -> Any:
    choices = [member.value for member in enum]
    if not isinstance(value, str) or value not in choices:
        raise ValidationError(field, f"{field} must be {' or '.join(choices)}, not {value!r}.")
    return enum(value)


def parse_note(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_NOTE_LENGTH:
        raise ValidationError("note", f"note must be text of at most {MAX_NOTE_LENGTH} characters.")
    return value


def check_fields(body: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ValidationError(
            unknown[0],
            f"Unknown field {unknown[0]!r}; the fields are {', '.join(sorted(allowed))}.",
        )


def pin_options(body: Mapping[str, Any]) -> dict[str, Any]:
    """The optional pin fields of ``rejected/{id}/accept|reject``."""
    check_fields(body, {"scope", "match", "expires_at", "note"})
    return {
        "match": parse_enum(body.get("match", "certificate"), "match", PinMatch),
        "scope": parse_scope(body.get("scope")),
        "expires_at": parse_time(body.get("expires_at"), "expires_at"),
        "note": parse_note(body.get("note")),
    }


def pin_request(body: Mapping[str, Any], *, max_upload: int) -> PinRequest:
    check_fields(
        body, {"decision", "match", "fingerprint", "certificate", "scope", "expires_at", "note"}
    )
    decision = parse_enum(body.get("decision"), "decision", PinDecision)
    match = parse_enum(body.get("match", "certificate"), "match", PinMatch)
    if ("fingerprint" in body) == ("certificate" in body):
        raise ValidationError(
            "fingerprint", "Give either fingerprint (hex SHA-256) or certificate (PEM), not both."
        )
    fingerprint = body.get("fingerprint")
    pem = body.get("certificate")
    certificate: Certificate | None = None
    if "certificate" in body:
        if not isinstance(pem, str):
            raise ValidationError("certificate", "certificate must be PEM text.")
        loaded = load_certificates(pem.encode("utf-8"), max_bytes=max_upload, what="certificate")
        if len(loaded.certificates) != 1:
            raise ValidationError(
                "certificate",
                f"certificate must hold exactly one certificate, not {len(loaded.certificates)}.",
            )
        certificate = loaded.certificates[0]
        value = (
            certificate.fingerprint
            if match is PinMatch.CERTIFICATE
            else certificate.spki_fingerprint
        )
    else:
        if not isinstance(fingerprint, str):
            raise ValidationError("fingerprint", "fingerprint must be a hex string.")
        value = normalise_fingerprint(fingerprint)
    return PinRequest(
        decision=decision,
        match=match,
        fingerprint=value,
        scope=parse_scope(body.get("scope")),
        expires_at=parse_time(body.get("expires_at"), "expires_at"),
        note=parse_note(body.get("note")),
        certificate=certificate,  # kept with the pin: its subject is shown beside it
    )


def fingerprint_list(body: Mapping[str, Any]) -> list[str]:
    check_fields(body, {"fingerprints"})
    raw = body.get("fingerprints")
    if not isinstance(raw, list) or not raw or not all(isinstance(v, str) for v in raw):
        raise ValidationError(
            "fingerprints", "fingerprints must be a non-empty list of SHA-256 fingerprints."
        )
    return [normalise_fingerprint(v, field="fingerprints") for v in raw]


def fetch_options(body: Mapping[str, Any]) -> bool:
    """``force`` from the body of ``POST /api/v1/provisioning/fetch``."""
    unknown = sorted(set(body) - {"force"})
    if unknown:
        raise ValidationError(
            unknown[0], f'"{unknown[0][:40]}" is not an option of a fetch; only "force" is.'
        )
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise ValidationError("force", "force must be true or false.")
    return force


# -- the device identity ------------------------------------------------------------------------


def _strings(body: Mapping[str, Any], name: str) -> list[str]:
    value = body.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError(name, f"{name} must be a list of strings.")
    return list(value)


def spec_from_json(body: Mapping[str, Any], *, allow_weak: bool, csr: bool) -> IdentitySpec:
    allowed = {"key", "subject", "san_dns", "san_ip", "san_uri"}
    if not csr:
        allowed.add("validity_days")
    check_fields(body, allowed)
    subject = body.get("subject")
    if not isinstance(subject, dict):
        raise ValidationError("subject", 'subject must be an object such as {"CN": "name"}.')
    key = body.get("key", "ec-p256")
    if not isinstance(key, str):
        raise ValidationError("key", "key must be a key type such as ec-p256 or rsa-2048.")
    validity = body.get("validity_days", STANDARD_VALIDITY_DAYS)
    if isinstance(validity, float) and validity.is_integer():
        validity = int(validity)  # JSON has one number type: 3650.0 is 3650
    return build_spec(
        subject=subject,
        key=key,
        san_dns=_strings(body, "san_dns"),
        san_ip=_strings(body, "san_ip"),
        san_uri=_strings(body, "san_uri"),
        validity_days=validity,
        allow_weak=allow_weak,
    )


def spec_from_form(form: FormData, *, allow_weak: bool, csr: bool) -> IdentitySpec:
    subject = {
        key: form_text(form, name).strip()
        for key, name in (
            ("CN", "cn"),
            ("O", "o"),
            ("OU", "ou"),
            ("L", "l"),
            ("ST", "st"),
            ("C", "c"),
            ("emailAddress", "email"),
        )
    }
    items = [line.strip() for line in form_text(form, "sans").splitlines() if line.strip()]
    dns, ips, uris = split_san_items(items)
    days_text = form_text(form, "validity_days").strip()
    try:
        validity = int(days_text) if days_text else STANDARD_VALIDITY_DAYS
    except ValueError:
        raise ValidationError("validity_days", "The validity must be a number of days.") from None
    return build_spec(
        subject=subject,
        key=form_text(form, "key", "ec-p256"),
        san_dns=dns,
        san_ip=ips,
        san_uri=uris,
        validity_days=validity if not csr else STANDARD_VALIDITY_DAYS,
        allow_weak=allow_weak,
    )


def passphrase(value: object) -> bytes | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_PASSPHRASE:
        raise ValidationError(
            "passphrase", f"passphrase must be text of at most {MAX_PASSPHRASE} characters."
        )
    return value.encode("utf-8")


async def install_parts(
    request: web.Request, limit: int
) -> tuple[bytes, bytes | None, bytes | None]:
    """(certificate data, separate key PEM, passphrase) from a raw body or a form."""
    if request.content_type != "multipart/form-data":
        return await read_limited(request, limit, what="upload"), None, None
    form = await read_form(request)
    parts: dict[str, bytes] = {}
    total = 0
    for name in ("file", "key"):
        value = form.get(name)
        if value is not None and hasattr(value, "file"):
            data = value.file.read(limit + 1)
            total += len(data)
            if total > limit:
                raise InputTooLarge("upload", total, limit)
            if data:
                parts[name] = data
    if "file" not in parts:
        raise ApiError(400, "no-file", "The form holds no certificate file; choose one.")
    return parts["file"], parts.get("key"), passphrase(form_text(form, "passphrase") or None)
