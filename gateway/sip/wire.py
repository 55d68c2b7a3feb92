"""A message kept as its header lines: the relay's fast path, sans-I/O.

:func:`scan_datagram` and :func:`scan_head` look at the bytes once and, when the
message is in the canonical form that SIP stacks write (every header line
``Name: value`` with one space after the colon, no folding, no padding, exactly one
Content-Length that matches the body), return a :class:`Wire`: the start line, the
header lines as text and their look-up keys, and the body. Anything else returns
None, and the caller uses the full parser (:func:`~gateway.sip.parse_datagram`),
which then accepts the message or raises the same error it always did.

A :class:`Wire` accepts exactly the messages the full parser accepts and yields the
same values: :meth:`Wire.to_message` builds the full :class:`Request` or
:class:`Response` when a rare path needs one. A relay edits a :class:`Wire` by
splicing lines (insert its Via, rewrite Max-Forwards, remove its own Via from a
response) and writes it back with :meth:`Wire.render`, which gives the bytes that
``serialise`` would give for the same fields. Header values are checked by the
caller, as much as it needs: see ``gateway.relay.fastpath``.
"""

from __future__ import annotations

import functools
import re

from gateway.sip import grammar
from gateway.sip.errors import RemoteProtocolError
from gateway.sip.message import Request, Response, header_key
from gateway.sip.parser import check_request_line, check_status_line, parse_datagram

_DIGITS = re.compile(r"[0-9]{1,10}")
# Header name as written (a token) -> look-up key, learnt as names are seen (bounded).
_KEY_OF: dict[str, str] = {}
_KEYS_KEPT = 512


def _key_of(name: str) -> str:
    key = header_key(name)
    if len(_KEY_OF) < _KEYS_KEPT:
        _KEY_OF[name] = key
    return key


@functools.lru_cache(maxsize=1024)
def _start_fields(start: str) -> tuple[str, str, int] | None:
    """(method, uri, 0) of a request line or ("", "", status) of a status line; None if bad.

    Kept per line: a base station sends the same few request lines, an upstream the
    same few status lines.
    """
    try:
        if start[:4].upper() == "SIP/":
            status, _ = check_status_line(start)
            return "", "", status
        method, uri, _ = check_request_line(start)
    except RemoteProtocolError:
        return None
    return method, uri, 0


class Wire:
    """A scanned message: start line, header lines with their keys, body.

    ``lines[i]`` is ``"Name: value"`` and ``keys[i]`` its look-up key (lower-case
    canonical name, compact forms resolved). For a request ``method`` and ``uri``
    are set and ``status`` is 0; for a response ``status`` is set.
    """

    __slots__ = ("body", "keys", "lines", "method", "raw", "start", "status", "uri", "values")

    def __init__(
        self,
        start: str,
        lines: list[str],
        keys: list[str],
        values: list[str],
        body: bytes,
        raw: bytes,
    ) -> None:
        self.start = start
        self.lines = lines
        self.keys = keys
        self.values = values
        self.body = body
        self.raw = raw  # the message on its own (no leading CRLF, no trailing octets)
        self.method = ""
        self.uri = ""
        self.status = 0

    @property
    def is_request(self) -> bool:
        return not self.status

    def get(self, key: str) -> str | None:
        """The value of the first line with look-up ``key`` (e.g. ``"call-id"``), or None."""
        try:
            return self.values[self.keys.index(key)]
        except ValueError:
            return None

    def get_all(self, key: str) -> list[str]:
        """The values of every line with look-up ``key``, in order."""
        return [v for k, v in zip(self.keys, self.values, strict=True) if k == key]

    def to_message(self) -> Request | Response:
        """The full message, as the full parser builds it."""
        return parse_datagram(self.raw)

    def render(self, lines: list[str]) -> bytes:
        """The message with ``lines`` as its header lines (the body unchanged)."""
        return (self.start + "\r\n" + "\r\n".join(lines) + "\r\n\r\n").encode() + self.body


def scan_head(head: bytes, body: bytes | None = None) -> tuple[Wire, int] | None:
    """Scan a start line and header block (without the empty line).

    Returns the :class:`Wire` and its Content-Length, or None when the head is not
    in canonical form (then :func:`~gateway.sip.parse_head` decides). With ``body``
    the Wire carries it; otherwise the caller attaches it with :func:`attach_body`.
    """
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    split = _split_head(text)
    if split is None:
        return None
    start, lines, keys, values = split
    if keys.count("content-length") != 1:
        return None
    length_text = values[keys.index("content-length")]
    if _DIGITS.fullmatch(length_text) is None:
        return None
    length = int(length_text)
    if str(length) != length_text:
        return None  # leading zeros: serialise would write it differently
    checked = _start_fields(start)
    if checked is None:
        return None
    method, uri, status = checked
    wire = Wire(start, lines, keys, values, b"", head)
    wire.method, wire.uri, wire.status = method, uri, status
    if body is not None:
        attach_body(wire, body)
    return wire, length


