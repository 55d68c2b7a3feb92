"""The fast path: plain requests from the LAN and plain responses, spliced line by line.

A message the line scanner (:mod:`gateway.sip.wire`) recognised is forwarded here
without being parsed into a :class:`Request` or :class:`Response`: the lines the
full path would change (the base station's Via, Max-Forwards, our Via, Path) are
rewritten and the rest is copied. The registrar's answers to a REGISTER take it too:
only their Contact and To values are parsed, for what the full path reads from them
(the registration's lifetime, the Contacts restored under the Path fallback, the note
for the status view). It is taken only when the outcome is the one the full path
would reach; anything else (no flow yet, a retransmission, Route, dialogs, INVITE,
ACK, CANCEL, a 420 to our Path, a loop, a header the plain recognisers do not know)
returns False before any state changed, and the message goes the full way. The two
are held equal by the generic equivalence harness (``tests/unit/test_fast_paths.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from gateway.relay.flows import LanFlow
from gateway.relay.outputs import Output, PongSupport, SendUpstream
from gateway.relay.registrar import (
    UDP_PEER_SECONDS,
    names_outbound_in,
    path_shown_by,
    path_value,
    registered_note_of,
    registration_seconds_of,
    restored_contacts,
    ua_supports_path,
)
from gateway.relay.routing import DIALOG_METHODS, MAGIC, loop_hash_of, stamp_via
from gateway.relay.state import ClientTx, ProxyState, ServerTx
from gateway.relay.transaction import ResponseAction
from gateway.sip import (
    NameAddr,
    RemoteProtocolError,
    Request,
    parse_name_addr_list,
    parse_via_list,
    split_comma_list,
)
from gateway.sip.headers import check_call_id, parse_cseq, parse_max_forwards, parse_name_addr
from gateway.sip.wire import SimpleVia, Wire, simple_name_addr, simple_via

_FULL_PATH_METHODS = frozenset({"ACK", "CANCEL", *DIALOG_METHODS})
_SINGLE = ("to", "from", "cseq", "call-id", "max-forwards")
_ADDRESS_LISTS = frozenset({"contact", "record-route", "path"})
_CHECKED = frozenset({"via", "to", "from", *_ADDRESS_LISTS})  # what _fast_valid reads


class FastPath(ProxyState):
    """The fast path of :class:`ProxyCore` (which tries it first)."""

    pongs_answered: bool  # set by ProxyCore

    def _fast_request(self, w: Wire, flow: LanFlow, now: float, out: list[Output]) -> bool:
        method = w.method
        local = self.upstream_local
        keys = w.keys
        if (
            local is None
            or method in _FULL_PATH_METHODS
            or "route" in keys
            or (method == "REGISTER" and self.path_supported is False)
            or "via" not in keys
        ):
            return False
        values = w.values
        vi = keys.index("via")
        via = simple_via(values[vi])
        if via is None:
            return False
        branch = via.param("branch")[1]
        if branch is None or not branch.startswith(MAGIC):
            return False
        key = f"s|{branch}|{via.sent_by}|{method}"
        if key in self.table:
            return False  # a retransmission
        max_forwards = self._fast_valid(w, vi)
        host = flow.host
        if max_forwards <= 0 or self._inflight.get(host, 0) >= self.settings.source_inflight:
            return False
        call_id = values[keys.index("call-id")]
        has_rport, _ = via.param("rport")
        if flow.transport == "tcp" or has_rport or (via.port or 5060) == flow.port:
            source = flow
        else:
            source = LanFlow("udp", host, via.port or 5060, flow.listener)
        self.peers.note(source, now + UDP_PEER_SECONDS)
        stx = ServerTx(
            None, method=method, key=key, source=source, reliable=flow.transport == "tcp",
            now=now, settings=self.timers, call_id=call_id,
        )  # fmt: skip
        stx.defer(lambda: self._full_request(w, flow))
        self._inflight[host] = self._inflight.get(host, 0) + 1
        stx.counted = True
        self.table.add(key, stx)

        # What _stamp_via and _forward_upstream do, on the lines.
        lines = w.lines.copy()
        stamped = _stamp_simple(via, flow)
        if stamped is not None:
            lines[vi] = f"Via: {stamped}"
        mi = keys.index("max-forwards")
        lines[mi] = f"{w.lines[mi][: -len(values[mi]) - 2]}: {max_forwards - 1}"
        path_at = -1
        path_line = ""
        if method == "REGISTER":
            token = self.tokens.flow_token(source)
            stx.ua_path = ua_supports_path(w.get_all("supported"))
            path_line = f"Path: {path_value(token, local)}"
            if "path" in keys:
                path_at = keys.index("path")
            else:
                lines.append(path_line)
            if not stx.ua_path:
                lines.append("Supported: path")
        loop = loop_hash_of(
            w.uri, w.get("from"), w.get("to"), call_id, values[keys.index("cseq")], None
        )
        ours = self.branches.branch_with(key, loop)
        via_line = f"Via: SIP/2.0/TLS {local};branch={ours}"
        if path_at > vi:
            lines.insert(path_at, path_line)
        lines.insert(vi, via_line)
        if 0 <= path_at <= vi:
            lines.insert(path_at, path_line)
        data = w.render(lines)
        ctx = ClientTx(
            None, data, method=method, key=f"c|{ours}|{method}", branch=ours, dest=None,
            server=stx, now=now, settings=self.timers,
        )  # fmt: skip
        ctx.path_added = method == "REGISTER"
        stx.client = ctx
        self.table.add(ctx.key, ctx)
        out.append(SendUpstream(data))
        return True

    def _fast_valid(self, w: Wire, top: int) -> int:
        """Max-Forwards when ``validate_request`` passes and no Via is ours; else -1."""
        keys = w.keys
        for name in _SINGLE:
            if keys.count(name) != 1:
                return -1
        prefix = self.branches.prefix
        checked = _CHECKED
        try:
            for i, (k, v) in enumerate(zip(keys, w.values, strict=True)):
                if k not in checked:
                    continue
                if k == "via":
                    if prefix in v:
                        return -1  # maybe a loop: the full path looks closer
                    if i != top and ("," in v or simple_via(v) is None):
                        parse_via_list(v)
                elif k == "to" or k == "from":
                    if not simple_name_addr(v):
                        parse_name_addr(v)
                elif "," in v or not simple_name_addr(v):
                    parse_name_addr_list(v, allow_wildcard=k == "contact")
            check_call_id(w.values[keys.index("call-id")])
            cseq = parse_cseq(w.values[keys.index("cseq")])
            max_forwards = parse_max_forwards(w.values[keys.index("max-forwards")])
        except RemoteProtocolError:
            return -1
        return max_forwards if cseq.method == w.method else -1

    def _full_request(self, w: Wire, flow: LanFlow) -> Request:
        """The request the full path would have kept for a transaction the fast path took."""
        request = w.to_message()
        assert isinstance(request, Request)
        via = request.top_via
        assert via is not None
        return stamp_via(request, via, flow)

    def _fast_response(self, w: Wire, flow: LanFlow | None, now: float, out: list[Output]) -> bool:
        keys = w.keys
        if "via" not in keys or "cseq" not in keys:
            return False
        vi = keys.index("via")
        value = w.values[vi]
        rest: str | None = None
        if "," in value:  # our Via and the ones below it on one line, as some stacks write
            elements = split_comma_list(value)
            value, rest = elements[0], ", ".join(elements[1:])
        via = simple_via(value)
        if via is None:
            return False
        branch = via.param("branch")[1]
        if branch is None or not branch.startswith(self.branches.prefix):
            return False
        try:
            cseq = parse_cseq(w.values[keys.index("cseq")])
        except RemoteProtocolError:
            return False
        ctx = self.table.by_key.get(f"c|{branch}|{cseq.method}")
        if type(ctx) is not ClientTx or ctx.invite or ctx.cancel:
            return False
        stx = ctx.server
        if stx is None:
            return False
        status = w.status
        register: _RegisterAnswer | None = None
        if stx.method == "REGISTER":
            if flow is not None or (ctx.path_added and status == 420):
                return False  # the full path retries a 420 Unsupported: path
            register = _register_answer(w, status)
            if register is None:
                return False
        action = ctx.on_response(status, now)
        self.table.schedule(ctx.key, ctx)
        if action is ResponseAction.ABSORB:
            return True
        lines = w.lines.copy()
        if rest is None:
            del lines[vi]
        else:  # what pop_first_value leaves: the other values, joined by ", "
            lines[vi] = f"{lines[vi][: -len(w.values[vi]) - 2]}: {rest}"
        if register is not None:
            keys = keys.copy()
            if rest is None:
                del keys[vi]
            lines = self._fast_registered(register, lines, keys, ctx, stx, status, now, out)
        self._pass_response(stx, w.render(lines), status, now, out)
        return True

    def _outbound_negotiated(self, tags: Iterable[str], out: list[Output]) -> None:
        """RFC 5626 §6: a registrar supporting outbound names it in its REGISTER 2xx
        (``tags``: the Require and Supported values)."""
        if self.pongs_answered:
            return
        if names_outbound_in(tags):
            self.pongs_answered = True
            out.append(PongSupport("the registrar's 2xx to REGISTER names 'outbound'"))

    def _fast_registered(
        self,
        answer: _RegisterAnswer,
        lines: list[str],
        keys: list[str],
        ctx: ClientTx,
        stx: ServerTx,
        status: int,
        now: float,
        out: list[Output],
    ) -> list[str]:
        """What the full path does to the registrar's answer to a REGISTER, on the lines
        (``keys`` are theirs): Path support, Path removal, the peer's registration,
        the Contacts restored, the note for the status view."""
        ok = 200 <= status < 300
        drop: set[str] = set()
        if ok:
            self._outbound_negotiated(answer.tags, out)
        if ctx.path_added and ok:
            shown = path_shown_by(answer.contacts is not None, "path" in keys, self.path_supported)
            if shown is not None:
                self.path_supported = shown.supported
                out.append(shown)
            if not stx.ua_path:
                drop.add("path")
        source = stx.source
        contacts = answer.contacts
        restored = None
        if contacts is not None and stx.live:
            if ok and source is not None:
                self.peers.note(source, now + registration_seconds_of(contacts, answer.expires))
            restored = restored_contacts(contacts, self.tokens)
            if restored is not None:
                drop.add("contact")
        if drop:
            lines = [line for line, key in zip(lines, keys, strict=True) if key not in drop]
        if restored is not None:
            lines += [f"Contact: {value}" for value in restored]
        if ok and source is not None:
            out.append(registered_note_of(source, answer.to, contacts or (), answer.expires))
        return lines


class _RegisterAnswer(NamedTuple):
    """What the full path reads from an answer to a REGISTER, read before any state
    changes (a value it cannot parse sends the answer the full way)."""

    contacts: tuple[NameAddr, ...] | None  # None: no Contact header
    to: NameAddr | None
    expires: str | None
    tags: tuple[str, ...]  # Require and Supported values


def _register_answer(w: Wire, status: int) -> _RegisterAnswer | None:
    keys, values = w.keys, w.values
    try:
        contacts = None
        if "contact" in keys:
            contacts = tuple(
                na
                for k, v in zip(keys, values, strict=True)
                if k == "contact"
                for na in parse_name_addr_list(v, allow_wildcard=True)
            )
        to = None
        if 200 <= status < 300:
            value = w.get("to")
            to = None if value is None else parse_name_addr(value)
    except RemoteProtocolError:
        return None
    tags = (*w.get_all("require"), *w.get_all("supported"))
    return _RegisterAnswer(contacts, to, w.get("expires"), tags)


def _stamp_simple(via: SimpleVia, flow: LanFlow) -> str | None:
    """What :func:`~gateway.relay.routing.stamp_via` writes for this Via; None: unchanged."""
    params = via.params
    changed = False
    if via.host != flow.host:
        params = [(k, v) for k, v in params if k.lower() != "received"]
        params.append(("received", flow.host))
        changed = True
    present, rport = via.param("rport")
    if present and (rport is None or int(rport) != flow.port):
        params = [(k, v) if k.lower() != "rport" else (k, str(flow.port)) for k, v in params]
        changed = True
    if not changed:
        return None
    return str(SimpleVia(via.transport, via.host, via.port, params))
