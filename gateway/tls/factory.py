"""The connector every part of the gateway shares, built from the configuration."""

from __future__ import annotations

from certstore.decision import decide
from certstore.model import Actor
from certstore.sqlite import SqliteStore
from gateway.config import Config
from gateway.metrics import MetricsRegistry
from gateway.tls.connector import TlsConnector
from gateway.tls.engine import TlsSettings
from gateway.tls.trust import StoreTrustPolicy


def build_connector(
    config: Config,
    store: SqliteStore,
    metrics: MetricsRegistry | None = None,
    *,
    record: bool = True,
    actor: Actor | None = None,
) -> TlsConnector:
    """A TLS connector deciding against ``store`` (the production trust policy), presenting
    the device identity when a server asks for a client certificate."""
    policy = StoreTrustPolicy(store, decide=decide, identity=store.device_identity, actor=actor)
    settings = TlsSettings(
        min_version=config.tls.min_version,
        handshake_timeout=float(config.tls.handshake_timeout),
        connect_timeout=float(config.tls.handshake_timeout),
    )
    return TlsConnector(policy, settings=settings, metrics=metrics, record=record)
