"""Outbound TLS: context building, the engine and the verifying connector."""

from gateway.tls.connector import TlsConnector
from gateway.tls.engine import TlsSettings, TlsTransport
from gateway.tls.policy import ClientIdentity, TlsTarget, TrustCheck, TrustPolicy
from gateway.tls.registry import ConnectionRegistry, LiveConnection

__all__ = [
    "ClientIdentity",
    "ConnectionRegistry",
    "LiveConnection",
    "TlsConnector",
    "TlsSettings",
    "TlsTarget",
    "TlsTransport",
    "TrustCheck",
    "TrustPolicy",
]
