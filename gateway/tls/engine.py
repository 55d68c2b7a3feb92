"""The TLS engine: a pyOpenSSL ``Connection`` over memory BIOs, driven by asyncio.

``TlsEngine`` is the asyncio ``Protocol`` on the TCP side: ciphertext in, ciphertext
out. ``TlsTransport`` is the asyncio ``Transport`` the application protocol (the SIP
flow, aiohttp's response handler, a ``StreamReader``) sees: plaintext in, plaintext out.

The trust decision is taken inside the handshake. OpenSSL's verify callback runs once
per depth of the chain it built (deepest first, and again for every error) and ends
with depth 0; the engine ignores OpenSSL's own verdict. At the first call it hands
every certificate the peer sent (leaf first, DER) to the ``decide`` callable it was
given, and answers every later call, through depth 0, with that one decision.
Returning False makes OpenSSL abort the handshake with a fatal alert (the one that
fits OpenSSL's error at that call), so no application byte ever reaches an unverified
peer. A handshake that completes without a decision is refused.

Every ClientHello asks for OCSP stapling (status_request). OpenSSL hands the stapled
response (or nothing) to the OCSP client callback after the verify callback, still
inside the handshake; when the peer stapled something the decision is taken again with
it, and a ``revoked`` there aborts the handshake too. A first decision whose only
objection is an unknown revocation status (``hard-fail``) waits for that callback,
since a staple may establish the status; if none does, it stands.

The application protocol is attached only after the connector has seen the decision
(``attach``); ciphertext that arrives earlier waits in the BIO.

A server's refusal of our client certificate is a ``ClientCertificateRefused`` with
the fix: under TLS 1.2 it is an alert during the handshake; under TLS 1.3 the client's
handshake is complete before the server checks the certificate, so the alert comes at
the first read after it. ``TlsTransport.confirm`` waits (bounded) for that verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL

from gateway.errors import ClientCertificateRefused, TlsError, TlsHandshakeError
from gateway.tls.policy import ClientIdentity, TlsTarget, TrustCheck

TLS_VERSIONS: dict[str, int] = {"1.2": SSL.TLS1_2_VERSION, "1.3": SSL.TLS1_3_VERSION}

# TLS 1.2 suites: forward secret AEAD first, CBC with ECDHE kept for older SIP servers.
# TLS 1.3 suites are OpenSSL's defaults (all AEAD). Never NULL, export, RC4, 3DES, MD5.
DEFAULT_CIPHERS = (
    "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:ECDHE+AES"
    ":!aNULL:!eNULL:!EXPORT:!DSS:!RC4:!3DES:!MD5:!PSK:!SRP:!CAMELLIA"
    # The certificate decision is ours (weak keys and SHA-1 are reasons it reports);
    # at OpenSSL's default level a 1024-bit server key would end the handshake before
    # the decision could be made or a pin could accept it.
    ":@SECLEVEL=1"
)

# How much plaintext one SSL_read/SSL_write call moves, and how much ciphertext one
# BIO read drains: a TLS record is at most 16 KiB of plaintext.
_READ_CHUNK = 256 * 1024
_BIO_CHUNK = 256 * 1024
# How long closing (close_notify out, TCP down) may take before the wait gives up.
_CLOSE_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsSettings:
    """How outbound TLS is negotiated (the ``[tls]`` section of the config)."""

    min_version: str = "1.2"
    max_version: str = "1.3"
    ciphers: str = DEFAULT_CIPHERS
    handshake_timeout: float = 10.0
    connect_timeout: float = 10.0
    alpn_protocols: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for key in ("min_version", "max_version"):
            value = getattr(self, key)
            if value not in TLS_VERSIONS:
                raise ValueError(
                    f"tls.{key} is {value!r}; use one of {', '.join(sorted(TLS_VERSIONS))}."
                )
        if TLS_VERSIONS[self.min_version] > TLS_VERSIONS[self.max_version]:
            raise ValueError(
                f"tls.min_version {self.min_version} is above tls.max_version "
                f"{self.max_version}; lower the minimum or raise the maximum."
            )
        for key in ("handshake_timeout", "connect_timeout"):
            if getattr(self, key) <= 0:
                raise ValueError(f"tls.{key} must be a positive number of seconds.")


def _verify_callback(conn: SSL.Connection, cert: Any, errnum: int, depth: int, ok: int) -> bool:
    verification: _Verification = conn.get_app_data()
    return verification.on_verify(conn, errnum, depth)


def _ocsp_callback(conn: SSL.Connection, data: bytes, _: object) -> bool:
    verification: _Verification = conn.get_app_data()
    return verification.on_stapled(data)


# The decision callable: the chain (leaf first, DER), and the stapled OCSP response.
DecideCallable = Callable[[tuple[bytes, ...], bytes | None], TrustCheck]
# Only this reason may be cured by a stapled response arriving after the verify callback.
_CURABLE_BY_STAPLE = frozenset({"revocation-unknown"})


class _Verification:
    """Per-handshake state of the verify and OCSP callbacks."""

    __slots__ = (
        "chain_der",
        "check",
        "decide",
        "defer_unknown",
        "deferred",
        "error",
        "openssl_errors",
        "stapled",
    )

    def __init__(self, decide: DecideCallable, *, defer_unknown: bool = False) -> None:
        self.decide = decide
        # Let a handshake whose only objection is an unknown revocation status complete
        # (no data flows before the connector's final decision), so the connector can
        # fetch the status and decide again.
        self.defer_unknown = defer_unknown
        self.deferred = False
        self.check: TrustCheck | None = None
        self.error: BaseException | None = None
        self.chain_der: tuple[bytes, ...] = ()
        self.openssl_errors: list[tuple[int, int]] = []
        self.stapled: bytes | None = None

    def on_stapled(self, data: bytes) -> bool:
        """The OCSP client callback: decide again when the peer stapled a response."""
        if self.error is not None:
            return False
        if self.check is None:
            return True  # undecided: refused when the handshake completes
        if data:
            self.stapled = bytes(data)
            try:
                self.check = self.decide(self.chain_der, self.stapled)
            except Exception as exc:  # kept, and raised by the connector
                self.error = exc
                return False
        verdict = self.check.verdict
        if (
            not verdict.accepted
            and self.defer_unknown
            and set(map(str, verdict.reasons)) <= _CURABLE_BY_STAPLE
        ):
            self.deferred = True
            return True
        return verdict.accepted

    def on_verify(self, conn: SSL.Connection, errnum: int, depth: int) -> bool:
        if errnum:
            # OpenSSL's opinion, kept for the log; the decision is ours.
            self.openssl_errors.append((depth, errnum))
        if self.check is None and self.error is None:
            # The first call (the deepest certificate, OpenSSL's first error) already
            # sees every certificate the peer sent: decide once, here. Saying no on a
            # call that carries OpenSSL's error makes the alert fit that error (e.g.
            # unknown_ca); at a later error-free depth-0 call OpenSSL has reset the
            # error, and the peer would only see internal_error.
            try:
                chain = conn.get_peer_cert_chain(as_cryptography=True) or []
                self.chain_der = tuple(c.public_bytes(serialization.Encoding.DER) for c in chain)
                self.check = self.decide(self.chain_der, None)
            except Exception as exc:  # kept, and raised by the connector
                self.error = exc
                return False
        if self.check is None:
            return False
        verdict = self.check.verdict
        if not verdict.accepted and set(map(str, verdict.reasons)) <= _CURABLE_BY_STAPLE:
            return True  # the OCSP callback, still in the handshake, decides
        return verdict.accepted


class ClientContextFactory:
    """Builds client ``SSL.Context``s and keeps one per client identity.

    Contexts are built once (they are costly) and shared by every connection; the
    client identity is part of the context, so a new identity gets a new context.
    """

    _CACHE_SIZE = 4

    def __init__(self, settings: TlsSettings) -> None:
        self.settings = settings
        self._contexts: dict[ClientIdentity | None, SSL.Context] = {}

    def context_for(self, identity: ClientIdentity | None) -> SSL.Context:
        context = self._contexts.get(identity)
        if context is None:
            context = self._build(identity)
            if len(self._contexts) >= self._CACHE_SIZE:
                self._contexts.pop(next(iter(self._contexts)))
            self._contexts[identity] = context
        return context

    def _build(self, identity: ClientIdentity | None) -> SSL.Context:
        s = self.settings
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.set_min_proto_version(TLS_VERSIONS[s.min_version])
        context.set_max_proto_version(TLS_VERSIONS[s.max_version])
        # No resumption at all: every handshake shows the full chain to the decision.
        context.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION)
        context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
        context.set_cipher_list(s.ciphers.encode("ascii"))
        context.set_verify(SSL.VERIFY_PEER, _verify_callback)
        context.set_ocsp_client_callback(_ocsp_callback)
        if s.alpn_protocols:
            context.set_alpn_protos([p.encode("ascii") for p in s.alpn_protocols])
        if identity is not None:
            _load_identity(context, identity)
        return context


def _load_identity(context: SSL.Context, identity: ClientIdentity) -> None:
    try:
        certs = [x509.load_der_x509_certificate(der) for der in identity.chain_der]
        key = serialization.load_pem_private_key(identity.private_key_pem, password=None)
        context.use_certificate(certs[0])
        for cert in certs[1:]:
            context.add_extra_chain_cert(cert)
        context.use_privatekey(key)  # type: ignore[arg-type]
        context.check_privatekey()
    except (ValueError, TypeError, SSL.Error) as exc:
        raise TlsError(
            "The device identity could not be loaded as a TLS client certificate "
            f"({exc}); install a certificate chain with its matching private key."
        ) from exc


def openssl_reasons(exc: BaseException) -> tuple[str, ...]:
    """OpenSSL's reason strings out of a pyOpenSSL error, in order."""
    args = exc.args
    if len(args) == 2 and isinstance(args[0], int) and isinstance(args[1], str):
        return (args[1],)  # SysCallError: (errno, text)
    reasons: list[str] = []
    for arg in args:
        if isinstance(arg, list):
            reasons.extend(str(entry[2]) for entry in arg if isinstance(entry, tuple) and entry)
    return tuple(r for r in reasons if r)


