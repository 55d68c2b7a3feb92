"""The ``sipsgate`` command line: ``run``, ``certs``, ``device``, ``probe`` ...

Each subcommand module exposes ``register(subparsers, common)``; ``common`` is the
parent parser holding the options every command takes (``--config``, ``--json``).
A handler returns the exit code. Errors of the product's own hierarchies end the
command with a one-line reason on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from certstore.errors import CertStoreError
from certstore.render import visible
from gateway.cli import admin, certs, device, probe, provision, run, status, store
from gateway.cli.common import visible_stdout
from gateway.errors import GatewayError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="config file (default: ./sipsgate.toml when it exists, else the embedded defaults)",
    )
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    parser = argparse.ArgumentParser(
        prog="sipsgate",
        description="SIP/TLS gateway with certificate pinning for DECT base stations.",
        parents=[common],
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (run, certs, device, probe, provision, admin, status, store):
        module.register(subparsers, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, default in (("config", None), ("json", False)):
        if not hasattr(args, name):
            setattr(args, name, default)
    try:
        with visible_stdout():
            code: int = args.func(args)
    except (CertStoreError, GatewayError) as exc:
        print(f"sipsgate: {visible(str(exc))}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_FAILURE
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
