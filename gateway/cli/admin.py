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


# What a shell reports for a command ended by SIGINT (128 + 2).
EXIT_INTERRUPTED = 130


def _read_password(args: argparse.Namespace) -> str:
    if args.from_env:
        value = os.environ.get(PASSWORD_ENV, "")
        if not value:
            raise UsageError(f"--from-env was given but ${PASSWORD_ENV} is empty or unset.")
        return value
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        if not line:
            raise UsageError("No password on standard input (it was empty); nothing was changed.")
        return line.rstrip("\r\n")
    try:
        first = getpass.getpass("New admin password: ")
        second = getpass.getpass("Repeat it: ")
    except EOFError:  # Ctrl-D at the prompt
        print(file=sys.stderr)
        raise UsageError("No password was entered (end of input); nothing was changed.") from None
    if first != second:
        raise UsageError("The two passwords differ; nothing was changed.")
    return first


def cmd_set_password(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    try:
        password = _read_password(args)
    except KeyboardInterrupt:  # Ctrl-C at the prompt: leave the old password in place
        print("\nsipsgate: interrupted; the admin password was not changed.", file=sys.stderr)
        return EXIT_INTERRUPTED
    write_password(config.data_dir, password)
    print(f"The admin password in {config.data_dir} was changed.")
    return 0