# The advice for a server that refused the client certificate sipsgate presented.
CLIENT_CERTIFICATE_REFUSED = (
    "the server refused sipsgate's client certificate; install a certificate its CA "
    "issued — see device-certificate.md"
)
# Alerts a server sends about the client's certificate, whatever the TLS version: the
# client never sends these, and a server sends them about nothing else it checks.
_REFUSAL_ALERTS: tuple[tuple[str, str], ...] = (
    (
        "certificate required",
        "the server requires a client certificate and accepted none from sipsgate; "
        "install a certificate its CA issued — see device-certificate.md",
    ),
    (
        "certificate expired",
        "the server refused sipsgate's client certificate as expired; renew the device "
        "identity or install a certificate its CA issued — see device-certificate.md",
    ),
    (
        "certificate revoked",
        "the server refused sipsgate's client certificate as revoked; install a new "
        "certificate its CA issued — see device-certificate.md",
    ),
    ("unknown ca", CLIENT_CERTIFICATE_REFUSED),
    ("bad certificate", CLIENT_CERTIFICATE_REFUSED),
    ("certificate unknown", CLIENT_CERTIFICATE_REFUSED),
    ("unsupported certificate", CLIENT_CERTIFICATE_REFUSED),
    # GnuTLS answers a client certificate it does not accept with access_denied.
    ("access denied", CLIENT_CERTIFICATE_REFUSED),
)
# After a TLS 1.3 handshake the server is only still checking the client's certificate
# flight, so these generic alerts at the first read are a refusal of it too.
_POST_HANDSHAKE_REFUSAL_ALERTS: tuple[tuple[str, str], ...] = (
    *_REFUSAL_ALERTS,
    ("handshake failure", CLIENT_CERTIFICATE_REFUSED),
    ("decrypt error", CLIENT_CERTIFICATE_REFUSED),
    ("illegal parameter", CLIENT_CERTIFICATE_REFUSED),
)

