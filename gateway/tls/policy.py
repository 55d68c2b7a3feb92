"""What the TLS connector asks of the trust side, as small protocols and values.

The connector does not import the store or the decision: it is handed a
``TrustPolicy`` (the production one is ``gateway.tls.trust.StoreTrustPolicy``) and
talks to it in DER bytes and ``TlsTarget`` values. Keeping the seam here lets the
engine be tested against a double, and lets the store behind it change.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from certstore import notation

Scheme = Literal["sips", "https"]

DEFAULT_PORTS: dict[Scheme, int] = {"sips": 5061, "https": 443}


def is_ip_literal(host: str) -> bool:
    """Whether ``host`` is an IPv4 or IPv6 address literal (brackets allowed)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsTarget:
    """One outbound TLS destination: the identity to check and the address to dial.

    ``host``/``port`` are the identity (the SIP domain or HTTPS host of the URI) that
    the certificate must match and that destination-scoped pins name. ``address`` is
    where the TCP connection goes; it defaults to ``host``/``port`` and differs when
    DNS (SRV) or an operator override (``--connect``) picked another address.
    """

    scheme: Scheme
    host: str
    port: int
    connect_host: str | None = None
    connect_port: int | None = None
    sni: str | None = field(default=None)

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("A TLS target needs a host name or IP address; none was given.")
        if not 0 < self.port < 65536:
            raise ValueError(f"Port {self.port} is out of range; use 1 to 65535.")
        if self.sni is None and not is_ip_literal(self.host):
            # RFC 6066: SNI carries host names only, never an IP literal.
            object.__setattr__(self, "sni", self.host.rstrip(".").lower())

    @classmethod
    def sips(cls, host: str, port: int | None = None, **kwargs: Any) -> TlsTarget:
        return cls(scheme="sips", host=host, port=port or DEFAULT_PORTS["sips"], **kwargs)

    @classmethod
    def https(cls, host: str, port: int | None = None, **kwargs: Any) -> TlsTarget:
        return cls(scheme="https", host=host, port=port or DEFAULT_PORTS["https"], **kwargs)

    @property
    def address(self) -> tuple[str, int]:
        """The ``(host, port)`` that is dialled."""
        return (
            (self.connect_host or self.host).strip("[]"),
            self.connect_port or self.port,
        )

    @property
    def is_ip(self) -> bool:
        return is_ip_literal(self.host)

    @property
    def destination(self) -> str:
        """``host:port`` of the identity, IPv6 in brackets, as logs and pins show it."""
        return notation.host_port(self.host, self.port)

    @property
    def uri(self) -> str:
        return notation.uri(self.scheme, self.host, self.port)


def _is_host_name(host: str) -> bool:
    """Letters (IDN too), digits, '-' and '_' in dot-separated labels; one trailing dot."""
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    return all(
        label and not label.startswith("-") and all(ch.isalnum() or ch in "-_" for ch in label)
        for label in labels
    )


def _split_host_port(text: str, what: str) -> tuple[str, int | None]:
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise ValueError(f"{what} {text!r} has an unclosed '['; write IPv6 as [2001:db8::1].")
        port_text = rest[1:] if rest.startswith(":") else (rest or None)
        if rest and not rest.startswith(":"):
            raise ValueError(f"{what} {text!r} has junk after the IPv6 address.")
    elif text.count(":") > 1:
        try:
            ipaddress.IPv6Address(text)
        except ValueError as exc:
            raise ValueError(f"{what} {text!r} is not host[:port].") from exc
        host, port_text = text, None
    else:
        host, _, port_text = text.partition(":")
        port_text = port_text or None
    if not host:
        raise ValueError(f"{what} {text!r} has no host.")
    if not is_ip_literal(host) and not _is_host_name(host):
        raise ValueError(
            f"{what} {text!r} has the host {host!r}, which is neither a host name nor an "
            "IP address; write HOST[:PORT], e.g. sip.example.net:5061."
        )
    if port_text is None:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{what} {text!r} has port {port_text!r}; use 1 to 65535.")
    return host, int(port_text)


