"""How addresses, counts and times are written for people (CLI output, logs, messages).

One place, so that every message writes an address as the URI a user would type
(``sips:host:port``, ``https://host:port``, IPv6 in brackets), a count with its plural
form, and a time to the second.
"""

from __future__ import annotations

from datetime import UTC, datetime

from certstore.model import Peer

# Schemes written with an authority ("//"); a sips: URI never has one (RFC 3261 §19.1).
_AUTHORITY_SCHEMES = frozenset({"https", "http"})


def host_port(host: str, port: int) -> str:
    """``host:port``, an IPv6 address in brackets: ``[2001:db8::1]:5061``."""
    host = host.strip("[]")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def address(value: object) -> str:
    """A socket address (``(host, port, ...)`` tuple) as ``host:port``; anything else as is."""
    if isinstance(value, tuple) and len(value) >= 2:
        return host_port(str(value[0]), int(value[1]))
    return str(value)


def uri(scheme: str, host: str, port: int) -> str:
    """``sips:host:port`` or ``https://host:port``: the form a user types."""
    separator = "://" if scheme in _AUTHORITY_SCHEMES else ":"
    return f"{scheme}{separator}{host_port(host, port)}"


def peer_uri(peer: Peer) -> str:
    return uri(peer.transport.value, peer.host, peer.port)


def plural(count: int, word: str, words: str | None = None) -> str:
    """``1 certificate``, ``2 certificates`` (``words`` for an irregular plural)."""
    return f"{count} {word if count == 1 else (words or word + 's')}"


def when(value: datetime | str) -> str:
    """A time for people, to the second, in UTC: ``2026-06-01 12:00:05 UTC``.

    Takes a datetime or the ISO text the JSON documents carry (``...Z``)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return f"{value:%Y-%m-%d %H:%M:%S} UTC"