# Other OpenSSL reasons an operator meets in the field, with what to do about them.
_HANDSHAKE_ADVICE: tuple[tuple[str, str], ...] = (
    (
        "wrong version number",
        "the peer did not answer with TLS; check that the port is a TLS port "
        "(5061 for SIPS, 443 for HTTPS) and not a plain SIP or HTTP one",
    ),
    (
        "unsupported protocol",
        "the server offers no TLS version we allow; enable TLS 1.2 on the server, "
        "or lower tls.min_version if it is above 1.2",
    ),
    (
        "handshake failure",
        "the server found no cipher suite or signature algorithm in common, or "
        "wanted a client certificate; check the server's TLS settings",
    ),
    (
        "no shared cipher",
        "there is no cipher suite in common; enable ECDHE with AES-GCM on the server",
    ),
    (
        "protocol version",
        "the server refused our TLS version; enable TLS 1.2 or 1.3 on the server",
    ),
    (
        "unexpected eof",
        "the server closed the connection during the handshake; check the server's log for why",
    ),
)


def refusal_of(reasons: tuple[str, ...], *, after_handshake: bool) -> tuple[str, str] | None:
    """``(alert, advice)`` when ``reasons`` hold an alert refusing our client certificate."""
    table = _POST_HANDSHAKE_REFUSAL_ALERTS if after_handshake else _REFUSAL_ALERTS
    for needle, advice in table:
        for reason in reasons:
            if "alert" in reason and needle in reason:
                return reason, advice
    return None


