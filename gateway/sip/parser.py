"""SIP messages from bytes and back: :func:`parse_datagram` and :func:`serialise`.

The wire grammar is RFC 3261 §7 and §25: a start line, header lines ended by
CRLF (a line starting with SP or HTAB continues the previous one), an empty
line, the body. :func:`parse_head` is shared with the stream framer so that
every transport uses the same parser.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.sip import grammar
from gateway.sip.errors import LocalProtocolError, RemoteProtocolError
from gateway.sip.headers import (
    check_call_id,
    parse_content_length,
    parse_cseq,
    parse_max_forwards,
    parse_name_addr,
    parse_name_addr_list,
    parse_via_list,
)
from gateway.sip.message import HeaderField, Headers, Message, Request, Response, header_key

_CRLF = "\r\n"

Head = tuple[Request | Response, int | None]


def _version(text: str, line: str) -> str:
    if not grammar.SIP_VERSION.fullmatch(text):
        raise RemoteProtocolError(f"The start line {line!r} does not carry a SIP version.")
    if text.upper() != "SIP/2.0":
        raise RemoteProtocolError(
            f"SIP version {text!r} is not supported; only SIP/2.0 is.", status_hint=505
        )
    return text


def check_status_line(line: str) -> tuple[int, str]:
    """The status code and reason of a status line; RemoteProtocolError if malformed."""
    parts = line.split(" ", 2)
    if len(parts) < 2:
        raise RemoteProtocolError(f"The status line {line!r} has no status code.")
    _version(parts[0], line)
    code = parts[1]
    if len(code) != 3 or not code.isascii() or not code.isdigit() or code[0] not in "123456":
        raise RemoteProtocolError(
            f"The status code {code!r} is not a three-digit code from 100 to 699."
        )
    reason = parts[2] if len(parts) == 3 else ""
    if grammar.BAD_REASON_CHAR.search(reason):
        raise RemoteProtocolError(f"The reason phrase {reason!r} holds control characters.")
    return int(code), reason


def check_request_line(line: str) -> tuple[str, str, str]:
    """Method, Request-URI and version of a request line; RemoteProtocolError if malformed."""
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise RemoteProtocolError(
            f"The request line {line!r} is not 'METHOD URI SIP/2.0' separated by single spaces."
        )
    method, uri, version_text = parts
    if not grammar.TOKEN.fullmatch(method):
        raise RemoteProtocolError(f"The method {method!r} is not a token.")
    if not grammar.ABSOLUTE_URI.fullmatch(uri):
        raise RemoteProtocolError(f"The Request-URI {uri!r} is not an absolute URI.")
    scheme = uri[: uri.index(":")].lower()
    if scheme in ("sip", "sips"):
        rest = uri[len(scheme) + 1 :]
        host_part = rest[rest.index("@") + 1 :] if "@" in rest else rest
        if "?" in host_part:
            raise RemoteProtocolError(
                f"The Request-URI {uri!r} carries URI headers, which RFC 3261 §19.1.5 forbids."
            )
    return method, uri, _version(version_text, line)


def _start_line(line: str, headers: Headers) -> Request | Response:
    if line[:4].upper() == "SIP/":
        status, reason = check_status_line(line)
        version = line.split(" ", 1)[0]
        return Response(status=status, reason=reason, version=version, headers=headers)
    method, uri, version = check_request_line(line)
    return Request(method=method, uri=uri, version=version, headers=headers)


def parse_head(head: bytes) -> Head:
    """Parse a start line and header block (without the final empty line).

    Returns the message (without body) and its Content-Length (None when
    absent). Raises RemoteProtocolError for anything malformed.
    """
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError(
            f"The message head is not valid UTF-8 (byte {exc.start}: "
            f"{head[exc.start : exc.start + 1]!r}); header text must be UTF-8."
        ) from exc
    crlf = text.count(_CRLF)
    if text.count("\r") != crlf or text.count("\n") != crlf:
        raise RemoteProtocolError(
            "The message head holds a bare CR or LF; SIP lines must end with CRLF."
        )
    lines = text.split(_CRLF)
    names: list[str] = []
    values: list[str] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            if not names:
                raise RemoteProtocolError(
                    f"The first header line {line!r} starts with whitespace; "
                    "only a continuation line may."
                )
            piece = line.strip(" \t")
            if piece:
                values[-1] = f"{values[-1]} {piece}" if values[-1] else piece
            continue
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not grammar.TOKEN.fullmatch(name):
            raise RemoteProtocolError(
                f"The header line {line!r} is not 'Name: value' with a token as name."
            )
        names.append(name)
        values.append(value.strip(" \t"))
    fields = tuple(map(HeaderField, names, values))
    keys = tuple(map(header_key, names))
    headers = Headers._trusted(fields, keys)
    message = _start_line(lines[0], headers)
    length: int | None = None
    if "content-length" in keys:
        lengths = [f.value for f, k in zip(fields, keys, strict=True) if k == "content-length"]
        if len(lengths) > 1:
            raise RemoteProtocolError(
                f"The message has {len(lengths)} Content-Length headers "
                f"({', '.join(lengths)}); exactly one is needed to find its end."
            )
        length = parse_content_length(lengths[0])
    return message, length


def _skip_leading_crlf(data: bytes) -> int:
    pos = 0
    while data.startswith(b"\r\n", pos):
        pos += 2
    return pos


def parse_datagram(data: bytes) -> Request | Response:
    """Parse the single SIP message of a UDP datagram.

    CRLFs before the start line are skipped (RFC 3261 §7.5). With a
    Content-Length, octets after the body are discarded (§18.3) and a shorter
    body is an error; without one, the body is the rest of the datagram.
    """
    start = _skip_leading_crlf(data)
    if start == len(data):
        raise RemoteProtocolError("The datagram holds no SIP message, only line breaks.")
    end = data.find(b"\r\n\r\n", start)
    if end < 0:
        raise RemoteProtocolError(
            "The datagram has no empty line ending its header block (CRLF CRLF)."
        )
    message, length = parse_head(data[start:end])
    body_start = end + 4
    available = len(data) - body_start
    if length is None:
        body = data[body_start:]
    elif length > available:
        raise RemoteProtocolError(
            f"Content-Length announces {length} octets but the datagram carries only "
            f"{available} after the header block."
        )
    else:
        body = data[body_start : body_start + length]
    if not body:
        return message
    return with_body(message, body)


def with_body(message: Request | Response, body: bytes) -> Request | Response:
    """``message`` with ``body``, built without re-checking what the parser checked."""
    if isinstance(message, Request):
        return Request(
            method=message.method,
            uri=message.uri,
            version=message.version,
            headers=message.headers,
            body=body,
        )
    return Response(
        status=message.status,
        reason=message.reason,
        version=message.version,
        headers=message.headers,
        body=body,
    )


def serialise(message: Message) -> bytes:
    """The wire form of a message: CRLF line ends, one line per header field.

    Header names keep their spelling; the Content-Length field (any spelling)
    is rewritten to the body's length, or appended when missing. A value that
    already states the right length (``0150``) is left as it is.
    """
    if isinstance(message, Request):
        out = [f"{message.method} {message.uri} {message.version}"]
    elif isinstance(message, Response):
        out = [f"{message.version} {message.status} {message.reason}"]
    else:
        raise LocalProtocolError(
            f"Only a Request or a Response can be serialised, not {message!r}."
        )
    size = len(message.body)
    length_written = False
    for key, field in zip(message.headers._keys, message.headers.fields, strict=True):
        if key == "content-length":
            if length_written:
                continue
            length_written = True
            value = field.value
            if not (value.isascii() and value.isdigit() and int(value) == size):
                value = str(size)
            out.append(f"{field.name}: {value}")
        else:
            out.append(f"{field.name}: {field.value}")
    if not length_written:
        out.append(f"Content-Length: {size}")
    out.append(_CRLF)
    return _CRLF.join(out).encode("utf-8") + message.body


# --- checks a proxy makes before relaying ---------------------------------------

_SINGLE_VALUED = ("To", "From", "CSeq", "Call-ID", "Max-Forwards")


def _check_common(message: Request | Response, required: tuple[str, ...]) -> list[str]:
    """Every problem with the headers both requests and responses need."""
    problems: list[str] = []
    headers = message.headers
    missing = [name for name in required if name not in headers]
    if missing:
        problems.append(f"missing header{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
    for name in _SINGLE_VALUED:
        count = headers.count(name)
        if count > 1:
            problems.append(f"{count} {name} headers where one is allowed")

    def attempt(check: Callable[..., object], value: str, **options: object) -> None:
        try:
            check(value, **options)
        except RemoteProtocolError as exc:
            problems.append(str(exc).rstrip("."))

    for name in ("To", "From"):
        value = headers.get(name)
        if value is not None:
            attempt(parse_name_addr, value, header=name)
    call_id = headers.get("Call-ID")
    if call_id is not None:
        attempt(check_call_id, call_id)
    for line in headers.get_all("Via"):
        attempt(parse_via_list, line)
    for name in ("Contact", "Route", "Record-Route", "Path"):
        for line in headers.get_all(name):
            attempt(parse_name_addr_list, line, header=name, allow_wildcard=name == "Contact")
    return problems


def _raise_if(problems: list[str], what: str) -> None:
    if problems:
        raise RemoteProtocolError(
            f"The {what} cannot be relayed: {'; '.join(problems)}.",
            status_hint=400,
            problems=tuple(problems),
        )


def validate_request(request: Request, *, require_max_forwards: bool = True) -> None:
    """Check what a proxy needs of a request (RFC 3261 §8.1.1, §16.3).

    To, From, CSeq, Call-ID and Via must be present and well formed, and
    Max-Forwards too unless ``require_max_forwards`` is false (RFC 2543 peers
    omit it); the single-valued ones exactly once; the CSeq method must be the
    request's method; Contact, Route, Record-Route and Path must parse. Every
    problem is collected and reported in one RemoteProtocolError (status hint
    400) whose ``problems`` lists them.
    """
    required: tuple[str, ...] = ("To", "From", "CSeq", "Call-ID", "Via")
    if require_max_forwards:
        required += ("Max-Forwards",)
    problems = _check_common(request, required)
    cseq_value = request.headers.get("CSeq")
    if cseq_value is not None:
        try:
            cseq = parse_cseq(cseq_value)
        except RemoteProtocolError as exc:
            problems.append(str(exc).rstrip("."))
        else:
            if cseq.method != request.method:
                problems.append(
                    f"the CSeq method {cseq.method!r} differs from the request method "
                    f"{request.method!r}"
                )
    max_forwards = request.headers.get("Max-Forwards")
    if max_forwards is not None:
        try:
            parse_max_forwards(max_forwards)
        except RemoteProtocolError as exc:
            problems.append(str(exc).rstrip("."))
    _raise_if(problems, f"{request.method} request")


def validate_response(response: Response) -> None:
    """Check what a proxy needs of a response: Via, To, From, CSeq, Call-ID well formed."""
    problems = _check_common(response, ("To", "From", "CSeq", "Call-ID", "Via"))
    cseq_value = response.headers.get("CSeq")
    if cseq_value is not None:
        try:
            parse_cseq(cseq_value)
        except RemoteProtocolError as exc:
            problems.append(str(exc).rstrip("."))
    _raise_if(problems, f"{response.status} response")
