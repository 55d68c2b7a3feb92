"""``sipsgate run``: the gateway, the admin endpoint and (later) the relay and the
provisioning client, in the foreground until SIGTERM or SIGINT; SIGHUP reloads."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from gateway.config import load_config
from gateway.limits import raise_open_file_limit
from gateway.log import configure_logging, get_logger

_log = get_logger(area="gateway")


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "run",
        parents=[common],
        help="run the gateway and its admin endpoint",
        description="Run the gateway in the foreground. On first start it creates the data "
        "directory, the device identity and the admin password, and prints the admin URL "
        "and that password once. SIGTERM/SIGINT stop it; SIGHUP reloads the config file.",
    )
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from gateway.runtime import run_gateway

    config = load_config(args.config)
    configure_logging(config.log.level, config.log.format)
    limit = raise_open_file_limit()
    _log.info(
        "gateway.limits.set", open_files=limit.after, open_files_before=limit.before,
        open_files_hard=limit.hard,
    )  # fmt: skip
    return asyncio.run(
        run_gateway(
            config,
            config_path=args.config,
            env=os.environ,
            out=sys.stdout,
            on_settled=_settle_heap,
        )
    )


def _settle_heap() -> None:
    """Every part runs (at start, after a reload): the process's garbage-collection
    policy (gateway.heap)."""
    from gateway.heap import settle_heap

    frozen = settle_heap()
    _log.debug("gateway.heap.frozen", objects=frozen)
