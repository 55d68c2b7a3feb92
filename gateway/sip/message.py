"""SIP messages as immutable values: :class:`Request`, :class:`Response`, :class:`Headers`.

Header fields keep the name as the peer spelled it (``v``, ``VIA``, ``Call-ID``)
and the value with folding undone, so that untouched fields are written back
as they came. Look-ups are case-insensitive and know the compact forms of
RFC 3261 §7.3.3 and later extensions (``i`` is Call-ID, ``m`` is Contact, ...).

Every method that "changes" a message returns a new one; nothing is re-parsed.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from gateway.sip import grammar
from gateway.sip.errors import LocalProtocolError
from gateway.sip.headers import (
    CSeq,
    NameAddr,
    Via,
    parse_content_length,
    parse_cseq,
    parse_max_forwards,
    parse_name_addr,
    parse_name_addr_list,
    parse_via_list,
    split_comma_list,
)

if TYPE_CHECKING:
    from typing import Self

#: Compact header names (RFC 3261 §7.3.3, RFC 3265, 3515, 3892, 3903, 4028,
#: 4474, 3841) and the canonical name each stands for.
COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_KNOWN_NAMES = (
    *COMPACT_FORMS.values(),
    "Accept",
    "Allow",
    "Authorization",
    "CSeq",
    "Date",
    "Expires",
    "Max-Forwards",
    "Min-Expires",
    "Path",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "Record-Route",
    "Require",
    "Route",
    "Server",
    "Unsupported",
    "User-Agent",
    "Warning",
    "WWW-Authenticate",
)

#: lower-case spelling (long or compact) -> look-up key (the lower-case canonical name).
_KEYS: dict[str, str] = {name.lower(): name.lower() for name in _KNOWN_NAMES}
_KEYS.update({short: long.lower() for short, long in COMPACT_FORMS.items()})
_CANONICAL: dict[str, str] = {name.lower(): name for name in _KNOWN_NAMES}

_METHOD_ERROR = "a SIP method is a token (letters, digits and -.!%*_+`'~)"


def header_key(name: str) -> str:
    """The case-insensitive look-up key of a header name, compact forms resolved."""
    low = name.lower()
    return _KEYS.get(low, low)


def canonical_name(name: str) -> str:
    """The usual spelling of a header name: ``v`` -> ``Via``, ``call-id`` -> ``Call-ID``.

    Unknown names come back as given.
    """
    return _CANONICAL.get(header_key(name), name)


class HeaderField(NamedTuple):
    """One header line: the name as spelled and the unfolded value."""

    name: str
    value: str


def _check_field(name: str, value: str) -> HeaderField:
    if not isinstance(name, str) or not grammar.TOKEN.fullmatch(name):
        raise LocalProtocolError(
            f"Header name {name!r} is not a token; use letters, digits and -.!%*_+`'~ only."
        )
    if not isinstance(value, str):
        raise LocalProtocolError(f"The value of header {name} must be a str, not {value!r}.")
    if "\r" in value or "\n" in value:
        raise LocalProtocolError(
            f"The value of header {name} contains a line break ({value!r}); "
            "fold nothing, pass the value on one line."
        )
    return HeaderField(name, value.strip(" \t"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Headers:
    """An ordered, immutable multi-map of header fields.

    ``Headers(fields=(("Via", "SIP/2.0/UDP h"), ("To", "<sip:b@h>")))`` checks
    every name and value; the parser builds its instances without that cost.
    """

    fields: tuple[HeaderField, ...] = ()
    _keys: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        checked = tuple(_check_field(*pair) for pair in self.fields)
        object.__setattr__(self, "fields", checked)
        object.__setattr__(self, "_keys", tuple(header_key(f.name) for f in checked))

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> Headers:
        """Build from ``(name, value)`` pairs, checking each."""
        return cls(fields=tuple(HeaderField(name, value) for name, value in pairs))

    @classmethod
    def _trusted(cls, fields: tuple[HeaderField, ...], keys: tuple[str, ...]) -> Headers:
        """Build from already checked fields and their keys (parser fast path)."""
        self = object.__new__(cls)
        object.__setattr__(self, "fields", fields)
        object.__setattr__(self, "_keys", keys)
        return self

    # --- look-up -----------------------------------------------------------

    def __len__(self) -> int:
        return len(self.fields)

    def __iter__(self) -> Iterator[HeaderField]:
        return iter(self.fields)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and header_key(name) in self._keys

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of the first field called ``name`` (any spelling), or ``default``."""
        key = header_key(name)
        for k, f in zip(self._keys, self.fields, strict=True):
            if k == key:
                return f.value
        return default

    def get_all(self, name: str) -> tuple[str, ...]:
        """The values of every field called ``name``, in order, one per header line."""
        key = header_key(name)
        return tuple(f.value for k, f in zip(self._keys, self.fields, strict=True) if k == key)

    def get_list(self, name: str) -> tuple[str, ...]:
        """Every comma-separated element of every field called ``name``, in order.

        Commas inside quoted strings and ``<...>`` do not split.
        """
        out: list[str] = []
        for value in self.get_all(name):
            out.extend(split_comma_list(value))
        return tuple(out)

    def count(self, name: str) -> int:
        """How many header lines carry ``name``."""
        key = header_key(name)
        return self._keys.count(key)

    # --- new instances -----------------------------------------------------

    def _with(self, fields: list[HeaderField], keys: list[str]) -> Headers:
        return Headers._trusted(tuple(fields), tuple(keys))

    def prepend(self, name: str, value: str) -> Headers:
        """A copy with ``name: value`` placed before the first field of that name.

        This is where a proxy puts its Via and its Record-Route (RFC 3261 §16.6).
        When no such field exists the new one goes to the end.
        """
        new = _check_field(name, value)
        key = header_key(name)
        fields, keys = list(self.fields), list(self._keys)
        index = keys.index(key) if key in keys else len(keys)
        fields.insert(index, new)
        keys.insert(index, key)
        return self._with(fields, keys)

    def append(self, name: str, value: str) -> Headers:
        """A copy with ``name: value`` added after every other field."""
        new = _check_field(name, value)
        return self._with([*self.fields, new], [*self._keys, header_key(name)])

    def set(self, name: str, value: str) -> Headers:
        """A copy where ``name`` has exactly one field, holding ``value``.

        The first existing field keeps its place and its spelling; the others of
        that name are dropped. With none, the field is appended.
        """
        new = _check_field(name, value)
        key = header_key(name)
        fields: list[HeaderField] = []
        keys: list[str] = []
        done = False
        for k, f in zip(self._keys, self.fields, strict=True):
            if k == key:
                if done:
                    continue
                f = HeaderField(f.name, new.value)
                done = True
            fields.append(f)
            keys.append(k)
        if not done:
            fields.append(new)
            keys.append(key)
        return self._with(fields, keys)

    def remove(self, name: str) -> Headers:
        """A copy without any field called ``name``."""
        key = header_key(name)
        pairs = [(k, f) for k, f in zip(self._keys, self.fields, strict=True) if k != key]
        return self._with([f for _, f in pairs], [k for k, _ in pairs])

    def pop_first_value(self, name: str) -> tuple[str | None, Headers]:
        """Take the first comma-separated element of ``name`` away.

        Returns the element and a copy without it: a line holding several
        values keeps the rest, a line left empty is dropped. This is how a
        proxy removes its own Via from a response (RFC 3261 §16.7).
        """
        key = header_key(name)
        if key not in self._keys:
            return None, self
        index = self._keys.index(key)
        line = self.fields[index]
        elements = split_comma_list(line.value)
        first = elements[0] if elements else ""
        fields, keys = list(self.fields), list(self._keys)
        if len(elements) > 1:
            fields[index] = HeaderField(line.name, ", ".join(elements[1:]))
        else:
            del fields[index]
            del keys[index]
        return first, self._with(fields, keys)


