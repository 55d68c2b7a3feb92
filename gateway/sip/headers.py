"""Parsers for the structured header fields a proxy works with (RFC 3261 §25.1).

Each parser takes one unfolded header value (as kept in :class:`Headers`) and
returns a frozen value, or raises :class:`RemoteProtocolError` (status hint
400) with a sentence naming the header and the offending text. URIs are kept
verbatim, escapes included: only the element that owns a URI interprets it.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from gateway.sip import grammar
from gateway.sip.errors import RemoteProtocolError

_VIA_HEAD = re.compile(
    f"[ \\t]*({grammar.TOKEN_PIECE})[ \\t]*/[ \\t]*({grammar.TOKEN_PIECE})[ \\t]*/[ \\t]*"
    f"({grammar.TOKEN_PIECE})[ \\t]+({grammar.IPV6_REFERENCE_PIECE}|{grammar.HOSTNAME_PIECE})"
    f"(?:[ \\t]*:[ \\t]*({grammar.PORT_PIECE}))?"
)
_CSEQ = re.compile(f"[ \\t]*([0-9]+)[ \\t]+({grammar.TOKEN_PIECE})[ \\t]*")
_DIGITS = re.compile(r"[ \t]*([0-9]+)[ \t]*")
_UNESCAPE = re.compile(r"\\(.)", re.DOTALL)
_SPLIT_SPECIAL = re.compile(r'[",<>\\]')

#: CSeq numbers are below 2**31 (RFC 3261 §8.1.1.5).
CSEQ_LIMIT = 2**31

Params = tuple[tuple[str, str | None], ...]


def _error(header: str, value: str, why: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"{header} header {value!r} is malformed: {why}.")


def split_comma_list(value: str) -> tuple[str, ...]:
    """Split a header value at the commas that separate values.

    Commas inside a quoted string (with its backslash escapes) or inside
    ``<...>`` do not split. Elements are stripped of SP/HTAB; empty elements
    are kept so that callers can reject them. Never raises.
    """
    if '"' not in value and "<" not in value:
        return tuple(part.strip(" \t") for part in value.split(","))
    parts: list[str] = []
    start = 0
    in_quote = False
    angle = 0
    escaped_at = -1
    for match in _SPLIT_SPECIAL.finditer(value):
        i = match.start()
        ch = value[i]
        if in_quote:
            if i == escaped_at:
                continue
            if ch == "\\":
                escaped_at = i + 1
            elif ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
        elif ch == "<":
            angle += 1
        elif ch == ">":
            angle = max(0, angle - 1)
        elif ch == "," and not angle:
            parts.append(value[start:i].strip(" \t"))
            start = i + 1
    parts.append(value[start:].strip(" \t"))
    return tuple(parts)


def unquote(quoted_body: str) -> str:
    """Undo the quoted-pair escapes of a quoted string's content."""
    return _UNESCAPE.sub(r"\1", quoted_body) if "\\" in quoted_body else quoted_body


