"""``sipsgate store migrate --to postgresql://...``: copy this gateway's embedded SQLite
store into an empty PostgreSQL database, all or nothing, to start a fleet on it."""

from __future__ import annotations

import argparse
from typing import Any

from certstore.postgres.migrate import migrate_sqlite
from certstore.sqlite import SqliteStore
from gateway.cli.common import config_of, emit_json
from gateway.errors import UsageError


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    store = subparsers.add_parser("store", parents=[common], help="the store's backend")
    sub = store.add_subparsers(dest="store_command", metavar="COMMAND", required=True)
    p = sub.add_parser(
        "migrate",
        parents=[common],
        help="copy the embedded SQLite store into an empty PostgreSQL database",
    )
    p.add_argument(
        "--to", required=True, metavar="URL", help="the target, postgresql://user@host/database"
    )
    p.set_defaults(func=cmd_migrate)


def cmd_migrate(args: argparse.Namespace) -> int:
    config = config_of(args)
    url: str = args.to
    if not url.lower().startswith(("postgresql://", "postgres://")):
        raise UsageError(
            f'--to must be a PostgreSQL URL like "postgresql://user@host/database", not "{url}".'
        )
    path = config.store_path
    if not path.is_file():
        raise UsageError(
            f"There is no SQLite store at {path} to migrate; check gateway.data_dir "
            "(--config or SIPSGATE_GATEWAY_DATA_DIR)."
        )
    with SqliteStore(path, rejected_limit=config.store.rejected_limit) as source:
        result = migrate_sqlite(source, url, gateway=config.gateway.name)
    if args.json:
        emit_json({"target": result.target, "gateway": config.gateway.name, "rows": result.rows})
    else:
        counts = ", ".join(f"{table} {count}" for table, count in result.rows.items())
        print(f"Copied {path} to {result.target} ({counts}).")
        print(
            f"The device identity is that of gateway.name = {config.gateway.name!r}. Set "
            f"[store] url (or SIPSGATE_STORE_URL) on every gateway of the fleet and restart."
        )
    return 0
