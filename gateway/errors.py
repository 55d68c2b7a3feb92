"""The gateway exception hierarchy: one root, subclasses that carry data.

Messages are full sentences that say what went wrong and what to do about it, with
the offending value shown. Third-party exceptions are mapped at the boundary where
they occur (``raise ... from exc``) so callers only ever catch ``GatewayError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.tls.policy import TlsTarget, VerdictView


class GatewayError(Exception):
    """Root of every error raised by the gateway package."""


class ConfigError(GatewayError):
    """The configuration is wrong; the message names the key path and the expected type."""


class UsageError(GatewayError):
    """A command line was given arguments that do not fit together."""


class TlsError(GatewayError):
    """A TLS connection could not be opened, or failed while it was open."""

    def __init__(self, message: str, *, peer: TlsTarget | None = None) -> None:
        super().__init__(message)
        self.peer = peer


class TlsConnectError(TlsError):
    """The TCP connection to the peer could not be made (refused, unreachable, DNS)."""


class TlsTimeout(TlsError):
    """The TCP connect or the TLS handshake did not finish in time."""

    def __init__(self, message: str, *, peer: TlsTarget | None = None, timeout: float) -> None:
        super().__init__(message, peer=peer)
        self.timeout = timeout


class TlsHandshakeError(TlsError):
    """The TLS handshake failed for a reason other than our trust decision.

    ``openssl_reasons`` holds OpenSSL's own reason strings (e.g. ``"wrong version
    number"``, ``"tlsv13 alert certificate required"``), never reduced to "failed".
    """

    def __init__(
        self,
        message: str,
        *,
        peer: TlsTarget | None = None,
        openssl_reasons: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, peer=peer)
        self.openssl_reasons = openssl_reasons


class ClientCertificateRefused(TlsHandshakeError):
    """The server refused the client certificate sipsgate presented (or the lack of one).

    The server says so with a TLS alert (``unknown_ca``, ``bad_certificate``,
    ``certificate_required``, ``access_denied``...). Under TLS 1.2 it arrives during the
    handshake; under TLS 1.3 the client's handshake is already complete when the server
    checks the certificate, so the alert arrives at the first read after it
    (``after_handshake``). ``alert`` is OpenSSL's reason string for the alert.
    """

    def __init__(
        self,
        message: str,
        *,
        peer: TlsTarget | None = None,
        openssl_reasons: tuple[str, ...] = (),
        alert: str,
        after_handshake: bool,
    ) -> None:
        super().__init__(message, peer=peer, openssl_reasons=openssl_reasons)
        self.alert = alert
        self.after_handshake = after_handshake


class TrustRejected(TlsError):
    """The trust decision rejected the peer's certificate chain during the handshake.

    ``verdict`` is the decision (rule, every reason, leaf fingerprint), ``peer`` the
    destination that was checked and ``chain`` the certificates the peer sent, leaf
    first, as the trust policy parsed them. ``snapshot`` is the trust state the
    decision was made under (None when unknown): a caller that learns of the rejection
    after that state changed knows the verdict is stale.
    """

    def __init__(
        self,
        message: str,
        *,
        peer: TlsTarget,
        verdict: VerdictView,
        chain: tuple[Any, ...] = (),
        snapshot: Any = None,
    ) -> None:
        super().__init__(message, peer=peer)
        self.verdict = verdict
        self.chain = chain
        self.snapshot = snapshot
