"""Errors of the SIP message layer: one root, a peer's fault and a caller's fault."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.errors import GatewayError

if TYPE_CHECKING:
    from gateway.sip.message import Request, Response


class SipProtocolError(GatewayError):
    """Root of every error raised by :mod:`gateway.sip`."""


class RemoteProtocolError(SipProtocolError):
    """The peer sent something that is not acceptable SIP.

    ``status_hint`` is the status code a server would answer with (400 for a
    malformed message, 413 for an oversized body, 505 for an unsupported SIP
    version, 513 for an oversized header block). ``problems`` lists every
    individual fault found, when more than one check was run. ``head`` is the
    message's start line and headers when they were read but the message could not
    be framed (no Content-Length on a stream, a body above the limit): enough to
    answer it before the connection is closed.
    """

    def __init__(
        self,
        message: str,
        *,
        status_hint: int = 400,
        problems: tuple[str, ...] = (),
        head: Request | Response | None = None,
    ) -> None:
        super().__init__(message)
        self.status_hint = status_hint
        self.problems = problems or (message,)
        self.head = head


class LocalProtocolError(SipProtocolError):
    """The caller asked for something that cannot be put on the wire."""