def target_from_uri(uri: str, connect: str | None = None) -> TlsTarget:
    """The target of ``sips:HOST[:PORT]`` or ``https://HOST[:PORT]``.

    ``connect`` (``HOST:PORT``) overrides the dialled address; the identity stays the
    URI's. A user part, URI parameters and an HTTPS path are ignored. Raises
    ``ValueError`` with a sentence saying what is wrong.
    """
    lowered = uri.strip().lower()
    if lowered.startswith("https://"):
        try:
            parts = urlsplit(uri.strip())
        except ValueError as exc:  # e.g. an unclosed '[' of an IPv6 address
            raise ValueError(
                f"{uri!r} is not a usable https:// URI ({exc}); write https://HOST[:PORT], "
                "e.g. https://prov.example.net or https://[2001:db8::1]:8443."
            ) from exc
        host, port = _split_host_port(parts.netloc.rpartition("@")[2], "The URI")
        scheme = "https"
    elif lowered.startswith("sips:"):
        rest = uri.strip()[5:]
        if rest.startswith("//"):
            raise ValueError(
                f"{uri!r} is not a SIPS URI: a sips: URI has no '//' after the colon; write "
                f"sips:HOST[:PORT], e.g. sips:{rest[2:].split('/', 1)[0] or 'sip.example.net'}."
            )
        rest = rest.split(";", 1)[0].split("?", 1)[0]  # URI parameters and headers
        host, port = _split_host_port(rest.rpartition("@")[2], "The URI")
        scheme = "sips"
    else:
        raise ValueError(
            f"{uri!r} is not a sips: or https:// URI; write e.g. sips:sip.example.net "
            "or https://prov.example.net."
        )
    connect_host: str | None = None
    connect_port: int | None = None
    if connect:
        connect_host, connect_port = _split_host_port(connect, "--connect")
    if scheme == "https":
        return TlsTarget.https(host, port, connect_host=connect_host, connect_port=connect_port)
    return TlsTarget.sips(host, port, connect_host=connect_host, connect_port=connect_port)


class FindingView(Protocol):
    """One problem the decision found (``certstore.model.Finding`` fits)."""

    @property
    def reason(self) -> str: ...
    @property
    def message(self) -> str: ...


class VerdictView(Protocol):
    """What the connector reads from a verdict (``certstore.model.Verdict`` fits)."""

    @property
    def accepted(self) -> bool: ...
    @property
    def rule(self) -> str: ...
    @property
    def reasons(self) -> tuple[str, ...]: ...
    @property
    def findings(self) -> Sequence[FindingView]: ...
    @property
    def leaf_fingerprint(self) -> str | None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class TrustCheck:
    """The outcome of asking the policy about one chain for one destination.

    ``chain`` and ``peer`` are the policy's own parsed values (certstore
    ``Certificate``s, a certstore ``Peer``), carried through to the recorder and to
    errors; the connector only reads ``verdict`` and ``record``.
    """

    verdict: VerdictView
    chain: tuple[Any, ...]
    peer: Any
    record: bool  # whether the store wants this handshake recorded (rejected list, TOFU pin)
    address: str | None = None  # host:port dialled, recorded beside the identity ``peer``


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientIdentity:
    """The certificate chain (leaf first, DER) and private key presented as a client."""

    chain_der: tuple[bytes, ...]
    private_key_pem: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not self.chain_der:
            raise ValueError("A client identity needs at least its own certificate.")


class TrustPolicy(Protocol):
    """The trust side of every handshake.

    ``snapshot`` and ``decide`` run on the event loop inside the handshake and must be
    cheap and non-blocking; ``record`` may block (it is run in a worker thread).
    """

    def snapshot(self) -> Any:
        """A consistent view of the trust state, taken once per handshake.

        The same object (or, without a ``generation``, an equal value) until the
        state changes: see :func:`same_state`.
        """
        ...

    def decide(
        self,
        chain_der: Sequence[bytes],
        target: TlsTarget,
        now: datetime,
        snapshot: Any,
        *,
        stapled: bytes | None = None,
    ) -> TrustCheck:
        """Decide about the chain the peer sent (leaf first) for this destination;
        ``stapled`` is the OCSP response the peer stapled in the handshake (DER)."""
        ...

    def record(self, check: TrustCheck, now: datetime) -> None:
        """Store a rejection, an overridden chain, or a trust-on-first-use pin."""
        ...

    def client_identity(self) -> ClientIdentity | None:
        """The chain and key to present when a server asks for a client certificate."""
        ...

    def close_flows_on_revoke(self, snapshot: Any) -> bool:
        """Whether live flows that would now be rejected are to be closed."""
        ...


def same_state(a: Any, b: Any) -> bool:
    """Whether two snapshots of a ``TrustPolicy`` show the same trust state.

    The store's snapshots carry a ``generation`` that grows with every committed
    change, and are compared by it; snapshots without one are compared as values.
    """
    if a is b:
        return True
    first, second = getattr(a, "generation", None), getattr(b, "generation", None)
    if first is not None and second is not None:
        return bool(first == second)
    return bool(a == b)
