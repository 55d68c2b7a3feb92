"""The provisioning client: fetch the document over HTTPS and apply it.

Every fetch goes through an ``aiohttp.ClientSession`` over a
:class:`~gateway.tls.aiohttp_connector.VerifyingTCPConnector`, so the server's chain
is decided by the same trust decision as a SIPS flow, and a rejected chain lands in
the same rejected list. The stored HTTP digest credentials are read for every fetch
and handed to aiohttp's ``DigestAuthMiddleware`` (MD5, SHA-256, qop ``auth``); with no
user name set, no credentials are sent.

A fetch sends ``If-None-Match`` / ``If-Modified-Since`` from the last document
applied from the same URL; a ``304`` is *not-modified* and nothing is applied again.
Connection failures, timeouts, ``408``, ``429`` and ``5xx`` are retried with
exponential backoff; a rejected certificate, a client certificate the server refused,
``401``, other ``4xx`` and an invalid document are not (retrying cannot fix them).
Redirects are not followed. Every run ends in a
:class:`~gateway.provisioning.result.FetchResult`, saved as the last result, logged
as ``provisioning.fetch.<status>`` and counted in ``sipsgate_provisioning_fetches_total{outcome}``.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from urllib.parse import quote

import aiohttp
import structlog
from yarl import URL

from certstore.model import Actor, Settings
from gateway.config import Config
from gateway.errors import ClientCertificateRefused, TlsError, TrustRejected
from gateway.metrics import MetricsRegistry
from gateway.provisioning.apply import ApplyResult, ApplyStatus, ProvisioningStore, apply_document
from gateway.provisioning.document import MAX_DOCUMENT_BYTES, parse_document
from gateway.provisioning.errors import (
    DocumentError,
    DocumentTooLarge,
    ProvisioningError,
    ProvisioningUrlError,
)
from gateway.provisioning.mac import MacSource
from gateway.provisioning.result import FetchResult, FetchStatus, Trigger
from gateway.provisioning.state import KEEP, Keep, ProvisioningState, Validators
from gateway.tls.aiohttp_connector import ClientConnectorTlsError, VerifyingTCPConnector
from gateway.tls.connector import TlsConnector

PROVISIONING_ACTOR = Actor(name="provisioning", interface="provisioning")
USER_AGENT = "sipsgate/0.1 (provisioning)"
ACCEPT = "application/xml, text/xml;q=0.9, text/plain;q=0.8"

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_RETRY_STATUSES = frozenset({408, 429})

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """``attempts`` tries per fetch; the n-th wait is ``backoff * 2**(n-1)`` seconds,
    at most ``max_backoff``, with up to 20 % random jitter."""

    attempts: int = 3
    backoff: float = 2.0
    max_backoff: float = 30.0

    def delay(self, attempt: int) -> float:
        base = min(self.max_backoff, self.backoff * 2.0 ** (attempt - 1))
        return base * (1.0 + random.uniform(0.0, 0.2))


def expand_url(template: str, *, name: str, mac: MacSource) -> str:
    """``provisioning.url`` with ``{name}`` and ``{mac}`` filled in, checked to be HTTPS.

    Raises :class:`ProvisioningUrlError` for an unknown placeholder, a ``{mac}`` when
    no MAC address can be read, a scheme other than https, or credentials in the URL.
    """
    values: dict[str, str] = {}

    def substitute(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            if key == "name":
                values[key] = name
            elif key == "mac":
                address = mac()
                if not address:
                    raise ProvisioningUrlError(
                        "provisioning.url uses {mac}, but no MAC address could be read from "
                        "the primary network interface; write the address into the URL."
                    )
                values[key] = address
            else:
                raise ProvisioningUrlError(
                    f"provisioning.url has the placeholder {{{key}}}; only {{name}} and "
                    "{mac} are known."
                )
        return quote(values[key], safe="")

    text = _PLACEHOLDER.sub(substitute, template.strip())
    shown = without_credentials(text)  # an error message never repeats a password
    try:
        url = URL(text)
    except (ValueError, TypeError) as exc:
        raise ProvisioningUrlError(f"provisioning.url {shown!r} is not a URL.") from exc
    if url.user is not None or url.password is not None:
        raise ProvisioningUrlError(
            "provisioning.url must not hold a user name or password; set the HTTP digest "
            "credentials in the settings (Security.global.HTTPAuthUsername/Password)."
        )
    if url.scheme != "https" or not url.host:
        raise ProvisioningUrlError(
            f"provisioning.url {shown!r} must be an https:// URL with a host: the document "
            "changes trust settings and must come over a verified connection."
        )
    return str(url)


def without_credentials(text: str) -> str:
    """``text`` (a URL, possibly with placeholders) without a ``user:password@`` part."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    end = len(rest)
    for mark in "/?#":
        index = rest.find(mark)
        if index != -1:
            end = min(end, index)
    authority = rest[:end]
    if "@" in authority:
        authority = authority.rsplit("@", 1)[1]
    return f"{scheme}{sep}{authority}{rest[end:]}"