def client_certificate_refused(
    target: TlsTarget, reasons: tuple[str, ...], *, after_handshake: bool
) -> ClientCertificateRefused | None:
    """The typed error for a refused client certificate, or None for other failures."""
    found = refusal_of(reasons, after_handshake=after_handshake)
    if found is None:
        return None
    alert, advice = found
    what = "session" if after_handshake else "handshake"
    return ClientCertificateRefused(
        f"The TLS {what} with {target.uri} failed ({'; '.join(reasons)}): {advice}.",
        peer=target,
        openssl_reasons=reasons,
        alert=alert,
        after_handshake=after_handshake,
    )


def describe_handshake_failure(target: TlsTarget, reasons: tuple[str, ...]) -> str:
    """A sentence for a handshake failure: what OpenSSL said and what to do."""
    said = "; ".join(reasons) if reasons else "no reason given"
    refused = refusal_of(reasons, after_handshake=False)
    if refused is not None:
        return f"The TLS handshake with {target.uri} failed ({said}): {refused[1]}."
    for needle, advice in _HANDSHAKE_ADVICE:
        if any(needle in r for r in reasons):
            return f"The TLS handshake with {target.uri} failed ({said}): {advice}."
    return (
        f"The TLS handshake with {target.uri} failed ({said}); check that the server "
        "speaks TLS 1.2 or 1.3 on that port."
    )