def _split_head(text: str) -> tuple[str, list[str], list[str], list[str]] | None:
    """Start line, header lines, their keys and values; None unless canonical.

    Canonical: CR and LF only as CRLF; a non-empty start line; then lines
    ``token: value`` where the value neither starts nor ends with SP/HTAB (the full
    parser strips those; here they must be absent). String methods, not a regex over
    the whole head: this runs for every message the relay moves.
    """
    crlf = text.count("\r\n")
    if text.count("\r") != crlf or text.count("\n") != crlf:
        return None
    lines = text.split("\r\n")
    start = lines[0]
    if not start:
        return None
    del lines[0]
    known = _KEY_OF
    keys: list[str] = []
    values: list[str] = []
    for line in lines:
        name, sep, value = line.partition(": ")
        if not sep:
            return None
        key = known.get(name)
        if key is None:
            if grammar.TOKEN.fullmatch(name) is None:
                return None
            key = _key_of(name)
        if value and (value[0] in " \t" or value[-1] in " \t"):
            return None
        keys.append(key)
        values.append(value)
    return start, lines, keys, values


def attach_body(wire: Wire, body: bytes) -> None:
    """Give ``wire`` its body (exactly Content-Length octets)."""
    wire.raw = wire.raw + b"\r\n\r\n" + body
    wire.body = body


def scan_datagram(data: bytes) -> Wire | None:
    """Scan the single message of a UDP datagram, or None (use ``parse_datagram``)."""
    if data[:2] == b"\r\n":
        return None
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    scanned = scan_head(data[:end])
    if scanned is None:
        return None
    wire, length = scanned
    body_start = end + 4
    if length > len(data) - body_start:
        return None
    attach_body(wire, data[body_start : body_start + length])
    return wire


# --- cheap recognisers for the values a relay reads ------------------------------------
#
# Each accepts a subset of what the full parser in ``gateway.sip.headers`` accepts (the
# forms SIP stacks write); a value they do not recognise goes to the full parser.

_TOKEN = grammar.TOKEN_PIECE
_HOST = f"{grammar.IPV6_REFERENCE_PIECE}|{grammar.HOSTNAME_PIECE}"
_VIA = re.compile(
    f"SIP/2\\.0/([A-Za-z]+) ({_HOST})(?::({grammar.PORT_PIECE}))?"
    f"((?:;{_TOKEN}(?:=(?:{_TOKEN}|{grammar.IPV6_REFERENCE_PIECE}))?)*)"
)
_HEADER_PARAMS = grammar.HEADER_PARAMS_PIECE
_NAME_ADDR = re.compile(
    # name-addr: a quoted or token display name, then <URI>; or an addr-spec, whose URI
    # then holds none of ';,?' (they would be header parameters or list separators).
    r'(?:(?:"[^"\\\x00-\x1f\x7f]*"|'
    f"{_TOKEN}(?: {_TOKEN})*"
    f') ?)?<{grammar.SCHEME_PIECE}:[^\\s<>"]+>'
    f"{_HEADER_PARAMS}"
    f'|{grammar.SCHEME_PIECE}:[^\\s;,?<>"]+'
    f"{_HEADER_PARAMS}"
)

ViaParams = list[tuple[str, str | None]]


class SimpleVia:
    """One Via value in the plain form ``SIP/2.0/UDP host[:port];name=value...``."""

    __slots__ = ("host", "params", "port", "sent_by", "transport")

    def __init__(self, transport: str, host: str, port: int | None, params: ViaParams) -> None:
        self.transport = transport
        self.host = host  # IPv6 without brackets, as Via.host
        self.port = port
        self.params = params
        bracketed = f"[{host}]" if ":" in host else host
        self.sent_by = bracketed if port is None else f"{bracketed}:{port}"

    def param(self, name: str) -> tuple[bool, str | None]:
        """(present, value) of the first parameter called ``name`` (case-insensitive)."""
        for key, value in self.params:
            if key.lower() == name:
                return True, value
        return False, None

    def __str__(self) -> str:
        text = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.params)
        return f"SIP/2.0/{self.transport} {self.sent_by}{text}"


def simple_via(value: str) -> SimpleVia | None:
    """``value`` as a :class:`SimpleVia` when it has the plain form and is valid, else None.

    None means "ask ``parse_via``": the value may still be valid, or not.
    """
    match = _VIA.fullmatch(value)
    if match is None:
        return None
    transport, host, port_text, param_text = match.groups()
    port: int | None = None
    if port_text is not None:
        port = int(port_text)
        if port > 65535:
            return None
    params: ViaParams = []
    if param_text:
        for item in param_text[1:].split(";"):
            name, eq, param_value = item.partition("=")
            low = name.lower()
            if eq:
                if low == "rport" and not param_value.isdigit():
                    return None
                params.append((name, param_value))
            else:
                if low == "branch":
                    return None
                params.append((name, None))
            if low == "ttl":
                return None
    if host[0] == "[":
        host = host[1:-1]
    return SimpleVia(transport, host, port, params)


def simple_name_addr(value: str) -> bool:
    """Whether ``value`` is a plain ``[display] <uri>;params`` or ``uri;params`` that
    ``parse_name_addr`` takes (one address: no list, no wildcard)."""
    return _NAME_ADDR.fullmatch(value) is not None
