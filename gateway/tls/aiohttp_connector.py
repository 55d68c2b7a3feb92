"""aiohttp's ``TCPConnector`` with every HTTPS connection made by the TLS connector.

aiohttp has no public hook for a custom TLS transport; ``_wrap_create_connection`` is
the one place under ``ClientSession`` where the socket is turned into a transport.
``VerifyingTCPConnector`` overrides it: plain HTTP goes on as before, HTTPS goes
through ``TlsConnector.create_connection`` over the socket aiohttp's happy-eyeballs
opened, so the provisioning client is verified, pinned and recorded exactly like a
SIPS flow. aiohttp's own ``ssl=`` setting is ignored: verification cannot be turned
off per request. ``check_aiohttp_hook`` refuses to run against an aiohttp whose hook
changed shape.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import aiohappyeyeballs
import aiohttp
from aiohttp.client_exceptions import (
    ClientConnectorCertificateError,
    ClientConnectorError,
    ClientConnectorSSLError,
)
from aiohttp.client_proto import ResponseHandler
from aiohttp.client_reqrep import ClientRequest
from aiohttp.helpers import ceil_timeout

from gateway.errors import GatewayError, TlsConnectError, TlsError, TrustRejected
from gateway.tls.connector import TlsConnector
from gateway.tls.engine import TlsTransport
from gateway.tls.policy import TlsTarget

# The shape of the private hook this module overrides (aiohttp 3.10 to 3.14).
EXPECTED_HOOK_PARAMETERS: tuple[tuple[str, inspect._ParameterKind], ...] = (
    ("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
    ("args", inspect.Parameter.VAR_POSITIONAL),
    ("addr_infos", inspect.Parameter.KEYWORD_ONLY),
    ("req", inspect.Parameter.KEYWORD_ONLY),
    ("timeout", inspect.Parameter.KEYWORD_ONLY),
    ("client_error", inspect.Parameter.KEYWORD_ONLY),
    ("kwargs", inspect.Parameter.VAR_KEYWORD),
)
# What ``_create_direct_connection`` passes to the hook by keyword.
EXPECTED_HOOK_CALL_KEYWORDS = (
    "ssl=",
    "server_hostname=",
    "addr_infos=",
    "req=",
    "timeout=",
    "client_error=",
)


# How long an HTTPS connection waits for a TLS 1.3 server's verdict on the client
# certificate before the request goes out (a fetch is rare; a clear refusal is worth it).
CLIENT_VERDICT_WAIT = 1.0


class ClientConnectorTlsError(ClientConnectorSSLError):
    """aiohttp's TLS connect error carrying the connector's typed ``TlsError``."""

    def __init__(self, connection_key: Any, tls_error: TlsError) -> None:
        super().__init__(connection_key, OSError(None, str(tls_error)))
        self.tls_error = tls_error

    def __str__(self) -> str:
        return str(self.tls_error)


class AiohttpHookChanged(GatewayError):
    """The installed aiohttp's private connection hook is not the one we override."""


@functools.cache
def check_aiohttp_hook() -> None:
    """Raise ``AiohttpHookChanged`` unless aiohttp's hook has the shape we override."""
    hook = aiohttp.TCPConnector._wrap_create_connection
    found = tuple((p.name, p.kind) for p in inspect.signature(hook).parameters.values())
    problems: list[str] = []
    if found != EXPECTED_HOOK_PARAMETERS:
        problems.append(
            f"TCPConnector._wrap_create_connection takes {[n for n, _ in found]}, "
            f"expected {[n for n, _ in EXPECTED_HOOK_PARAMETERS]}"
        )
    caller = inspect.getsource(aiohttp.TCPConnector._create_direct_connection)
    call = caller[caller.find("self._wrap_create_connection(") :]
    missing = [kw for kw in EXPECTED_HOOK_CALL_KEYWORDS if kw not in call]
    if "self._wrap_create_connection(" not in caller or missing:
        problems.append(
            "TCPConnector._create_direct_connection no longer calls the hook with "
            f"{', '.join(missing) or 'it'}"
        )
    if problems:
        raise AiohttpHookChanged(
            f"aiohttp {aiohttp.__version__} changed the private hook the verifying "
            f"connector relies on ({'; '.join(problems)}); HTTPS would bypass "
            "certificate pinning. Pin aiohttp to the version in pyproject.toml, or "
            "adapt gateway/tls/aiohttp_connector.py to the new hook."
        )


class VerifyingTCPConnector(aiohttp.TCPConnector):
    """A ``TCPConnector`` whose HTTPS connections are opened by a ``TlsConnector``."""

    def __init__(self, tls: TlsConnector, **kwargs: Any) -> None:
        check_aiohttp_hook()
        super().__init__(**kwargs)
        self.tls = tls

    async def _wrap_create_connection(
        self,
        *args: Any,
        addr_infos: list[Any],
        req: ClientRequest,
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 - the hook's own signature
        client_error: type[Exception] = ClientConnectorError,
        **kwargs: Any,
    ) -> tuple[TlsTransport, ResponseHandler]:
        if not kwargs.get("ssl"):
            return await super()._wrap_create_connection(  # type: ignore[return-value]
                *args, addr_infos=addr_infos, req=req, timeout=timeout,
                client_error=client_error, **kwargs,
            )  # fmt: skip
        protocol_factory = args[0]
        host = (req.server_hostname or req.url.raw_host or "").rstrip(".")
        port = req.port
        target = TlsTarget.https(host, port)
        try:
            async with ceil_timeout(timeout.sock_connect, ceil_threshold=timeout.ceil_threshold):
                sock = await aiohappyeyeballs.start_connection(
                    addr_infos=addr_infos,
                    local_addr_infos=self._local_addr_infos,
                    happy_eyeballs_delay=self._happy_eyeballs_delay,
                    interleave=self._interleave,
                    loop=self._loop,
                    socket_factory=self._socket_factory,
                )
        except OSError as exc:
            if exc.errno is None and isinstance(exc, TimeoutError):
                raise
            raise client_error(req.connection_key, exc) from exc
        try:
            transport, protocol = await self.tls.create_connection(
                protocol_factory, target, sock=sock
            )
            # Under TLS 1.3 a refused client certificate shows only after the handshake:
            # learn it here, before the request, rather than as a lost response.
            await transport.confirm(CLIENT_VERDICT_WAIT)
        except TrustRejected as exc:
            raise ClientConnectorCertificateError(req.connection_key, exc) from exc
        except TlsConnectError as exc:
            cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else OSError(str(exc))
            raise client_error(req.connection_key, cause) from exc
        except TlsError as exc:
            raise ClientConnectorTlsError(req.connection_key, exc) from exc
        assert isinstance(protocol, ResponseHandler)
        return transport, protocol

    async def _wrap_existing_connection(
        self, *args: Any, req: ClientRequest, **kwargs: Any
    ) -> tuple[TlsTransport, ResponseHandler]:
        raise ClientConnectorSSLError(
            req.connection_key,
            OSError(
                None,
                "HTTPS through an HTTP proxy is not supported by the verifying connector; "
                "reach the server directly.",
            ),
        )