class _State(enum.Enum):
    HANDSHAKE = "handshake"
    WAIT_ATTACH = "wait-attach"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class TlsSessionInfo:
    """What ``ssl_object`` offers of the TLS session (the parts aiohttp reads)."""

    __slots__ = ("_conn", "_leaf")

    def __init__(self, conn: SSL.Connection, leaf_der: bytes | None) -> None:
        self._conn = conn
        self._leaf = leaf_der

    def getpeercert(self, binary_form: bool = False) -> bytes | None:
        if not binary_form:
            raise ValueError("Only binary_form=True is offered; parse the DER with certstore.x509.")
        return self._leaf

    def version(self) -> str:
        return self._conn.get_protocol_version_name()

    def cipher(self) -> tuple[str | None, str | None, int | None]:
        return (
            self._conn.get_cipher_name(),
            self._conn.get_cipher_version(),
            self._conn.get_cipher_bits(),
        )

    def selected_alpn_protocol(self) -> str | None:
        proto = self._conn.get_alpn_proto_negotiated()
        return proto.decode("ascii") if proto else None


class TlsEngine(asyncio.Protocol):
    """The TCP-side protocol: runs the handshake, then encrypts and decrypts."""

    def __init__(
        self,
        context: SSL.Context,
        target: TlsTarget,
        decide: DecideCallable,
        *,
        loop: asyncio.AbstractEventLoop,
        defer_unknown: bool = False,
    ) -> None:
        self.target = target
        self._context = context
        self._conn = SSL.Connection(context, None)
        self._conn.set_connect_state()
        self._conn.request_ocsp()  # status_request in the ClientHello
        self._verification = _Verification(decide, defer_unknown=defer_unknown)
        self._conn.set_app_data(self._verification)
        if target.sni:
            self._conn.set_tlsext_host_name(_sni_bytes(target.sni))
        self.handshake_done: asyncio.Future[None] = loop.create_future()
        # A failure after the waiter gave up (timeout, cancel) is not an orphan error.
        self.handshake_done.add_done_callback(_consume)
        self.closed: asyncio.Future[None] = loop.create_future()
        self._raw: asyncio.Transport | None = None
        self._app: asyncio.Protocol | None = None
        self._app_made = False
        self._state = _State.HANDSHAKE
        self._close_exc: Exception | None = None
        self._received_plaintext = False
        # Resolved once the server was heard from after the handshake (or the session
        # ended): under TLS 1.3 only then has it judged our client certificate.
        self.settled: asyncio.Future[None] = loop.create_future()
        self._unread_after_handshake = False
        self._extra: dict[str, Any] = {}
        self._app_paused = False
        self._loop = loop
        self.transport = TlsTransport(self)

    # --- what the connector reads -------------------------------------------------

    @property
    def check(self) -> TrustCheck | None:
        """The trust decision taken inside the handshake, once there is one."""
        return self._verification.check

    @property
    def policy_error(self) -> BaseException | None:
        """An exception the trust policy raised inside the handshake."""
        return self._verification.error

    @property
    def chain_der(self) -> tuple[bytes, ...]:
        """Every certificate the peer sent, leaf first, as DER."""
        return self._verification.chain_der

    @property
    def deferred(self) -> bool:
        """Whether the handshake completed with only the revocation status unknown,
        left to the connector to fetch and decide again before any data flows."""
        return self._verification.deferred

    def replace_check(self, check: TrustCheck) -> None:
        """The connector's final decision, taken after fetching revocation status."""
        self._verification.check = check

    @property
    def stapled(self) -> bytes | None:
        """The OCSP response the peer stapled, if any (DER)."""
        return self._verification.stapled

    @property
    def openssl_errors(self) -> tuple[tuple[int, int], ...]:
        """(depth, X509_V_ERR code) pairs OpenSSL reported; ignored, kept for logs."""
        return tuple(self._verification.openssl_errors)

    @property
    def close_error(self) -> Exception | None:
        """Why an established session ended, when it ended in an error (kept for logs)."""
        return self._close_exc

    @property
    def is_closed(self) -> bool:
        return self._state in (_State.CLOSING, _State.CLOSED)

    def session_info(self) -> dict[str, str | None]:
        return {
            "tls_version": self._conn.get_protocol_version_name(),
            "cipher": self._conn.get_cipher_name(),
        }

    # --- TCP side -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._raw = transport
        self._do_handshake()

    def data_received(self, data: bytes) -> None:
        if self._state in (_State.CLOSED,):
            return
        self._conn.bio_write(data)
        if self._state is _State.HANDSHAKE:
            self._do_handshake()
        elif self._state is _State.WAIT_ATTACH:
            self._unread_after_handshake = True
        elif self._state in (_State.OPEN, _State.CLOSING):
            self._read_app_data()
            if self._state is _State.OPEN:
                self._settle()

    def eof_received(self) -> bool | None:
        if self._state is _State.HANDSHAKE:
            self._fail_handshake(
                TlsHandshakeError(
                    f"{self.target.uri} closed the connection during the TLS handshake; "
                    "check that it speaks TLS on that port and look in its log for why.",
                    peer=self.target,
                    openssl_reasons=("connection closed during handshake",),
                )
            )
            return False
        if self._state is _State.OPEN and self._app is not None:
            # The peer closed TCP without close_notify (a truncation): pass the end on.
            self._app.eof_received()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        previous = self._state
        self._state = _State.CLOSED
        if previous is _State.HANDSHAKE:
            self._fail_handshake(
                TlsHandshakeError(
                    f"The connection to {self.target.uri} was lost during the TLS "
                    f"handshake ({exc or 'closed by the peer'}); check the network path "
                    "and the server's log.",
                    peer=self.target,
                    openssl_reasons=(str(exc),) if exc else (),
                )
            )
        self._settle()
        if self._app is not None and self._app_made:
            self._app.connection_lost(self._close_exc or exc)
        self._app = None
        self._raw = None
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        if self._app is not None and self._app_made:
            self._app.pause_writing()

    def resume_writing(self) -> None:
        if self._app is not None and self._app_made:
            self._app.resume_writing()

    # --- handshake ----------------------------------------------------------------

    def _do_handshake(self) -> None:
        try:
            self._conn.do_handshake()
        except SSL.WantReadError:
            self._flush()
            return
        except SSL.Error as exc:
            self._flush()  # the fatal alert goes out before the socket closes
            self._fail_handshake(self._map_handshake_error(exc))
            return
        self._flush()
        verification = self._verification
        if verification.check is None:
            # Should not happen with VERIFY_PEER, but a handshake that bypassed the
            # decision (no certificate, an anonymous suite) must never carry data.
            self._fail_handshake(
                TlsHandshakeError(
                    f"{self.target.uri} completed the TLS handshake without a certificate "
                    "being checked; the connection was refused. Check that the server "
                    "presents a certificate.",
                    peer=self.target,
                    openssl_reasons=("no certificate decision",),
                )
            )
            return
        if not verification.check.verdict.accepted and not verification.deferred:
            # A decision left to the OCSP callback that OpenSSL never called.
            self._fail_handshake(_Rejected(verification.check, ("certificate rejected",)))
            return
        self._state = _State.WAIT_ATTACH
        if self._conn.get_protocol_version_name() != "TLSv1.3":
            self._settle()  # the server's Finished came last: it has accepted us already
        leaf = verification.chain_der[0] if verification.chain_der else None
        self._extra = {
            "sslcontext": self._context,
            "ssl_object": TlsSessionInfo(self._conn, leaf),
            "peercert_chain_der": verification.chain_der,
            "tls_check": verification.check,
            "tls_target": self.target,
        }
        if not self.handshake_done.done():
            self.handshake_done.set_result(None)

    def _map_handshake_error(self, exc: SSL.Error) -> BaseException:
        verification = self._verification
        if verification.error is not None:
            return verification.error
        reasons = openssl_reasons(exc)
        if verification.check is not None and not verification.check.verdict.accepted:
            return _Rejected(verification.check, reasons)
        refused = client_certificate_refused(self.target, reasons, after_handshake=False)
        if refused is not None:
            return refused
        return TlsHandshakeError(
            describe_handshake_failure(self.target, reasons),
            peer=self.target,
            openssl_reasons=reasons,
        )

    def _fail_handshake(self, exc: BaseException) -> None:
        if not self.handshake_done.done():
            self.handshake_done.set_exception(exc)
        if self._raw is not None:
            self._state = _State.CLOSING
            self._raw.close()

    # --- after the handshake --------------------------------------------------------

    def attach(self, app: asyncio.Protocol) -> None:
        """Hand the connection to the application protocol (after the decision)."""
        if self._state is not _State.WAIT_ATTACH or self._raw is None:
            raise TlsHandshakeError(
                f"{self.target.uri} closed the connection right after the TLS handshake; "
                "check the server's log for why.",
                peer=self.target,
            )
        self._extra["peername"] = self._raw.get_extra_info("peername")
        self._extra["sockname"] = self._raw.get_extra_info("sockname")
        self._extra["socket"] = self._raw.get_extra_info("socket")
        self._app = app
        self._state = _State.OPEN
        self._app_made = True
        app.connection_made(self.transport)
        self._read_app_data()
        if self._unread_after_handshake and self._state is _State.OPEN:
            self._settle()

    def set_app(self, app: asyncio.Protocol) -> None:
        if self._app_made:
            self._app = app

    def abort_pending(self) -> None:
        """Drop a connection that is still in the handshake or waiting to be attached.

        A handshake that already failed is closing (its alert may still be on its way
        out) and is left to finish.
        """
        if self._raw is not None and self._state in (_State.HANDSHAKE, _State.WAIT_ATTACH):
            self._state = _State.CLOSING
            self._raw.abort()

    def pause_app_reading(self) -> None:
        self._app_paused = True
        if self._raw is not None:
            self._raw.pause_reading()

    def resume_app_reading(self) -> None:
        if not self._app_paused:
            return
        self._app_paused = False
        if self._raw is not None:
            self._raw.resume_reading()
            # Plaintext may be waiting inside the TLS session from before the pause.
            self._loop.call_soon(self._read_app_data)

    def _read_app_data(self) -> None:
        conn = self._conn
        while (
            self._state in (_State.OPEN, _State.CLOSING)
            and self._app is not None
            and not self._app_paused
        ):
            try:
                chunk = conn.recv(_READ_CHUNK)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                self._on_close_notify()
                break
            except SSL.Error as exc:
                self._fatal(exc)
                return
            if self._state is _State.OPEN:
                self._received_plaintext = True
                self._app.data_received(chunk)
        self._flush()

    def _on_close_notify(self) -> None:
        if self._state is not _State.OPEN or self._app is None:
            return
        keep_open = self._app.eof_received()
        if not keep_open:
            self.close()

    def _fatal(self, exc: SSL.Error) -> None:
        reasons = openssl_reasons(exc)
        refused = None
        if not self._received_plaintext:
            # The first read after the handshake: under TLS 1.3 this is where a server's
            # verdict on our client certificate arrives.
            refused = client_certificate_refused(self.target, reasons, after_handshake=True)
        self._close_exc = refused or TlsError(
            f"The TLS connection to {self.target.uri} failed "
            f"({'; '.join(reasons) or 'no reason given'}); it will be reopened "
            "if it is needed again.",
            peer=self.target,
        )
        self._state = _State.CLOSING
        self._settle()
        if self._raw is not None:
            self._flush()
            self._raw.abort()

    def _settle(self) -> None:
        if not self.settled.done():
            self.settled.set_result(None)

    def _flush(self) -> None:
        conn = self._conn
        out: list[bytes] = []
        while True:
            try:
                chunk = conn.bio_read(_BIO_CHUNK)
            except SSL.WantReadError:
                break
            out.append(chunk)
            if len(chunk) < _BIO_CHUNK:
                break  # a memory BIO gives all it holds: it is empty (no WantReadError to raise)
        if out and self._raw is not None and not self._raw.is_closing():
            self._raw.write(out[0] if len(out) == 1 else b"".join(out))

    # --- application side (called by TlsTransport) --------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._state is not _State.OPEN:
            return
        view = memoryview(data)
        conn = self._conn
        try:
            while view:
                sent = conn.send(view)
                view = view[sent:]
        except SSL.Error as exc:
            self._fatal(exc)
            return
        self._flush()

    def close(self, exc: Exception | None = None) -> None:
        """Send close_notify, then close TCP once everything written has gone out."""
        if self._state in (_State.CLOSING, _State.CLOSED):
            return
        if exc is not None:
            self._close_exc = exc
        self._state = _State.CLOSING
        with contextlib.suppress(SSL.Error):  # a broken session: just close the socket
            self._conn.shutdown()
        self._flush()
        if self._raw is not None:
            self._raw.close()

    def abort(self) -> None:
        self._state = _State.CLOSING
        if self._raw is not None:
            self._raw.abort()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name in self._extra:
            return self._extra[name]
        if self._raw is not None:
            return self._raw.get_extra_info(name, default)
        return default

    @property
    def raw(self) -> asyncio.Transport | None:
        return self._raw


