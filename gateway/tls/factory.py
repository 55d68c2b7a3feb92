"""The connector every part of the gateway shares, built from the configuration."""

from __future__ import annotations

import aiohttp

from certstore.decision import decide
from certstore.facade import RepositoryStore
from certstore.model import Actor
from gateway.config import Config
from gateway.metrics import MetricsRegistry
from gateway.tls.aiohttp_connector import VerifyingTCPConnector
from gateway.tls.connector import TlsConnector
from gateway.tls.engine import TlsSettings
from gateway.tls.revocation_fetch import DEFAULT_TIMEOUT, RevocationFetcher, aiohttp_get
from gateway.tls.trust import StoreTrustPolicy


def build_connector(
    config: Config,
    store: RepositoryStore,
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
    connector = TlsConnector(policy, settings=settings, metrics=metrics, record=record)
    connector.fetcher = build_fetcher(connector, store, metrics)
    return connector


def build_fetcher(
    connector: TlsConnector, store: RepositoryStore, metrics: MetricsRegistry | None = None
) -> RevocationFetcher:
    """Fetches OCSP and CRLs over HTTP, and HTTPS through ``connector`` itself."""
    timeout = min(DEFAULT_TIMEOUT, connector.settings.handshake_timeout / 2)

    def session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=VerifyingTCPConnector(connector),
            timeout=aiohttp.ClientTimeout(total=timeout),
        )

    return RevocationFetcher(
        store, aiohttp_get(session), timeout=timeout, metrics=metrics or connector.metrics_registry
    )
