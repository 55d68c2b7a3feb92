"""LAN flows and the flow tokens that name them in Path, Record-Route and Contact URIs.

A *flow* (RFC 5626 §3) is the way back to one base station: a UDP source address on
one of our listening sockets, or one TCP connection. The relay writes a flow token
into the user part of the URIs it puts in ``Path`` and ``Record-Route`` (and, when the
registrar does not support Path, into the rewritten ``Contact``), so that a request
that comes back from upstream names the flow it must leave on. Tokens are
authenticated with a per-process key (HMAC-SHA256, 64 bits kept): a token the relay
did not write decodes to nothing, so a peer cannot steer requests to arbitrary
addresses.

With several relay workers (``sip.workers``) every token also names the worker that
owns the flow; the workers share the key, so any of them can read any token and hand
a request to the worker that can deliver it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import struct
from dataclasses import dataclass
from typing import Literal

LanTransport = Literal["udp", "tcp"]

_MAC_SIZE = 8
_KIND_FLOW = 0x46  # "F": a flow
_KIND_CONTACT = 0x43  # "C": a flow and the Contact URI it stands for
_HEAD = struct.Struct("!BBBBIH")  # kind, transport, listener, worker, conn_id, port


@dataclass(frozen=True, slots=True)
class LanFlow:
    """Where a base station's message came from, and so where answers go.

    ``listener`` is the index of our listening socket (UDP) or server (TCP) it
    arrived on; ``conn_id`` names the TCP connection (0 for UDP).
    """

    transport: LanTransport
    host: str
    port: int
    listener: int = 0
    conn_id: int = 0

    @property
    def source(self) -> str:
        """``host:port`` of the base station (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class DecodedToken:
    flow: LanFlow
    contact: str | None  # the base station's own Contact URI (Contact rewriting only)
    worker: int = 0  # the relay worker that owns the flow


class FlowTokens:
    """Encodes flows into URI user parts and back; ``key`` is a secret of this gateway
    (shared by its workers), ``worker`` the index of the worker that writes tokens."""

    def __init__(self, key: bytes, *, worker: int = 0) -> None:
        if len(key) < 16:
            raise ValueError("A flow token key needs at least 16 random octets.")
        if not 0 <= worker <= 255:
            raise ValueError(f"A worker index fits one octet, not {worker}.")
        self._key = key
        self._worker = worker
        self._cache: dict[LanFlow, str] = {}

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_SIZE]

    def _payload(self, kind: int, flow: LanFlow) -> bytes:
        address = ipaddress.ip_address(flow.host).packed
        transport = 0 if flow.transport == "udp" else 1
        head = _HEAD.pack(kind, transport, flow.listener, self._worker, flow.conn_id, flow.port)
        return head + address

    def flow_token(self, flow: LanFlow) -> str:
        """The token for ``flow`` alone (Path, Record-Route)."""
        token = self._cache.get(flow)
        if token is None:
            payload = self._payload(_KIND_FLOW, flow)
            token = _b64(self._mac(payload) + payload)
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[flow] = token
        return token

    def contact_token(self, flow: LanFlow, contact_uri: str) -> str:
        """The token for ``flow`` and the base station's Contact URI (Contact rewriting)."""
        raw = contact_uri.encode("utf-8")
        payload = self._payload(_KIND_CONTACT, flow) + struct.pack("!H", len(raw)) + raw
        return _b64(self._mac(payload) + payload)

    def decode(self, token: str) -> DecodedToken | None:
        """The flow (and Contact) a token of ours names; None for anything else."""
        if len(token) < 24 or len(token) > 2048:
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except ValueError:
            return None
        mac, payload = raw[:_MAC_SIZE], raw[_MAC_SIZE:]
        if len(payload) < _HEAD.size + 4 or not hmac.compare_digest(mac, self._mac(payload)):
            return None
        kind, transport, listener, worker, conn_id, port = _HEAD.unpack_from(payload)
        rest = payload[_HEAD.size :]
        contact: str | None = None
        if kind == _KIND_CONTACT:
            # address (4 or 16 octets), then a length-prefixed URI
            for size in (4, 16):
                if len(rest) >= size + 2:
                    (length,) = struct.unpack_from("!H", rest, size)
                    if len(rest) == size + 2 + length:
                        contact = rest[size + 2 :].decode("utf-8", "replace")
                        rest = rest[:size]
                        break
            else:
                return None
        elif kind != _KIND_FLOW:
            return None
        if len(rest) not in (4, 16):
            return None
        host = str(ipaddress.ip_address(rest))
        flow = LanFlow(
            transport="udp" if transport == 0 else "tcp",
            host=host,
            port=port,
            listener=listener,
            conn_id=conn_id,
        )
        return DecodedToken(flow=flow, contact=contact, worker=worker)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def uri_user(uri: str) -> str | None:
    """The user part of a ``sip:``/``sips:`` URI, or None (``sip:host`` has none)."""
    colon = uri.find(":")
    if colon < 0:
        return None
    at = uri.find("@", colon + 1)
    if at < 0:
        return None
    user = uri[colon + 1 : at]
    semi = user.find(";")  # user parameters (RFC 4694) are not part of our tokens
    return user if semi < 0 else user[:semi]