def quote(text: str) -> str:
    """``text`` as a quoted string, escaping backslash and double quote."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _parse_params(header: str, value: str, pos: int) -> tuple[Params, int]:
    """Read ``*(SEMI name [EQUAL value])`` from ``pos``; stop at the first other character."""
    params: list[tuple[str, str | None]] = []
    end = len(value)
    while True:
        pos = grammar.SWS.match(value, pos).end()  # type: ignore[union-attr]
        if pos >= end or value[pos] != ";":
            return tuple(params), pos
        pos = grammar.SWS.match(value, pos + 1).end()  # type: ignore[union-attr]
        name = grammar.TOKEN.match(value, pos)
        if name is None:
            raise _error(header, value, f"expected a parameter name at character {pos + 1}")
        pos = grammar.SWS.match(value, name.end()).end()  # type: ignore[union-attr]
        param_value: str | None = None
        if pos < end and value[pos] == "=":
            pos = grammar.SWS.match(value, pos + 1).end()  # type: ignore[union-attr]
            match = grammar.PARAM_VALUE.match(value, pos)
            if match is None:
                raise _error(
                    header,
                    value,
                    f"parameter {name.group()!r} has no valid value at character {pos + 1}",
                )
            param_value = match.group()
            pos = match.end()
        params.append((name.group(), param_value))


def _find_param(params: Params, name: str) -> tuple[bool, str | None]:
    name = name.lower()
    for key, value in params:
        if key.lower() == name:
            return True, value
    return False, None


def _format_params(params: Params) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


def _check_uri(header: str, value: str, uri: str) -> None:
    if not grammar.URI_START.match(uri) or any(c in uri for c in " \t"):
        raise _error(header, value, f"{uri!r} is not a URI (scheme ':' and no whitespace)")


# --- Via --------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Via:
    """One Via value: ``SIP/2.0/UDP host:port;branch=...;rport``.

    ``host`` is given without the brackets of an IPv6 reference; ``port`` is
    None when the value names none.
    """

    protocol: str = "SIP"
    version: str = "2.0"
    transport: str
    host: str
    port: int | None = None
    params: Params = ()

    def param(self, name: str) -> str | None:
        """The value of parameter ``name`` (case-insensitive), None if absent or valueless."""
        return _find_param(self.params, name)[1]

    def has_param(self, name: str) -> bool:
        """Whether parameter ``name`` is present, with or without a value."""
        return _find_param(self.params, name)[0]

    @property
    def branch(self) -> str | None:
        """The branch parameter (the transaction id when it starts with ``z9hG4bK``)."""
        return self.param("branch")

    @property
    def received(self) -> str | None:
        """The received parameter: the address the previous hop saw."""
        return self.param("received")

    @property
    def has_rport(self) -> bool:
        """Whether rport (RFC 3581) is present, with or without a value."""
        return self.has_param("rport")

    @property
    def rport(self) -> int | None:
        """The rport value, None when absent or requested without a value."""
        value = self.param("rport")
        return None if value is None else int(value)

    @property
    def maddr(self) -> str | None:
        """The maddr parameter."""
        return self.param("maddr")

    @property
    def ttl(self) -> int | None:
        """The ttl parameter."""
        value = self.param("ttl")
        return None if value is None else int(value)

    @property
    def sent_by(self) -> str:
        """``host[:port]`` as written on the wire (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    def __str__(self) -> str:
        head = f"{self.protocol}/{self.version}/{self.transport} {self.sent_by}"
        return head + _format_params(self.params)


def parse_via(value: str) -> Via:
    """Parse one Via value (no commas)."""
    head = _VIA_HEAD.match(value)
    if head is None:
        raise _error("Via", value, "expected 'SIP/2.0/<transport> <host>[:<port>]'")
    protocol, version, transport, host, port_text = head.groups()
    port: int | None = None
    if port_text is not None:
        port = int(port_text)
        if port > 65535:
            raise _error("Via", value, f"port {port} is above 65535")
    params, pos = _parse_params("Via", value, head.end())
    if pos != len(value):
        raise _error("Via", value, f"unexpected text at character {pos + 1}")
    for name, param_value in params:
        low = name.lower()
        if low in ("rport", "ttl") and param_value is not None and not param_value.isdigit():
            raise _error("Via", value, f"{name}={param_value} is not a number")
        if low == "ttl" and (param_value is None or int(param_value) > 255):
            raise _error("Via", value, "ttl needs a value from 0 to 255")
        if low == "branch" and not param_value:
            raise _error("Via", value, "branch needs a value")
    if host.startswith("["):
        host = host[1:-1]
    return Via(
        protocol=protocol,
        version=version,
        transport=transport,
        host=host,
        port=port,
        params=params,
    )


def parse_via_list(value: str) -> tuple[Via, ...]:
    """Parse a Via header line, which may hold several comma-separated values."""
    vias: list[Via] = []
    for element in split_comma_list(value):
        if not element:
            raise _error("Via", value, "it holds an empty value between commas")
        vias.append(parse_via(element))
    return tuple(vias)


# --- name-addr / addr-spec (From, To, Contact, Route, Record-Route, Path) ------


@dataclass(frozen=True, slots=True, kw_only=True)
class NameAddr:
    """``"Display" <uri>;param=value`` or ``uri;param=value``.

    ``uri`` is verbatim; ``params`` are the header parameters (for a bare
    addr-spec every parameter after the URI belongs to the header, RFC 3261
    §20.10). ``display_name`` is unescaped; None when absent. A Contact of
    ``*`` has ``uri == "*"``.
    """

    display_name: str | None = None
    uri: str
    params: Params = ()

    @property
    def is_wildcard(self) -> bool:
        """Whether this is the ``*`` Contact of a REGISTER removing all bindings."""
        return self.uri == "*"

    @property
    def tag(self) -> str | None:
        """The tag parameter (From, To)."""
        return self.param("tag")

    def param(self, name: str) -> str | None:
        """The value of header parameter ``name`` (case-insensitive), or None."""
        return _find_param(self.params, name)[1]

    def has_param(self, name: str) -> bool:
        """Whether header parameter ``name`` is present."""
        return _find_param(self.params, name)[0]

    def __str__(self) -> str:
        if self.is_wildcard:
            return "*"
        display = "" if self.display_name is None else quote(self.display_name) + " "
        return f"{display}<{self.uri}>" + _format_params(self.params)


_WILDCARD = NameAddr(uri="*")


def parse_name_addr(
    value: str, *, header: str = "Address", allow_wildcard: bool = False
) -> NameAddr:
    """Parse one name-addr or addr-spec with its header parameters."""
    if allow_wildcard and value.strip(" \t") == "*":
        return _WILDCARD
    end = len(value)
    pos = grammar.SWS.match(value).end()  # type: ignore[union-attr]
    display: str | None = None
    if pos < end and value[pos] == '"':
        quoted = grammar.QUOTED_STRING.match(value, pos)
        if quoted is None:
            raise _error(header, value, "the display name's quoted string is not terminated")
        display = unquote(quoted.group(1))
        pos = grammar.SWS.match(value, quoted.end()).end()  # type: ignore[union-attr]
        if pos >= end or value[pos] != "<":
            raise _error(header, value, "a quoted display name must be followed by <URI>")
    elif pos < end and value[pos] != "<":
        tokens = grammar.DISPLAY_TOKENS.match(value, pos)
        if tokens is not None:
            after = grammar.SWS.match(value, tokens.end()).end()  # type: ignore[union-attr]
            if after < end and value[after] == "<":
                display, pos = tokens.group(), after
    if pos < end and value[pos] == "<":
        close = value.find(">", pos + 1)
        if close < 0:
            raise _error(header, value, "'<' has no matching '>'")
        uri = value[pos + 1 : close]
        if not uri or uri != uri.strip(" \t"):
            raise _error(header, value, "no whitespace is allowed just inside '<' and '>'")
        _check_uri(header, value, uri)
        pos = close + 1
    else:
        if "<" in value:
            raise _error(
                header, value, "the text before '<' is not a display name (quote it if needed)"
            )
        start = pos
        while pos < end and value[pos] not in "; \t":
            pos += 1
        uri = value[start:pos]
        if not uri:
            raise _error(header, value, "it holds no URI")
        _check_uri(header, value, uri)
        if any(c in uri for c in ',?<>"'):
            raise _error(
                header,
                value,
                f"the URI {uri!r} holds ',', '?' or quotes, so it must be enclosed in <>",
            )
    params, pos = _parse_params(header, value, pos)
    if pos != end:
        raise _error(header, value, f"unexpected text at character {pos + 1}")
    return NameAddr(display_name=display, uri=uri, params=params)


def parse_name_addr_list(
    value: str, *, header: str = "Address", allow_wildcard: bool = False
) -> tuple[NameAddr, ...]:
    """Parse a comma-separated list of name-addr/addr-spec values (Contact, Route, ...)."""
    elements = split_comma_list(value)
    out: list[NameAddr] = []
    for element in elements:
        if not element:
            raise _error(header, value, "it holds an empty value between commas")
        parsed = parse_name_addr(element, header=header, allow_wildcard=allow_wildcard)
        if parsed.is_wildcard and len(elements) > 1:
            raise _error(header, value, "'*' must be the only value")
        out.append(parsed)
    return tuple(out)


# --- CSeq, Max-Forwards, Content-Length, Call-ID ------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CSeq:
    """``CSeq: 4711 INVITE``."""

    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


@functools.lru_cache(maxsize=1024)
def parse_cseq(value: str) -> CSeq:
    """Parse a CSeq value; the number must be below 2**31.

    Kept per value (a CSeq is frozen): every request and its answers carry the same
    few values, read on each side of the relay.
    """
    match = _CSEQ.fullmatch(value)
    if match is None:
        raise _error("CSeq", value, "expected '<number> <method>'")
    digits, method = match.groups()
    if len(digits.lstrip("0")) > 10 or int(digits) >= CSEQ_LIMIT:
        raise _error("CSeq", value, f"the number {digits} is not below 2**31")
    return CSeq(number=int(digits), method=method)


@functools.lru_cache(maxsize=256)
def parse_max_forwards(value: str) -> int:
    """Parse a Max-Forwards value (0 to 255); kept per value (there are few)."""
    match = _DIGITS.fullmatch(value)
    if match is None:
        raise _error("Max-Forwards", value, "expected a number")
    digits = match.group(1).lstrip("0") or "0"
    if len(digits) > 3 or int(digits) > 255:
        raise _error("Max-Forwards", value, "the count is above 255")
    return int(digits)


def parse_content_length(value: str) -> int:
    """Parse a Content-Length value; more than ten digits is refused as too large (413)."""
    match = _DIGITS.fullmatch(value)
    if match is None:
        raise _error("Content-Length", value, "expected a number of octets")
    digits = match.group(1).lstrip("0") or "0"
    if len(digits) > 10:
        raise RemoteProtocolError(
            f"Content-Length header {value!r} announces a body far too large to accept.",
            status_hint=413,
        )
    return int(digits)


def check_call_id(value: str) -> str:
    """Return the Call-ID if it is ``word ["@" word]`` (RFC 3261 §25.1), else raise."""
    if grammar.CALL_ID.fullmatch(value) is None:
        raise _error("Call-ID", value, "expected word['@'word] without whitespace")
    return value