def _check_body(body: object) -> None:
    if not isinstance(body, bytes):
        raise LocalProtocolError(f"A SIP body is bytes, not {type(body).__name__}.")


def _check_version(version: str) -> None:
    if not isinstance(version, str) or not re.fullmatch(r"SIP/\d+\.\d+", version, re.IGNORECASE):
        raise LocalProtocolError(f"{version!r} is not a SIP version; use 'SIP/2.0'.")


class _MessageMethods:
    """Accessors and copy-with-change methods shared by requests and responses."""

    __slots__ = ()
    headers: Headers
    body: bytes

    # --- structured look-ups (parsed on every call; malformed -> RemoteProtocolError)

    @property
    def call_id(self) -> str | None:
        """The Call-ID value, or None."""
        return self.headers.get("Call-ID")

    @property
    def cseq(self) -> CSeq | None:
        """The parsed CSeq, or None when absent."""
        value = self.headers.get("CSeq")
        return None if value is None else parse_cseq(value)

    @property
    def vias(self) -> tuple[Via, ...]:
        """Every Via value, topmost first."""
        return tuple(v for line in self.headers.get_all("Via") for v in parse_via_list(line))

    @property
    def top_via(self) -> Via | None:
        """The topmost Via value, or None."""
        line = self.headers.get("Via")
        return None if line is None else parse_via_list(line)[0]

    @property
    def from_(self) -> NameAddr | None:
        """The parsed From value, or None."""
        value = self.headers.get("From")
        return None if value is None else parse_name_addr(value)

    @property
    def to(self) -> NameAddr | None:
        """The parsed To value, or None."""
        value = self.headers.get("To")
        return None if value is None else parse_name_addr(value)

    @property
    def contacts(self) -> tuple[NameAddr, ...]:
        """Every Contact value (a ``*`` is a NameAddr whose ``is_wildcard`` is true)."""
        return self._name_addrs("Contact", allow_wildcard=True)

    @property
    def routes(self) -> tuple[NameAddr, ...]:
        """Every Route value, in order."""
        return self._name_addrs("Route")

    @property
    def record_routes(self) -> tuple[NameAddr, ...]:
        """Every Record-Route value, in order."""
        return self._name_addrs("Record-Route")

    @property
    def max_forwards(self) -> int | None:
        """The Max-Forwards count, or None when absent."""
        value = self.headers.get("Max-Forwards")
        return None if value is None else parse_max_forwards(value)

    @property
    def content_length(self) -> int | None:
        """The declared Content-Length, or None when absent."""
        value = self.headers.get("Content-Length")
        return None if value is None else parse_content_length(value)

    def _name_addrs(self, name: str, *, allow_wildcard: bool = False) -> tuple[NameAddr, ...]:
        return tuple(
            na
            for line in self.headers.get_all(name)
            for na in parse_name_addr_list(line, allow_wildcard=allow_wildcard)
        )

    # --- copies with a change

    def replace_headers(self, headers: Headers) -> Self:
        """A copy with ``headers`` instead."""
        return dataclasses.replace(self, headers=headers)  # type: ignore[type-var]

    def prepend_header(self, name: str, value: str) -> Self:
        """A copy with ``name: value`` on top of the fields of that name (see Headers.prepend)."""
        return self.replace_headers(self.headers.prepend(name, value))

    def append_header(self, name: str, value: str) -> Self:
        """A copy with ``name: value`` after every other field."""
        return self.replace_headers(self.headers.append(name, value))

    def set_header(self, name: str, value: str) -> Self:
        """A copy where ``name`` has exactly one field holding ``value``."""
        return self.replace_headers(self.headers.set(name, value))

    def remove_header(self, name: str) -> Self:
        """A copy without any ``name`` field."""
        return self.replace_headers(self.headers.remove(name))

    def pop_header_value(self, name: str) -> tuple[str | None, Self]:
        """The first comma-separated element of ``name`` and a copy without it."""
        value, headers = self.headers.pop_first_value(name)
        return value, self.replace_headers(headers)

    def with_body(self, body: bytes, content_type: str | None = None) -> Self:
        """A copy carrying ``body`` (Content-Length is recomputed on serialising)."""
        new = dataclasses.replace(self, body=body)  # type: ignore[type-var]
        return new.set_header("Content-Type", content_type) if content_type else new


