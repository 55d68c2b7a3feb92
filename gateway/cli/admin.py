"""``sipsgate admin``: the admin endpoint's own credentials, worked on offline."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any

from gateway.admin.auth import PASSWORD_ENV, write_password
from gateway.config import load_config
from gateway.errors import UsageError


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    admin = subparsers.add_parser("admin", parents=[common], help="the admin endpoint's password")
    sub = admin.add_subparsers(dest="admin_command", metavar="COMMAND", required=True)
    p = sub.add_parser(
        "set-password",
        parents=[common],
        help="set the admin password (asked twice on a terminal)",
        description="Set the password of the admin user. It is read from standard input "
        f"when that is not a terminal (one line), from ${PASSWORD_ENV} with --from-env, "
        "else asked twice. A running gateway uses the new password from its next login, "
        "and every session opened with the old one ends.",
    )
    p.add_argument(
        "--from-env", action="store_true", help=f"take the password from ${PASSWORD_ENV}"
    )
    p.set_defaults(func=cmd_set_password)


def _read_password(args: argparse.Namespace) -> str:
    if args.from_env:
        value = os.environ.get(PASSWORD_ENV, "")
        if not value:
            raise UsageError(f"--from-env was given but ${PASSWORD_ENV} is empty or unset.")
        return value
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    first = getpass.getpass("New admin password: ")
    second = getpass.getpass("Repeat it: ")
    if first != second:
        raise UsageError("The two passwords differ; nothing was changed.")
    return first


def cmd_set_password(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    password = _read_password(args)
    write_password(config.data_dir, password)
    print(f"The admin password in {config.data_dir} was changed.")
    return 0
