"""Finding SIP messages in a byte stream (TCP, TLS), h11 style.

Feed bytes with :meth:`StreamFramer.receive_data`, then call
:meth:`StreamFramer.next_event` until it returns :data:`NEED_DATA`::

    framer = StreamFramer()
    framer.receive_data(chunk)
    while (event := framer.next_event()) is not NEED_DATA:
        ...

Events are a :class:`Request`, a :class:`Response`, a :class:`KeepAlivePing`
(CRLF CRLF, RFC 5626 §4.4.1: answer with a single CRLF), a
:class:`KeepAlivePong` (a single CRLF) or :data:`CONNECTION_CLOSED` after
``receive_data(b"")`` once everything was consumed. On a stream every message
must carry Content-Length (RFC 3261 §18.3). The header block and the body have
caps, so a peer cannot make the framer buffer without limit.

A keep-alive ping is recognised when its four octets are in the buffer
together; RFC 5626 peers write it in one piece. A lone CRLF at a message
boundary is reported as a pong at once rather than held back, so that a pong
is never delayed until the next message arrives.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gateway.sip.errors import LocalProtocolError, RemoteProtocolError
from gateway.sip.message import Request, Response
from gateway.sip.parser import parse_head, with_body
from gateway.sip.wire import Wire, attach_body, scan_head

DEFAULT_MAX_HEADER_SIZE = 64 * 1024
DEFAULT_MAX_BODY_SIZE = 1024 * 1024


class _Sentinel(enum.Enum):
    NEED_DATA = "NEED_DATA"
    CONNECTION_CLOSED = "CONNECTION_CLOSED"

    def __repr__(self) -> str:
        return self.value


#: Returned by :meth:`StreamFramer.next_event` when more bytes are needed.
NEED_DATA = _Sentinel.NEED_DATA
#: Returned once the peer closed the stream and every event was handed out.
CONNECTION_CLOSED = _Sentinel.CONNECTION_CLOSED


@dataclass(frozen=True, slots=True)
class KeepAlivePing:
    """The peer sent CRLF CRLF; RFC 5626 §4.4.1 asks for a CRLF in answer."""


@dataclass(frozen=True, slots=True)
class KeepAlivePong:
    """The peer sent a single CRLF, the answer to our ping."""


Event = Request | Response | Wire | KeepAlivePing | KeepAlivePong | _Sentinel

_PING = KeepAlivePing()
_PONG = KeepAlivePong()


class StreamFramer:
    """Reassembles SIP messages from a stream; holds no socket, does no I/O."""

    def __init__(
        self,
        *,
        max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        wire: bool = False,
    ) -> None:
        """With ``wire``, a message in canonical form comes out as a scanned
        :class:`~gateway.sip.wire.Wire` instead of a Request or Response."""
        if max_header_size < 16 or max_body_size < 0:
            raise LocalProtocolError(
                f"Framer limits must be positive (header {max_header_size}, body {max_body_size})."
            )
        self.max_header_size = max_header_size
        self.max_body_size = max_body_size
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the buffer already searched for CRLF CRLF
        self._pending: tuple[Request | Response | Wire, int] | None = None
        self._wire = wire
        self._eof = False
        self._error: RemoteProtocolError | None = None

    @property
    def buffered(self) -> int:
        """How many received octets wait to be framed."""
        return len(self._buffer)

    @property
    def partial(self) -> bool:
        """True while a message has begun but is not complete (its head or its body)."""
        return bool(self._buffer) or self._pending is not None

    def receive_data(self, data: bytes) -> None:
        """Add received octets; ``b""`` means the peer closed the stream."""
        if self._eof:
            if data:
                raise LocalProtocolError("Data was received after the end of the stream.")
            return
        if data:
            self._buffer += data
        else:
            self._eof = True

    def next_event(self) -> Event:
        """The next event, :data:`NEED_DATA`, or :data:`CONNECTION_CLOSED`.

        Raises RemoteProtocolError on malformed input; the framer stays broken
        afterwards (the stream cannot be resynchronised) and raises again.
        """
        if self._error is not None:
            raise RemoteProtocolError(
                f"The stream is unusable after an earlier error: {self._error}",
                status_hint=self._error.status_hint,
            )
        try:
            event = self._next()
        except RemoteProtocolError as exc:
            self._error = exc
            raise
        if event is NEED_DATA and self._eof:
            if self._buffer or self._pending is not None:
                self._error = RemoteProtocolError(
                    f"The stream ended inside a message ({len(self._buffer)} octets pending)."
                )
                raise self._error
            return CONNECTION_CLOSED
        return event

    def _next(self) -> Event:
        buffer = self._buffer
        if self._pending is None:
            if buffer[:2] == b"\r\n":
                if buffer[:4] == b"\r\n\r\n":
                    del buffer[:4]
                    self._scanned = 0
                    return _PING
                if len(buffer) == 3 and buffer[2:3] == b"\r":
                    return NEED_DATA
                del buffer[:2]
                self._scanned = 0
                return _PONG
            if buffer[:1] == b"\r" and len(buffer) == 1:
                return NEED_DATA
            end = buffer.find(b"\r\n\r\n", max(0, self._scanned - 3))
            if end < 0:
                if len(buffer) > self.max_header_size:
                    raise RemoteProtocolError(
                        f"No end of the header block within {self.max_header_size} octets.",
                        status_hint=513,
                    )
                self._scanned = len(buffer)
                return NEED_DATA
            if end > self.max_header_size:
                raise RemoteProtocolError(
                    f"The header block is {end} octets, above the limit of {self.max_header_size}.",
                    status_hint=513,
                )
            head = bytes(buffer[:end])
            scanned = scan_head(head) if self._wire else None
            message: Request | Response | Wire
            length: int | None
            if scanned is not None:
                message, length = scanned
            else:
                message, length = parse_head(head)
            if length is None:
                raise RemoteProtocolError(
                    "A message on a stream transport must carry Content-Length "
                    "(RFC 3261 §18.3); this one has none.",
                    head=_parsed(message, head),
                )
            if length > self.max_body_size:
                raise RemoteProtocolError(
                    f"Content-Length {length} is above the body limit of "
                    f"{self.max_body_size} octets.",
                    status_hint=413,
                    head=_parsed(message, head),
                )
            del buffer[: end + 4]
            self._scanned = 0
            self._pending = (message, length)
        message, length = self._pending
        if len(buffer) < length:
            return NEED_DATA
        self._pending = None
        body = bytes(buffer[:length]) if length else b""
        del buffer[:length]
        if type(message) is Wire:
            attach_body(message, body)
            return message
        assert isinstance(message, Request | Response)
        return with_body(message, body) if body else message


def _parsed(message: Request | Response | Wire, head: bytes) -> Request | Response:
    """The head as the full parser reads it (for an answer on a path that is rare)."""
    if isinstance(message, Wire):
        parsed, _ = parse_head(head)  # scan_head took it, so parse_head does too
        return parsed
    return message