class _Rejected(Exception):
    """Internal: the decision rejected the chain (the connector raises TrustRejected)."""

    def __init__(self, check: TrustCheck, openssl_reasons: tuple[str, ...]) -> None:
        super().__init__("rejected by the trust decision")
        self.check = check
        self.openssl_reasons = openssl_reasons


def _consume(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def _sni_bytes(name: str) -> bytes:
    try:
        return name.encode("ascii")
    except UnicodeEncodeError:
        return name.encode("idna")


class TlsTransport(asyncio.Transport):
    """The plaintext transport the application protocol is given."""

    def __init__(self, engine: TlsEngine) -> None:
        super().__init__()
        self._engine = engine
        self._protocol: asyncio.BaseProtocol | None = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._engine.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._engine.is_closed

    def close(self) -> None:
        self._engine.close()

    def close_with(self, exc: Exception) -> None:
        """Close cleanly and report ``exc`` to the protocol's ``connection_lost``."""
        self._engine.close(exc)

    def abort(self) -> None:
        self._engine.abort()

    async def confirm(self, timeout: float) -> None:  # noqa: ASYNC109 - a bounded grace
        """Wait up to ``timeout`` for the server's verdict on our client certificate.

        Under TLS 1.3 the client's handshake is done before the server has checked the
        client certificate; its refusal (an alert) or its first record after the
        handshake (a session ticket, data) comes later. Returns at once under TLS 1.2,
        and when the server was heard from; raises ``ClientCertificateRefused`` when it
        refused. A server that stays silent is taken as accepting after ``timeout``.
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._engine.settled)
        error = self._engine.close_error
        if isinstance(error, ClientCertificateRefused):
            raise error

    async def wait_closed(self) -> None:
        """Wait (bounded by the close timeout) until the TCP connection is gone."""
        async with asyncio.timeout(_CLOSE_TIMEOUT):
            await asyncio.shield(self._engine.closed)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"data must be bytes-like, not {type(data).__name__}.")
        if data:
            self._engine.write(data)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("TLS cannot half-close; use close() (sends close_notify).")

    def pause_reading(self) -> None:
        self._engine.pause_app_reading()

    def resume_reading(self) -> None:
        self._engine.resume_app_reading()

    def is_reading(self) -> bool:
        raw = self._engine.raw
        return raw is not None and raw.is_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        raw = self._engine.raw
        if raw is not None:
            raw.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        raw = self._engine.raw
        return raw.get_write_buffer_size() if raw is not None else 0

    def get_write_buffer_limits(self) -> tuple[int, int]:
        raw = self._engine.raw
        return raw.get_write_buffer_limits() if raw is not None else (0, 0)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol
        if isinstance(protocol, asyncio.Protocol):
            self._engine.set_app(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._protocol is not None
        return self._protocol
