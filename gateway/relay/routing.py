"""How sipsgate routes a request as a proxy (RFC 3261 §16, RFC 3581): the headers it
reads and writes to do so. Pure functions and small keyed objects; no transaction
state.

- :class:`Branches`: the ``z9hG4bK`` branch of its own Via — a keyed hash of the
  transaction key followed by the loop-detection hash (§16.6 step 8) — the To tags
  of its local answers, and the check that a branch in a Via was made by it;
- transaction keys of requests (§17.2.3, RFC 2543 peers included);
- the base station's Via: ``received``/``rport`` (§18.2.1, RFC 3581) and where its
  responses go (§18.2.2);
- :class:`OwnRoutes`: which Route entries and Request-URIs name sipsgate (§16.4),
  and the removal of its own entries from a request coming back from upstream;
- the Record-Route values it inserts, each carrying a base station's flow token;
- host spellings: as URIs write them and as the socket layer does.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re

from gateway.relay.flows import FlowTokens, LanFlow, uri_user
from gateway.relay.settings import Listener
from gateway.sip import RemoteProtocolError, Request, Via, parse_name_addr_list
from gateway.sip.headers import parse_name_addr
from gateway.sip.uri import SipUri, parse_sip_uri

MAGIC = "z9hG4bK"
#: Methods whose initial request (no To tag) creates a dialog: these are Record-Routed.
DIALOG_METHODS = frozenset({"INVITE", "SUBSCRIBE", "REFER", "NOTIFY"})


class Branches:
    """The branches and tags of one relay instance, keyed by its secret."""

    __slots__ = ("_hash_key", "instance", "prefix")

    def __init__(self, key: bytes) -> None:
        self._hash_key = hashlib.sha256(b"branch" + key).digest()
        self.instance = hashlib.sha256(b"instance" + key).hexdigest()[:4]
        #: What every branch sipsgate writes starts with.
        self.prefix = f"{MAGIC}sg{self.instance}"

    def branch(self, key: str, request: Request) -> str:
        return self.branch_with(key, loop_hash(request))

    def branch_with(self, key: str, loop: str) -> str:
        unique = hashlib.blake2s(key.encode(), key=self._hash_key, digest_size=6).hexdigest()
        return f"{self.prefix}{unique}{loop}"

    def tag(self, seed: str) -> str:
        return hashlib.blake2s(seed.encode(), key=self._hash_key, digest_size=6).hexdigest()

    def covers(self, branch: str, via: Via, method: str) -> bool:
        """Was ``branch`` made by us for a request whose top Via was ``via``?"""
        if method == "ACK":
            method = "INVITE"
        start = len(self.prefix)
        unique = branch[start : start + 12]
        for key in (
            f"s|{via.branch}|{via.sent_by}|{method}",  # a transaction (server_key)
            f"{via.branch}|{via.sent_by}|{method}",  # forwarded statelessly (stateless_key)
        ):
            mine = hashlib.blake2s(key.encode(), key=self._hash_key, digest_size=6).hexdigest()
            if hmac.compare_digest(mine, unique):
                return True
        return False


# --- transaction keys ------------------------------------------------------------------


def server_key(request: Request, via: Via, method: str) -> str:
    """The server transaction a request belongs to (RFC 3261 §17.2.3)."""
    if method == "ACK":
        method = "INVITE"
    branch = via.branch
    if branch is not None and branch.startswith(MAGIC):
        return f"s|{branch}|{via.sent_by}|{method}"
    # RFC 2543 peers (§17.2.3): Request-URI, tags, Call-ID, CSeq number, top Via.
    from_ = request.from_
    cseq = request.cseq
    return (
        f"s|2543|{request.uri}|{from_.tag if from_ else ''}|{request.call_id}|"
        f"{cseq.number if cseq else ''}|{via}|{method}"
    )


def stateless_key(request: Request) -> str:
    """What a request forwarded without a transaction is known by (its branch seed)."""
    via = request.top_via
    return f"{via.branch if via else ''}|{via.sent_by if via else ''}|{request.method}"


# --- loop detection ----------------------------------------------------------------------


def loop_hash(request: Request) -> str:
    """RFC 3261 §16.6 step 8: what a looped request would carry unchanged."""
    h = request.headers
    return loop_hash_of(
        request.uri, h.get("From"), h.get("To"), h.get("Call-ID"), h.get("CSeq"), h.get("Route")
    )


def loop_hash_of(
    uri: str,
    from_: str | None,
    to: str | None,
    call_id: str | None,
    cseq: str | None,
    route: str | None,
) -> str:
    """:func:`loop_hash` over the header values as written."""
    number = (cseq or "").split(" ", 1)[0]
    text = f"{uri}|{from_}|{to}|{call_id}|{number}|{route or ''}"
    return hashlib.blake2s(text.encode(), digest_size=4).hexdigest()


# --- the base station's Via ----------------------------------------------------------------


def stamp_via(request: Request, via: Via, flow: LanFlow) -> Request:
    """RFC 3261 §18.2.1 and RFC 3581: note where the request really came from."""
    params = list(via.params)
    changed = False
    if via.host != flow.host:
        params = [(k, v) for k, v in params if k.lower() != "received"]
        params.append(("received", flow.host))
        changed = True
    if via.has_rport and via.rport != flow.port:
        params = [(k, v) if k.lower() != "rport" else (k, str(flow.port)) for k, v in params]
        changed = True
    if not changed:
        return request
    stamped = Via(
        protocol=via.protocol, version=via.version, transport=via.transport,
        host=via.host, port=via.port, params=tuple(params),
    )  # fmt: skip
    _, headers = request.headers.pop_first_value("Via")
    return request.replace_headers(headers.prepend("Via", str(stamped)))


def reply_flow(flow: LanFlow, via: Via) -> LanFlow:
    """Where responses go (RFC 3261 §18.2.2, RFC 3581 §4)."""
    if flow.transport == "tcp" or via.has_rport:
        return flow
    port = via.port or 5060
    if port == flow.port:
        return flow
    return LanFlow("udp", flow.host, port, flow.listener)


# --- Route and Record-Route -------------------------------------------------------------------


def record_route_tls(token: str, local: str) -> str:
    """The Record-Route entry on the upstream side (our end of the TLS flow)."""
    return f"<sip:{token}@{local};transport=tls;lr>"


def record_route_lan(token: str, listener: Listener) -> str:
    """The Record-Route entry on the LAN side (the listener the base station uses)."""
    return f"<sip:{token}@{listener.hostport};transport={listener.transport};lr>"


def has_to_tag(request: Request) -> bool:
    to = request.headers.get("To") or ""
    return ";tag=" in to.replace(" ", "").lower()


def with_uri(request: Request, uri: str) -> Request:
    return Request(method=request.method, uri=uri, version=request.version,
                   headers=request.headers, body=request.body)  # fmt: skip


def pop_token_routes(request: Request, tokens: FlowTokens) -> tuple[Request, LanFlow | None]:
    """For a request from upstream: remove our Route entries and find the flow a token
    names (in a Route entry, or in a Request-URI that is a rewritten Contact, which is
    restored). None: no token; the caller may still know the address."""
    token = None
    headers = request.headers
    while "Route" in headers:
        value, rest = headers.pop_first_value("Route")
        if not value:
            break
        user = uri_user(parse_name_addr_list(value, header="Route")[0].uri)
        decoded = tokens.decode(user) if user else None
        if decoded is None:
            break
        token = token or decoded
        headers = rest
    if headers is not request.headers:
        request = request.replace_headers(headers)
    user = uri_user(request.uri)
    if user is not None and len(user) > 40:
        decoded = tokens.decode(user)
        if decoded is not None and decoded.contact is not None:
            # Contact rewriting: the Request-URI is ours; restore the base station's.
            return with_uri(request, decoded.contact), decoded.flow
    if token is not None:
        return request, token.flow
    return request, None


def token_owner(request: Request, tokens: FlowTokens) -> int | None:
    """The worker whose flow a request from upstream names (the token of our first
    Route entry, else of a rewritten Contact in the Request-URI); None: no token."""
    value = request.headers.get("Route")
    if value:
        user = uri_user(parse_name_addr_list(value, header="Route")[0].uri)
        decoded = tokens.decode(user) if user else None
        if decoded is not None:
            return decoded.worker
    user = uri_user(request.uri)
    if user is not None and len(user) > 40:
        decoded = tokens.decode(user)
        if decoded is not None and decoded.contact is not None:
            return decoded.worker
    return None


class OwnRoutes:
    """What names sipsgate in a Route or Request-URI (RFC 3261 §16.4): listen addresses
    with their ports, host names with any of those ports, and URIs carrying a flow
    token it signed."""

    __slots__ = ("_addresses", "_names", "_ports", "_tokens")

    def __init__(
        self, listeners: tuple[Listener, ...], host_names: tuple[str, ...], tokens: FlowTokens
    ) -> None:
        self._tokens = tokens
        self._addresses = frozenset((normal_host(li.host), li.port) for li in listeners)
        self._names = frozenset(n.lower().rstrip(".") for n in host_names if n)
        self._ports = frozenset(li.port for li in listeners)

    def strip(self, request: Request) -> tuple[Request, bool]:
        """RFC 3261 §16.4 for a request from the LAN: take away what names sipsgate.

        A strict router (or an outbound proxy set without ``;lr``) sends the request
        to sipsgate's URI with the real target as the last Route: that target becomes
        the Request-URI again. Then every top Route entry naming sipsgate goes — the
        outbound-proxy entry a base station preloads (address or host name) and the
        two Record-Route entries of ours an in-dialog request carries. Returns the
        request and whether an entry of ours with a flow token was among them (an
        in-dialog request sipsgate already Record-Routed).
        """
        headers = request.headers
        if "Route" not in headers:
            return request, False
        routes = headers.get_list("Route")
        if self.strict_routed(request.uri):
            last = parse_name_addr(routes[-1], header="Route")
            kept = routes[:-1]
            headers = headers.remove("Route")
            if kept:
                headers = headers.append("Route", ", ".join(kept))
            request = Request(
                method=request.method, uri=last.uri, version=request.version,
                headers=headers, body=request.body,
            )  # fmt: skip
        token_popped = False
        while "Route" in headers:
            value, rest = headers.pop_first_value("Route")
            uri = parse_name_addr(value or "", header="Route").uri
            ours = self.route_token(uri)
            if ours is None:
                break
            headers = rest
            token_popped = token_popped or ours
        if headers is not request.headers:
            request = request.replace_headers(headers)
        return request, token_popped

    def route_token(self, uri: str) -> bool | None:
        """None: ``uri`` does not name sipsgate; else whether it carries a flow token."""
        try:
            parsed = parse_sip_uri(uri)
        except RemoteProtocolError:
            return None
        if parsed.user and self._tokens.decode(parsed.user) is not None:
            return True
        return False if self.names_us(parsed) else None

    def names_us(self, uri: SipUri) -> bool:
        """Whether ``uri``'s host and port are one of sipsgate's LAN listeners or names."""
        port = uri.port or uri.default_port
        if (normal_host(uri.host), port) in self._addresses:
            return True
        return uri.host.rstrip(".") in self._names and port in self._ports

    def strict_routed(self, request_uri: str) -> bool:
        """The Request-URI is a Record-Route value of ours, or sipsgate's bare address."""
        try:
            parsed = parse_sip_uri(request_uri)
        except RemoteProtocolError:
            return False
        if parsed.user:
            return self._tokens.decode(parsed.user) is not None
        return self.names_us(parsed)


# --- host spellings -------------------------------------------------------------------------

_URI_HOST = re.compile(r"sips?:[^@;?]+@(\[[0-9A-Fa-f:.]+\]|[^:;?>]+)(?::([0-9]{1,5}))?", re.I)


def uri_ip_address(uri: str) -> tuple[str, int] | None:
    """The IP address and port of a URI naming a user at an IP address (no token), as
    the socket layer writes the address; None for any other URI."""
    match = _URI_HOST.match(uri)
    if match is None:
        return None
    host = canonical_ip(match.group(1).strip("[]"))
    if host is None:
        return None
    return host, int(match.group(2) or 5060)


def normal_host(host: str) -> str:
    """``host`` as :func:`parse_sip_uri` gives it: lower-case, IPv6 compressed, no brackets."""
    host = host.strip("[]").lower()
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def canonical_ip(host: str) -> str | None:
    """``host`` as the socket layer writes it, or None when it is not an IP address."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None
