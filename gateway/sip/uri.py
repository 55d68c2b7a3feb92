"""SIP and SIPS URIs (RFC 3261 §19.1): the parts a proxy compares, nothing more.

A proxy asks one question of a URI in Route or the Request-URI: does it name me
(RFC 3261 §16.4)? That needs the user part, the host, the port and the transport,
so that is what :func:`parse_sip_uri` returns. The URI text itself stays verbatim
wherever it is forwarded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.sip.errors import RemoteProtocolError

# scheme ":" [userinfo "@"] hostport [";" params] ["?" headers]
_SIP_URI = re.compile(
    r"(?P<scheme>sips?):"
    r"(?:(?P<user>[^@;?]*(?:;[^@?]*)?)@)?"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)"
    r"(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<params>;[^?]*)?"
    r"(?:\?.*)?",
    re.IGNORECASE | re.DOTALL,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SipUri:
    """The parts of a ``sip:``/``sips:`` URI; ``host`` is lower-case, IPv6 without brackets."""

    scheme: str  # "sip" or "sips"
    user: str | None  # without user parameters (RFC 4694)
    host: str
    port: int | None
    params: tuple[tuple[str, str | None], ...]

    def param(self, name: str) -> str | None:
        """The value of URI parameter ``name`` (case-insensitive), or None."""
        name = name.lower()
        return next((v for k, v in self.params if k == name), None)

    def has_param(self, name: str) -> bool:
        name = name.lower()
        return any(k == name for k, _ in self.params)

    @property
    def transport(self) -> str:
        """The transport the URI asks for: its ``transport`` parameter, else the default."""
        value = self.param("transport")
        if value:
            return value.lower()
        return "tls" if self.scheme == "sips" else "udp"

    @property
    def default_port(self) -> int:
        """The port a URI without one means (RFC 3263 §4.2: 5061 for TLS, else 5060)."""
        return 5061 if self.scheme == "sips" or self.transport == "tls" else 5060


def parse_sip_uri(uri: str) -> SipUri:
    """Parse a ``sip:`` or ``sips:`` URI; anything else raises :class:`RemoteProtocolError`."""
    match = _SIP_URI.fullmatch(uri.strip(" \t"))
    if match is None:
        raise RemoteProtocolError(
            f"The URI {uri!r} is not a SIP URI (expected sip:[user@]host[:port][;params])."
        )
    user = match.group("user")
    if user is not None:
        user = user.split(";", 1)[0]
    host = match.group("host").lower()
    if host.startswith("["):
        host = host[1:-1]
    port_text = match.group("port")
    port = int(port_text) if port_text else None
    if port is not None and not 0 < port < 65536:
        raise RemoteProtocolError(f"The URI {uri!r} names port {port}, outside 1-65535.")
    params: list[tuple[str, str | None]] = []
    for item in (match.group("params") or "").split(";")[1:]:
        name, sep, value = item.partition("=")
        params.append((name.strip().lower(), value.strip() if sep else None))
    return SipUri(
        scheme=match.group("scheme").lower(),
        user=user,
        host=host,
        port=port,
        params=tuple(params),
    )
