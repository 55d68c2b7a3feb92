"""Which store a gateway opens: the fleet's PostgreSQL database when ``store.url`` is
set (``SIPSGATE_STORE_URL``), else the embedded SQLite file in the data directory."""

from __future__ import annotations

from certstore.facade import RepositoryStore
from certstore.postgres import PostgresStore
from certstore.sqlite import SqliteStore
from gateway.config import Config


def open_configured_store(config: Config, *, listen: bool = True) -> RepositoryStore:
    """The configured store, created or upgraded on first use, used as ``gateway.name``
    (named on the audit events and rejected chains it writes). On PostgreSQL this
    gateway's device identity and signing request are those of ``gateway.name``, and
    ``listen`` follows changes made elsewhere (a running gateway; not a CLI command)."""
    if config.store.url:
        return PostgresStore(
            config.store.url,
            gateway=config.gateway.name,
            rejected_limit=config.store.rejected_limit,
            listen=listen,
        )
    return SqliteStore(
        config.store_path,
        rejected_limit=config.store.rejected_limit,
        gateway=config.gateway.name,
    )