class _Attempt(Exception):
    """One try ended without a document to apply (internal)."""

    def __init__(
        self,
        status: FetchStatus,
        message: str,
        *,
        http_status: int | None = None,
        retry: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.http_status = http_status
        self.retry = retry


@dataclass(frozen=True, slots=True)
class _Document:
    body: bytes
    http_status: int
    etag: str | None
    last_modified: str | None


class ProvisioningMetrics:
    def __init__(self, registry: MetricsRegistry) -> None:
        self.fetches = registry.counter(
            "sipsgate_provisioning_fetches_total",
            "Provisioning runs (fetches and documents applied), by outcome.",
            ("outcome",),
        )


def utcnow() -> datetime:
    return datetime.now(UTC)


class ProvisioningClient:
    """Fetches ``url_template`` through ``tls`` and applies what it gets to ``store``."""

    def __init__(
        self,
        *,
        store: ProvisioningStore,
        settings: Callable[[], Settings],
        tls: TlsConnector,
        state: ProvisioningState,
        url_template: str,
        name: str,
        mac: MacSource,
        running: Config | None = None,
        metrics: MetricsRegistry | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], datetime] = utcnow,
        actor: Actor = PROVISIONING_ACTOR,
    ) -> None:
        self.store = store
        self._settings = settings
        self.tls = tls
        self.state = state
        self.url_template = url_template
        self.name = name
        self.mac = mac
        self.running = running
        self.metrics = ProvisioningMetrics(metrics or MetricsRegistry())
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self.actor = actor
        self._lock = asyncio.Lock()
        self._log = structlog.get_logger("gateway.provisioning")

    @property
    def configured(self) -> bool:
        return bool(self.url_template.strip())

    # -- documents from elsewhere -------------------------------------------------------

    async def apply_bytes(self, data: bytes, *, trigger: Trigger, actor: Actor) -> FetchResult:
        """Apply a document that did not come from the server (a file, an upload),
        record it as the last result, and return it."""
        async with self._lock:
            started = time.perf_counter()
            result = await self._apply(data, trigger=trigger, actor=actor, url=None)
            result = _with(result, duration_ms=_ms(started))
            await self._finish(result, KEEP)
            return result

    # -- fetching -------------------------------------------------------------------------

    async def fetch(self, *, trigger: Trigger = Trigger.DEMAND, force: bool = False) -> FetchResult:
        """One provisioning run with retries; ``force`` ignores the ETag/Last-Modified of
        the last document (re-fetches and re-applies it)."""
        async with self._lock:
            started = time.perf_counter()
            result, validators = await self._fetch(trigger, force)
            result = _with(result, duration_ms=_ms(started))
            await self._finish(result, validators)
            return result

    async def _fetch(
        self, trigger: Trigger, force: bool
    ) -> tuple[FetchResult, Validators | Keep | None]:
        now = self._clock()
        if not self.configured:
            return (
                FetchResult(
                    at=now,
                    trigger=trigger,
                    status=FetchStatus.NOT_CONFIGURED,
                    errors=(
                        "provisioning.url is empty: set it in the config to fetch a document.",
                    ),
                ),
                KEEP,
            )
        try:
            url = expand_url(self.url_template, name=self.name, mac=self.mac)
        except ProvisioningUrlError as exc:
            return FetchResult(
                at=now, trigger=trigger, status=FetchStatus.FAILED, errors=(str(exc),)
            ), KEEP
        previous = None if force else await asyncio.to_thread(self.state.validators, url)
        self._log.info("provisioning.fetch.started", url=url, trigger=trigger.value, force=force)
        errors: list[str] = []
        attempt = 0
        while True:
            attempt += 1
            try:
                document = await self._get(url, previous)
            except _Attempt as failed:
                errors.append(str(failed))
                if failed.retry and attempt < self.retry.attempts:
                    delay = self.retry.delay(attempt)
                    self._log.warning(
                        "provisioning.fetch.retrying",
                        url=url,
                        attempt=attempt,
                        delay=round(delay, 2),
                        error=str(failed),
                        http_status=failed.http_status,
                    )
                    await self._sleep(delay)
                    continue
                result = FetchResult(
                    at=now,
                    trigger=trigger,
                    status=failed.status,
                    url=url,
                    http_status=failed.http_status,
                    attempts=attempt,
                    errors=tuple(errors),
                    etag=previous.etag
                    if previous and failed.status is FetchStatus.NOT_MODIFIED
                    else None,
                )
                return result, KEEP
            break
        result = await self._apply(document.body, trigger=trigger, actor=self.actor, url=url)
        result = _with(
            result,
            at=now,
            http_status=document.http_status,
            attempts=attempt,
            errors=tuple(errors) + result.errors,
            etag=document.etag,
            last_modified=document.last_modified,
        )
        if result.ok and result.apply is not None:
            keep = Validators(
                url=url,
                etag=document.etag,
                last_modified=document.last_modified,
                document_sha256=result.apply.document_sha256,
            )
            return result, keep
        return result, None  # an invalid document: fetch it whole next time

    async def _get(self, url: str, previous: Validators | None) -> _Document:
        settings = await asyncio.to_thread(self._settings)
        middlewares: tuple[aiohttp.DigestAuthMiddleware, ...] = ()
        if settings.http_auth_username:
            try:
                middlewares = (
                    aiohttp.DigestAuthMiddleware(
                        settings.http_auth_username, settings.http_auth_password, preemptive=False
                    ),
                )
            except ValueError as exc:
                raise _Attempt(
                    FetchStatus.FAILED,
                    f"The stored HTTP digest user name cannot be used ({exc}); change "
                    "Security.global.HTTPAuthUsername.",
                ) from None
        headers = {"User-Agent": USER_AGENT, "Accept": ACCEPT}
        if previous is not None:
            if previous.etag:
                headers["If-None-Match"] = previous.etag
            if previous.last_modified:
                headers["If-Modified-Since"] = previous.last_modified
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        connector = VerifyingTCPConnector(self.tls, resolver=aiohttp.ThreadedResolver())
        try:
            async with (
                aiohttp.ClientSession(
                    connector=connector, timeout=timeout, middlewares=middlewares
                ) as session,
                session.get(url, headers=headers, allow_redirects=False) as response,
            ):
                return await self._read(url, response, settings, previous)
        except _Attempt:
            raise
        except aiohttp.ClientConnectorCertificateError as exc:
            error = exc.certificate_error
            message = str(error) if isinstance(error, TrustRejected) else str(exc)
            raise _Attempt(FetchStatus.REJECTED, message) from None
        except ClientConnectorTlsError as exc:
            raise _tls_attempt(exc.tls_error) from None
        except TlsError as exc:
            # The session failed after the handshake (under TLS 1.3 a refused client
            # certificate can still arrive at the first read): the connector's own error.
            raise _tls_attempt(exc) from None
        except DocumentTooLarge as exc:
            raise _Attempt(FetchStatus.INVALID, str(exc)) from None
        except TimeoutError:
            raise _Attempt(
                FetchStatus.FAILED,
                f"The provisioning server at {url} did not answer within {self.timeout:g} s.",
                retry=True,
            ) from None
        except aiohttp.ClientConnectorError as exc:
            raise _Attempt(
                FetchStatus.FAILED,
                f"The provisioning server at {url} could not be reached: {exc.os_error}.",
                retry=True,
            ) from None
        except aiohttp.ClientError as exc:
            # Server disconnects, broken payloads, a digest challenge that cannot be
            # answered (unsupported algorithm or qop).
            digest = "digest" in str(exc).lower()
            raise _Attempt(
                FetchStatus.FAILED,
                f"Fetching {url} failed: {exc or type(exc).__name__}.",
                retry=not digest,
            ) from None

    async def _read(
        self,
        url: str,
        response: aiohttp.ClientResponse,
        settings: Settings,
        previous: Validators | None,
    ) -> _Document:
        status = response.status
        if status == 304 and previous is not None:
            raise _Attempt(
                FetchStatus.NOT_MODIFIED,
                "The document is unchanged since it was last applied (304 Not Modified).",
                http_status=status,
            )
        if status == 401:
            challenge = response.headers.get("WWW-Authenticate", "")
            scheme = challenge.partition(" ")[0] or "none"
            if not settings.http_auth_username:
                why = "no HTTP digest credentials are set (Security.global.HTTPAuthUsername)"
            elif scheme.lower() != "digest":
                why = f"the server asks for {scheme} authentication; sipsgate answers Digest only"
            else:
                why = "the server refused the stored HTTP digest credentials"
            raise _Attempt(
                FetchStatus.UNAUTHORIZED,
                f"The provisioning server answered 401 Unauthorized: {why}.",
                http_status=status,
            )
        if 300 <= status < 400:
            where = response.headers.get("Location", "")
            raise _Attempt(
                FetchStatus.HTTP_ERROR,
                f"The provisioning server answered {status} (to {where or 'nowhere'}); "
                "redirects are not followed: set provisioning.url to the final URL.",
                http_status=status,
            )
        if status != 200:
            retry = status in _RETRY_STATUSES or status >= 500
            raise _Attempt(
                FetchStatus.HTTP_ERROR,
                f"The provisioning server answered {status} {response.reason or ''}".rstrip() + ".",
                http_status=status,
                retry=retry,
            )
        length = response.content_length
        if length is not None and length > MAX_DOCUMENT_BYTES:
            raise DocumentTooLarge(length, MAX_DOCUMENT_BYTES)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > MAX_DOCUMENT_BYTES:
                raise DocumentTooLarge(size, MAX_DOCUMENT_BYTES)
            chunks.append(chunk)
        return _Document(
            body=b"".join(chunks),
            http_status=status,
            etag=response.headers.get("ETag"),
            last_modified=response.headers.get("Last-Modified"),
        )

    # -- applying and recording -------------------------------------------------------------

    async def _apply(
        self, data: bytes, *, trigger: Trigger, actor: Actor, url: str | None
    ) -> FetchResult:
        now = self._clock()
        try:
            document = parse_document(data)
        except DocumentError as exc:
            return FetchResult(
                at=now, trigger=trigger, status=FetchStatus.INVALID, url=url, errors=(str(exc),)
            )
        applied: ApplyResult = await asyncio.to_thread(
            apply_document, self.store, document, actor=actor, running=self.running
        )
        status = {
            ApplyStatus.APPLIED: FetchStatus.APPLIED,
            ApplyStatus.UNCHANGED: FetchStatus.UNCHANGED,
            ApplyStatus.INVALID: FetchStatus.INVALID,
        }[applied.status]
        errors = tuple(f"{p.entry}: {p.message}" for p in applied.problems)
        return FetchResult(
            at=now, trigger=trigger, status=status, url=url, apply=applied, errors=errors
        )

    async def _finish(self, result: FetchResult, validators: Validators | Keep | None) -> None:
        self.metrics.fetches.inc(outcome=result.status.value)
        fields: dict[str, object] = {
            "trigger": result.trigger.value,
            "url": result.url,
            "status": result.status.value,
            "http_status": result.http_status,
            "attempts": result.attempts,
            "duration_ms": result.duration_ms,
        }
        if result.apply is not None:
            fields["changed"] = [c.setting for c in result.apply.changes]
            fields["certificates_added"] = [c.fingerprint for c in result.apply.certificates_added]
            fields["unknown"] = [u.name for u in result.apply.unknown]
            fields["not_applicable"] = [n.parameter for n in result.apply.not_applicable]
        if result.errors:
            fields["errors"] = list(result.errors)
        event = f"provisioning.fetch.{result.status.value.replace('-', '_')}"
        if result.ok:
            self._log.info(event, **fields)
        elif result.status is FetchStatus.NOT_CONFIGURED:
            self._log.debug(event, **fields)
        else:
            self._log.warning(event, **fields)
        try:
            await asyncio.to_thread(self.state.record, result, validators=validators)
        except ProvisioningError as exc:  # the run itself is done; only its record is lost
            self._log.error("provisioning.state.failed", error=str(exc))

    async def last_result(self) -> FetchResult | None:
        return await asyncio.to_thread(self.state.last_result)


def _tls_attempt(error: TlsError) -> _Attempt:
    if isinstance(error, ClientCertificateRefused):
        # The server's answer to our certificate: asking again gets the same answer.
        return _Attempt(FetchStatus.REFUSED, str(error))
    return _Attempt(FetchStatus.FAILED, str(error), retry=True)


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _with(result: FetchResult, **changes: object) -> FetchResult:
    return replace(result, **changes)  # type: ignore[arg-type]
