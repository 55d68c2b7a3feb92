"""What sipsgate does for registrations (RFC 3261 §10, RFC 3327, RFC 5626).

- the ``Path`` it adds to a REGISTER, so that requests for a base station come back
  over the flow it registered from, and what the registrar's answer shows about
  Path support (a 2xx that returns it or not, a ``420 Unsupported: path``);
- the fallback when the registrar does not support Path: each Contact rewritten
  to a URI of sipsgate's carrying the flow token and the original Contact, and
  restored in the registrar's answers;
- registration tracking: the UDP addresses base stations sent requests or
  registered from (:class:`UdpPeers`, what the upstream may reach without a
  token), how long a 2xx keeps a base station registered, and the note for the
  status view;
- RFC 5626 outbound named by the registrar (its flows then answer CRLF pings).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from gateway.relay.flows import FlowTokens, LanFlow, uri_user
from gateway.relay.outputs import PathSupport, Registered
from gateway.sip import Headers, NameAddr, Request, Response

# UDP addresses of base stations the upstream may reach: a source of requests stays
# known this long after its last request, a registration until it expires.
UDP_PEER_SECONDS = 600.0
MAX_REGISTRATION_SECONDS = 86400.0
MAX_UDP_PEERS = 10_000


class UdpPeers:
    """The UDP addresses of base stations the upstream may reach, each until a time;
    the oldest go first beyond ``limit``."""

    __slots__ = ("_limit", "_peers")

    def __init__(self, limit: int = MAX_UDP_PEERS) -> None:
        self._limit = limit
        self._peers: OrderedDict[tuple[str, int], float] = OrderedDict()

    def note(self, flow: LanFlow, until: float) -> None:
        """Remember a base station's UDP address until ``until`` (never shortened)."""
        if flow.transport != "udp":
            return
        key = (flow.host, flow.port)
        peers = self._peers
        known = peers.pop(key, None)
        peers[key] = until if known is None else max(known, until)
        while len(peers) > self._limit:
            peers.popitem(last=False)

    def known(self, host: str, port: int, now: float) -> bool:
        until = self._peers.get((host, port))
        if until is None:
            return False
        if until < now:
            del self._peers[(host, port)]
            return False
        return True


# --- Path (RFC 3327) ----------------------------------------------------------------------


def path_value(token: str, local: str) -> str:
    """The Path sipsgate adds: our end of the TLS flow, with the base station's flow."""
    return f"<sip:{token}@{local};transport=tls;lr;ob>"


def ua_supports_path(supported: Iterable[str]) -> bool:
    """Whether the base station's Supported header values name ``path`` itself."""
    return "path" in ",".join(supported).lower()


def path_shown(response: Response, known: bool | None) -> PathSupport | None:
    """What a 2xx to a REGISTER carrying our Path shows (RFC 3327 §5.3), when it is news
    against ``known``; None when it shows nothing new."""
    headers = response.headers
    return path_shown_by("Contact" in headers, "Path" in headers, known)


def path_shown_by(has_contact: bool, supported: bool, known: bool | None) -> PathSupport | None:
    """:func:`path_shown` from whether the 2xx has a Contact and a Path."""
    if not has_contact:
        return None
    if supported is known:
        return None
    return PathSupport(
        supported,
        "the registrar returned the Path"
        if supported
        else "the registrar's 2xx to REGISTER carries no Path: "
        "Contacts are rewritten from the next registration on",
    )


def path_refused(response: Response) -> bool:
    """A 420 naming ``path`` as unsupported (RFC 3261 §8.2.2.3)."""
    unsupported = ",".join(response.headers.get_all("Unsupported")).lower()
    return "path" in unsupported


# --- the Contact fallback --------------------------------------------------------------------


def rewrite_contacts(
    request: Request, headers: Headers, flow: LanFlow, local: str, tokens: FlowTokens
) -> Headers:
    """RFC 3327 fallback: the Contact becomes a URI of ours carrying flow and Contact."""
    values: list[str] = []
    for na in request.contacts:
        if not na.is_wildcard:
            token = tokens.contact_token(flow, na.uri)
            na = NameAddr(
                display_name=na.display_name,
                uri=f"sip:{token}@{local};transport=tls",
                params=na.params,
            )
        values.append(str(na))
    headers = headers.remove("Contact")
    for value in values:
        headers = headers.append("Contact", value)
    return headers


def restore_contacts(response: Response, tokens: FlowTokens) -> Response:
    """The base stations' own Contacts back in the registrar's answer."""
    values = restored_contacts(response.contacts, tokens)
    if values is None:
        return response
    headers = response.headers.remove("Contact")
    for value in values:
        headers = headers.append("Contact", value)
    return response.replace_headers(headers)


def restored_contacts(contacts: Iterable[NameAddr], tokens: FlowTokens) -> list[str] | None:
    """The Contact values with ours decoded back to the base stations' own; None when
    none of them was ours (the answer stays as it is)."""
    values: list[str] = []
    changed = False
    for na in contacts:
        user = uri_user(na.uri)
        decoded = tokens.decode(user) if user and len(user) > 40 else None
        if decoded is not None and decoded.contact is not None:
            na = NameAddr(display_name=na.display_name, uri=decoded.contact, params=na.params)
            changed = True
        values.append(str(na))
    return values if changed else None


# --- registration tracking ---------------------------------------------------------------------


def names_outbound(response: Response) -> bool:
    """RFC 5626 §6: a registrar supporting outbound names it in its REGISTER 2xx."""
    return names_outbound_in(
        (*response.headers.get_all("Require"), *response.headers.get_all("Supported"))
    )


def names_outbound_in(values: Iterable[str]) -> bool:
    """Whether Require/Supported ``values`` name ``outbound``."""
    tags = ",".join(values)
    return "outbound" in (t.strip().lower() for t in tags.split(","))


def registration_seconds(response: Response) -> float:
    """How long a 2xx to REGISTER keeps the base station registered (RFC 3261 §10.3)."""
    return registration_seconds_of(response.contacts, response.headers.get("Expires"))


def registration_seconds_of(contacts: Iterable[NameAddr], expires: str | None) -> float:
    """:func:`registration_seconds` from the Contacts and the Expires value."""
    default = expires or "3600"
    longest = 0.0
    for contact in contacts:
        text = contact.param("expires") or default
        try:
            longest = max(longest, float(int(text.strip())))
        except ValueError:
            continue
    return min(longest, MAX_REGISTRATION_SECONDS) + 32.0  # Timer F of the next refresh


def registered_note(source: LanFlow, response: Response) -> Registered:
    """What a 2xx to REGISTER says: the AOR (To) and the seconds granted (RFC 3261 §10.3:
    each Contact's expires, else the Expires header)."""
    return registered_note_of(
        source, response.to, response.contacts, response.headers.get("Expires")
    )


def registered_note_of(
    source: LanFlow, to: NameAddr | None, contacts: Iterable[NameAddr], header: str | None
) -> Registered:
    """:func:`registered_note` from the To, the Contacts and the Expires value."""
    granted: list[int] = []
    for contact in contacts:
        for name, value in contact.params:
            if name.lower() == "expires" and value is not None and value.isdigit():
                granted.append(int(value))
    if not granted and header is not None and header.strip().isdigit():
        granted.append(int(header.strip()))
    aor = to.uri if to is not None else ""
    return Registered(source.source, source.transport, aor, max(granted, default=None))
