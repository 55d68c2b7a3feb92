"""Errors of the SIP message layer: one root, a peer's fault and a caller's fault."""

from __future__ import annotations

from gateway.errors import GatewayError


class SipProtocolError(GatewayError):
    """Root of every error raised by :mod:`gateway.sip`."""


class RemoteProtocolError(SipProtocolError):
    """The peer sent something that is not acceptable SIP.

    ``status_hint`` is the status code a server would answer with (400 for a
    malformed message, 413 for an oversized body, 505 for an unsupported SIP
    version, 513 for an oversized header block). ``problems`` lists every
    individual fault found, when more than one check was run.
    """

    def __init__(
        self, message: str, *, status_hint: int = 400, problems: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.status_hint = status_hint
        self.problems = problems or (message,)


class LocalProtocolError(SipProtocolError):
    """The caller asked for something that cannot be put on the wire."""