def _headers_from(headers: Headers | Iterable[tuple[str, str]]) -> Headers:
    return headers if isinstance(headers, Headers) else Headers.from_pairs(headers)


@dataclass(frozen=True, slots=True, kw_only=True)
class Request(_MessageMethods):
    """A SIP request. ``uri`` is kept exactly as received (escapes included)."""

    method: str
    uri: str
    version: str = "SIP/2.0"
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.method, str) or not grammar.TOKEN.fullmatch(self.method):
            raise LocalProtocolError(f"Method {self.method!r} is not valid: {_METHOD_ERROR}.")
        if not isinstance(self.uri, str) or not self.uri or any(c in self.uri for c in " \t\r\n"):
            raise LocalProtocolError(
                f"Request-URI {self.uri!r} is empty or holds whitespace; pass one URI."
            )
        _check_version(self.version)
        object.__setattr__(self, "headers", _headers_from(self.headers))
        _check_body(self.body)


@dataclass(frozen=True, slots=True, kw_only=True)
class Response(_MessageMethods):
    """A SIP response. ``reason`` may be empty (RFC 4475 §3.1.1.13)."""

    status: int
    reason: str = ""
    version: str = "SIP/2.0"
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.status, int) or not 100 <= self.status <= 699:
            raise LocalProtocolError(f"Status code {self.status!r} is not within 100-699.")
        if not isinstance(self.reason, str) or any(c in self.reason for c in "\r\n"):
            raise LocalProtocolError(f"Reason phrase {self.reason!r} must be one line of text.")
        _check_version(self.version)
        object.__setattr__(self, "headers", _headers_from(self.headers))
        _check_body(self.body)


Message = Request | Response
